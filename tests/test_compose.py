"""docker-compose.yml and the Dockerfile, checked as far as a machine without a Docker engine can."""

from __future__ import annotations

import importlib.util
import re
from pathlib import Path
from typing import Any

import pytest
import yaml

from consumers.alerter.config import OPTIONS as ALERTER_OPTIONS
from consumers.config import runner_options
from consumers.stats.config import OPTIONS as STATS_OPTIONS
from producer.config import OPTIONS as PRODUCER_OPTIONS

ROOT = Path(__file__).resolve().parent.parent
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


def test_env_example_names_only_variables_the_stack_uses() -> None:
    example = {
        line.split("=", 1)[0]
        for line in (ROOT / ".env.example").read_text().splitlines()
        if line and not line.startswith("#")
    }
    interpolated = set(re.findall(r"\$\{([A-Z_]+)", (ROOT / "docker-compose.yml").read_text()))
    assert example <= interpolated
    assert "REDIS_PASSWORD" in example


def test_the_dockerfile_installs_every_package_the_commands_import() -> None:
    dockerfile = (ROOT / "Dockerfile").read_text()
    for package in ("schemas", "producer", "consumers"):
        assert f"COPY {package} ./{package}" in dockerfile
    assert "RUN pip install ." in dockerfile
    assert re.search(r"^USER \w+", dockerfile, re.M)
    assert 'CMD ["python", "-m", "producer"]' in dockerfile
