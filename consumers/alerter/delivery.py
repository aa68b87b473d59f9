"""Send an alert to a sink at most once per event, however often the event is delivered, and wait out outages.

Each (event, sink) pair has a marker key in Redis, ``<stream>:alerted:<event key>:<sink>``. Every attempt:

1. **claims** it with ``SET NX EX claim_ttl`` (value ``sending:<process token>:<consumer name>``). If the claim
   fails, the marker says ``sent`` (done: skip), or a previous life of this consumer name holds it (that process
   is gone: take the claim over at once), or another consumer is sending right now (raise
   :class:`AlertInFlight` at once, so the rest of the batch is not kept waiting; the entry is retried later);
2. **sends** once;
3. on success sets the marker to ``sent`` for ``sent_ttl`` (a week: longer than any redelivery); on failure
   **releases** it (deletes it if it is still ours) before waiting for the next attempt.

A claim covers one attempt only, so it lives little longer than one request may take: a process killed mid-send
blocks the alert for seconds, not for its whole retry schedule, and another consumer may try while this one
waits. Markers are per sink so that a Telegram outage does not make Slack post the same alert twice.

**Outages.** A sink that fails for its own reasons (5xx, 429, timeouts, refused connections, a redirect) is not
the alert's fault: after ``attempts`` tries the sink is reported down and the alert keeps waiting for it, retrying
every ``backoff_max_s`` at most, for up to ``outage_max_s``. Only then, or when the sink says the request itself
is wrong (a 4xx other than 408/429), does :class:`AlertNotDelivered` leave the entry to the runner's retries and
dead letters. :meth:`Delivery.stop` ends every wait at once (the entry stays pending for the next start).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
import uuid
from collections.abc import Awaitable, Callable, Sequence

from redis.exceptions import RedisError

from consumers.alerter.format import Message
from consumers.alerter.sinks import Sink
from consumers.errors import AlertInFlight, AlertNotDelivered, SinkError
from plumbing.backoff import exponential
from plumbing.redis_connect import RedisClient
from plumbing.text import printable

log = logging.getLogger("consumers.alerter")

SENT = b"sent"
_SENDING = b"sending:"

_RELEASE = """
if redis.call('GET', KEYS[1]) == ARGV[1] then
  return redis.call('DEL', KEYS[1])
end
return 0
"""

_TAKE_OVER = """
if redis.call('GET', KEYS[1]) == ARGV[1] then
  redis.call('SET', KEYS[1], ARGV[2], 'EX', ARGV[3])
  return 1
end
return 0
"""

Sleep = Callable[[float], Awaitable[None]]


def claim_value(token: str, owner: str) -> bytes:
    """A marker's value while a process sends: which process (``token``, new per start) of which consumer name."""
    return _SENDING + f"{token}:{owner}".encode()


def left_by_previous_life(state: bytes | str, token: str, owner: str) -> bool:
    """True if ``state`` is a claim of ``owner``'s name made by another process than ``token``'s.

    Consumer names are unique among live processes (the group would mix their pending entries otherwise), so a
    claim under our name but with another token was made by a process of our name that is no longer running: a
    restart (what compose's ``restart:`` does) after a crash. Waiting for it to expire would only delay the alert.
    """
    text = state.decode(errors="replace") if isinstance(state, bytes) else state
    if not text.startswith(_SENDING.decode()):
        return False
    their_token, sep, their_owner = text[len(_SENDING) :].partition(":")
    return bool(sep) and their_owner == owner and their_token != token


def next_wait(attempt: int, backoff_s: float, backoff_max_s: float, retry_after: float | None) -> float:
    """Seconds before attempt ``attempt`` (1-based, after the first): doubling, capped, or what the sink asked for."""
    wait = exponential(attempt - 1, base=backoff_s, cap=backoff_max_s)
    if retry_after is not None:
        wait = min(max(wait, retry_after), backoff_max_s * 2)
    return wait


class Delivery:
    def __init__(
        self,
        redis: RedisClient,
        *,
        prefix: str,
        owner: str = "alerter",
        attempts: int = 5,
        backoff_s: float = 0.5,
        backoff_max_s: float = 30.0,
        outage_max_s: float = 3600.0,
        sent_ttl_s: int = 604_800,
        claim_ttl_s: int = 15,
        sleep: Sleep | None = None,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.redis = redis
        self.prefix = prefix
        self.owner = owner
        self.token = uuid.uuid4().hex
        self._attempting: set[str] = set()
        """Markers this process holds claimed and is sending under now; a claim of ours on any other is a leftover."""
        """This process's mark on its claims; a restart under the same name has another one."""
        self.attempts = attempts
        self.backoff_s = backoff_s
        self.backoff_max_s = backoff_max_s
        self.outage_max_s = outage_max_s
        self.sent_ttl_s = sent_ttl_s
        self.claim_ttl_s = claim_ttl_s
        self.waiting: dict[object, float] = {}
        """Alerts (and summaries) now waiting for a sink that is down: when each started waiting (``clock``)."""
        self._sleep = sleep
        self._clock = clock
        self._stopped = asyncio.Event()
        self._release = redis.register_script(_RELEASE)
        self._take_over = redis.register_script(_TAKE_OVER)

    def marker(self, key: str, sink: Sink) -> str:
        return f"{self.prefix}:{key}:{sink.name}"

    def stop(self) -> None:
        """End every wait for a sink now: at shutdown, an alert that cannot go out stays pending for the next start."""
        self._stopped.set()

    def oldest_wait_s(self) -> float:
        """How long the alert that has waited longest for a sink has waited; 0 when none waits."""
        return self._clock() - min(self.waiting.values()) if self.waiting else 0.0

    async def unsent(self, key: str, sinks: Sequence[Sink]) -> list[Sink]:
        """The sinks that have not sent this event's alert yet (one round trip)."""
        states = await self.redis.mget([self.marker(key, sink) for sink in sinks])
        return [sink for sink, state in zip(sinks, states, strict=True) if state != SENT]

    async def send_once(self, key: str, sink: Sink, message: Message) -> bool:
        """Send unless already sent for ``key``; True if this call sent it.

        Raises :class:`AlertNotDelivered` when the sink refused the alert for good, stayed down for longer than
        ``outage_max_s`` or the process is stopping, and :class:`AlertInFlight` when another consumer holds the
        marker now.
        """
        marker = self.marker(key, sink)
        claim = claim_value(self.token, self.owner)

        async def attempt() -> bool:
            if not await self._claim(marker, claim):
                return False
            self._attempting.add(marker)  # no await since the claim: nothing of ours can see it in between
            try:
                try:
                    await sink.send(message)
                except BaseException:
                    try:
                        await self._release(keys=[marker], args=[claim])
                    except RedisError as exc:
                        log.warning("could not release %s (%s); it expires in %d s", sink.name, exc, self.claim_ttl_s)
                    raise
                await self._mark_sent(key, sink, marker)
                return True
            finally:
                self._attempting.discard(marker)

        return await self._retry(sink, attempt)

    async def send(self, sink: Sink, message: Message) -> None:
        """Send with the same retries and outage wait, without a marker (summaries: nothing to repeat)."""

        async def attempt() -> bool:
            await sink.send(message)
            return True

        await self._retry(sink, attempt)

    async def _retry(self, sink: Sink, attempt: Callable[[], Awaitable[bool]]) -> bool:
        """Run ``attempt`` until it returns, the sink refuses for good, the outage lasts too long, or we stop."""
        started = self._clock()
        tries = 0
        ticket = object()
        try:
            while True:
                try:
                    return await attempt()
                except SinkError as exc:
                    tries += 1
                    if exc.permanent:
                        log.warning("%s refused the alert: %s", sink.name, exc)
                        raise AlertNotDelivered(f"{sink.name}: refused after {tries} attempt(s): {exc}") from None
                    down_s = self._clock() - started
                    if self._stopped.is_set() or (tries >= self.attempts and down_s >= self.outage_max_s):
                        why = "stopping" if self._stopped.is_set() else f"down for {down_s:.0f} s"
                        raise AlertNotDelivered(
                            f"{sink.name}: gave up after {tries} attempt(s) ({why}): {exc}"
                        ) from None
                    wait = next_wait(tries, self.backoff_s, self.backoff_max_s, exc.retry_after)
                    if tries < self.attempts:
                        log.warning("%s did not take the alert: %s; retrying in %.1f s", sink.name, exc, wait)
                    elif tries > self.attempts:
                        log.info("%s still down (%s); next try in %.1f s", sink.name, exc, wait)
                    else:
                        self.waiting[ticket] = started
                        log.error(
                            "%s is down (%s) after %d attempts over %.0f s; the alert waits for it (next try in "
                            "%.1f s, for at most %g s)",
                            sink.name,
                            exc,
                            tries,
                            down_s,
                            wait,
                            self.outage_max_s,
                        )
                    await self._wait(wait)
        finally:
            self.waiting.pop(ticket, None)

    async def _wait(self, seconds: float) -> None:
        if self._sleep is not None:
            await self._sleep(seconds)
            return
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self._stopped.wait(), seconds)

    def _left_by_an_earlier_attempt(self, marker: str, state: bytes | str) -> bool:
        """Our own claim on a marker we are not sending now: an attempt of ours that Redis went away under (the
        claim could be neither released nor marked sent). Waiting for it to expire would spend the entry's
        deliveries on our own leftover and dead-letter it."""
        mine = claim_value(self.token, self.owner)
        own = state == mine or (isinstance(state, str) and state.encode() == mine)
        return own and marker not in self._attempting

    async def _claim(self, marker: str, claim: bytes) -> bool:
        """True if the marker is now ours; False if the alert was sent already."""
        while True:
            if await self.redis.set(marker, claim, nx=True, ex=self.claim_ttl_s):
                return True
            state = await self.redis.get(marker)
            if state == SENT:
                return False
            if state is None:
                continue  # released or expired between our SET and GET: try again
            previous_run = left_by_previous_life(state, self.token, self.owner)
            if previous_run or self._left_by_an_earlier_attempt(marker, state):
                if await self._take_over(keys=[marker], args=[state, claim, self.claim_ttl_s]):
                    whose = f"a previous run of {self.owner!r}" if previous_run else "an attempt Redis went away under"
                    log.info("took over %s, claimed by %s", printable(marker, 200), whose)
                    return True
                continue
            raise AlertInFlight(
                f"another consumer is sending {printable(marker, 200)} now; the entry stays pending and is retried "
                f"(a claim expires within {self.claim_ttl_s} s if its process died)"
            )

    async def _mark_sent(self, key: str, sink: Sink, marker: str) -> None:
        for attempt in range(3):
            try:
                await self.redis.set(marker, SENT, ex=self.sent_ttl_s)
                return
            except RedisError as exc:
                log.warning("alert sent to %s, marking it failed (%s); attempt %d of 3", sink.name, exc, attempt + 1)
                await asyncio.sleep(0.2 * (attempt + 1))
        log.error(
            "alert for %s went to %s but could not be marked as sent: if its entry is redelivered after %d s, "
            "the alert repeats",
            printable(key, 200),
            sink.name,
            self.claim_ttl_s,
        )
