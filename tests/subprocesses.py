"""Helpers to run a server as a child process on a free loopback port (benchmarks, CLI tests)."""

from __future__ import annotations

import contextlib
import os
import signal
import socket
import subprocess
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


class PortTaken(RuntimeError):
    """The process exited while another one listened on its port: a free port found by
    :func:`free_port` was taken before the process bound it (another suite on the machine)."""


def wait_for_port(port: int, process: subprocess.Popen[bytes], timeout_s: float = 60.0) -> None:
    """Until ``process`` (or a process of its group) listens on ``port``: a listener of another
    process group on that port is not taken for it."""
    deadline = time.monotonic() + timeout_s
    foreign = False
    while time.monotonic() < deadline:
        if process.poll() is not None:
            kind = PortTaken if foreign else RuntimeError
            raise kind(f"{process.args!r} exited with {process.returncode}")
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=0.5):
                pass
        except OSError:
            time.sleep(0.1)
            continue
        owners = _listeners(port)
        if owners is None or any(process.pid in (pid, _group_of(pid)) for pid in owners):
            return
        foreign = True
        time.sleep(0.1)
    raise RuntimeError(f"nothing of {process.args!r} listens on port {port} after {timeout_s} s")


def _listeners(port: int) -> set[int] | None:
    """The pids holding a listening TCP socket on ``port``, from /proc (None without it)."""
    inodes = set()
    for table in (Path("/proc/net/tcp"), Path("/proc/net/tcp6")):
        if not table.exists():
            return None
        for line in table.read_text().splitlines()[1:]:
            fields = line.split()
            if fields[3] == "0A" and int(fields[1].rsplit(":", 1)[1], 16) == port:  # LISTEN
                inodes.add(f"socket:[{fields[9]}]")
    pids = set()
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        with contextlib.suppress(OSError):
            if any(os.readlink(fd) in inodes for fd in (entry / "fd").iterdir()):
                pids.add(int(entry.name))
    return pids


def _group_of(pid: int) -> int | None:
    try:
        return os.getpgid(pid)
    except OSError:
        return None


@contextmanager
def subprocess_on(port: int, command: list[str], env: dict[str, str]) -> Iterator[int]:
    """Runs ``command`` until the block ends; yields its pid once ``port`` accepts. The command
    runs in a process group of its own, stopped whole: a shell's children (``sh -c "... && storytool
    serve"``) go with it instead of outliving the test."""
    process = subprocess.Popen(command, env=env, stdout=subprocess.DEVNULL, start_new_session=True)
    try:
        wait_for_port(port, process)
        yield process.pid
    finally:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(process.pid, signal.SIGTERM)
        try:
            process.wait(timeout=20)
        except subprocess.TimeoutExpired:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(process.pid, signal.SIGKILL)
            process.wait()
