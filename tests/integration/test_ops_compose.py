"""docker-compose.yml as `docker-compose config` resolves it (no Docker engine needed):
the rules of the operations issue hold for every service."""

from __future__ import annotations

import os
import re
import shutil
import subprocess
from pathlib import Path
from typing import Any

import pytest
import yaml

pytestmark = pytest.mark.integration

ROOT = Path(__file__).resolve().parents[2]
COMPOSE = ROOT / "docker-compose.yml"
KRANJ = ("events", "booking", "surveys", "notify")
ONE_SHOT = ("migrate", "queues-migrate", "rabbitmq-init")


@pytest.fixture(scope="module")
def config(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    binary = shutil.which("docker-compose")
    assert binary, "docker-compose is not installed (apt-get install docker-compose; .ci/run does it)"
    text = COMPOSE.read_text()
    required = set(re.findall(r"\$\{([A-Za-z_][A-Za-z0-9_]*):?\?", text))
    env = {k: v for k, v in os.environ.items() if not k.startswith(("KRANJ_", "RABBITMQ_", "POSTGRES_"))}
    env.update({name: f"secret-{name.lower()}" for name in required})
    empty = tmp_path_factory.mktemp("compose") / "empty.env"
    empty.write_text("")
    proc = subprocess.run(
        [binary, "--env-file", str(empty), "-f", str(COMPOSE), "config"],
        capture_output=True,
        text=True,
        env=env,
        timeout=60,
        check=False,
    )
    assert proc.returncode == 0, proc.stderr
    return yaml.safe_load(proc.stdout)


def test_images_are_pinned_and_guest_is_never_used(config: dict[str, Any]) -> None:
    for name, service in config["services"].items():
        image = service.get("image", "")
        assert image and not image.endswith(":latest") and ":" in image, f"{name}: pin the image ({image!r})"
    text = yaml.safe_dump(config)
    assert "guest" not in text


def test_long_running_services_have_healthchecks_and_restart_policies(config: dict[str, Any]) -> None:
    for name, service in config["services"].items():
        if name in ONE_SHOT or "tools" in service.get("profiles", []):
            assert service.get("restart", "no") == "no", name
            continue
        assert service.get("healthcheck", {}).get("test"), f"{name} has no healthcheck"
        assert service.get("restart") in ("unless-stopped", "always"), name


def test_services_start_after_migrations_and_broker_users(config: dict[str, Any]) -> None:
    for name in KRANJ:
        depends = config["services"][name]["depends_on"]
        assert depends["migrate"]["condition"] == "service_completed_successfully", name
        assert depends["rabbitmq-init"]["condition"] == "service_completed_successfully", name
        assert depends["rabbitmq"]["condition"] == "service_healthy", name
        assert depends["postgres"]["condition"] == "service_healthy", name
    assert config["services"]["migrate"]["command"] == ["kranj", "db", "upgrade"]
    # Queues of an older version get their new arguments before the definitions are imported.
    init = config["services"]["rabbitmq-init"]["depends_on"]
    assert init["queues-migrate"]["condition"] == "service_completed_successfully"
    assert config["services"]["queues-migrate"]["command"] == ["kranj", "queues", "migrate"]
    for name in KRANJ:
        assert config["services"]["gateway"]["depends_on"][name]["condition"] == "service_healthy"


def test_each_service_uses_its_own_broker_user(config: dict[str, Any]) -> None:
    for name in KRANJ:
        url = config["services"][name]["environment"]["KRANJ_AMQP_URL"]
        assert url == f"amqp://kranj-{name}:secret-{name}_amqp_password@rabbitmq:5672/kranj"


def test_services_can_be_scaled(config: dict[str, Any]) -> None:
    """`docker compose up --scale notify=3`: no fixed name, no host port on a service."""
    for name in KRANJ:
        service = config["services"][name]
        assert "container_name" not in service and "ports" not in service, name


def test_named_volumes_only(config: dict[str, Any]) -> None:
    named = set(config.get("volumes", {}))
    for name, service in config["services"].items():
        for volume in service.get("volumes", []):
            source = volume["source"] if isinstance(volume, dict) else volume.split(":")[0]
            kind = volume.get("type") if isinstance(volume, dict) else None
            if kind == "bind" or str(source).startswith(("/", ".")):
                # Only read-only configuration files from deploy/ are bind-mounted.
                assert "/deploy/" in str(source), f"{name}: data must live in a named volume ({source})"
                assert volume.get("read_only") if isinstance(volume, dict) else volume.endswith(":ro"), name
            else:
                assert source in named, f"{name}: {source}"
