"""Fail a test when one command, script or transaction touches keys of two Redis Cluster slots.

Redis Cluster runs a multi-key command, a script (EVAL/EVALSHA/FCALL) or a MULTI..EXEC transaction only when all
its keys hash to one slot; otherwise it answers CROSSSLOT. A plain Redis and fakeredis accept them all, so code
tested only there breaks on its first contact with a cluster. The guard reads every command as redis-py packs it
for the wire (both the asyncio and the sync client, fakeredis included) and raises :class:`CrossSlotError` first.

    async def test_publish_runs_on_a_cluster(slot_guard: None, redis_client: Redis) -> None:
        await Publisher(redis_client, "{liq}:stream").publish(events)   # CrossSlotError if any key strays

A non-transactional pipeline may mix slots (a cluster client splits it by node); each command in it may not. What
the guard cannot see: keys a Lua script builds itself instead of receiving in KEYS. A real cluster catches those
(``tests.faults.redis_cluster``).
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator, Sequence

import pytest
import redis.asyncio.connection
import redis.connection
from redis.crc import key_slot

Arg = bytes | str | int | float | memoryview

KEYLESS = frozenset(
    {
        "ACL", "AUTH", "BGSAVE", "CLIENT", "CLUSTER", "COMMAND", "CONFIG", "DBSIZE", "DEBUG", "DISCARD", "ECHO",
        "EXEC", "FAILOVER", "FLUSHALL", "FLUSHDB", "FUNCTION", "HELLO", "INFO", "KEYS", "LASTSAVE", "LATENCY",
        "MODULE", "MONITOR", "MULTI", "PING", "PSUBSCRIBE", "PUBLISH", "PUBSUB", "PUNSUBSCRIBE", "QUIT",
        "RANDOMKEY", "READONLY", "READWRITE", "REPLICAOF", "RESET", "ROLE", "SAVE", "SCAN", "SCRIPT", "SELECT",
        "SENTINEL", "SHUTDOWN", "SLAVEOF", "SLOWLOG", "SUBSCRIBE", "SWAPDB", "TIME", "UNSUBSCRIBE", "UNWATCH", "WAIT",
    }
)  # fmt: skip
"""Commands that name no key (PUBLISH's channel is not one)."""

EVERY_ARG = frozenset(
    {"DEL", "EXISTS", "MGET", "PFCOUNT", "PFMERGE", "SDIFF", "SINTER", "SUNION", "TOUCH", "UNLINK", "WATCH"}
)
EVERY_ARG_BUT_LAST = frozenset({"BLPOP", "BRPOP", "BZPOPMAX", "BZPOPMIN", "SDIFFSTORE", "SINTERSTORE", "SUNIONSTORE"})
FIRST_TWO = frozenset({"BLMOVE", "BRPOPLPUSH", "COPY", "LMOVE", "RENAME", "RENAMENX", "RPOPLPUSH", "SMOVE"})
KEY_VALUE_PAIRS = frozenset({"MSET", "MSETNX"})
NUMKEYS_AT_2 = frozenset({"EVAL", "EVALSHA", "EVAL_RO", "EVALSHA_RO", "FCALL", "FCALL_RO"})
NUMKEYS_AT_1 = frozenset({"ZDIFF", "ZINTER", "ZUNION", "SINTERCARD", "LMPOP", "ZMPOP"})
DEST_THEN_NUMKEYS = frozenset({"ZDIFFSTORE", "ZINTERSTORE", "ZUNIONSTORE"})
KEY_AFTER_SUBCOMMAND = frozenset({"MEMORY", "OBJECT", "XGROUP", "XINFO"})
"""``XGROUP CREATE <key> ...``, ``XINFO GROUPS <key>``, ``OBJECT ENCODING <key>`` (their HELP names none)."""


class CrossSlotError(AssertionError):
    """A command a Redis Cluster would refuse with CROSSSLOT."""


def as_bytes(arg: Arg) -> bytes:
    if isinstance(arg, bytes):
        return arg
    if isinstance(arg, memoryview):
        return arg.tobytes()
    return str(arg).encode()


def command_words(args: Sequence[Arg]) -> list[bytes]:
    """The command as the server receives it: redis-py lets a name carry its subcommand (``"CLIENT SETNAME"``)."""
    if not args:
        return []
    return [*as_bytes(args[0]).split(), *(as_bytes(arg) for arg in args[1:])]


def command_keys(args: Sequence[Arg]) -> list[bytes]:
    """The keys one command names, by the command's key positions (the ones redis-py and our code send)."""
    words = command_words(args)
    if not words:
        return []
    name, rest = words[0].decode(errors="replace").upper(), words[1:]
    if name in KEYLESS or not rest:
        return []
    if name in EVERY_ARG:
        return rest
    if name in EVERY_ARG_BUT_LAST:
        return rest[:-1]
    if name in FIRST_TWO:
        return rest[:2]
    if name in KEY_VALUE_PAIRS:
        return rest[::2]
    if name in NUMKEYS_AT_2:
        return rest[2 : 2 + int(rest[1])] if len(rest) > 1 else []
    if name in NUMKEYS_AT_1:
        return rest[1 : 1 + int(rest[0])]
    if name in DEST_THEN_NUMKEYS:
        return [rest[0], *rest[2 : 2 + int(rest[1])]] if len(rest) > 1 else rest[:1]
    if name in KEY_AFTER_SUBCOMMAND:
        return rest[1:2] if rest[0].upper() != b"HELP" else []
    if name in ("XREAD", "XREADGROUP"):
        upper = [word.upper() for word in rest]
        if b"STREAMS" not in upper:
            return []
        tail = rest[upper.index(b"STREAMS") + 1 :]
        return tail[: len(tail) // 2]
    return rest[:1]


def describe(keys: Iterable[tuple[bytes, str]]) -> str:
    return ", ".join(f"{key!r} (slot {key_slot(key)}) in {name}" for key, name in keys)


def check_command(args: Sequence[Arg]) -> None:
    """Raise :class:`CrossSlotError` if the command's keys hash to more than one slot."""
    keys = command_keys(args)
    if len({key_slot(key) for key in keys}) > 1:
        name = command_words(args)[0].decode(errors="replace").upper()
        raise CrossSlotError(
            f"{name} spans {len({key_slot(k) for k in keys})} cluster slots: {describe((k, name) for k in keys)}; "
            "give every key the same {hash tag}"
        )


def transactions(commands: Sequence[Sequence[Arg]]) -> Iterator[list[Sequence[Arg]]]:
    """The commands between each MULTI and its EXEC (a pipeline may hold several transactions, or none)."""
    inside: list[Sequence[Arg]] | None = None
    for args in commands:
        name = command_words(args)[0].upper() if args else b""
        if name == b"MULTI":
            inside = []
        elif name in (b"EXEC", b"DISCARD"):
            if inside is not None and name == b"EXEC":
                yield inside
            inside = None
        elif inside is not None:
            inside.append(args)


def check_pipeline(commands: Sequence[Sequence[Arg]]) -> None:
    """Each command alone, and each MULTI..EXEC as a whole: a transaction runs on one node, so in one slot."""
    for args in commands:
        check_command(args)
    for block in transactions(commands):
        keys = [
            (key, command_words(args)[0].decode(errors="replace").upper())
            for args in block
            for key in command_keys(args)
        ]
        slots = {key_slot(key) for key, _ in keys}
        if len(slots) > 1:
            raise CrossSlotError(
                f"MULTI..EXEC spans {len(slots)} cluster slots: {describe(keys)}; give every key the same {{hash tag}}"
            )


Pack = Callable[..., list[bytes]]


def guard_command(pack: Pack) -> Pack:
    def guarded(self: object, *args: Arg) -> list[bytes]:
        check_command(args)
        return pack(self, *args)

    return guarded


def guard_commands(pack: Pack) -> Pack:
    def guarded(self: object, commands: Iterable[Sequence[Arg]]) -> list[bytes]:
        listed = list(commands)
        check_pipeline(listed)
        return pack(self, listed)

    return guarded


def guard_send(send: Callable[..., None]) -> Callable[..., None]:
    def guarded(self: object, *args: Arg, **options: object) -> None:
        check_command(args)
        send(self, *args, **options)

    return guarded


def install(monkeypatch: pytest.MonkeyPatch) -> None:
    """Check every command any redis-py connection packs until ``monkeypatch`` is undone (the test's end).

    Where to hook differs: the asyncio connection packs every command through ``pack_command``; the sync one
    sends a single command through ``send_command`` straight to its packer. Both pack pipelines in
    ``pack_commands``.
    """
    aio, sync = redis.asyncio.connection.AbstractConnection, redis.connection.AbstractConnection
    monkeypatch.setattr(aio, "pack_command", guard_command(aio.pack_command))
    monkeypatch.setattr(sync, "send_command", guard_send(sync.send_command))
    for connection_class in (aio, sync):
        monkeypatch.setattr(connection_class, "pack_commands", guard_commands(connection_class.pack_commands))


@pytest.fixture
def slot_guard(monkeypatch: pytest.MonkeyPatch) -> None:
    """Every command of the test is checked: one that a Redis Cluster would refuse fails it (CrossSlotError)."""
    install(monkeypatch)
