"""The cooldown's held-back alerts, kept in Redis until their summary is sent, so a crash does not lose them.

A held-back event's entry is acknowledged like any other; what it still owes (a line in a summary) lives in one
hash per consumer name, ``<stream>:held:<group>:<consumer>``: field = the event key, value = its coin, USD value
and when it was held back. Writing it before the handler returns means the entry is acknowledged only once its
alert is on record; a redelivery writes the same field again (nothing counts twice). A process restarted under
the same name (compose's ``restart:``) reads the hash back and sends the summary when it is due. Fields are removed
only after their summary went out: a crash between the two repeats a summary, never loses one.

Only commands the documented ACL already grants are used (HSET, HGETALL; DEL inside a script).
"""

from __future__ import annotations

from collections.abc import Mapping
from decimal import Decimal

import msgspec

from consumers.alerter.cooldown import HeldBack
from consumers.entries import as_text
from plumbing.redis_connect import RedisClient


class HeldAlert(msgspec.Struct, frozen=True, array_like=True):
    """One held-back alert as stored: exact amounts as decimal strings, ``at`` in Unix seconds."""

    coin: str
    value_usd: Decimal
    at: float


_ENCODER = msgspec.json.Encoder(decimal_format="string")
_DECODER = msgspec.json.Decoder(HeldAlert)

_FORGET = """
local all = redis.call('HGETALL', KEYS[1])
local gone = {}
for i = 1, #ARGV do gone[ARGV[i]] = true end
redis.call('DEL', KEYS[1])
local kept = 0
for i = 1, #all, 2 do
  if not gone[all[i]] then
    redis.call('HSET', KEYS[1], all[i], all[i + 1])
    kept = kept + 1
  end
end
return kept
"""
"""HDEL of the summarised fields, atomically, with the commands the ACL grants (no HDEL there)."""


def encode_held(coin: str, value_usd: Decimal, at: float) -> bytes:
    return _ENCODER.encode(HeldAlert(coin, value_usd, at))


def decode_held(fields: Mapping[bytes | str, bytes | str]) -> list[tuple[str, HeldAlert]]:
    """The stored alerts as (event key, alert), oldest first; a field that does not decode is skipped."""
    alerts: list[tuple[str, HeldAlert]] = []
    for key, raw in fields.items():
        try:
            alerts.append((as_text(key), _DECODER.decode(raw)))
        except (msgspec.DecodeError, UnicodeDecodeError):
            continue
    return sorted(alerts, key=lambda pair: pair[1].at)


class HeldStore:
    def __init__(self, redis: RedisClient, key: str) -> None:
        self.redis = redis
        self.key = key
        self._forget = redis.register_script(_FORGET)

    async def add(self, event_key: str, coin: str, value_usd: Decimal, at: float) -> None:
        await self.redis.hset(self.key, event_key, encode_held(coin, value_usd, at))

    async def load(self) -> list[tuple[str, HeldAlert]]:
        return decode_held(await self.redis.hgetall(self.key))

    async def forget(self, held: HeldBack) -> None:
        """Drop the alerts a sent summary accounted for; others held meanwhile stay."""
        if held.keys:
            await self._forget(keys=[self.key], args=held.keys)
