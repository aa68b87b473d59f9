"""The producer's one configuration object, built once from the environment and the command line.

Every setting has an environment variable (for containers) and a flag (for people); a flag wins over the
variable, the variable over the default. ``--help`` prints each with its variable and default.
"""

from __future__ import annotations

import argparse
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import get_args

from plumbing.errors import ConfigError
from plumbing.options import (
    LOG_LEVEL_OPTION,
    SHARDS_OPTION,
    Option,
    Secret,
    add_options,
    boolean,
    boolean_or_auto,
    csv,
    environ,
    invoked_as,
    non_negative_int,
    observability_options,
    positive_float,
    positive_int,
    resolve,
    secret,
    stream_option,
)
from plumbing.redis_connect import REDIS_OPTION_NAMES, RedisSettings, redis_options
from producer.adaptive import adaptive_problem
from producer.client import MAINNET_API_URL
from producer.publisher import key_namespace
from producer.sources.hosted import DEFAULT_URLS, HOSTED_DIALECTS, HOSTED_KEY_MISSING, HostedDialect, feed_settings
from producer.sources.node_files import DEFAULT_MAX_LINE, OnDamage
from producer.sources.ws import watchlist_problem
from schemas import Source
from schemas.stream import DEFAULT_STREAM

SourceName = Source
"""The ``--source`` names: one per kind of event source, so an event's ``source`` names the setting that found it."""

HLP = "0xdfc24b077bc1425ad1dea75bcb6f8158e10df303"
HLP_STRATEGY_A = "0x010461c14e146ac35fe42271bdc1134ee31c703a"
HLP_STRATEGY_B = "0x31ca8395cf837de08b24da3f660e77761dfb974b"
HLP_STRATEGY_X = "0x469f690213c467c39a23efacfd2816896009d7d8"
HLP_LIQUIDATOR = "0x2e3d94f0562703b25c83308a05046ddaf9a8dd14"
HLP_LIQUIDATOR_2 = "0xb0a55f13d22f66e6d495ac98113841b2326e9540"
HLP_LIQUIDATOR_3 = "0x5e177e5e39c0f4e421f5865a6d8beed8d921cb70"
HLP_LIQUIDATOR_4 = "0x2ed5c4484ea3ff8b57d5f2fb152a40d9f2b68308"
LIQUIDATOR_VAULT = "0x63c621a33714ec48660e32f2374895c8026a3a00"

LIQUIDATOR_VAULTS: tuple[str, ...] = (
    HLP_LIQUIDATOR,
    HLP_LIQUIDATOR_2,
    HLP_LIQUIDATOR_3,
    HLP_LIQUIDATOR_4,
    LIQUIDATOR_VAULT,
)
"""Vaults that take positions over in backstop liquidations (mainnet)."""

PROTOCOL_VAULTS: tuple[str, ...] = (HLP, HLP_STRATEGY_A, HLP_STRATEGY_B, HLP_STRATEGY_X, *LIQUIDATOR_VAULTS)
"""The default watchlist: every protocol vault on mainnet. Users add market makers to see market liquidations."""

VAULT_NAMES: dict[str, str] = {
    HLP: "HLP",
    HLP_STRATEGY_A: "HLP strategy A",
    HLP_STRATEGY_B: "HLP strategy B",
    HLP_STRATEGY_X: "HLP strategy X",
    HLP_LIQUIDATOR: "HLP liquidator 1",
    HLP_LIQUIDATOR_2: "HLP liquidator 2",
    HLP_LIQUIDATOR_3: "HLP liquidator 3",
    HLP_LIQUIDATOR_4: "HLP liquidator 4",
    LIQUIDATOR_VAULT: "liquidator vault",
}
"""What ``--help`` calls each vault of the default watchlist: a name is what a reader recognises, not 40 hex."""

DEFAULT_COINS: tuple[str, ...] = ("BTC", "ETH", "SOL")


def _addresses(value: str) -> tuple[str, ...]:
    addresses = tuple(a.lower() for a in csv(value))
    for address in addresses:
        if len(address) != 42 or not address.startswith("0x") or not all(c in "0123456789abcdef" for c in address[2:]):
            raise ValueError(f"{address!r} is not an address (0x and 40 hex digits)")
    return addresses


def _source(value: str) -> SourceName:
    names = get_args(Source)
    if value not in names:
        raise ValueError("must be " + ", ".join(f"'{name}'" for name in names[:-1]) + f" or '{names[-1]}'")
    return value  # type: ignore[return-value]


def _hosted_dialect(value: str) -> HostedDialect:
    if value not in HOSTED_DIALECTS:
        raise ValueError("must be 'hydromancer' or 'goldrush'")
    return value


def default_source(hosted_key: object) -> SourceName:
    """The best source the configuration allows: with a provider's key, the hosted feed of every liquidation;
    otherwise the public WebSocket, in real time for the watched addresses (a node is never guessed at)."""
    return "hosted" if hosted_key else "ws"


def _paths(value: str) -> tuple[Path, ...]:
    return tuple(Path(part).expanduser() for part in csv(value))


def _time_ms(value: str) -> int | None:
    """Empty or ``now``: None. Digits: epoch milliseconds. Otherwise ISO 8601, UTC unless it says otherwise."""
    text = value.strip()
    if text in ("", "now"):
        return None
    if text.isdigit():
        return int(text)
    try:
        moment = datetime.fromisoformat(text)
    except ValueError:
        raise ValueError("must be 'now', epoch milliseconds or an ISO 8601 time like 2025-10-10T21:00") from None
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=UTC)
    return int(moment.timestamp() * 1000)


def _on_damage(value: str) -> OnDamage:
    if value not in ("skip", "stop"):
        raise ValueError("must be 'skip' (report a damaged hour file and go on) or 'stop' (exit 1 there)")
    return value  # type: ignore[return-value]


def missing_node_path(paths: Sequence[Path]) -> str | None:
    """The error for a node path that does not exist (a typo, or no node on this machine), or None."""
    for path in paths:
        if not path.exists():
            return (
                f"--node-path / HL_NODE_PATH: {path} does not exist; point --node-path (or HL_NODE_PATH) at a "
                "node's data directory (~/hl/data or its node_fills_by_block), an archive directory or an hour file"
            )
    return None


def wait_replicas(value: str) -> int | None:
    """``auto`` (None: wait for one replica when the stream's master has one) or a number of replicas, 0 or more."""
    if value.strip().lower() == "auto":
        return None
    try:
        number = int(value)
    except ValueError:
        raise ValueError("must be auto or a number of replicas, 0 or more") from None
    if number < 0:
        raise ValueError("must be auto or a number of replicas, 0 or more")
    return number


OPTIONS: tuple[Option, ...] = (
    *redis_options("Redis to publish to"),
    Option(
        "wait_replicas",
        "--wait-replicas",
        "REDIS_WAIT_REPLICAS",
        wait_replicas,
        "auto",
        "After each publish, WAIT until this many replicas have it before the checkpoint counts as moved (else the "
        "events are held and published again); auto: 1 if the stream's master has a replica at start, else 0.",
    ),
    Option(
        "wait_timeout_ms",
        "--wait-timeout-ms",
        "REDIS_WAIT_TIMEOUT_MS",
        positive_int,
        "1000",
        "Milliseconds a publish waits for its replicas (--wait-replicas) before it counts as not yet safe.",
    ),
    Option(
        "api_url",
        "--api-url",
        "HL_API_URL",
        str,
        MAINNET_API_URL,
        "Hyperliquid API base (testnet: https://api.hyperliquid-testnet.xyz).",
    ),
    Option(
        "source",
        "--source",
        "HL_SOURCE",
        _source,
        None,
        "ws: watched addresses' fills pushed over the public WebSocket (at most 10); fills: the same, polled "
        "over REST (any number); trades: the original tracker's recentTrades heuristic; node: a node's fill "
        "files; hosted: a provider's feed of every liquidation on the venue.",
        default_help="hosted when HL_HOSTED_KEY is set, else ws",
    ),
    Option(
        "watchlist",
        "--watchlist",
        "HL_WATCHLIST",
        _addresses,
        ",".join(PROTOCOL_VAULTS),
        "Comma-separated addresses whose fills are polled; replaces the default, so list the vaults too to keep them.",
        default_help=f"the {len(PROTOCOL_VAULTS)} protocol vaults, listed at the end",
    ),
    Option(
        "coins", "--coins", "HL_COINS", csv, ",".join(DEFAULT_COINS), "Comma-separated coins whose trades are read."
    ),
    Option(
        "poll_interval",
        "--interval",
        "HL_POLL_INTERVAL",
        positive_float,
        "10",
        "Seconds between polls (node: between reads of the files); a poll of the exchange is stretched when the "
        "weight budget needs it.",
    ),
    Option(
        "lookback",
        "--lookback",
        "HL_LOOKBACK",
        positive_float,
        "3600",
        "Seconds of history read for an address with no watermark yet (first start).",
    ),
    Option(
        "weight_per_minute",
        "--weight-per-minute",
        "HL_WEIGHT_PER_MINUTE",
        positive_float,
        "1150",
        "Request weight per minute this producer may use (the exchange allows 1200 per IP; 50 are left for "
        "anything else on the IP).",
    ),
    Option(
        "http_timeout",
        "--http-timeout",
        "HL_HTTP_TIMEOUT",
        positive_float,
        "10",
        "Seconds before one API request is abandoned and retried.",
    ),
    Option(
        "http_attempts",
        "--http-attempts",
        "HL_HTTP_ATTEMPTS",
        positive_int,
        "5",
        "Attempts per API request on 429, 5xx, timeouts and connection errors.",
    ),
    Option(
        "node_paths",
        "--node-path",
        "HL_NODE_PATH",
        _paths,
        "~/hl/data/node_fills_by_block",
        "A node's data directory (or any level below it), archive directories or hour files.",
    ),
    Option(
        "node_from",
        "--node-from",
        "HL_NODE_FROM",
        _time_ms,
        "now",
        "With no checkpoint yet: 'now' (end of the newest file) or a time to replay from (ISO 8601 or ms).",
    ),
    Option(
        "node_until",
        "--node-until",
        "HL_NODE_UNTIL",
        _time_ms,
        "",
        "Stop publishing at this time (ISO 8601 or ms); empty for no end.",
    ),
    Option(
        "node_follow",
        "--node-follow",
        "HL_NODE_FOLLOW",
        boolean,
        "true",
        "After the last file, keep following it live (true) or exit (false).",
    ),
    Option(
        "node_read_bytes",
        "--node-read-bytes",
        "HL_NODE_READ_BYTES",
        positive_int,
        str(32 << 20),
        "Bytes read per poll at most; bounds memory and the work between checkpoints.",
    ),
    Option(
        "node_max_line",
        "--node-max-line",
        "HL_NODE_MAX_LINE",
        positive_int,
        str(DEFAULT_MAX_LINE),
        "Longest line read as a block (bytes); a longer one (damage) is skipped and reported.",
    ),
    Option(
        "node_damaged",
        "--node-damaged",
        "HL_NODE_DAMAGED",
        _on_damage,
        "skip",
        "A truncated or corrupt hour file: 'skip' reports it and goes on; 'stop' exits 1 there.",
    ),
    Option(
        "hosted_dialect",
        "--hosted-dialect",
        "HL_HOSTED_DIALECT",
        _hosted_dialect,
        "hydromancer",
        "The provider whose liquidationFills feed is read: hydromancer or goldrush.",
    ),
    Option(
        "hosted_url",
        "--hosted-url",
        "HL_HOSTED_URL",
        str,
        None,
        "The provider's WebSocket URL, without the key.",
        default_help=", ".join(f"{url} for {dialect}" for dialect, url in DEFAULT_URLS.items()),
    ),
    Option(
        "hosted_key",
        "",
        "HL_HOSTED_KEY",
        secret,
        None,
        "The hosted provider's API key; when set, hosted is the default source.",
        secret=True,
    ),
    Option(
        "hosted_quiet",
        "--hosted-quiet",
        "HL_HOSTED_QUIET",
        positive_float,
        "1",
        "Seconds without a newer block after which the newest block's liquidations are taken as complete.",
    ),
    Option(
        "ws_url",
        "--ws-url",
        "HL_WS_URL",
        str,
        None,
        "The exchange's public WebSocket (ws source).",
        default_help="the WebSocket beside --api-url: wss://api.hyperliquid.xyz/ws for mainnet",
    ),
    Option(
        "ws_quiet",
        "--ws-quiet",
        "HL_WS_QUIET",
        positive_float,
        "0.2",
        "Seconds a market liquidation's legs on watched makers are held for the other watched makers' pushes; "
        "legs of the liquidated user's own and backstops go out at once.",
    ),
    Option(
        "feed_ping_after",
        "--feed-ping-after",
        "HL_FEED_PING_AFTER",
        positive_float,
        "50",
        "ws and hosted: seconds of silence before we ping (the exchange closes a connection quiet for 60 s).",
    ),
    Option(
        "feed_silence_limit",
        "--feed-silence-limit",
        "HL_FEED_SILENCE_LIMIT",
        positive_float,
        "65",
        "ws and hosted: seconds without any frame, pongs included, after which the connection is replaced.",
    ),
    Option(
        "feed_unhealthy_after",
        "--feed-unhealthy-after",
        "HL_FEED_UNHEALTHY_AFTER",
        positive_float,
        "30",
        "ws and hosted: seconds disconnected after which /healthz answers 503.",
    ),
    Option(
        "complete",
        "--complete",
        "HL_COMPLETE",
        boolean,
        "true",
        "ws and fills: after a liquidation seen only on watched makers is published (partial), read the "
        "liquidated user's own fills and publish its complete figures under the same key, while the weight "
        "budget has room.",
    ),
    Option(
        "coverage",
        "--coverage",
        "HL_COVERAGE",
        boolean,
        "true",
        "ws and fills: follow every perp coin's public trades and report the share of maker volume the watchlist "
        "makes (the estimated share of market liquidations seen), in the metrics and the log.",
    ),
    Option(
        "coverage_every",
        "--coverage-every",
        "HL_COVERAGE_EVERY",
        positive_float,
        "60",
        "Seconds between two coverage reports (the log line and the gauges).",
    ),
    Option(
        "adaptive",
        "--adaptive",
        "HL_ADAPTIVE",
        boolean_or_auto,
        "auto",
        "ws: give the WebSocket slots the watchlist leaves free to the biggest makers of the coverage ranking, "
        "and read the next HL_ADAPTIVE_POLLED over REST, re-ranked every HL_ADAPTIVE_EVERY seconds; the "
        "watchlist's addresses stay pinned. auto: on with the ws source and the coverage measure, off otherwise.",
    ),
    Option(
        "adaptive_slots",
        "--adaptive-slots",
        "HL_ADAPTIVE_SLOTS",
        positive_int,
        "10",
        "Addresses the adaptive watchlist watches on the WebSocket in all, pinned ones included (at most 10).",
    ),
    Option(
        "adaptive_polled",
        "--adaptive-polled",
        "HL_ADAPTIVE_POLLED",
        non_negative_int,
        "20",
        "Makers after the WebSocket's, read over REST in turn as the weight budget allows (a read costs 20 "
        "weight and 1 per 20 fills; completions and gap-fills come first); 0 turns the REST tier off. The gauge "
        "hl_producer_watchlist_polled_oldest_read_seconds says how late the slowest is read.",
    ),
    Option(
        "adaptive_every",
        "--adaptive-every",
        "HL_ADAPTIVE_EVERY",
        positive_float,
        "300",
        "Seconds between two re-rankings of the adaptive watchlist.",
    ),
    stream_option(DEFAULT_STREAM, "Redis stream key."),
    SHARDS_OPTION,
    Option(
        "maxlen",
        "--maxlen",
        "LIQ_STREAM_MAXLEN",
        positive_int,
        "100000",
        "Approximate cap on the stream's length (XADD MAXLEN ~).",
    ),
    Option(
        "dedup_ttl",
        "--dedup-ttl",
        "LIQ_DEDUP_TTL",
        positive_int,
        "604800",
        "Seconds a published event's key is remembered; longer than any re-read window.",
    ),
    Option(
        "max_pending",
        "--max-pending",
        "LIQ_MAX_PENDING",
        positive_int,
        "100000",
        "Events held in memory while Redis is unreachable; at the cap polling pauses, nothing is dropped.",
    ),
    Option(
        "allow_eviction",
        "--allow-eviction",
        "REDIS_ALLOW_EVICTION",
        boolean,
        "false",
        "Run even if Redis's maxmemory-policy may evict our keys (then an event can be published twice or lost).",
    ),
    LOG_LEVEL_OPTION,
    *observability_options("a successful poll and publish"),
)


@dataclass(frozen=True)
class ProducerConfig(RedisSettings):
    api_url: str = MAINNET_API_URL
    source: SourceName = "ws"
    watchlist: tuple[str, ...] = PROTOCOL_VAULTS
    coins: tuple[str, ...] = DEFAULT_COINS
    poll_interval: float = 10.0
    lookback: float = 3600.0
    weight_per_minute: float = 1150.0
    http_timeout: float = 10.0
    http_attempts: int = 5
    stream: str = DEFAULT_STREAM
    shards: int = 1
    maxlen: int = 100_000
    dedup_ttl: int = 604_800
    max_pending: int = 100_000
    allow_eviction: bool = False
    wait_replicas: int | None = None
    wait_timeout_ms: int = 1000
    log_level: str = "INFO"
    node_paths: tuple[Path, ...] = (Path("~/hl/data/node_fills_by_block").expanduser(),)
    node_from: int | None = None
    node_until: int | None = None
    node_follow: bool = True
    node_read_bytes: int = 32 << 20
    node_max_line: int = DEFAULT_MAX_LINE
    node_damaged: OnDamage = "skip"
    metrics_port: int = 0
    metrics_host: str = "127.0.0.1"
    health_stale_after: float = 120.0
    once: bool = False
    liquidators: tuple[str, ...] = field(default=LIQUIDATOR_VAULTS)
    hosted_dialect: HostedDialect = "hydromancer"
    hosted_url: str | None = None
    hosted_key: Secret | None = None
    hosted_quiet: float = 1.0
    ws_url: str | None = None
    ws_quiet: float = 0.2
    feed_ping_after: float = 50.0
    feed_silence_limit: float = 65.0
    feed_unhealthy_after: float = 30.0
    complete: bool = True
    coverage: bool = True
    coverage_every: float = 60.0
    adaptive: bool = False
    adaptive_slots: int = 10
    adaptive_polled: int = 20
    adaptive_every: float = 300.0


OPTION_GROUPS: tuple[tuple[str, str | None, tuple[str, ...]], ...] = (
    ("where liquidations are looked for", None, ("source", "poll_interval")),
    (
        "ws and fills sources",
        "Watched addresses' fills: ws (the default without a key) has them pushed over the public WebSocket, "
        "10 addresses at most, and reads what a disconnect hid over REST; fills polls userFillsByTime for each.",
        ("watchlist", "lookback", "ws_url", "ws_quiet", "complete"),
    ),
    (
        "coverage (ws and fills sources)",
        "What share of the market liquidations the watchlist sees, estimated live from every perp coin's public "
        "trades: one WebSocket connection of its own and a few info requests at start.",
        ("coverage", "coverage_every"),
    ),
    (
        "adaptive watchlist (ws source)",
        "The watchlist's addresses pinned, the WebSocket's other slots given to the biggest makers of the coverage "
        "ranking and the next ones read over REST (on by default with the ws source and the coverage measure).",
        ("adaptive", "adaptive_slots", "adaptive_polled", "adaptive_every"),
    ),
    ("trades source", "Polls recentTrades for each coin (the original tracker's heuristic).", ("coins",)),
    (
        "node source",
        "Follows a node's fill files or the archive; calls no API.",
        ("node_paths", "node_from", "node_until", "node_follow", "node_read_bytes", "node_max_line", "node_damaged"),
    ),
    (
        "hosted source",
        "Reads a provider's WebSocket feed of every liquidation on the venue, in real time; the default when "
        "HL_HOSTED_KEY is set.",
        ("hosted_dialect", "hosted_url", "hosted_key", "hosted_quiet"),
    ),
    (
        "WebSocket connections (ws and hosted sources)",
        None,
        ("feed_ping_after", "feed_silence_limit", "feed_unhealthy_after"),
    ),
    (
        "the exchange's API (ws, fills and trades sources)",
        None,
        ("api_url", "weight_per_minute", "http_timeout", "http_attempts"),
    ),
    (
        "Redis and the stream",
        "One of --redis-url, --redis-cluster-nodes or --redis-sentinels (with --redis-sentinel-master).",
        (
            *REDIS_OPTION_NAMES,
            "stream",
            "shards",
            "maxlen",
            "dedup_ttl",
            "max_pending",
            "allow_eviction",
            "wait_replicas",
            "wait_timeout_ms",
        ),
    ),
    ("logs, metrics and health", None, ("log_level", "metrics_port", "metrics_host", "health_stale_after")),
)
"""``--help``'s headings: which options apply to which source, so nobody tunes the node source with --coins."""


def watchlist_epilog(vaults: Sequence[str] = PROTOCOL_VAULTS) -> str:
    """The default watchlist, once, one vault a line with its name."""
    lines = [f"  {address}  {VAULT_NAMES.get(address, '')}".rstrip() for address in vaults]
    return "the default watchlist, the protocol vaults (in every backstop liquidation):\n" + "\n".join(lines)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog=invoked_as("producer"),
        description=(
            "Find Hyperliquid liquidations and publish each one, exactly once, to a Redis\n"
            "stream. Every option can also be set by the environment variable in brackets;\n"
            "a flag wins."
        ),
        epilog=watchlist_epilog(),
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    by_name = {opt.name: opt for opt in OPTIONS}
    for title, description, names in OPTION_GROUPS:
        add_options(parser, [by_name[name] for name in names], title=title, description=description)
    parser.add_argument("--once", action="store_true", help="Poll once, publish, and exit (for cron).")
    return parser


def load_config(argv: Sequence[str] | None = None, env: Mapping[str, str] | None = None) -> ProducerConfig:
    """Flags over environment over defaults; raises :class:`ConfigError` naming the flag and variable."""
    args = build_parser().parse_args(argv)
    values = resolve(args, environ(env), OPTIONS)
    values["once"] = args.once
    if values["source"] is None:
        values["source"] = default_source(values["hosted_key"])
    if values["source"] == "hosted":
        if not values["hosted_key"]:
            raise ConfigError(HOSTED_KEY_MISSING)
        # A URL that cannot work (not ws:// or wss://) is a bad setting, named here rather than at the first connect.
        feed_settings(values["hosted_dialect"], values["hosted_url"], values["hosted_key"]).check()
    if values["source"] == "fills" and not values["watchlist"]:
        raise ConfigError("--watchlist / HL_WATCHLIST is empty: the fills source needs at least one address")
    if values["source"] == "ws" and (problem := watchlist_problem(values["watchlist"])) is not None:
        raise ConfigError(problem)
    if values["source"] in ("ws", "hosted") and values["feed_ping_after"] >= values["feed_silence_limit"]:
        raise ConfigError(
            "--feed-ping-after / HL_FEED_PING_AFTER must be below --feed-silence-limit / HL_FEED_SILENCE_LIMIT: "
            "a ping must have time to be answered"
        )
    if values["adaptive"] is None:  # auto: where it can run
        values["adaptive"] = values["source"] == "ws" and values["coverage"]
    if values["adaptive"] and (
        problem := adaptive_problem(
            source=values["source"],
            coverage=values["coverage"],
            slots=values["adaptive_slots"],
            polled=values["adaptive_polled"],
            pinned=values["watchlist"],
        )
    ):
        raise ConfigError(problem)
    start, end = values["node_from"], values["node_until"]
    if start is not None and end is not None and end <= start:
        raise ConfigError("--node-until / HL_NODE_UNTIL must be later than --node-from / HL_NODE_FROM")
    if values["source"] == "node" and (missing := missing_node_path(values["node_paths"])) is not None:
        raise ConfigError(missing)
    if values["source"] == "trades" and not values["coins"]:
        raise ConfigError("--coins / HL_COINS is empty: the trades source needs at least one coin")
    key_namespace(values["stream"])  # raises for a stream name whose dedup keys could not share its hash slot
    return ProducerConfig(**values)
