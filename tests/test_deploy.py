"""The deployment files hold what operators rely on. No Docker engine runs here, so the compose file
is checked by reading it (and, in CI, by ``docker-compose config``)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import yaml

ROOT = Path(__file__).resolve().parents[1]


def compose() -> dict[str, Any]:
    return yaml.safe_load((ROOT / "docker-compose.yml").read_text())


def test_services_and_their_images():
    services = compose()["services"]
    assert set(services) == {"app", "mysql", "redis"}
    assert services["mysql"]["image"].startswith("mysql:8.4")
    assert services["redis"]["image"].startswith("redis:7")


def test_every_service_has_a_health_check_and_the_app_waits_for_them():
    services = compose()["services"]
    for name in ("app", "mysql", "redis"):
        assert "test" in services[name]["healthcheck"], name
    depends = services["app"]["depends_on"]
    assert depends["mysql"]["condition"] == "service_healthy"
    assert depends["redis"]["condition"] == "service_healthy"


def test_the_app_migrates_before_it_serves_and_is_wired_to_mysql_and_redis():
    app = compose()["services"]["app"]
    command = " ".join(app["command"]) if isinstance(app["command"], list) else app["command"]
    assert command.index("db upgrade") < command.index("serve")
    environment = app["environment"]
    assert environment["STORYTOOL_DATABASE_URL"].startswith("mysql+asyncmy://")
    assert "charset=utf8mb4" in environment["STORYTOOL_DATABASE_URL"]
    assert environment["STORYTOOL_REDIS_URL"].startswith("redis://redis:6379")
    assert "8000:8000" in [str(port) for port in app["ports"]]


def test_mysql_stores_utf8mb4():
    mysql = compose()["services"]["mysql"]
    command = " ".join(mysql["command"])
    assert "--character-set-server=utf8mb4" in command
