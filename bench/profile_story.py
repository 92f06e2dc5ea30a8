"""Where Storytool's CPU goes per story: a sampling profile of ``POST /api/generate``.

    .venv/bin/python -m bench.profile_story --py-spy /path/to/py-spy     # SQLite
    .venv/bin/python -m bench.profile_story --py-spy ... --database mariadb
    (py-spy is not a project dependency: ``pip install py-spy`` into a venv of its own)

The same load as bench/generation.py's "10 streams" scenario (10 stories at once, 50 deltas a
story or ``--tokens``, the fake answering at once, a one-token draft), run ``--rounds`` times
against one Storytool process while py-spy samples it (``--nonblocking``, 1,000 samples a
second). Each
sample's stack is sorted into one bucket, by the innermost frame that belongs to a part named
in ``BUCKETS``; the table gives each bucket's CPU in ms per story (the samples' share of the
process's measured CPU time, which py-spy's idle filter leaves out), and the folded stacks go to
``--out`` for a flame graph (``flamegraph.pl`` or speedscope.app read them).
"""

from __future__ import annotations

import argparse
import asyncio
import subprocess
import sys
import time
from collections import Counter
from contextlib import AsyncExitStack
from pathlib import Path

from bench.generation import (
    MARIADB_ADMIN_URL,
    STORYTOOL,
    Scenario,
    cpu_seconds,
    free_port,
    mariadb_database,
    measure,
    spawn,
    spawn_storytool,
    sqlite_database,
    wait_listening,
)

from storytool.db.migrations import upgrade

BUCKETS: tuple[tuple[str, str], ...] = (
    ("openai/_streaming.py", "SDK: SSE parse + event models"),
    ("openai/_base_client.py", "SDK: request build/send"),
    ("openai/_models.py", "SDK: model construction"),
    ("openai/", "SDK: other"),
    ("httpx2/", "httpx2"),
    ("httpcore2/", "httpcore2"),
    ("h11/", "httpcore2"),
    ("aiohttp/", "aiohttp"),
    ("multidict/", "aiohttp"),
    ("yarl/", "aiohttp"),
    ("anyio/", "anyio"),
    ("sqlalchemy/", "SQLAlchemy"),
    ("aiosqlite/", "aiosqlite"),
    ("asyncmy/", "asyncmy"),
    ("sse_starlette/", "sse-starlette"),
    ("pydantic/", "pydantic"),
    ("pydantic_core/", "pydantic"),
    ("json/", "json"),
    ("uvicorn/", "uvicorn"),
    ("starlette/", "starlette/FastAPI"),
    ("fastapi/", "starlette/FastAPI"),
    ("prometheus_client/", "prometheus"),
    ("logging/", "logging"),
    ("storytool/", "storytool"),
    ("asyncio/", "asyncio loop"),
    ("selectors.py", "asyncio loop"),
)


def bucket(stack: str) -> str:
    """The innermost frame of a folded stack that a bucket names."""
    for frame in reversed(stack.split(";")):
        for needle, name in BUCKETS:
            if needle in frame:
                return name
    return "other"


def storytool_frame(stack: str) -> str:
    """The innermost Storytool function of a stack: who asked for the work."""
    for frame in reversed(stack.split(";")):
        if "storytool/" in frame:
            return frame.split(" (")[0]
    return "(outside storytool)"


def read_folded(path: Path) -> Counter[str]:
    stacks: Counter[str] = Counter()
    for line in path.read_text().splitlines():
        stack, _, count = line.rpartition(" ")
        if stack:
            stacks[stack] += int(count)
    return stacks


async def main_async(args: argparse.Namespace) -> None:
    scenario = Scenario("10 streams", 10, None, args.tokens, rounds=args.rounds)
    async with AsyncExitStack() as stack:
        if args.database == "mariadb":
            url = await stack.enter_async_context(mariadb_database(MARIADB_ADMIN_URL))
        else:
            url = await stack.enter_async_context(sqlite_database())
        await upgrade(url)
        fake_port, app_port = free_port(), free_port()
        upstream = f"http://127.0.0.1:{fake_port}/v1"
        pace = ["none", str(args.tokens), "0", "0"]
        fake = spawn(["-m", "bench.generation", "fake", str(fake_port), *pace])
        app = spawn_storytool(app_port, upstream, url)
        try:
            wait_listening(fake_port, fake)
            wait_listening(app_port, app)
            await measure(
                app_port, app.pid, STORYTOOL, Scenario("warm-up", 10, None, args.tokens, 3)
            )
            folded = args.out / f"profile-{args.database}.folded"
            spy = subprocess.Popen(
                [
                    args.py_spy,
                    "record",
                    "--pid",
                    str(app.pid),
                    "--rate",
                    "1000",
                    "--nonblocking",
                    "--format",
                    "raw",
                    "--output",
                    str(folded),
                ],
                stdout=subprocess.DEVNULL,
                stderr=subprocess.DEVNULL,
            )
            time.sleep(1.0)
            cpu_before = cpu_seconds(app.pid)
            measured = await measure(app_port, app.pid, STORYTOOL, scenario)
            cpu = cpu_seconds(app.pid) - cpu_before
            spy.send_signal(2)
            spy.wait(timeout=60)
        finally:
            for process in (fake, app):
                process.terminate()
                process.wait(timeout=30)
    stories = sum(1 for s in measured.streams if s.completed)
    stacks = read_folded(folded)
    total = sum(stacks.values())
    per_sample_ms = cpu * 1e3 / total / stories
    print(
        f"database: {args.database}; {stories} stories; {cpu * 1e3 / stories:.2f} ms CPU per "
        f"story; {total} samples; {time.strftime('%H:%M', time.gmtime())} UTC"
    )
    print("\n| part (innermost frame) | ms per story | share |\n|---|---|---|")
    buckets: Counter[str] = Counter()
    for stack_text, count in stacks.items():
        buckets[bucket(stack_text)] += count
    for name, count in buckets.most_common():
        print(f"| {name} | {count * per_sample_ms:.2f} | {count / total:.0%} |")
    print("\n| Storytool function (innermost on the stack) | ms per story |\n|---|---|")
    callers: Counter[str] = Counter()
    for stack_text, count in stacks.items():
        callers[storytool_frame(stack_text)] += count
    for name, count in callers.most_common(args.top):
        print(f"| {name} | {count * per_sample_ms:.2f} |")


def main() -> None:
    parser = argparse.ArgumentParser(description="A sampling profile of generation, per story.")
    parser.add_argument("--py-spy", required=True, help="The py-spy executable.")
    parser.add_argument("--database", choices=["sqlite", "mariadb"], default="sqlite")
    parser.add_argument("--rounds", type=int, default=30, help="Rounds of 10 stories.")
    parser.add_argument(
        "--tokens", type=int, default=50, help="Deltas a story (2: the fixed cost per story)."
    )
    parser.add_argument("--top", type=int, default=25, help="Storytool functions listed.")
    parser.add_argument("--out", type=Path, default=Path("test-output"), help="Folded stacks.")
    args = parser.parse_args()
    args.out.mkdir(parents=True, exist_ok=True)
    if sys.platform != "linux":
        raise SystemExit("reads /proc: Linux only")
    asyncio.run(main_async(args))


if __name__ == "__main__":
    main()
