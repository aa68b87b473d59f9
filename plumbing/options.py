"""Settings that come from an environment variable, a command-line flag, or a default, in that order of weakness.

Each process declares its settings as a table of :class:`Option`; this module turns the table into an argparse
parser whose ``--help`` names each variable and default, and resolves the values once, at start-up, into the
process's one configuration object. Nothing here reads the environment at import time.

Secrets (tokens, webhook URLs) have no flag: a flag's value is visible to every user of the machine in ``ps``.
"""

from __future__ import annotations

import argparse
import math
import os
import re
import socket
import sys
import textwrap
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from decimal import Decimal, InvalidOperation
from typing import Any, TypeVar
from urllib.parse import urlsplit, urlunsplit

from redis.asyncio.connection import parse_url

from plumbing.errors import ConfigError
from plumbing.shards import MAX_SHARDS

T = TypeVar("T")


class Secret:
    """A value that must not reach a log line: its ``str`` and ``repr`` are ``***``; :meth:`reveal` gives it."""

    __slots__ = ("_value",)

    def __init__(self, value: str) -> None:
        self._value = value

    def reveal(self) -> str:
        return self._value

    def __repr__(self) -> str:
        return "Secret('***')"

    def __str__(self) -> str:
        return "***"

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Secret) and other._value == self._value

    def __hash__(self) -> int:
        return hash(self._value)

    def __bool__(self) -> bool:
        return bool(self._value)


@dataclass(frozen=True)
class Option:
    """One setting: where it comes from, how it is parsed, and what it means.

    ``default`` is the text a user would have typed (so ``--help`` shows it as is), or a callable computing it at
    load time (for defaults such as the host name), or ``None`` for "unset". A ``secret`` option has no flag.
    """

    name: str
    flag: str
    env: str
    parse: Callable[[str], Any]
    default: str | Callable[[], str] | None
    help: str
    secret: bool = False
    default_help: str | None = None
    """How ``--help`` shows the default, when the raw default would not say it well."""

    def default_text(self) -> str:
        if self.default_help is not None:
            return self.default_help
        if self.default is None:
            return "unset"
        if callable(self.default):
            return (self.default.__doc__ or "computed").strip()
        return self.default


_USAGE_WORD = re.compile(r"\[[^\[\]]*(?:\[[^\[\]]*\][^\[\]]*)*\]|\S+")
"""A usage line's unbreakable parts: an optional group in brackets (one nested level), or a word."""


class LineWrappingHelpFormatter(argparse.HelpFormatter):
    """Wraps the description and the epilog to the terminal line by line, keeping the line breaks written into them
    (the epilog lists one secret a line): argparse's own choice is to wrap them as one paragraph, or not at all."""

    def _format_usage(
        self,
        usage: str | None,
        actions: Iterable[argparse.Action],
        groups: Iterable[argparse._MutuallyExclusiveGroup],
        prefix: str | None,
    ) -> str:
        """argparse's usage, unless a line of it is wider than the terminal: with a long program name (``python -m
        consumers.alerter``) argparse indents every line under the name and cannot break a long option; then the
        options are wrapped under ``usage:`` instead."""
        text = super()._format_usage(usage, actions, groups, prefix)
        if all(len(line) <= self._width for line in text.splitlines()):
            return text
        lines: list[str] = []
        line = ""
        for word in _USAGE_WORD.findall(" ".join(text.split())):
            if line and len(line) + 1 + len(word) > self._width:
                lines.append(line)
                line = " " * len("usage: ") + word
            else:
                line = f"{line} {word}" if line else word
        return "\n".join([*lines, line]) + "\n\n"

    def _fill_text(self, text: str, width: int, indent: str) -> str:
        lines = []
        for line in text.splitlines():
            hanging = indent + " " * (len(line) - len(line.lstrip()) + 2)
            lines.append(textwrap.fill(line, width, initial_indent=indent, subsequent_indent=hanging) if line else "")
        return "\n".join(lines)


def invoked_as(module: str, argv0: str | None = None) -> str:
    """The program's name for its usage line, the way it was started: a console script by its name
    (``hl-liquidation-tail``), ``python -m <module>`` otherwise (where ``argv[0]`` is the module's ``__main__.py``).
    """
    name = os.path.basename(sys.argv[0] if argv0 is None else argv0)
    return f"python -m {module}" if name in ("", "-c", "__main__.py") else name


def add_options(
    parser: argparse.ArgumentParser,
    options: Iterable[Option],
    *,
    title: str | None = None,
    description: str | None = None,
) -> None:
    """Add a flag per non-secret option; list the secret ones (environment only) in the epilog. With ``title``,
    the flags get a heading of their own in ``--help``, so a reader sees which part of the process they tune."""
    target = parser.add_argument_group(title, description) if title else parser
    secrets: list[str] = []
    for opt in options:
        if opt.secret:
            secrets.append(f"  {opt.env}: {opt.help}")
            continue
        target.add_argument(
            opt.flag,
            dest=opt.name,
            metavar=opt.env,
            default=None,
            help=f"{opt.help} [env {opt.env}] (default: {opt.default_text()})",
        )
    if secrets:
        epilog = "secrets, read from the environment only (never from flags, never logged):\n" + "\n".join(secrets)
        parser.epilog = f"{parser.epilog}\n\n{epilog}" if parser.epilog else epilog
        parser.formatter_class = LineWrappingHelpFormatter


def resolve(args: argparse.Namespace, env: Mapping[str, str], options: Iterable[Option]) -> dict[str, Any]:
    """Flag over environment over default, parsed; a value that does not parse raises :class:`ConfigError`."""
    values: dict[str, Any] = {}
    for opt in options:
        flag_value = None if opt.secret else getattr(args, opt.name, None)
        # An empty variable counts as unset: compose files and env files pass unset variables as empty strings.
        raw: str | None = flag_value if flag_value is not None else (env.get(opt.env) or None)
        if raw is None:
            default = opt.default
            raw = default() if callable(default) else default
        if raw is None:
            values[opt.name] = None
            continue
        where = opt.env if opt.secret else f"{opt.flag} / {opt.env}"
        values[opt.name] = parse_value(where, raw, opt.parse, secret=opt.secret)
    return values


def parse_value(where: str, raw: str, parse: Callable[[str], T], *, secret: bool = False) -> T:
    """``parse(raw)``, or :class:`ConfigError` naming the setting (``where``) and the value as typed.

    The value is shown with any URL password masked: a mistyped ``REDIS_URL`` must not put its password into the
    error line, which ends up in terminals and service logs.
    """
    try:
        return parse(raw)
    except (ValueError, InvalidOperation) as exc:
        shown = "***" if secret else repr(redact_url(raw))
        raise ConfigError(f"{where}={shown}: {exc}") from None


def build_parser(prog: str, description: str, options: Sequence[Option]) -> argparse.ArgumentParser:
    """The parser of a process's options; a process with flags that have no variable (a command's own switches,
    such as the tail's ``--json``) adds them to it before parsing."""
    parser = argparse.ArgumentParser(
        prog=prog,
        description=f"{description} Every option can also be set by the environment variable in brackets; "
        "a flag wins over the variable.",
    )
    add_options(parser, options)
    return parser


def read_options(
    prog: str,
    description: str,
    options: Sequence[Option],
    argv: Sequence[str] | None,
    env: Mapping[str, str] | None,
) -> dict[str, Any]:
    """Every option's value, flags over environment over defaults, each checked by its parser: the one way a
    process reads its settings (raises :class:`~plumbing.errors.ConfigError` naming the flag and variable)."""
    args = build_parser(prog, description, options).parse_args(argv)
    return resolve(args, environ(env), options)


def environ(env: Mapping[str, str] | None) -> Mapping[str, str]:
    """The mapping to read: the given one (tests) or the process environment, read when the config is built."""
    return os.environ if env is None else env


# --- parsers -------------------------------------------------------------------------------------------------


def _int(value: str, meaning: str) -> int:
    """int's own message ("invalid literal for int() with base 10") says nothing to a user: ``meaning`` does."""
    try:
        return int(value)
    except ValueError:
        raise ValueError(meaning) from None


def positive_int(value: str) -> int:
    meaning = "must be a whole number greater than 0"
    number = _int(value, meaning)
    if number <= 0:
        raise ValueError(meaning)
    return number


def non_negative_int(value: str) -> int:
    meaning = "must be a whole number, 0 or more"
    number = _int(value, meaning)
    if number < 0:
        raise ValueError(meaning)
    return number


def port(value: str) -> int:
    number = _int(value, "must be a port number, 0 to 65535")
    if not 0 <= number <= 65535:
        raise ValueError("must be a port number, 0 to 65535")
    return number


def _float(value: str) -> float:
    """float's own message quotes the value a second time; the caller's line already shows it."""
    try:
        return float(value)
    except ValueError:
        raise ValueError("not a number") from None


def positive_float(value: str) -> float:
    number = _float(value)
    if not number > 0:
        raise ValueError("must be a number greater than 0")
    return number


def non_negative_float(value: str) -> float:
    number = _float(value)
    if not (math.isfinite(number) and number >= 0):
        raise ValueError("must be a number, 0 or more")
    return number


def non_negative_decimal(value: str) -> Decimal:
    """An amount, exact: every option holding money goes through here, so each says the same about a typo."""
    try:
        number = Decimal(value.replace("_", "").replace(",", ""))
    except InvalidOperation:
        # Decimal's own error is a list of signal classes, which tells a user nothing.
        raise ValueError("not a number: must be an amount, 0 or more, such as 100000") from None
    if not number.is_finite() or number < 0:
        raise ValueError("must be an amount, 0 or more")
    return number


def csv(value: str) -> tuple[str, ...]:
    return tuple(part.strip() for part in value.split(",") if part.strip())


def boolean(value: str) -> bool:
    lowered = value.strip().lower()
    if lowered in ("1", "true", "yes", "on"):
        return True
    if lowered in ("0", "false", "no", "off"):
        return False
    raise ValueError("must be true or false (1/0, yes/no, on/off)")


def boolean_or_auto(value: str) -> bool | None:
    """``auto`` (None: the process decides from the other settings), or a boolean."""
    if value.strip().lower() == "auto":
        return None
    try:
        return boolean(value)
    except ValueError:
        raise ValueError("must be auto, true or false (1/0, yes/no, on/off)") from None


def log_level(value: str) -> str:
    level = value.strip().upper()
    if level not in ("DEBUG", "INFO", "WARNING", "ERROR"):
        raise ValueError("must be DEBUG, INFO, WARNING or ERROR")
    return level


def non_empty(value: str) -> str:
    if not value.strip():
        raise ValueError("must not be empty")
    return value.strip()


def secret(value: str) -> Secret:
    return Secret(non_empty(value))


def hostname_pid() -> str:
    """hostname-pid"""
    return f"{socket.gethostname()}-{os.getpid()}"


REDIS_SCHEMES = ("redis://", "rediss://", "unix://")


def redis_url(value: str) -> str:
    """A URL redis-py can connect with, checked at start-up: redis-py itself only finds out at the first command,
    with a traceback."""
    url = non_empty(value)
    if not url.lower().startswith(REDIS_SCHEMES):
        raise ValueError(
            "must start with redis://, rediss:// (TLS) or unix:// (a socket path), e.g. redis://localhost:6379/0"
        )
    try:
        parse_url(url)
    except ValueError as exc:
        raise ValueError(f"is not a Redis URL ({exc}), e.g. redis://user:password@localhost:6379/0") from None
    return url


def redact_url(url: str) -> str:
    """The URL with its password (if any) replaced, for log lines; works on malformed URLs too, which is when
    they are shown in an error."""
    try:
        parts = urlsplit(url)
    except ValueError:
        return "<a URL that does not parse>" if "@" in url else url
    userinfo, at, host = parts.netloc.rpartition("@")
    if not at or ":" not in userinfo:
        return url
    user = userinfo.partition(":")[0]
    return urlunsplit(parts._replace(netloc=f"{user}:***@{host}"))


# ----------------------------------------------------------------------------- options every process shares

DEFAULT_REDIS_URL = "redis://localhost:6379/0"


def redis_url_option(purpose: str) -> Option:
    """``REDIS_URL``, checked as a setting; ``purpose`` says what this process does with the Redis."""
    return Option(
        "redis_url",
        "--redis-url",
        "REDIS_URL",
        redis_url,
        DEFAULT_REDIS_URL,
        f"{purpose}; rediss:// for TLS, redis://user:password@host for ACLs.",
    )


def stream_option(default: str, purpose: str) -> Option:
    return Option("stream", "--stream", "LIQ_STREAM", non_empty, default, purpose)


def shard_count(value: str) -> int:
    number = positive_int(value)
    if number > MAX_SHARDS:
        raise ValueError(f"must be 1 to {MAX_SHARDS}")
    return number


SHARDS_OPTION = Option(
    "shards",
    "--shards",
    "LIQ_SHARDS",
    shard_count,
    "1",
    "Streams the stream is spread over (<stream>, then <stream>:{s1}...), each event by its key; the producer and "
    "every consumer of the stream must use the same number. 1: the one stream.",
)
"""Shared by the producer and the consumers: both sides derive the same shard names from it."""


LOG_LEVEL_OPTION = Option("log_level", "--log-level", "LOG_LEVEL", log_level, "INFO", "DEBUG, INFO, WARNING or ERROR.")


def observability_options(healthy_while: str) -> tuple[Option, ...]:
    """Where a process serves metrics and health; ``healthy_while`` says what keeps its ``/healthz`` at 200."""
    return (
        Option(
            "metrics_port",
            "--metrics-port",
            "METRICS_PORT",
            port,
            "0",
            "Serve Prometheus /metrics and /healthz on this port; 0 turns it off.",
        ),
        Option(
            "metrics_host",
            "--metrics-host",
            "METRICS_HOST",
            non_empty,
            "127.0.0.1",
            "Address the metrics server binds to.",
        ),
        Option(
            "health_stale_after",
            "--health-stale-after",
            "HEALTH_STALE_AFTER",
            positive_float,
            "120",
            f"/healthz answers 503 after this many seconds without {healthy_while}.",
        ),
    )
