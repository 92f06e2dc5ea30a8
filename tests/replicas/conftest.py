"""Replicas as real processes: uvicorn subprocesses sharing one MariaDB database and one Redis.

Starting a process takes seconds, so the replicas of a test module are started once and shared
by its tests. Each module gets its own Redis key prefix (deleted afterwards); the rows a test
writes are deleted after it (``committed_url``, through the ``database`` fixture), so runs side
by side do not meet.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from typing import Any

import httpx
import pytest
from redis import Redis

from tests.generation.conftest import Database, Event, read_events
from tests.subprocesses import free_port, wait_for_port

REDIS_URL = os.environ.get("STORYTOOL_TEST_REDIS_URL", "redis://127.0.0.1:6379/0")
PROMPT = {"user_input": "한 선비가 과거를 보러 길을 떠나니", "tags": ["모험"]}

mariadb = pytest.mark.parametrize("backend_url", ["mariadb"], indirect=True)
"""Two processes share a server database: these tests run on MariaDB only."""


class Replica:
    """One app process (``uvicorn --factory storytool.main:create_app``) on a free port."""

    def __init__(self, name: str, env: dict[str, str]) -> None:
        self.name = name
        self.env = {**env, "STORYTOOL_INSTANCE_ID": name}
        self.port = free_port()
        self.process: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self) -> Replica:
        command = [
            sys.executable, "-m", "uvicorn", "--factory", "storytool.main:create_app",
            "--host", "127.0.0.1", "--port", str(self.port), "--log-level", "warning",
        ]  # fmt: skip
        self.process = subprocess.Popen(command, env=self.env, stdout=subprocess.DEVNULL)
        return self

    def wait(self) -> None:
        assert self.process is not None
        wait_for_port(self.port, self.process)

    def kill(self) -> None:
        """kill -9: nothing of the process runs any more, not even its cleanup."""
        assert self.process is not None
        self.process.kill()
        self.process.wait()

    def terminate(self) -> None:
        """SIGTERM, as an orchestrator stops a pod; returns once the process has exited."""
        assert self.process is not None
        self.process.send_signal(signal.SIGTERM)
        self.process.wait(timeout=30)

    def stop(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.kill()
            self.process.wait()


@pytest.fixture(scope="module")
def redis_prefix() -> Iterator[str]:
    prefix = f"storytool-test-{uuid.uuid4().hex[:12]}"
    yield prefix
    with Redis.from_url(REDIS_URL) as redis:
        keys = list(redis.scan_iter(f"{prefix}:*"))
        if keys:
            redis.delete(*keys)


@pytest.fixture(scope="module")
def replica_env(
    backend_url: str, redis_prefix: str, tmp_path_factory: pytest.TempPathFactory
) -> dict[str, str]:
    """Settings shared by the replicas of a module: one database, one Redis prefix, a slow
    offline story (several seconds) so there is time to act mid-stream, and short leases."""
    tmp_path = tmp_path_factory.mktemp("replicas")
    return {
        **os.environ,
        "STORYTOOL_DATABASE_URL": backend_url,
        "STORYTOOL_REDIS_URL": REDIS_URL,
        "STORYTOOL_REDIS_PREFIX": redis_prefix,
        "STORYTOOL_DATA_DIR": str(tmp_path / "data"),
        "STORYTOOL_INDEX_DIR": str(tmp_path / "indexes"),
        "STORYTOOL_LLM_PROVIDER": "offline",
        "STORYTOOL_OFFLINE_CHARS_PER_SECOND": "150",
        "STORYTOOL_INSTANCE_LEASE_S": "3",
        "STORYTOOL_INSTANCE_HEARTBEAT_S": "0.3",
        "STORYTOOL_RATE_LIMIT": "100000/minute",
        "STORYTOOL_MAX_RUNNING_PER_USER": "100",
    }


@pytest.fixture(scope="module")
def replicas(replica_env: dict[str, str]) -> Iterator[Callable[..., Replica]]:
    """Starts replicas by name; every one is stopped at the end of the module."""
    started: list[Replica] = []

    def start(name: str, **overrides: str) -> Replica:
        replica = Replica(name, {**replica_env, **overrides}).start()
        started.append(replica)
        return replica

    yield start
    for replica in started:
        replica.stop()


@pytest.fixture(scope="module")
def pair(replicas: Callable[..., Replica]) -> tuple[Replica, Replica]:
    """Replicas ``a`` and ``b``, started side by side."""
    a, b = replicas("a"), replicas("b")
    a.wait()
    b.wait()
    return a, b


@pytest.fixture
async def http() -> AsyncIterator[httpx.AsyncClient]:
    async with httpx.AsyncClient(timeout=30) as client:
        yield client


@pytest.fixture
async def database(committed_url: str) -> AsyncIterator[Database]:
    database = Database(committed_url)
    yield database
    await database.engine.dispose()


def deltas(count: int) -> Callable[[list[Event]], bool]:
    return lambda events: (
        sum(event.event == "delta" and event.data["stage"] == "refine" for event in events) == count
    )


async def generate_then(
    http: httpx.AsyncClient,
    replica: Replica,
    ready: Callable[[list[Event]], bool],
    act: Callable[[list[Event]], Awaitable[httpx.Response]] | None = None,
    body: dict[str, Any] | None = None,
) -> tuple[list[Event], httpx.Response | None]:
    """Starts a story on ``replica`` and reads it until ``ready(events so far)``. Then, with
    ``act``, does it (a cancel, a delete: its answer is returned) and reads the stream to its
    end; without, leaves (the story goes on being written)."""
    events: list[Event] = []
    answer = None
    async with http.stream("POST", f"{replica.url}/api/generate", json=body or PROMPT) as response:
        reader = read_events(response)
        async for event in reader:
            events.append(event)
            if ready(events):
                break
        if act is not None:
            answer = await act(events)
            events += [event async for event in reader]
    return events, answer


async def resume(
    http: httpx.AsyncClient, replica: Replica, events: list[Event], *, first_only: bool = False
) -> list[Event]:
    """The rest of a story's events from ``replica``, after the last one seen (only the first
    of them with ``first_only``)."""
    conversation_id = events[0].data["conversation_id"]
    rest: list[Event] = []
    async with http.stream(
        "GET",
        f"{replica.url}/api/generate/{conversation_id}/events",
        headers={"Last-Event-ID": str(events[-1].id)},
    ) as response:
        assert response.status_code == 200
        async for event in read_events(response):
            rest.append(event)
            if first_only:
                break
    return rest
