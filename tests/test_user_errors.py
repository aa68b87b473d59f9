"""Every natural mistake a user makes with our commands gets one line that says what is wrong and what to do, and
the exit code a script can act on: 2 for a bad setting, 1 for a failure at run time. Never a traceback."""

from __future__ import annotations

import re
import uuid
from decimal import Decimal
from pathlib import Path

import pytest

from consumers.alerter.config import load_alerter_config
from plumbing.errors import ConfigError
from plumbing.options import non_negative_decimal, redact_url, redis_url
from producer.config import load_config
from tests.faults.procs import Proc
from tests.helpers import RedisServer, free_port

SCHEMES = "must start with redis://, rediss:// (TLS) or unix:// (a socket path)"
SCHEMES_PATTERN = re.escape(SCHEMES)


async def run(tmp_path: Path, module: str, *args: str, env: dict[str, str] | None = None) -> tuple[int, str]:
    """Run ``python -m module`` to its end; returns the exit code and stderr, checked to be a single line."""
    name = f"{module}-{uuid.uuid4().hex[:8]}"  # a fresh log per run: Proc appends to an existing one
    proc = await Proc(name, module, env or {}, tmp_path, args).start()
    code = await proc.wait(within=30)
    err = proc.stderr()
    assert "Traceback" not in err, err
    assert len(err.splitlines()) == 1, f"not one line on stderr:\n{err}"
    return code, err


@pytest.mark.parametrize(
    ("module", "args", "url"),
    [
        ("producer", ("--once",), "localhost:6379"),
        ("consumers.alerter", (), "http://localhost:6379"),
        ("consumers.stats", (), "http://localhost:6379"),
        ("consumers.tail", (), "http://localhost:6379"),
        ("producer.demo", (), "localhost:6379"),
    ],
)
async def test_a_redis_url_without_a_redis_scheme_is_a_bad_setting(
    tmp_path: Path, module: str, args: tuple[str, ...], url: str
) -> None:
    code, err = await run(tmp_path, module, *args, env={"REDIS_URL": url})
    assert code == 2
    assert err.startswith(f"configuration error: --redis-url / REDIS_URL={url!r}: {SCHEMES}")


@pytest.mark.parametrize("module", ["consumers.alerter", "producer.demo"])
async def test_a_threshold_that_is_not_a_number_says_so(tmp_path: Path, module: str) -> None:
    code, err = await run(tmp_path, module, "--threshold-usd", "lots")
    assert code == 2
    assert "--threshold-usd" in err and "'lots'" in err and "not a number" in err
    assert "decimal" not in err.lower()


@pytest.mark.parametrize("speed", ["-1", "fast", "nan"])
async def test_the_demo_refuses_a_speed_that_is_not_0_or_more(tmp_path: Path, speed: str) -> None:
    code, err = await run(tmp_path, "producer.demo", "--speed", speed)
    assert code == 2
    assert err.startswith(f"configuration error: --speed={speed!r}: ")


async def test_the_demo_without_a_redis_says_how_to_start_one(tmp_path: Path) -> None:
    url = f"redis://:hunter2@127.0.0.1:{free_port()}/0"
    code, err = await run(tmp_path, "producer.demo", env={"REDIS_URL": url})
    assert code == 1
    assert err == f"demo: no Redis at {redact_url(url)}: start one with `redis-server` (or set REDIS_URL)\n"


async def test_the_demo_with_a_wrong_or_missing_password_says_authentication_failed(tmp_path: Path) -> None:
    server = RedisServer(tmp_path, password="right")
    server.start()
    try:
        code, err = await run(tmp_path, "producer.demo", env={"REDIS_URL": f"redis://:wrong@127.0.0.1:{server.port}/0"})
        assert code == 1
        assert err.startswith("demo: authentication failed") and "password in REDIS_URL is wrong" in err
        assert "wrong@" not in err
        code, err = await run(tmp_path, "producer.demo", env={"REDIS_URL": server.url})
        assert code == 1
        assert err.startswith("demo: authentication failed") and "wants a password" in err
    finally:
        server.kill()


@pytest.mark.parametrize(
    "url",
    [
        "redis://localhost:6379/0",
        "REDIS://localhost",
        "rediss://:pw@cache:6380/0?ssl_ca_certs=/etc/ca.pem",
        "unix:///run/redis.sock?db=1",
    ],
)
def test_a_redis_url_redis_can_use_is_accepted(url: str) -> None:
    assert redis_url(url) == url


@pytest.mark.parametrize(
    ("url", "message"),
    [
        ("localhost:6379", SCHEMES_PATTERN),
        ("http://localhost:6379", SCHEMES_PATTERN),
        ("redis://localhost:x/0", r"is not a Redis URL \(Port could not be cast"),
        ("redis://h/0?socket_timeout=soon", r"is not a Redis URL \(Invalid value for 'socket_timeout'"),
    ],
)
def test_a_redis_url_redis_cannot_use_is_refused(url: str, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        redis_url(url)


@pytest.mark.parametrize(
    "url", ["http://:hunter2@cache:6379", "redis://:hunter2@cache:port/0", "redis://:hunter2@[::1"]
)
def test_a_refused_redis_url_never_shows_its_password(url: str) -> None:
    for load in (load_config, load_alerter_config):
        with pytest.raises(ConfigError) as refused:
            load([], {"REDIS_URL": url})
        assert "REDIS_URL=" in str(refused.value) and "hunter2" not in str(refused.value)


def test_every_amount_option_says_not_a_number_the_same_way() -> None:
    assert non_negative_decimal("250_000") == Decimal(250_000)
    for env in ({"ALERT_THRESHOLD_USD": "lots"}, {"ALERT_COIN_THRESHOLDS": "BTC=lots"}):
        with pytest.raises(ConfigError, match=r"='[^']*lots': not a number: must be an amount, 0 or more"):
            load_alerter_config([], env)


@pytest.mark.parametrize(
    ("env", "meaning"),
    [
        ({"LIQ_STREAM_MAXLEN": "lots"}, "must be a whole number greater than 0"),
        ({"HL_ADAPTIVE_POLLED": "1.5"}, "must be a whole number, 0 or more"),
        ({"METRICS_PORT": "http"}, "must be a port number, 0 to 65535"),
    ],
)
def test_a_whole_number_option_given_words_says_what_it_wants_not_what_int_said(
    env: dict[str, str], meaning: str
) -> None:
    with pytest.raises(ConfigError) as error:
        load_config([], env)
    assert str(error.value).endswith(f": {meaning}") and "int()" not in str(error.value)


@pytest.mark.parametrize(
    ("module", "args"),
    [
        ("producer", ("--once",)),
        ("consumers.alerter", ()),
        ("consumers.stats", ()),
        ("consumers.tail", ()),
        ("producer.demo", ()),
    ],
)
@pytest.mark.parametrize(
    ("env", "message"),
    [
        (
            {"REDIS_URL": "redis://db:6379/0", "REDIS_CLUSTER_NODES": "10.0.0.1:7000"},
            "--redis-url / REDIS_URL and --redis-cluster-nodes / REDIS_CLUSTER_NODES are both set: give one",
        ),
        (
            {"REDIS_CLUSTER_NODES": "10.0.0.1:7000", "REDIS_SENTINELS": "10.0.0.1:26379"},
            "--redis-cluster-nodes / REDIS_CLUSTER_NODES and --redis-sentinels / REDIS_SENTINELS are both set",
        ),
        ({"REDIS_SENTINELS": "10.0.0.1:26379"}, "needs --redis-sentinel-master / REDIS_SENTINEL_MASTER"),
        ({"REDIS_CLUSTER_NODES": "10.0.0.1"}, "'10.0.0.1' is not host:port"),
    ],
    ids=["url-and-cluster", "cluster-and-sentinels", "sentinels-without-master", "node-without-port"],
)
async def test_contradicting_or_malformed_redis_settings_are_a_bad_setting(
    tmp_path: Path, module: str, args: tuple[str, ...], env: dict[str, str], message: str
) -> None:
    code, err = await run(tmp_path, module, *args, env=env)
    assert code == 2
    assert err.startswith("configuration error: ") and message in err
