from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
from pathlib import Path

import httpx


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
