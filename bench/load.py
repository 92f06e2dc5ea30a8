"""Many concurrent story streams on one Storytool process, against the fake OpenAI upstream.

    .venv/bin/python -m bench.load                      # 1,000 streams at once, then report
    .venv/bin/python -m bench.load --soak-minutes 10    # steady load, RSS sampled, flat or not

Two subprocesses on 127.0.0.1: the fake OpenAI server (``python -m tests.fakes.openai_server``)
and ``storytool serve`` (one uvicorn worker, openai provider, header auth so the streams belong to
many users, SQLite in a temporary folder unless ``--database-url`` names another database). The
load client is raw asyncio sockets speaking HTTP/1.0, so each answer is the bare event stream,
ended by the server closing the connection; a stream counts as complete when it carries meta,
deltas and a ``done`` event, and afterwards every conversation must be ``completed`` in the
database with the full story stored (none lost).

A refusal (429/503) is waited out as its Retry-After asks and tried again, as a client should.
Reported: streams complete/lost, refusals, the most streams open at once, wall time, time to
headers and to the last event (p50/p99), the server's RSS before, at peak and after (``/proc``),
RSS per stream, and the server's CPU seconds (total and per stream). The soak keeps
``--soak-concurrency`` streams running, each replaced as it ends, and samples RSS every
``--sample-seconds``. Everything stops by itself.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import random
import re
import statistics
import sys
import tempfile
import time
from collections import Counter
from dataclasses import dataclass
from pathlib import Path

from sqlalchemy import func, select
from tests.subprocesses import free_port, subprocess_on

from storytool.config import Settings
from storytool.db.engine import create_engine
from storytool.db.migrations import upgrade
from storytool.models import Conversation, ConversationData, ConversationStatus

CLOCK_TICKS = os.sysconf("SC_CLK_TCK")
PAGE_BYTES = os.sysconf("SC_PAGE_SIZE")
PROMPT = "한 선비가 과거를 보러 길을 떠나니"
TERMINAL = ("done", "cancelled", "error")


def rss_bytes(pid: int) -> int:
    with open(f"/proc/{pid}/statm") as statm:
        return int(statm.read().split()[1]) * PAGE_BYTES


def cpu_seconds(pid: int) -> float:
    with open(f"/proc/{pid}/stat") as stat:
        fields = stat.read().rpartition(")")[2].split()
    return (int(fields[11]) + int(fields[12])) / CLOCK_TICKS  # utime + stime


@dataclass
class StreamResult:
    status: int
    events: Counter[str]
    story: str
    conversation_id: str | None
    headers_s: float
    total_s: float
    refusals: int

    @property
    def complete(self) -> bool:
        return (
            self.status == 200
            and self.events["meta"] == 1
            and self.events["delta"] > 0
            and self.events["done"] == 1
        )


class OpenStreams:
    """Streams between their headers and their end, and the most seen at once."""

    def __init__(self) -> None:
        self.now = 0
        self.peak = 0

    def opened(self) -> None:
        self.now += 1
        self.peak = max(self.peak, self.now)

    def closed(self) -> None:
        self.now -= 1


async def one_stream(port: int, user: str, open_streams: OpenStreams) -> StreamResult:
    """POST /api/generate over HTTP/1.0 and read the event stream to the server's close; a
    refusal (429/503) is waited out as its Retry-After says, then tried again, as a client
    should."""
    body = json.dumps({"user_input": PROMPT, "tags": ["모험"]}).encode()
    request = (
        f"POST /api/generate HTTP/1.0\r\nHost: 127.0.0.1\r\nX-User-Id: {user}\r\n"
        f"Content-Type: application/json\r\nContent-Length: {len(body)}\r\n\r\n"
    ).encode() + body
    started = time.perf_counter()
    refusals = 0
    while True:
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        try:
            writer.write(request)
            await writer.drain()
            head = await reader.readuntil(b"\r\n\r\n")
            headers_s = time.perf_counter() - started
            status = int(head.split(b" ", 2)[1])
            if status in (429, 503):
                refusals += 1
                wait = re.search(rb"(?i)\r\nretry-after: *(\d+)", head)
                await asyncio.sleep(int(wait.group(1)) if wait else 1 + random.random())
                continue
            open_streams.opened()
            payload = await reader.read()
            open_streams.closed()
            break
        finally:
            writer.close()
    events: Counter[str] = Counter()
    story: list[str] = []
    conversation_id = None
    for block in payload.decode().replace("\r\n", "\n").split("\n\n"):
        fields = dict(
            line.split(": ", 1) for line in block.split("\n") if ": " in line and line[0] != ":"
        )
        name = fields.get("event")
        if name is None:
            continue
        events[name] += 1
        data = json.loads(fields["data"])
        if name == "delta":
            story.append(data["text"])
        elif name == "meta":
            conversation_id = data["conversation_id"]
    total_s = time.perf_counter() - started
    return StreamResult(
        status, events, "".join(story), conversation_id, headers_s, total_s, refusals
    )


async def sample_rss(pid: int, every_s: float, samples: list[tuple[float, int]]) -> None:
    started = time.monotonic()
    while True:
        samples.append((time.monotonic() - started, rss_bytes(pid)))
        await asyncio.sleep(every_s)


async def stored_stories(url: str, results: list[StreamResult]) -> tuple[int, int]:
    """Conversations completed in the database, and how many of them hold the streamed story."""
    streamed = {r.conversation_id: r.story for r in results if r.conversation_id is not None}
    engine = create_engine(Settings(_env_file=None), url=url)  # type: ignore[call-arg]
    try:
        async with engine.connect() as connection:
            completed = await connection.scalar(
                select(func.count())
                .select_from(Conversation)
                .where(Conversation.status == ConversationStatus.COMPLETED)
            )
            rows = await connection.execute(
                select(ConversationData.conversation_id, ConversationData.story)
            )
            matching = sum(1 for cid, story in rows if cid in streamed and streamed[cid] == story)
    finally:
        await engine.dispose()
    return completed or 0, matching


def percentile(values: list[float], share: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(share * len(ordered)))]


def mib(value: float) -> str:
    return f"{value / 2**20:.1f} MiB"


async def burst(port: int, pid: int, url: str, streams: int, users: int) -> None:
    samples: list[tuple[float, int]] = []
    rss_before, cpu_before = rss_bytes(pid), cpu_seconds(pid)
    sampler = asyncio.create_task(sample_rss(pid, 0.2, samples))
    open_streams = OpenStreams()
    started = time.perf_counter()
    outcomes = await asyncio.gather(
        *(one_stream(port, f"user-{i % users}", open_streams) for i in range(streams)),
        return_exceptions=True,
    )
    wall = time.perf_counter() - started
    sampler.cancel()
    cpu = cpu_seconds(pid) - cpu_before
    await asyncio.sleep(2)  # the tasks' last writes land after their terminal event
    results = [outcome for outcome in outcomes if isinstance(outcome, StreamResult)]
    failures = Counter(type(o).__name__ for o in outcomes if isinstance(o, BaseException))
    complete = [r for r in results if r.complete]
    completed_rows, stored = await stored_stories(url, results)
    peak = max(rss for _t, rss in samples)
    refused = sum(r.refusals for r in results)
    print(f"streams            {streams} started at once ({users} users)")
    print(f"open at once       {open_streams.peak} at the peak")
    print(f"complete           {len(complete)}  lost {streams - len(complete)}  {dict(failures)}")
    print(f"refusals           {refused} answers 429/503, waited out and tried again")
    print(f"stored completed   {completed_rows}; story stored == story streamed: {stored}")
    print(f"wall time          {wall:.1f} s")
    headers = [r.headers_s for r in results]
    totals = [r.total_s for r in complete]
    if headers:
        print(
            f"to headers         p50 {percentile(headers, 0.5):.2f} s  "
            f"p99 {percentile(headers, 0.99):.2f} s"
        )
    if totals:
        print(
            f"to last event      p50 {percentile(totals, 0.5):.2f} s  "
            f"p99 {percentile(totals, 0.99):.2f} s"
        )
        print(f"deltas per stream  {statistics.mean(r.events['delta'] for r in complete):.0f}")
    after = rss_bytes(pid)
    print(f"server RSS         before {mib(rss_before)}  peak {mib(peak)}  after {mib(after)}")
    print(f"RSS per stream     {(peak - rss_before) / streams / 1024:.1f} KiB at peak")
    print(f"server CPU         {cpu:.1f} s total, {cpu / streams * 1000:.1f} ms per stream")


async def soak(port: int, pid: int, minutes: float, concurrency: int, every_s: float) -> None:
    deadline = time.monotonic() + minutes * 60
    outcomes: Counter[str] = Counter()

    async def worker(index: int) -> None:
        while time.monotonic() < deadline:
            try:
                result = await one_stream(port, f"user-{index}", open_streams)
                outcomes["complete" if result.complete else f"incomplete {result.status}"] += 1
            except OSError as exc:
                outcomes[type(exc).__name__] += 1

    samples: list[tuple[float, int]] = []
    open_streams = OpenStreams()
    cpu_before = cpu_seconds(pid)
    sampler = asyncio.create_task(sample_rss(pid, every_s, samples))
    await asyncio.gather(*(worker(i) for i in range(concurrency)))
    sampler.cancel()
    cpu = cpu_seconds(pid) - cpu_before
    print(f"soak               {minutes} min, {concurrency} streams at once, replaced as they end")
    print(f"streams            {dict(outcomes)}; open at once at the peak: {open_streams.peak}")
    print(f"server CPU         {cpu:.1f} s ({cpu / (minutes * 60) * 100:.0f}% of one core)")
    print("RSS samples (s, MiB):")
    for at, rss in samples:
        print(f"  {at:6.0f}  {rss / 2**20:7.1f}")
    warm = [rss for at, rss in samples if at >= 60] or [rss for _at, rss in samples]
    third = max(1, len(warm) // 3)
    first, last = statistics.mean(warm[:third]), statistics.mean(warm[-third:])
    print(
        f"after warm-up      first third mean {mib(first)}, last third mean {mib(last)}, "
        f"drift {mib(last - first)}"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--streams", type=int, default=1000, help="Concurrent streams (burst).")
    parser.add_argument("--users", type=int, default=100, help="Users the streams belong to.")
    parser.add_argument("--story-tokens", type=int, default=60, help="Refine tokens per story.")
    parser.add_argument("--tokens-per-second", type=float, default=20.0, help="Upstream pace.")
    parser.add_argument("--database-url", help="Default: SQLite in a temporary folder.")
    parser.add_argument("--db-pool-size", type=int, default=50, help="Pool (and as much overflow).")
    parser.add_argument("--soak-minutes", type=float, help="Run the soak instead of the burst.")
    parser.add_argument("--soak-concurrency", type=int, default=200)
    parser.add_argument("--sample-seconds", type=float, default=10.0)
    args = parser.parse_args()

    with tempfile.TemporaryDirectory() as folder:
        url = args.database_url or f"sqlite+aiosqlite:///{Path(folder) / 'bench.db'}"
        asyncio.run(upgrade(url))
        fake_port, app_port = free_port(), free_port()
        streams = max(args.streams, args.soak_concurrency)
        env = os.environ | {
            "STORYTOOL_DATABASE_URL": url,
            "STORYTOOL_DATA_DIR": folder,
            "STORYTOOL_INDEX_DIR": folder,
            "STORYTOOL_EMBEDDER": "hashing",
            "STORYTOOL_LLM_PROVIDER": "openai",
            "STORYTOOL_OPENAI_API_KEY": "bench",
            "STORYTOOL_OPENAI_BASE_URL": f"http://127.0.0.1:{fake_port}/v1",
            "STORYTOOL_AUTH_MODE": "header",
            "STORYTOOL_RATE_LIMIT": "100000/second",
            "STORYTOOL_MAX_RUNNING_TOTAL": str(streams),
            "STORYTOOL_MAX_RUNNING_PER_USER": str(streams),
            "STORYTOOL_DB_POOL_SIZE": str(args.db_pool_size),
            "STORYTOOL_DB_MAX_OVERFLOW": str(args.db_pool_size),
        }
        fake = [
            sys.executable,
            *("-m", "tests.fakes.openai_server", "--port", str(fake_port)),
            *("--tokens-per-second", str(args.tokens_per_second)),
            *("--story-tokens", str(args.story_tokens)),
        ]
        server = [sys.executable, "-m", "storytool", "serve", "--port", str(app_port)]
        with subprocess_on(fake_port, fake, env), subprocess_on(app_port, server, env) as pid:
            if args.soak_minutes:
                asyncio.run(
                    soak(
                        app_port, pid, args.soak_minutes, args.soak_concurrency, args.sample_seconds
                    )
                )
            else:
                asyncio.run(burst(app_port, pid, url, args.streams, args.users))


if __name__ == "__main__":
    main()
