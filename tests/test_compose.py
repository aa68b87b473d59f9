"""docker-compose.yml, .env.example, the Dockerfile and the lock, checked as far as a machine without a Docker
engine can."""

from __future__ import annotations

import importlib.metadata
import importlib.util
import re
import tomllib
from collections.abc import Mapping
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest
import yaml
from packaging.requirements import Requirement

from consumers.alerter.config import OPTIONS as ALERTER_OPTIONS
from consumers.alerter.config import load_alerter_config
from consumers.config import runner_options
from consumers.stats.config import OPTIONS as STATS_OPTIONS
from consumers.stats.config import load_stats_config
from producer.config import OPTIONS as PRODUCER_OPTIONS
from producer.config import load_config

ROOT = Path(__file__).resolve().parent.parent
README = (ROOT / "README.md").read_text()
COMPOSE: dict[str, Any] = yaml.safe_load((ROOT / "docker-compose.yml").read_text())
SERVICES: dict[str, Any] = COMPOSE["services"]
APPS = ("producer", "alerter", "stats")


def settings_of(module: str) -> set[str]:
    """The environment variables the process started by ``python -m module`` reads."""
    if module == "producer":
        return {opt.env for opt in PRODUCER_OPTIONS}
    runner = {opt.env for opt in runner_options(default_group="x")}
    own = {"consumers.alerter": ALERTER_OPTIONS, "consumers.stats": STATS_OPTIONS}[module]
    return runner | {opt.env for opt in own}


def env_files(service: dict[str, Any]) -> list[str]:
    files = service.get("env_file", [])
    return [files] if isinstance(files, str) else [f if isinstance(f, str) else f["path"] for f in files]


def interpolate(value: str, dotenv: Mapping[str, str]) -> str:
    """Compose's ``${NAME}`` and ``${NAME:-default}``, from the project's .env."""
    return re.sub(r"\$\{([A-Z_]+)(?::-([^}]*))?\}", lambda m: dotenv.get(m.group(1)) or (m.group(2) or ""), value)


def container_env(name: str, dotenv: Mapping[str, str]) -> dict[str, str]:
    """What the service's process finds in its environment, as compose builds it: the env_file, then
    ``environment:`` over it."""
    service = SERVICES[name]
    env = dict(dotenv) if ".env" in env_files(service) else {}
    env.update({key: interpolate(str(value), dotenv) for key, value in service.get("environment", {}).items()})
    return env


def documented_variables() -> set[str]:
    """Every variable a table of the README documents (producer, consumers, secrets)."""
    producer = re.findall(r"^\| `([A-Z_]+)` \| `--[a-z-]+` \|", README, re.M)
    consumers = re.findall(r"^\| (?:`--[a-z-]+`|—) \| `([A-Z_]+)` \|", README, re.M)
    return set(producer) | set(consumers)


def compose_only() -> set[str]:
    """The variables the README's Docker paragraph says compose sets itself, over .env."""
    docker = README.split("**With Docker.**", 1)[1].split("\n\n", 1)[0]
    sentence = docker.split("Compose sets ", 1)[1].split(" itself", 1)[0]
    return set(re.findall(r"`([A-Z_]+)`", sentence))


def module_of(service: dict[str, Any]) -> str:
    command = service["command"]
    assert command[:2] == ["python", "-m"] and len(command) == 3, command
    return str(command[2])


def test_the_services_are_redis_the_producer_and_both_consumers() -> None:
    assert set(SERVICES) == {"redis", *APPS}
    assert SERVICES["stats"]["deploy"]["replicas"] == 2
    groups = {name: SERVICES[name]["environment"].get("LIQ_GROUP") for name in ("alerter", "stats")}
    assert groups == {"alerter": "alerter", "stats": "stats"}  # one group per consumer kind, replicas share it


@pytest.mark.parametrize("name", APPS)
def test_every_command_exists_in_our_code(name: str) -> None:
    module = module_of(SERVICES[name])
    assert importlib.util.find_spec(f"{module}.__main__") is not None, f"python -m {module} would fail"


@pytest.mark.parametrize("name", APPS)
def test_every_variable_a_service_sets_is_one_its_process_reads(name: str) -> None:
    service = SERVICES[name]
    unknown = set(service["environment"]) - settings_of(module_of(service))
    assert not unknown, f"{name} sets variables nothing reads: {sorted(unknown)}"


@pytest.mark.parametrize("name", APPS)
def test_every_service_reaches_redis_with_the_password(name: str) -> None:
    url = SERVICES[name]["environment"]["REDIS_URL"]
    assert re.fullmatch(r"redis://:\$\{REDIS_PASSWORD\}@redis:6379/\d+", url), url


def test_redis_keeps_its_data_requires_a_password_and_stays_private() -> None:
    redis = SERVICES["redis"]
    command = " ".join(redis["command"])
    assert "--appendonly yes" in command
    assert "--requirepass ${REDIS_PASSWORD" in command
    assert "ports" not in redis
    assert "healthcheck" in redis and any(v.endswith(":/data") for v in redis["volumes"])


@pytest.mark.parametrize("name", APPS)
def test_every_app_is_health_checked_restarted_and_built_from_the_one_image(name: str) -> None:
    service = SERVICES[name]
    assert service["restart"] == "unless-stopped"
    assert "/healthz" in " ".join(service["healthcheck"]["test"])
    assert service["environment"]["METRICS_PORT"] == "9100"  # the port the health check asks
    assert service["build"] == "." and service["image"] == "hl-liquidation-stream:latest"
    assert service["depends_on"]["redis"]["condition"] == "service_healthy"


def example_env(*, uncommented: bool) -> dict[str, str]:
    """.env.example as a .env: its set lines, and with ``uncommented`` its commented-out settings too."""
    env: dict[str, str] = {}
    for line in (ROOT / ".env.example").read_text().splitlines():
        match = re.fullmatch(r"(# )?([A-Z][A-Z0-9_]*)=(.*)", line)
        if match and (uncommented or not match.group(1)):
            env[match.group(2)] = match.group(3)
    return env


def test_env_example_names_only_variables_the_stack_uses() -> None:
    example = set(example_env(uncommented=True))
    read = set().union(*(settings_of(module_of(SERVICES[name])) for name in APPS))
    assert example - read == {"REDIS_PASSWORD"}, "set, or commented out, every name is one a process reads"
    assert "REDIS_PASSWORD" in example_env(uncommented=False)


def test_every_documented_variable_reaches_the_process_that_reads_it_from_env() -> None:
    readers = {name: settings_of(module_of(SERVICES[name])) for name in APPS}
    assert documented_variables() <= set().union(*readers.values())
    overrides = compose_only()
    for name, variables in readers.items():
        service = SERVICES[name]
        assert env_files(service) == [".env"], f"{name} must pass the whole .env to its process"
        set_here = set(service["environment"])
        assert set_here <= overrides, f"{name} overrides .env for {sorted(set_here - overrides)} unannounced"
        marker = "from-dotenv"
        for variable in variables - set_here:
            assert container_env(name, {"REDIS_PASSWORD": "pw", variable: marker})[variable] == marker


def test_settings_put_in_env_reach_the_processes() -> None:
    """The settings a new user put in .env and saw do nothing, read back from each process's configuration."""
    dotenv = {
        **example_env(uncommented=False),
        "ALERT_COIN_THRESHOLDS": "BTC=250000",
        "ALERT_COOLDOWN_S": "5",
        "HL_LOOKBACK": "60",
        "HL_NODE_PATH": "/srv/hl/node_fills_by_block",
        "STATS_TOP": "3",
    }
    producer = load_config([], env=container_env("producer", dotenv))
    alerter = load_alerter_config([], env=container_env("alerter", dotenv))
    stats = load_stats_config([], env=container_env("stats", dotenv))
    assert producer.lookback == 60
    assert producer.node_paths == (Path("/node-data"),), "the container's view of the host directory"
    assert alerter.thresholds.for_coin("BTC") == Decimal(250_000) and alerter.cooldown_s == 5
    assert stats.top == 3
    assert (alerter.consumer.group, stats.consumer.group) == ("alerter", "stats")
    assert producer.redis_url == alerter.consumer.redis_url == "redis://:change-me@redis:6379/0"


def test_a_shared_env_cannot_give_the_replicas_one_consumer_name() -> None:
    dotenv = {**example_env(uncommented=False), "LIQ_CONSUMER": "same-everywhere"}
    stats = load_stats_config([], env=container_env("stats", dotenv))
    assert stats.consumer.consumer != "same-everywhere"


def test_the_node_source_reads_a_host_directory_mounted_read_only() -> None:
    producer = SERVICES["producer"]
    [volume] = producer["volumes"]
    source, target, mode = volume.rsplit(":", 2)
    default = next(opt.default for opt in PRODUCER_OPTIONS if opt.env == "HL_NODE_PATH")
    assert source == f"${{HL_NODE_PATH:-{default}}}", "the host path comes from .env, the node's directory if unset"
    assert mode == "ro" and producer["environment"]["HL_NODE_PATH"] == target


def test_the_dockerfile_installs_the_lock_then_the_package_alone() -> None:
    dockerfile = (ROOT / "Dockerfile").read_text()
    for package in ("schemas", "producer", "consumers"):
        assert f"COPY {package} ./{package}" in dockerfile
    steps = re.findall(r"^RUN (.*)$", dockerfile, re.M)
    assert steps[0] == "pip install --no-deps --require-hashes -r requirements.lock"
    assert steps[1].startswith("pip install --no-deps . ")
    assert dockerfile.index("COPY requirements.lock") < dockerfile.index("COPY producer"), "a layer of its own"
    assert re.search(r"^USER \w+", dockerfile, re.M)
    assert 'CMD ["python", "-m", "producer"]' in dockerfile


def lock_pins() -> dict[str, str]:
    text = (ROOT / "requirements.lock").read_text()
    pins = dict(re.findall(r"^([A-Za-z0-9._-]+)==(\S+)", text, re.M))
    blocks = re.split(r"^(?=[A-Za-z0-9])", text, flags=re.M)
    assert all("--hash=sha256:" in block for block in blocks if "==" in block), "every pin carries its hashes"
    return {normalize(name): version for name, version in pins.items()}


def normalize(name: str) -> str:
    return re.sub(r"[-_.]+", "-", name).lower()


def test_the_lock_pins_every_runtime_dependency_within_its_range() -> None:
    pins = lock_pins()
    dependencies = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["dependencies"]
    for text in dependencies:
        requirement = Requirement(text)
        name = normalize(requirement.name)
        assert name in pins, f"requirements.lock does not pin {name}: refresh it (README, With Docker)"
        assert requirement.specifier.contains(pins[name]), f"{name}=={pins[name]} is outside {requirement.specifier}"
        for extra in requirement.extras:  # redis[hiredis]: the extra's own dependencies are pinned too
            for needed in importlib.metadata.requires(requirement.name) or []:
                extra_requirement = Requirement(needed)
                if extra_requirement.marker and extra_requirement.marker.evaluate({"extra": extra}):
                    assert normalize(extra_requirement.name) in pins, f"{name}[{extra}] needs {needed}"
