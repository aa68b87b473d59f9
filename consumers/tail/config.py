"""The tail's one configuration object: where the stream is (shared with every consumer), where to start, how to
print, and when to stop.

``--from``, ``--count`` and ``--json`` are flags only: they describe one look at the stream, not a deployment, so
no environment variable could set them by surprise in a script.
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

from consumers.config import runner_options
from plumbing.errors import ConfigError
from plumbing.options import build_parser, environ, invoked_as, positive_int, resolve
from plumbing.redis_connect import REDIS_OPTION_NAMES, RedisSettings
from schemas.stream import DEFAULT_STREAM

_SHARED = {opt.name: opt for opt in runner_options(default_group="tail")}
OPTIONS = tuple(
    _SHARED[name]
    for name in (
        *REDIS_OPTION_NAMES,
        "stream",
        "shards",
        "log_level",
    )
)
"""The settings the tail shares with the consumer processes (same variables, same flags)."""

NEW_ONLY = "$"
_ID = re.compile(r"(\d+)(?:-(\d+))?")
_MAX_PART = 2**64 - 1


def read_after(start: str) -> str:
    """The id to XREAD after, for ``--from``: ``$`` (new entries only), ``0`` (the first retained entry), an entry
    id (that entry and the ones after it), a time in ms since the epoch (entries from then on), or ``(<id>``
    (only the entries after that one).

    XREAD returns entries *after* the id it is given, so an inclusive start is turned into its predecessor.
    """
    text = start.strip()
    if text == NEW_ONLY:
        return NEW_ONLY
    exclusive = text.startswith("(")
    match = _ID.fullmatch(text[1:] if exclusive else text)
    if match is None:
        raise ConfigError(
            f"--from={start!r}: must be $ (new entries only), 0 (the first retained entry), an entry id such as "
            "1732495402000-0 (it and the ones after it), a time in ms since the epoch, or (<id> (only after it)"
        )
    ms, seq = int(match.group(1)), int(match.group(2) or 0)
    if ms > _MAX_PART or seq > _MAX_PART:
        raise ConfigError(f"--from={start!r}: both parts of an entry id must be below 2^64")
    if exclusive:
        return f"{ms}-{seq}"
    if seq > 0:
        return f"{ms}-{seq - 1}"
    if ms > 0:
        return f"{ms - 1}-{_MAX_PART}"
    return "0-0"


@dataclass(frozen=True, kw_only=True)
class TailConfig(RedisSettings):
    stream: str = DEFAULT_STREAM
    shards: int = 1
    start: str = NEW_ONLY
    """``--from`` as given; :attr:`after` is what XREAD is told."""
    count: int | None = None
    """Stop after printing this many events; None follows until a signal."""
    as_json: bool = False
    log_level: str = "INFO"

    @property
    def after(self) -> str:
        return read_after(self.start)


def load_tail_config(argv: Sequence[str] | None = None, env: Mapping[str, str] | None = None) -> TailConfig:
    """Flags over environment over defaults; raises :class:`ConfigError` naming the flag (and variable)."""
    parser = build_parser(
        invoked_as("consumers.tail"),
        "Follow the Hyperliquid liquidation stream live (XREAD, outside any consumer group: it disturbs no group) "
        "and print each event as a table row or, with --json, as one JSON object per line.",
        OPTIONS,
    )
    parser.add_argument(
        "--from",
        dest="start",
        metavar="ID",
        default=NEW_ONLY,
        help="where to start: $ (new entries only), 0 (the stream's first retained entry), an entry id (it and "
        "what follows), a time in ms since the epoch, or '(ID' (only what follows ID) (default: $)",
    )
    parser.add_argument(
        "--count",
        dest="limit",
        metavar="N",
        default=None,
        help="stop after printing N events (default: follow until SIGINT/SIGTERM)",
    )
    parser.add_argument(
        "--json",
        dest="as_json",
        action="store_true",
        help="print one JSON object per line: the entry id and the event as the schema has it (amounts as strings)",
    )
    args = parser.parse_args(argv)
    values = resolve(args, environ(env), OPTIONS)
    try:
        count = None if args.limit is None else positive_int(args.limit)
    except ValueError:
        raise ConfigError(f"--count={args.limit!r}: must be a whole number greater than 0") from None
    config = TailConfig(
        redis_url=values["redis_url"],
        redis_cluster_nodes=values["redis_cluster_nodes"],
        redis_sentinels=values["redis_sentinels"],
        redis_sentinel_master=values["redis_sentinel_master"],
        stream=values["stream"],
        shards=values["shards"],
        start=args.start,
        count=count,
        as_json=args.as_json,
        log_level=values["log_level"],
    )
    read_after(config.start)  # a bad --from fails here, as a configuration error, not later
    return config
