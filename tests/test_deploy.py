"""The deployment files hold what operators rely on. No Docker engine runs here, so the compose file
is checked by reading it (and, in CI, by ``docker-compose config``)."""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import httpx
import pytest
import yaml
from pydantic import ValidationError

from storytool.config import AuthMode, Settings, describe_settings_error
from tests.subprocesses import PortTaken, free_port, subprocess_on

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


def test_mysql_stores_utf8mb4():
    mysql = compose()["services"]["mysql"]
    command = " ".join(mysql["command"])
    assert "--character-set-server=utf8mb4" in command


class TestSecuredByDefault:
    """The compose file as shipped ran local auth (everyone is one user) on every interface, and
    two workers each signing history cursors with a key of its own."""

    def test_the_port_is_published_on_loopback_only(self):
        ports = [str(port) for port in compose()["services"]["app"]["ports"]]
        assert ports == ["127.0.0.1:8000:8000"]

    def test_callers_authenticate_with_tokens(self):
        environment = compose()["services"]["app"]["environment"]
        assert environment["STORYTOOL_AUTH_MODE"] == AuthMode.JWT
        assert environment["STORYTOOL_JWT_SECRET"] == "${STORYTOOL_JWT_SECRET:-}"

    def test_every_worker_signs_cursors_with_the_one_secret_from_env(self):
        app = compose()["services"]["app"]
        workers = re.search(r"--workers (\d+)", " ".join(app["command"]))
        assert workers is not None
        assert int(workers.group(1)) > 1
        secret = app["environment"]["STORYTOOL_HISTORY_CURSOR_SECRET"]
        assert secret == "${STORYTOOL_HISTORY_CURSOR_SECRET:-}"

    def test_no_value_is_mandatory_to_compose_itself(self):
        """CI checks the file with `docker-compose config` and no .env: a ${VAR:?} would fail it.
        The app refuses a missing secret at start-up instead (next tests)."""
        assert ":?" not in (ROOT / "docker-compose.yml").read_text()

    def test_env_example_names_every_variable_compose_reads(self):
        example = (ROOT / ".env.example").read_text()
        named = set(re.findall(r"^#? ?([A-Z][A-Z0-9_]*)=", example, re.MULTILINE))
        used = set(re.findall(r"\$\{([A-Z][A-Z0-9_]*)", (ROOT / "docker-compose.yml").read_text()))
        assert used - {"MYSQL_ROOT_PASSWORD"} <= named


def app_settings(dotenv: dict[str, str]) -> Settings:
    """The app's settings as compose would give them, with ``dotenv`` as the .env file."""

    def interpolate(value: str) -> str:
        return re.sub(
            r"\$\{([A-Z0-9_]+):-([^}]*)\}",
            lambda match: dotenv.get(match.group(1), match.group(2)),
            str(value),
        )

    environment = compose()["services"]["app"]["environment"]
    values = {
        name.removeprefix("STORYTOOL_").lower(): interpolate(value)
        for name, value in environment.items()
    }
    return Settings(_env_file=None, **{k: v for k, v in values.items() if v != ""})  # type: ignore[call-arg]


class TestComposeSettings:
    def test_with_the_secrets_filled_in_the_app_starts_in_jwt_mode(self):
        settings = app_settings(
            {
                "STORYTOOL_JWT_SECRET": "j" * 32,
                "STORYTOOL_HISTORY_CURSOR_SECRET": "c" * 32,
            }
        )
        assert settings.auth_mode is AuthMode.JWT
        assert "history_cursor_secret" in settings.model_fields_set

    def test_without_a_dotenv_the_app_refuses_to_start_and_says_what_is_missing(self):
        with pytest.raises(ValidationError) as caught:
            app_settings({})
        assert "STORYTOOL_JWT_SECRET" in describe_settings_error(caught.value)


def test_docker_compose_parses_the_file_without_a_dotenv(tmp_path: Path):
    """What CI runs; here only where docker-compose is installed."""
    docker_compose = shutil.which("docker-compose")
    if docker_compose is None:
        pytest.skip("docker-compose is not installed (CI installs it)")
    copy = tmp_path / "docker-compose.yml"
    copy.write_text((ROOT / "docker-compose.yml").read_text())
    result = subprocess.run(
        [docker_compose, "-f", str(copy), "config", "--quiet"],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert result.returncode == 0, result.stderr


def dockerfile() -> list[tuple[str, str]]:
    """The Dockerfile's instructions in order: (INSTRUCTION, arguments), continuations joined."""
    text = re.sub(r"\\\n\s*", " ", (ROOT / "Dockerfile").read_text())
    return [
        (line.split(None, 1)[0].upper(), line.split(None, 1)[1].strip())
        for line in text.splitlines()
        if line.strip() and not line.lstrip().startswith("#")
    ]


def shell_command(command: str | list[str]) -> str:
    """What ``sh -c`` runs, from a compose command or an exec-form CMD."""
    argv = json.loads(command) if isinstance(command, str) else command
    assert argv[:2] == ["sh", "-c"]
    return str(argv[2])


INDEX_BUILD = "storytool index build indexes/demo.corpus.jsonl --name demo"


class TestSearchOutOfTheBox:
    """The image shipped no index and compose built none: search answered 503 there."""

    def test_the_image_builds_the_demo_index_as_the_app_user(self):
        steps = dockerfile()
        build = steps.index(("RUN", INDEX_BUILD))
        before = steps[:build]
        assert any(step == "RUN" and "pip install" in args for step, args in before)
        assert ("USER", "storytool") in before
        assert ("COPY", "indexes/demo.corpus.jsonl ./indexes/") in before
        assert Settings.model_fields["index_name"].default == "demo"  # what the app loads

    def test_compose_loads_the_corpus_into_its_database_before_serving(self):
        app = compose()["services"]["app"]
        command = shell_command(app["command"])
        assert command.index("db upgrade") < command.index(INDEX_BUILD) < command.index("serve")
        start_period = app["healthcheck"]["start_period"]
        assert int(start_period.removesuffix("s")) >= 60  # the build runs before /readyz answers

    def test_the_image_as_built_serves_search(self, tmp_path: Path):
        """The image's build step, then its start command, in a copy of the image's folder."""
        found = search_after(tmp_path, shell_command(dict(dockerfile())["CMD"]))
        assert found["passages"][0]["key"] == "manseok-3-1"

    def test_compose_serves_search_from_its_own_database(self, committed_url: str, tmp_path: Path):
        """The same image started by compose's command on another database (the test's, SQLite
        or MariaDB, as MySQL under compose), where the image's vectors name no rows."""
        command = shell_command(compose()["services"]["app"]["command"])
        found = search_after(tmp_path, command, STORYTOOL_DATABASE_URL=committed_url)
        assert found["passages"][0]["key"] == "manseok-3-1"


def search_after(folder: Path, start: str, **settings: str) -> dict[str, Any]:
    """Builds the image's index in ``folder`` as its Dockerfile does, runs ``start`` there (on a
    free loopback port, one worker), and answers a search for a passage of the demo corpus. The
    hashing embedder keeps the build to a second."""
    (folder / "indexes").mkdir()
    shutil.copy(ROOT / "indexes" / "demo.corpus.jsonl", folder / "indexes")
    env = os.environ | {
        "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ['PATH']}",  # as installed
        "STORYTOOL_EMBEDDER": "hashing",
        "STORYTOOL_AUTH_MODE": "local",
    }
    subprocess.run(["sh", "-c", INDEX_BUILD], cwd=folder, env=env, check=True, timeout=120)
    start = start.replace("--host 0.0.0.0", "--host 127.0.0.1").replace("--workers 2", "")
    # The start command upgrades and builds before it binds its port: seconds in which another
    # process on the machine may take that port, and then the command runs again on another.
    for attempt in range(3):
        port = free_port()
        command = f"cd {folder} && {start.replace('--port 8000', f'--port {port}')}"
        try:
            with subprocess_on(port, ["sh", "-c", command], env=env | settings):
                ready = httpx.get(f"http://127.0.0.1:{port}/readyz", timeout=10)
                found = httpx.post(
                    f"http://127.0.0.1:{port}/api/search",
                    json={"query": "만석이 남대문 밖 소금 객주 집 헛간에 몸을 숨기니", "top_k": 1},
                    timeout=30,
                )
            break
        except PortTaken:
            if attempt == 2:
                raise
    assert ready.status_code == 200, ready.text
    assert found.status_code == 200, found.text
    result: dict[str, Any] = found.json()
    return result
