"""Cancel-to-terminal-event latency, on one process and across two replicas through Redis.

    .venv/bin/python -m bench.cancel            # 200 cancels per setup
    .venv/bin/python -m bench.cancel --quick    # 30, a smoke run

Each setup runs real app processes (``uvicorn --factory storytool.main:create_app``) on loopback
on their own MariaDB database, with the offline provider streaming at 100 characters a second:

  one process   no Redis: the cancel reaches the task in the same process
  two replicas  Redis (a key prefix of its own): the story runs on A, the cancel is sent to B,
                which publishes it to A and waits for A's acknowledgement or terminal event

A round opens ``--streams`` stories on A at once and reads each up to its second delta; then,
one story at a time, it sends ``POST /api/cancelGeneration`` and measures, on A's stream, the
time from sending the cancel to the ``cancelled`` event (the figure a user sees: the stop of the
text), and the time until the cancel's answer (which waits for the saved text). The other
stories keep streaming meanwhile, so the owner is busy as in real use.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager, contextmanager
from dataclasses import dataclass, field

import httpx
from bench.generation import MARIADB_ADMIN_URL, mariadb_database
from redis import Redis
from tests.generation.conftest import read_events
from tests.subprocesses import free_port, wait_for_port

from storytool.db.migrations import upgrade

REDIS_URL = "redis://127.0.0.1:6379/0"
PROMPT = {"user_input": "한 선비가 과거를 보러 길을 떠나니", "tags": ["모험"]}
BODY = {**PROMPT, "options": {"length": "long"}}


@dataclass
class Results:
    to_event: list[float] = field(default_factory=list)
    to_answer: list[float] = field(default_factory=list)


@contextmanager
def servers(env: dict[str, str], names: list[str]) -> Iterator[list[str]]:
    """Starts one app process per name; yields their base URLs."""
    ports = [free_port() for _ in names]
    processes = [
        subprocess.Popen(
            [
                sys.executable,
                "-m",
                "uvicorn",
                "--factory",
                "storytool.main:create_app",
                "--host",
                "127.0.0.1",
                "--port",
                str(port),
                "--log-level",
                "warning",
            ],
            env={**env, "STORYTOOL_INSTANCE_ID": name},
            stdout=subprocess.DEVNULL,
        )
        for name, port in zip(names, ports, strict=True)
    ]
    try:
        for port, process in zip(ports, processes, strict=True):
            wait_for_port(port, process)
        yield [f"http://127.0.0.1:{port}" for port in ports]
    finally:
        for process in processes:
            process.terminate()
        for process in processes:
            process.wait(timeout=30)


async def cancel_one(
    client: httpx.AsyncClient,
    owner: str,
    canceller: str,
    results: Results,
    turn: tuple[asyncio.Event, asyncio.Event],
) -> None:
    """One story on ``owner``, read to its second delta, cancelled through ``canceller`` once
    ``turn[0]`` is set; sets ``turn[1]`` when its cancel is through."""
    async with client.stream("POST", f"{owner}/api/generate", json=BODY) as response:
        reader = read_events(response)
        conversation_id = ""
        deltas = 0
        async for event in reader:
            conversation_id = conversation_id or event.data["conversation_id"]
            deltas += event.event == "delta"
            if deltas == 2:
                break
        await turn[0].wait()
        began = time.perf_counter()

        async def answer() -> None:
            reply = await client.post(
                f"{canceller}/api/cancelGeneration", json={"conversation_id": conversation_id}
            )
            reply.raise_for_status()
            results.to_answer.append(time.perf_counter() - began)

        sending = asyncio.create_task(answer())
        async for event in reader:
            if event.event == "cancelled":
                results.to_event.append(time.perf_counter() - began)
                break
            if event.event in ("done", "error"):
                raise RuntimeError(f"story ended with {event.event} instead of cancelled")
        await sending
    turn[1].set()


async def measure(urls: list[str], cancels: int, streams: int) -> Results:
    owner, canceller = urls[0], urls[-1]
    results = Results()
    async with httpx.AsyncClient(timeout=60) as client:
        done = 0
        while done < cancels:
            batch = min(streams, cancels - done)
            # Started together, cancelled one after another (each waits for the one before).
            gates = [asyncio.Event() for _ in range(batch + 1)]
            gates[0].set()
            await asyncio.gather(
                *(
                    cancel_one(client, owner, canceller, results, (gates[i], gates[i + 1]))
                    for i in range(batch)
                )
            )
            done += batch
    return results


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


def report(name: str, results: Results) -> str:
    def ms(values: list[float], q: float) -> str:
        return f"{percentile(values, q) * 1000:.1f}"

    return (
        f"| {name} | {len(results.to_event)} | {ms(results.to_event, 0.5)} | "
        f"{ms(results.to_event, 0.99)} | {max(results.to_event) * 1000:.1f} | "
        f"{ms(results.to_answer, 0.5)} | {ms(results.to_answer, 0.99)} |"
    )


@asynccontextmanager
async def database() -> AsyncIterator[str]:
    async with mariadb_database(MARIADB_ADMIN_URL, "storytool_bench_cancel") as url:
        await upgrade(url)
        yield url


async def main_async(cancels: int, streams: int) -> None:
    prefix = f"storytool-bench-{uuid.uuid4().hex[:8]}"
    rows = []
    async with database() as url:
        with tempfile.TemporaryDirectory() as folder:
            env = {
                **os.environ,
                "STORYTOOL_DATABASE_URL": url,
                "STORYTOOL_DATA_DIR": folder,
                "STORYTOOL_INDEX_DIR": folder,
                "STORYTOOL_LLM_PROVIDER": "offline",
                "STORYTOOL_OFFLINE_CHARS_PER_SECOND": "100",
                "STORYTOOL_RATE_LIMIT": "1000000/minute",
                "STORYTOOL_MAX_RUNNING_PER_USER": "1000",
            }
            with servers(env, ["solo"]) as urls:
                rows.append(report("one process", await measure(urls, cancels, streams)))
            env |= {"STORYTOOL_REDIS_URL": REDIS_URL, "STORYTOOL_REDIS_PREFIX": prefix}
            try:
                with servers(env, ["a", "b"]) as urls:
                    rows.append(
                        report("two replicas (Redis)", await measure(urls, cancels, streams))
                    )
            finally:
                with Redis.from_url(REDIS_URL) as redis:
                    keys = list(redis.scan_iter(f"{prefix}:*"))
                    if keys:
                        redis.delete(*keys)
    print(f"{cancels} cancels per setup, {streams} stories streaming per round")
    print("| setup | cancels | to event p50 ms | p99 | max | to answer p50 ms | p99 |")
    print("|---|---|---|---|---|---|---|")
    for row in rows:
        print(row)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="30 cancels per setup")
    parser.add_argument("--streams", type=int, default=10, help="stories open per round")
    args = parser.parse_args()
    asyncio.run(main_async(30 if args.quick else 200, args.streams))


if __name__ == "__main__":
    main()
