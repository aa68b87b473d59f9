"""One consumer group as Redis sees it: created if missing, its lag, its consumers, and what trimming took from it.

The runner reads and acknowledges; this is the rest of what it (and a service built on it) asks Redis about the
group, through XGROUP and XINFO. The arithmetic of lag and trimming loss is pure and lives in :mod:`consumers.lag`;
this module only fetches the replies, applies the accounting and says what it found.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import Any

from redis.exceptions import NoPermissionError, ResponseError

from consumers.config import RunnerSettings
from consumers.entries import as_text
from consumers.errors import ConsumerError
from consumers.lag import Assessment, GroupInfo, StreamInfo, assess
from plumbing.redis_connect import RedisClient

log = logging.getLogger("consumers.runner")  # the runner's machinery: one logger to follow (and to filter)

ACCOUNT_FOR_TRIMMED = """
-- KEYS[1] stream; ARGV[1] group, ARGV[2] its last-delivered id and ARGV[3] its entries-read as assessed,
-- ARGV[4] the entries-read that accounts for what was trimmed. Applied only if the group has not moved since,
-- so a loss is accounted for once, by one consumer, and a group is never moved back.
for _, g in ipairs(redis.call('XINFO', 'GROUPS', KEYS[1])) do
  local f = {}
  for i = 1, #g, 2 do f[g[i]] = g[i + 1] end
  if f['name'] == ARGV[1] then
    if f['last-delivered-id'] == ARGV[2] and tostring(f['entries-read']) == ARGV[3] then
      redis.call('XGROUP', 'SETID', KEYS[1], ARGV[1], ARGV[2], 'ENTRIESREAD', ARGV[4])
      return 1
    end
    return 0
  end
end
return 0
"""


class ConsumerGroup:
    """The group ``name`` on ``stream``. ``on_lost`` is told how many entries each accounted-for trimming took.

    The trimming check turns itself off (with one warning) when an ACL denies what it needs; :attr:`trim_checks`
    says whether it is still on.
    """

    def __init__(
        self,
        redis: RedisClient,
        *,
        stream: str,
        name: str,
        settings: RunnerSettings,
        on_lost: Callable[[int], None] | None = None,
    ) -> None:
        self.redis = redis
        self.stream = stream
        self.name = name
        self.settings = settings
        self._on_lost = on_lost
        self._account_for_trimmed = redis.register_script(ACCOUNT_FOR_TRIMMED)
        self._trim_checks = True

    @property
    def trim_checks(self) -> bool:
        return self._trim_checks

    async def ensure(self) -> bool:
        """Create the group (and the stream) if missing; True if this call created it."""
        try:
            await self.redis.xgroup_create(self.stream, self.name, id=self.settings.group_start, mkstream=True)
        except ResponseError as exc:
            if "BUSYGROUP" in str(exc):
                return False
            raise
        where = "the stream's first retained entry" if self.settings.group_start == "0" else "new entries"
        log.info("created group %r on %r, starting from %s", self.name, self.stream, where)
        return True

    async def info(self) -> dict[str, Any] | None:
        """This group's line of XINFO GROUPS (``name``, ``consumers``, ``pending``, ``last-delivered-id``, ``lag``)."""
        try:
            groups = await self.redis.xinfo_groups(self.stream)
        except ResponseError as exc:
            if "no such key" in str(exc).lower():
                return None
            raise
        for info in groups:
            if as_text(info.get("name")) == self.name:
                return dict(info)
        return None

    async def lag(self) -> int | None:
        """Entries in the stream not yet delivered to the group; None when Redis cannot tell (after deletions).

        Entries trimmed before the group read them are not among them: they are accounted for on the way
        (:meth:`check_trimmed`) and counted as ``lost_to_trimming``.
        """
        if self._trim_checks:
            assessment = await self.check_trimmed()
            if self._trim_checks:  # still on: not denied by an ACL just now
                return None if assessment is None else assessment.lag
        info = await self.info()
        return None if info is None else GroupInfo.from_reply(info).lag

    async def check_trimmed(self) -> Assessment | None:
        """Find entries trimmed before the group read them; say, count and account for them. None: no group yet.

        An ACL that denies XINFO STREAM or XGROUP SETID turns the check off with one warning; Redis's lag is
        reported as it is then.
        """
        try:
            async with self.redis.pipeline(transaction=False) as pipe:
                pipe.xinfo_stream(self.stream)
                pipe.xinfo_groups(self.stream)
                stream_reply, groups = await pipe.execute()
        except ResponseError as exc:
            if "no such key" in str(exc).lower():
                return None
            if isinstance(exc, NoPermissionError):
                self.stop_trim_checks(exc)
                return None
            raise
        line = next((g for g in groups if as_text(g.get("name")) == self.name), None)
        if line is None:
            return None
        group = GroupInfo.from_reply(line)
        assessment = assess(StreamInfo.from_reply(stream_reply), group)
        if assessment.entries_read is None:
            return assessment
        try:
            applied = await self._account_for_trimmed(
                keys=[self.stream],
                args=[self.name, group.last_delivered_id, str(group.entries_read), assessment.entries_read],
            )
        except ResponseError as exc:
            if isinstance(exc, NoPermissionError) or "can't run this command" in str(exc):  # denied inside the script
                self.stop_trim_checks(exc)
                return assessment
            raise
        if applied:  # else the group moved meanwhile, or another consumer of it accounted for the loss
            if self._on_lost is not None:
                self._on_lost(assessment.lost)
            where = (
                f"between {assessment.gap[0]} and {assessment.gap[1]}"
                if assessment.gap is not None
                else f"before {group.last_delivered_id}"
            )
            log.warning(
                "%d entries of %r were trimmed (MAXLEN) before group %r read them, %s: they are lost to this group; "
                "raise the producer's --maxlen / LIQ_STREAM_MAXLEN above what the slowest group can fall behind",
                assessment.lost,
                self.stream,
                self.name,
                where,
            )
        return assessment

    def stop_trim_checks(self, exc: ResponseError) -> None:
        """Turn the trimming check off for good, saying once why and what would let it run."""
        self._trim_checks = False
        log.warning(
            "cannot check group %r for entries trimmed before it read them (%s); if an ACL denies it, allow "
            "+xinfo|stream and +xgroup|setid to this user",
            self.name,
            exc,
        )

    async def last_delivered_id(self) -> str:
        """The id of the last entry delivered to any consumer of the group (``0-0`` before the first)."""
        info = await self.info()
        if info is None:
            raise ConsumerError(f"group {self.name!r} does not exist on {self.stream!r}: call ensure() first")
        return as_text(info["last-delivered-id"])

    async def active_consumers(self) -> list[str]:
        """Consumers of the group seen recently: the ones that share the work now.

        "Recently" is ``claim_idle_ms`` (after which their work would be taken over anyway), but at least three
        read blocks, since a consumer blocked in a read is seen only when the read starts.
        """
        try:
            consumers = await self.redis.xinfo_consumers(self.stream, self.name)
        except ResponseError as exc:
            if "no such key" in str(exc).lower() or "NOGROUP" in str(exc):
                return []
            raise
        recent = max(self.settings.claim_idle_ms, 3 * self.settings.block_ms)
        return [as_text(c["name"]) for c in consumers if int(c.get("idle", 0)) < recent]
