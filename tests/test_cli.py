from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
from pathlib import Path

import httpx
import pytest
from typer.testing import CliRunner

from storytool.cli import app as cli_app


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def run_cli(*args: str, cwd: Path, env: dict[str, str] | None = None):
    return subprocess.run(
        [sys.executable, "-m", "storytool", *args],
        cwd=cwd,
        env={**os.environ, **(env or {})},
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )


def test_db_upgrade_creates_the_embedded_database(tmp_path: Path):
    result = run_cli("db", "upgrade", cwd=tmp_path, env={"STORYTOOL_DATA_DIR": "data"})
    assert result.returncode == 0, result.stderr
    assert (tmp_path / "data" / "storytool.db").is_file()


def test_serve_migrates_then_answers_readyz(tmp_path: Path):
    port = free_port()
    process = subprocess.Popen(
        [sys.executable, "-m", "storytool", "serve", "--port", str(port)],
        cwd=tmp_path,
        # As deployed: the start-up objects frozen out of the collector's scans.
        env={
            **os.environ,
            "STORYTOOL_DATA_DIR": str(tmp_path / "data"),
            "STORYTOOL_GC_FREEZE": "true",
        },
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
    )
    try:
        deadline = time.monotonic() + 60
        while True:
            try:
                response = httpx.get(f"http://127.0.0.1:{port}/readyz", timeout=2)
                break
            except httpx.TransportError:
                assert process.poll() is None, process.stdout.read().decode()  # type: ignore[union-attr]
                assert time.monotonic() < deadline, "server did not start in 60 s"
                time.sleep(0.2)
        assert response.status_code == 200
        assert response.json()["checks"]["database"] == "ok"
    finally:
        process.terminate()
        process.wait(timeout=30)


def test_serve_refuses_one_instance_id_for_several_workers(tmp_path: Path):
    result = run_cli(
        "serve", "--workers", "2", cwd=tmp_path, env={"STORYTOOL_INSTANCE_ID": "replica-a"}
    )
    assert result.returncode == 2
    assert "STORYTOOL_INSTANCE_ID names one process" in result.stderr
    assert not (tmp_path / "data").exists()  # refused before touching anything


CURSOR_SECRET = "STORYTOOL_HISTORY_CURSOR_SECRET"


def test_serve_refuses_several_workers_without_one_cursor_secret(tmp_path: Path):
    result = run_cli("serve", "--workers", "2", cwd=tmp_path, env={"STORYTOOL_AUTH_MODE": "header"})
    assert result.returncode == 2
    assert f"{CURSOR_SECRET} is unset" in result.stderr
    assert not (tmp_path / "data").exists()  # refused before touching anything


class TestWorkersShareTheCursorSecret:
    """``serve`` in-process up to the point where uvicorn would start the workers."""

    @pytest.fixture
    def started(self, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> list[dict[str, str]]:
        monkeypatch.chdir(tmp_path)  # no .env of the checkout's
        # Not SQLite, so serve does not migrate; nothing connects before uvicorn would.
        monkeypatch.setenv("STORYTOOL_DATABASE_URL", "mysql+asyncmy://nobody@127.0.0.1:1/none")
        monkeypatch.setenv(CURSOR_SECRET, "placeholder")
        monkeypatch.delenv(CURSOR_SECRET)  # restored to unset after the test
        environments: list[dict[str, str]] = []
        monkeypatch.setattr(
            "storytool.cli.uvicorn.run", lambda *_a, **_k: environments.append(dict(os.environ))
        )
        return environments

    def test_local_mode_draws_one_for_all_workers(self, started: list[dict[str, str]]):
        result = CliRunner().invoke(cli_app, ["serve", "--workers", "2"])
        assert result.exit_code == 0, result.output
        assert len(started[0][CURSOR_SECRET]) >= 32  # what the spawned workers inherit

    def test_a_set_secret_lets_jwt_mode_start_several_workers(
        self, started: list[dict[str, str]], monkeypatch: pytest.MonkeyPatch
    ):
        monkeypatch.setenv("STORYTOOL_AUTH_MODE", "jwt")
        monkeypatch.setenv("STORYTOOL_JWT_SECRET", "j" * 32)
        monkeypatch.setenv(CURSOR_SECRET, "c" * 32)
        result = CliRunner().invoke(cli_app, ["serve", "--workers", "2"])
        assert result.exit_code == 0, result.output
        assert started[0][CURSOR_SECRET] == "c" * 32

    def test_an_empty_secret_counts_as_unset(self, started: list[dict[str, str]], monkeypatch):
        monkeypatch.setenv("STORYTOOL_AUTH_MODE", "header")
        monkeypatch.setenv(CURSOR_SECRET, "")  # what compose passes for a missing .env entry
        result = CliRunner().invoke(cli_app, ["serve", "--workers", "2"])
        assert result.exit_code == 2
        assert f"{CURSOR_SECRET} is unset" in result.output
        assert not started
