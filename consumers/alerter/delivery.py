"""Send an alert to a sink at most once per event, however often the event is delivered, and retry what failed.

Each (event, sink) pair has a marker key in Redis, ``<stream>:alerted:<event key>:<sink>``:

1. **claim** it with ``SET NX EX claim_ttl`` (value ``sending:<token>``) before sending. If the claim fails, the
   marker says ``sent`` (done: skip) or another delivery is sending right now (wait for it, bounded);
2. **send**, with retries and backoff;
3. on success set it to ``sent`` for ``sent_ttl`` (a week: longer than any redelivery); on failure **release** it
   (delete it if it is still ours), so a later delivery can try again.

A crash between claim and release leaves the claim to expire after ``claim_ttl`` (longer than all attempts take);
until then other deliveries wait or retry later. Markers are per sink so that a Telegram outage does not make
Slack post the same alert twice.
"""

from __future__ import annotations

import asyncio
import logging
import time
import uuid
from collections.abc import Awaitable, Callable, Sequence

from redis.asyncio import Redis
from redis.exceptions import RedisError

from consumers.alerter.format import Message
from consumers.alerter.sinks import Sink
from consumers.errors import AlertInFlight, AlertNotDelivered, SinkError

log = logging.getLogger("consumers.alerter")

SENT = b"sent"

_RELEASE = """
if redis.call('GET', KEYS[1]) == ARGV[1] then
  return redis.call('DEL', KEYS[1])
end
return 0
"""

Sleep = Callable[[float], Awaitable[None]]


class Delivery:
    def __init__(
        self,
        redis: Redis,
        *,
        prefix: str,
        attempts: int = 5,
        backoff_s: float = 0.5,
        backoff_max_s: float = 30.0,
        sent_ttl_s: int = 604_800,
        claim_ttl_s: int = 120,
        wait_in_flight_s: float = 15.0,
        sleep: Sleep = asyncio.sleep,
    ) -> None:
        self.redis = redis
        self.prefix = prefix
        self.attempts = attempts
        self.backoff_s = backoff_s
        self.backoff_max_s = backoff_max_s
        self.sent_ttl_s = sent_ttl_s
        self.claim_ttl_s = claim_ttl_s
        self.wait_in_flight_s = wait_in_flight_s
        self._sleep = sleep
        self._release = redis.register_script(_RELEASE)

    def marker(self, key: str, sink: Sink) -> str:
        return f"{self.prefix}:{key}:{sink.name}"

    async def unsent(self, key: str, sinks: Sequence[Sink]) -> list[Sink]:
        """The sinks that have not sent this event's alert yet (one round trip)."""
        states = await self.redis.mget([self.marker(key, sink) for sink in sinks])
        return [sink for sink, state in zip(sinks, states, strict=True) if state != SENT]

    async def send_once(self, key: str, sink: Sink, message: Message) -> bool:
        """Send unless already sent for ``key``; True if this call sent it.

        Raises :class:`AlertNotDelivered` when every attempt failed (the marker is released) and
        :class:`AlertInFlight` when another delivery still holds the marker after ``wait_in_flight_s``.
        """
        marker = self.marker(key, sink)
        token = f"sending:{uuid.uuid4().hex}".encode()
        if not await self._claim(marker, token):
            return False
        try:
            await self.send(sink, message)
        except BaseException:
            try:
                await self._release(keys=[marker], args=[token])
            except RedisError as exc:
                log.warning("could not release %s (%s); it expires in %d s", sink.name, exc, self.claim_ttl_s)
            raise
        for attempt in range(3):
            try:
                await self.redis.set(marker, SENT, ex=self.sent_ttl_s)
                break
            except RedisError as exc:
                log.warning("alert sent to %s, marking it failed (%s); attempt %d of 3", sink.name, exc, attempt + 1)
                await self._sleep(0.2 * (attempt + 1))
        else:
            log.error(
                "alert for %s went to %s but could not be marked as sent: if its entry is redelivered after %d s, "
                "the alert repeats",
                key,
                sink.name,
                self.claim_ttl_s,
            )
        return True

    async def _claim(self, marker: str, token: bytes) -> bool:
        """True if the marker is now ours; False if the alert was sent already."""
        deadline = time.monotonic() + self.wait_in_flight_s
        while True:
            if await self.redis.set(marker, token, nx=True, ex=self.claim_ttl_s):
                return True
            state = await self.redis.get(marker)
            if state == SENT:
                return False
            if state is None:
                continue  # released or expired between our SET and GET: try again
            if time.monotonic() >= deadline:
                raise AlertInFlight(
                    f"another delivery has been sending {marker!r} for over {self.wait_in_flight_s:g} s; "
                    f"the entry stays pending and is retried (the claim expires within {self.claim_ttl_s} s)"
                )
            await self._sleep(0.2)

    async def send(self, sink: Sink, message: Message) -> None:
        """Up to ``attempts`` tries with doubling waits (or the wait the service asked for)."""
        last: SinkError | None = None
        for attempt in range(self.attempts):
            if attempt:
                wait = min(self.backoff_s * 2 ** (attempt - 1), self.backoff_max_s)
                if last is not None and last.retry_after is not None:
                    wait = min(max(wait, last.retry_after), self.backoff_max_s * 2)
                log.info("retrying %s in %.1f s (attempt %d of %d)", sink.name, wait, attempt + 1, self.attempts)
                await self._sleep(wait)
            try:
                await sink.send(message)
                return
            except SinkError as exc:
                last = exc
                log.warning("%s did not take the alert: %s", sink.name, exc)
                if exc.permanent:
                    break
        raise AlertNotDelivered(f"{sink.name}: gave up after {attempt + 1} attempt(s): {last}")
