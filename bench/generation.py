"""Streaming overhead of Storytool against the floor for its stack, side by side, on loopback.

    .venv/bin/python -m bench.generation                      # SQLite
    .venv/bin/python -m bench.generation --database mariadb   # its own MariaDB database
    .venv/bin/python -m bench.generation --litellm /tmp/litellm-venv/bin/litellm   # with (d)
    (--quick for a short smoke run)

For each scenario a fresh fake OpenAI server (``tests/fakes/openai_server.py``, its own process)
streams a story of ``tokens`` word tokens at ``rate`` tokens per second, and the same load runs
against each target, a single uvicorn worker in its own process:

  a  direct   the fake's ``POST /v1/responses`` stream, read by the load client itself
  a+ direct, draft first: the load client first reads a whole ``POST /v1/chat/completions``
              stream (the draft), then the responses stream: the upstream calls Storytool makes
              before its first delta, with nothing in between
  b  relay    a minimal FastAPI + sse-starlette app forwarding the SDK's refine deltas, its
              SDK client over the same HTTP library as (c)'s (``STORYTOOL_OPENAI_HTTP_CLIENT``,
              aiohttp unless set)
  c  storytool ``POST /api/generate`` with the openai provider (SQLite or MariaDB, local auth);
              the fake answers every call at once (no first-token delay; the draft model writes
              one token; title and recommendations are one more call)
  d  litellm  LiteLLM's proxy (``--litellm``: the ``litellm`` executable of a venv of its own with
              ``litellm[proxy]==1.106.12``; without it (d) is skipped) with an ``openai/`` model
              for the fake: the load client sends it what (a) sends the fake, and LiteLLM passes
              ``POST /v1/responses`` through (``background`` included). Its events are ``data:``
              lines only, no ``event:`` lines

All ask for a background run (``background=true``), as Storytool's refine stage does by default:
the fake serves those through a queue, a few ms slower than a plain stream, and (a), (b) and (d)
must pay that too for the differences to be Storytool's own.

The load client is raw asyncio sockets (HTTP/1.1, chunked SSE), lighter than httpx, recording
when each delta arrives. Figures per target:

  ttft       time from sending the request to the first delta (p50); "added" is over (a). For
             (c) this is end to end: the start transaction and the whole draft call come first
  over a+    (c) only: its ttft minus (a+)'s: what Storytool adds to the same upstream calls
  refine     (c) only: time from the ``stage refine started`` event reaching the client to the
             first delta (p50), minus (a)'s ttft: what Storytool adds to one upstream stream's
             first token, like (b) does. The stage event is written just before the SDK builds
             the refine request, so this leaves out at most that request's preparation
  delay      per-chunk delay: chunk i's offset from the stream's first chunk, minus the mean of
             that offset in (a) for the same scenario (p50/p99); "added" = that, relative to (a)
  gap p99    between consecutive deltas of one stream
  cpu/chunk  CPU seconds of the target's process per delta delivered (for (a): the fake's own;
             for (d): LiteLLM's, which runs as one process)
  rss/stream peak RSS during the run minus RSS before it, per open stream
  complete   streams that ended normally with every delta
  load       the machine's 1-minute load average when the scenario ended (2 cores here)

Then each target's CPU split into a fixed cost per story and a marginal cost per delta, solved
from "10 streams" (50 deltas a story) and "10 x long" (1,000), which differ only in length. In
these, (c)'s deltas are counted from the refine's (its one-token draft streams before them).

Then "realistic pace" (``--only realistic`` runs it alone): upstream streams that start after
0.4 s and then write 60 tokens a second, a 300-token draft and a 300-token refine, at 1 and 10
streams. What a user waits for is text on screen:

  a  direct   the draft call (``POST /v1/chat/completions``) read by the load client: its first
              token is when the upstream has text; "done" is when the draft call ends
  b  relay    a minimal app that streams the draft call's deltas, then the refine's
  c  storytool ``POST /api/generate``: first visible text is its first ``delta`` (the draft's),
              done is its ``done`` event (after title and recommendations)
  d  litellm  the draft call through LiteLLM (``--litellm``): first text through the proxy
"""

from __future__ import annotations

import argparse
import asyncio
import json
import math
import os
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import AsyncIterator, Callable
from contextlib import AsyncExitStack, asynccontextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import openai
import uvicorn
from fastapi import FastAPI, Request
from sqlalchemy import make_url, text
from sse_starlette import EventSourceResponse
from tests.fakes.openai_server import DEFAULT_STORY, Behaviour, FakeOpenAI, tokenize

from storytool.config import Settings, UpstreamHttp
from storytool.db.engine import create_engine
from storytool.db.migrations import upgrade
from storytool.llm.openai import sdk_http_client

API_KEY = "sk-bench"
"""The load client's bearer token: LiteLLM's master key (its keys start with ``sk-``); the other
targets do not check it."""
DRAFT_MODEL = "bench-draft"
REFINE_MODEL = "gpt-4o"
CLOCK_TICKS = os.sysconf("SC_CLK_TCK")
MARIADB_ADMIN_URL = "mysql+asyncmy://root@127.0.0.1:3306/mysql?charset=utf8mb4"
MARIADB_DATABASE = "storytool_bench_generation"
PAGE = os.sysconf("SC_PAGE_SIZE")


@dataclass(frozen=True)
class Scenario:
    name: str
    streams: int
    rate: float | None
    """Tokens per second of each upstream stream; None sends them as fast as it can."""
    tokens: int
    rounds: int = 1
    first_token: float = 0.0
    """Seconds before each upstream stream's first token."""
    draft: int = 0
    """Tokens of the draft call (0: a one-token draft)."""


@dataclass(frozen=True)
class Target:
    name: str
    path: str
    body: dict[str, Any]
    delta: bytes
    done: bytes
    refine_started: bytes | None = None
    """The event that marks the start of the upstream stream, when it is not the request."""
    prelude: tuple[str, dict[str, Any]] | None = None
    """A request read to its end before the stream's, on a connection of its own."""


DIRECT = Target(
    "a direct",
    "/v1/responses",
    {"model": REFINE_MODEL, "input": "이야기", "stream": True, "background": True},
    b"event: response.output_text.delta",
    b"event: response.completed",
)
DIRECT_PIPELINE = Target(
    "a+ direct, draft first",
    DIRECT.path,
    DIRECT.body,
    DIRECT.delta,
    DIRECT.done,
    prelude=(
        "/v1/chat/completions",
        {"model": DRAFT_MODEL, "messages": [{"role": "user", "content": "이야기"}], "stream": True},
    ),
)
RELAY = Target("b relay", "/relay", {}, b"event: delta", b"event: done")
STORYTOOL = Target(
    "c storytool",
    "/api/generate",
    {"user_input": "이야기", "tags": []},
    b'"stage":"refine"',
    b"event: done",
    b'"name":"refine","status":"started"',
)
DRAFT_DIRECT = Target(
    "a direct (draft call)",
    "/v1/chat/completions",
    {"model": DRAFT_MODEL, "messages": [{"role": "user", "content": "이야기"}], "stream": True},
    b'"delta": {"content": ',
    b"[DONE]",
)
PIPELINE_RELAY = Target(
    "b relay (draft, then refine)", "/relay-pipeline", {}, b"event: delta", b"event: done"
)
VISIBLE = Target("c storytool", STORYTOOL.path, STORYTOOL.body, b"event: delta", STORYTOOL.done)
"""Storytool's first visible text: a delta of either stage."""
LITELLM = Target(
    "d litellm",
    DIRECT.path,
    DIRECT.body,
    b'"type":"response.output_text.delta"',
    b'"type":"response.completed"',
)
"""(a)'s request through LiteLLM, whose events have no ``event:`` line, only ``data:``."""
LITELLM_DRAFT = Target(
    "d litellm (draft call)",
    DRAFT_DIRECT.path,
    DRAFT_DIRECT.body,
    b'"delta":{"content":',
    DRAFT_DIRECT.done,
)


@dataclass
class Stream:
    sent: float = 0.0
    refine_started: float | None = None
    arrivals: list[float] = field(default_factory=list)
    completed: bool = False
    ended: float = 0.0


# --- the load client: raw sockets ------------------------------------------------------------


def post(path: str, body: dict[str, Any]) -> bytes:
    data = json.dumps(body).encode()
    return (
        f"POST {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nAuthorization: Bearer {API_KEY}\r\n"
        f"Content-Type: application/json\r\nContent-Length: {len(data)}\r\n"
        f"Accept: text/event-stream\r\n\r\n".encode()
    ) + data


async def read_to_end(port: int, path: str, body: dict[str, Any]) -> None:
    """One whole streamed answer (a draft), as the pipeline reads it before its refine call."""
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    try:
        writer.write(post(path, body))
        received = b""
        while b"[DONE]" not in received:
            chunk = await reader.read(65536)
            if not chunk:
                return
            received += chunk
    finally:
        writer.close()


async def read_stream(port: int, target: Target) -> Stream:
    result = Stream()
    if target.prelude is not None:
        result.sent = time.perf_counter()
        await read_to_end(port, *target.prelude)
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    try:
        writer.write(post(target.path, target.body))
        if target.prelude is None:
            result.sent = time.perf_counter()
        head = await reader.readuntil(b"\r\n\r\n")
        if not head.startswith(b"HTTP/1.1 200"):
            return result
        pending = b""
        while True:
            size = int((await reader.readline()).strip(), 16)
            if size == 0:
                return result
            # sse-starlette ends lines with CRLF, the fake with LF.
            pending += (await reader.readexactly(size)).replace(b"\r\n", b"\n")
            await reader.readexactly(2)
            now = time.perf_counter()
            *events, pending = pending.split(b"\n\n")
            for event in events:
                if target.delta in event:
                    result.arrivals.append(now)
                elif target.refine_started is not None and target.refine_started in event:
                    result.refine_started = now
                elif target.done in event:
                    result.completed = True
                    result.ended = now
                    return result
    except (OSError, asyncio.IncompleteReadError, ValueError):
        return result
    finally:
        writer.close()


# --- servers ---------------------------------------------------------------------------------


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def words(count: int) -> str:
    story = tokenize(DEFAULT_STORY)
    return " ".join(story[i % len(story)].strip() for i in range(count))


def serve_fake(
    port: int, rate: float | None, tokens: int, first_token: float = 0.0, draft: int = 0
) -> None:
    """The fake upstream: ``tokens`` words a story; a one-token draft unless ``draft``."""
    behaviour = Behaviour(
        story=words(tokens),
        texts={DRAFT_MODEL: words(draft) if draft else "초고."},
        tokens_per_second=rate,
        first_token_delay=first_token,
    )
    fake = FakeOpenAI(behaviour, keep_records=False)
    uvicorn.run(fake.app, host="127.0.0.1", port=port, log_level="warning", lifespan="off")


def relay_app(upstream: str) -> FastAPI:
    """The floor: the SDK's refine deltas forwarded as SSE, nothing stored, nothing checked. Its
    SDK client runs over the HTTP library Storytool's does (``STORYTOOL_OPENAI_HTTP_CLIENT``)."""
    http = UpstreamHttp(os.environ.get("STORYTOOL_OPENAI_HTTP_CLIENT", UpstreamHttp.AIOHTTP))

    @asynccontextmanager
    async def lifespan(_app: FastAPI) -> AsyncIterator[dict[str, Any]]:
        client = openai.AsyncOpenAI(
            base_url=upstream,
            api_key="bench",
            max_retries=0,
            http_client=sdk_http_client(http),
        )
        yield {"client": client}
        await client.close()

    app = FastAPI(lifespan=lifespan)

    @app.post("/relay")
    async def relay(request: Request) -> EventSourceResponse:
        client: openai.AsyncOpenAI = request.state.client

        async def events() -> AsyncIterator[dict[str, str]]:
            stream = await client.responses.create(
                model=REFINE_MODEL, input="이야기", stream=True, background=True
            )
            async with stream:
                async for event in stream:
                    if event.type == "response.output_text.delta":
                        yield {"event": "delta", "data": json.dumps({"text": event.delta})}
            yield {"event": "done", "data": "{}"}

        return EventSourceResponse(events())

    @app.post("/relay-pipeline")
    async def relay_pipeline(request: Request) -> EventSourceResponse:
        """The floor for a live draft: the draft call's deltas as they come, then the
        refine's."""
        client: openai.AsyncOpenAI = request.state.client

        async def events() -> AsyncIterator[dict[str, str]]:
            draft = await client.chat.completions.create(
                model=DRAFT_MODEL, messages=[{"role": "user", "content": "이야기"}], stream=True
            )
            async with draft:
                async for chunk in draft:
                    for choice in chunk.choices:
                        if choice.delta.content:
                            yield {
                                "event": "delta",
                                "data": json.dumps({"text": choice.delta.content}),
                            }
            refine = await client.responses.create(
                model=REFINE_MODEL, input="이야기", stream=True, background=True
            )
            async with refine:
                async for event in refine:
                    if event.type == "response.output_text.delta":
                        yield {"event": "delta", "data": json.dumps({"text": event.delta})}
            yield {"event": "done", "data": "{}"}

        return EventSourceResponse(events())

    return app


def serve_relay(port: int, upstream: str) -> None:
    uvicorn.run(relay_app(upstream), host="127.0.0.1", port=port, log_level="warning")


def spawn(args: list[str], env: dict[str, str] | None = None) -> subprocess.Popen[bytes]:
    return subprocess.Popen(
        [sys.executable, *args], env={**os.environ, **(env or {})}, stdout=subprocess.DEVNULL
    )


def wait_listening(port: int, process: subprocess.Popen[bytes]) -> None:
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"server on port {port} exited with {process.returncode}")
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=0.2):
                return
        except OSError:
            time.sleep(0.05)
    raise RuntimeError(f"nothing listens on port {port}")


def healthy(url: str) -> bool:
    try:
        return httpx.get(url, timeout=2).status_code == 200
    except httpx.TransportError:
        return False


def wait_until(
    ready: Callable[[], bool], process: subprocess.Popen[bytes], name: str, timeout_s: float = 120
) -> None:
    deadline = time.monotonic() + timeout_s
    while not ready():
        if process.poll() is not None:
            raise RuntimeError(f"{name} exited with {process.returncode}")
        if time.monotonic() > deadline:
            raise RuntimeError(f"{name} did not start within {timeout_s:g} s")
        time.sleep(0.2)


def stop(*processes: subprocess.Popen[bytes]) -> None:
    """Terminate all, then wait for each; kill one that takes over 20 s."""
    for process in processes:
        process.terminate()
    for process in processes:
        try:
            process.wait(20)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


@dataclass(frozen=True)
class Route:
    """A model group of LiteLLM's proxy: ``name`` as clients send it, served by ``model``
    (``provider/upstream name``) at ``api_base``."""

    name: str
    model: str
    api_base: str
    api_key: str | None = None


def start_litellm(
    executable: str, routes: list[Route], folder: Path, key: str
) -> tuple[int, subprocess.Popen[bytes]]:
    """LiteLLM's proxy on a free port, one process (one uvicorn worker, no children), with its
    config and log in ``folder``. Not waited for: ``wait_litellm``."""
    lines = ["model_list:"]
    for route in routes:
        lines += [
            f"  - model_name: {route.name}",
            "    litellm_params:",
            f"      model: {route.model}",
            f"      api_base: {route.api_base}",
        ]
        if route.api_key is not None:
            lines.append(f"      api_key: {route.api_key}")
    config = folder / "litellm.yaml"
    config.write_text("\n".join(lines) + "\n")
    port = free_port()
    env = {**os.environ, "LITELLM_MASTER_KEY": key, "LITELLM_LOCAL_MODEL_COST_MAP": "True"}
    with (folder / "litellm.log").open("wb") as log:
        process = subprocess.Popen(
            [
                executable,
                "--config",
                str(config),
                "--host",
                "127.0.0.1",
                "--port",
                str(port),
                "--num_workers",
                "1",
            ],
            stdout=log,
            stderr=subprocess.STDOUT,
            env=env,
        )
    return port, process


def wait_litellm(port: int, process: subprocess.Popen[bytes], folder: Path) -> str:
    """The proxy's URL once it is live; failing, the end of its log says why."""
    url = f"http://127.0.0.1:{port}"
    try:
        wait_until(lambda: healthy(f"{url}/health/liveliness"), process, "LiteLLM", 180)
    except RuntimeError as error:
        log = (folder / "litellm.log").read_text(errors="replace").splitlines()[-20:]
        raise RuntimeError("\n".join([str(error), *log])) from None
    return url


def cpu_seconds(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / CLOCK_TICKS


def rss_bytes(pid: int) -> int:
    return int(Path(f"/proc/{pid}/statm").read_text().split()[1]) * PAGE


# --- measuring -------------------------------------------------------------------------------


@dataclass
class Measured:
    streams: list[Stream]
    cpu_s: float
    rss_growth: int


async def measure(port: int, pid: int, target: Target, scenario: Scenario) -> Measured:
    streams: list[Stream] = []
    cpu_before = cpu_seconds(pid)
    rss_before = peak = rss_bytes(pid)
    for _round in range(scenario.rounds):
        tasks = [asyncio.create_task(read_stream(port, target)) for _ in range(scenario.streams)]
        while not all(task.done() for task in tasks):
            peak = max(peak, rss_bytes(pid))
            await asyncio.wait(tasks, timeout=0.05)
        streams += [task.result() for task in tasks]
    return Measured(streams, cpu_seconds(pid) - cpu_before, max(0, peak - rss_before))


def pct(values: list[float], q: float) -> float:
    if not values:
        return float("nan")
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(q / 100 * (len(ordered) - 1)))]


def offsets(stream: Stream) -> list[float]:
    return [arrival - stream.arrivals[0] for arrival in stream.arrivals]


def report(scenario: Scenario, results: dict[str, Measured]) -> list[str]:
    direct = results[DIRECT.name].streams
    expected = [
        statistics.fmean(column)
        for column in zip(*(offsets(s) for s in direct if s.completed), strict=False)
    ]
    ttft_a = pct([s.arrivals[0] - s.sent for s in direct if s.arrivals], 50)
    ttft_pipeline = pct(
        [s.arrivals[0] - s.sent for s in results[DIRECT_PIPELINE.name].streams if s.arrivals], 50
    )
    load = os.getloadavg()[0]
    rows = []
    for name, measured in results.items():
        done = [s for s in measured.streams if s.completed and len(s.arrivals) == scenario.tokens]
        ttft = pct([s.arrivals[0] - s.sent for s in measured.streams if s.arrivals], 50)
        refine = pct(
            [
                s.arrivals[0] - s.refine_started
                for s in measured.streams
                if s.arrivals and s.refine_started is not None
            ],
            50,
        )
        delays = [
            offset - expected[i]
            for s in done
            for i, offset in enumerate(offsets(s))
            if i < len(expected)
        ]
        gaps = [b - a for s in done for a, b in zip(s.arrivals, s.arrivals[1:], strict=False)]
        chunks = sum(len(s.arrivals) for s in measured.streams)
        cpu = measured.cpu_s / chunks * 1e6 if chunks else float("nan")
        rss = measured.rss_growth / scenario.streams / 1024
        added = "" if name == DIRECT.name else f" ({(ttft - ttft_a) * 1e3:+.1f})"
        over_pipeline = f"{(ttft - ttft_pipeline) * 1e3:+.1f}" if name == STORYTOOL.name else ""
        from_refine = (
            "" if math.isnan(refine) else f"{refine * 1e3:.1f} ({(refine - ttft_a) * 1e3:+.1f})"
        )
        rows.append(
            f"| {scenario.name} | {name} | {ttft * 1e3:.1f}{added} | {over_pipeline} | "
            f"{from_refine} | "
            f"{pct(delays, 50) * 1e3:.2f} / {pct(delays, 99) * 1e3:.2f} | "
            f"{pct(gaps, 99) * 1e3:.1f} | {cpu:.0f} | {rss:.1f} | "
            f"{len(done)}/{len(measured.streams)} | {load:.1f} |"
        )
    return rows


def report_visible(scenario: Scenario, results: dict[str, Measured]) -> list[str]:
    """Time to the first visible text and to the end, per target; "added" is over the
    upstream's own first token (the draft call read directly)."""
    upstream = pct(
        [s.arrivals[0] - s.sent for s in results[DRAFT_DIRECT.name].streams if s.arrivals], 50
    )
    load = os.getloadavg()[0]
    rows = []
    for name, measured in results.items():
        first = [s.arrivals[0] - s.sent for s in measured.streams if s.arrivals]
        ended = [s.ended - s.sent for s in measured.streams if s.completed]
        rows.append(
            f"| {scenario.name} | {name} | {pct(first, 50) * 1e3:.0f} "
            f"({(pct(first, 50) - upstream) * 1e3:+.1f}) | {pct(first, 99) * 1e3:.0f} "
            f"({(pct(first, 99) - upstream) * 1e3:+.1f}) | {pct(ended, 50):.2f} / "
            f"{pct(ended, 99):.2f} | {len(ended)}/{len(measured.streams)} | {load:.1f} |"
        )
    return rows


def cpu_split(short: dict[str, Measured], long: dict[str, Measured]) -> list[str]:
    """Each target's CPU as a fixed cost per story plus a marginal cost per delta, solved from
    two scenarios that differ only in story length (``c = story * stories + delta * deltas``)."""
    rows = []
    for name in short:
        runs = [
            (m.cpu_s, len(m.streams), sum(len(s.arrivals) for s in m.streams))
            for m in (short[name], long[name])
        ]
        (c1, n1, d1), (c2, n2, d2) = runs
        determinant = n1 * d2 - n2 * d1
        if determinant == 0:
            continue
        story = (c1 * d2 - c2 * d1) / determinant
        delta = (n1 * c2 - n2 * c1) / determinant
        rows.append(f"| {name} | {story * 1e3:.2f} | {delta * 1e6:.0f} |")
    return rows


OVERHEAD_TARGETS = (
    (DIRECT, "fake"),
    (DIRECT_PIPELINE, "fake"),
    (RELAY, "relay"),
    (STORYTOOL, "app"),
    (LITELLM, "litellm"),
)
VISIBLE_TARGETS = (
    (DRAFT_DIRECT, "fake"),
    (PIPELINE_RELAY, "relay"),
    (VISIBLE, "app"),
    (LITELLM_DRAFT, "litellm"),
)
LITELLM_SKIPPED = "target d (LiteLLM) skipped: pass --litellm /path/to/venv/bin/litellm"


def spawn_storytool(port: int, upstream: str, database_url: str) -> subprocess.Popen[bytes]:
    """Storytool as target c: one uvicorn worker, the openai provider on ``upstream``."""
    return spawn(
        [
            "-m",
            "uvicorn",
            "--factory",
            "storytool.main:create_app",
            "--port",
            str(port),
            "--log-level",
            "warning",
        ],
        env={
            "STORYTOOL_LLM_PROVIDER": "openai",
            "STORYTOOL_OPENAI_BASE_URL": upstream,
            "STORYTOOL_OPENAI_API_KEY": "bench",
            "STORYTOOL_FINE_TUNED_MODEL": DRAFT_MODEL,
            "STORYTOOL_REFINE_MODEL": REFINE_MODEL,
            "STORYTOOL_DATABASE_URL": database_url,
            "STORYTOOL_MAX_RUNNING_TOTAL": "10000",
            "STORYTOOL_MAX_RUNNING_PER_USER": "10000",
            "STORYTOOL_EMBEDDER": "hashing",
            "STORYTOOL_RATE_LIMIT": "1000000/minute",
        },
    )


async def run_scenario(
    scenario: Scenario,
    database_url: str,
    targets: tuple[tuple[Target, str], ...] = OVERHEAD_TARGETS,
    litellm: str | None = None,
) -> dict[str, Measured]:
    """The scenario against each target; those on LiteLLM only with ``litellm`` (its
    executable)."""
    targets = tuple((t, server) for t, server in targets if server != "litellm" or litellm)
    fake_port, relay_port, app_port = free_port(), free_port(), free_port()
    upstream = f"http://127.0.0.1:{fake_port}/v1"
    rate = "none" if scenario.rate is None else str(scenario.rate)
    pace = [rate, str(scenario.tokens), str(scenario.first_token), str(scenario.draft)]
    fake = spawn(["-m", "bench.generation", "fake", str(fake_port), *pace])
    relay = spawn(["-m", "bench.generation", "relay", str(relay_port), upstream])
    app = spawn_storytool(app_port, upstream, database_url)
    servers = [fake, relay, app]
    where = {"fake": (fake_port, fake), "relay": (relay_port, relay), "app": (app_port, app)}
    folder = Path(tempfile.mkdtemp(prefix="bench-generation-"))
    try:
        if litellm is not None and any(server == "litellm" for _t, server in targets):
            # The fake's own model names, so the load client sends LiteLLM what (a) sends.
            routes = [
                Route(model, f"openai/{model}", upstream, "bench")
                for model in (DRAFT_MODEL, REFINE_MODEL)
            ]
            where["litellm"] = start_litellm(litellm, routes, folder, API_KEY)
            servers.append(where["litellm"][1])
        for server, (port, process) in where.items():
            if server == "litellm":
                wait_litellm(port, process, folder)
            else:
                wait_listening(port, process)
        results: dict[str, Measured] = {}
        for target, server in targets:
            port, pid = where[server][0], where[server][1].pid
            await measure(port, pid, target, Scenario("warm-up", 2, None, 3))
            results[target.name] = await measure(port, pid, target, scenario)
        return results
    finally:
        stop(*servers)
        shutil.rmtree(folder)


@asynccontextmanager
async def sqlite_database() -> AsyncIterator[str]:
    with tempfile.TemporaryDirectory() as folder:
        yield f"sqlite+aiosqlite:///{Path(folder) / 'bench.db'}"


@asynccontextmanager
async def mariadb_database(admin_url: str, name: str = MARIADB_DATABASE) -> AsyncIterator[str]:
    """A database of its own (``name``: one per benchmark, so two can run at once) on the
    server behind ``admin_url``, dropped at the end."""
    admin = create_engine(Settings(), url=admin_url)
    drop = text(f"DROP DATABASE IF EXISTS `{name}`")
    try:
        async with admin.begin() as connection:
            await connection.execute(drop)
            await connection.execute(
                text(f"CREATE DATABASE `{name}` CHARACTER SET utf8mb4 COLLATE utf8mb4_unicode_ci")
            )
        yield make_url(admin_url).set(database=name).render_as_string(hide_password=False)
    finally:
        async with admin.begin() as connection:
            await connection.execute(drop)
        await admin.dispose()


async def realistic(url: str, quick: bool, litellm: str | None) -> None:
    """First visible text and completion at a real model's pace (module docstring)."""
    print(
        "\n| scenario | target | first text p50 ms (over upstream) | p99 ms (over upstream) "
        "| done p50 / p99 s | complete | load |\n|---|---|---|---|---|---|---|"
    )
    for streams in (1, 10):
        scenario = Scenario(
            f"realistic, {streams} stream{'s' if streams > 1 else ''}",
            streams,
            60.0,
            300,
            rounds=(2 if quick else 10) if streams == 1 else (1 if quick else 3),
            first_token=0.4,
            draft=300,
        )
        results = await run_scenario(scenario, url, VISIBLE_TARGETS, litellm)
        for row in report_visible(scenario, results):
            print(row, flush=True)


async def main_async(
    quick: bool, database: str, admin_url: str, only: set[str], litellm: str | None
) -> None:
    short = Scenario("10 streams", 10, None, 50, rounds=2 if quick else 20)
    long = Scenario("10 x long", 10, None, 200 if quick else 1000)
    scenarios = [
        Scenario("1 stream", 1, None, 50, rounds=3 if quick else 20),
        short,
        Scenario("100 x 50/s", 100, 50.0, 50 if quick else 150),
        Scenario("1000 x 10/s", 200 if quick else 1000, 10.0, 20 if quick else 50),
        long,
    ]
    async with AsyncExitStack() as stack:
        if database == "mariadb":
            url = await stack.enter_async_context(mariadb_database(admin_url))
        else:
            url = await stack.enter_async_context(sqlite_database())
        await upgrade(url)
        print(f"database: {database}; started {time.strftime('%H:%M:%S', time.gmtime())} UTC")
        if litellm is None:
            print(LITELLM_SKIPPED)
        if only == {"realistic"}:
            await realistic(url, quick, litellm)
            return
        print(
            "| scenario | target | ttft p50 ms (added) | added over a+ ms "
            "| refine → first delta p50 ms (added) | delay p50 / p99 ms | gap p99 ms "
            "| cpu µs/chunk | rss KB/stream | complete | load |"
        )
        print("|---|---|---|---|---|---|---|---|---|---|---|")
        measured = {}
        for scenario in scenarios:
            if only and scenario.name not in only:
                continue
            measured[scenario.name] = await run_scenario(scenario, url, litellm=litellm)
            for row in report(scenario, measured[scenario.name]):
                print(row, flush=True)
        if short.name not in measured or long.name not in measured:
            return
        print(
            f"\nCPU split from '{short.name}' ({short.tokens} deltas a story) and '{long.name}' "
            f"({long.tokens}):\n\n| target | ms per story | µs per delta |\n|---|---|---|"
        )
        for row in cpu_split(measured[short.name], measured[long.name]):
            print(row)


def main() -> None:
    if len(sys.argv) > 1 and sys.argv[1] == "fake":
        port, rate, tokens, first_token, draft = sys.argv[2:7]
        serve_fake(
            int(port),
            None if rate == "none" else float(rate),
            int(tokens),
            float(first_token),
            int(draft),
        )
        return
    if len(sys.argv) > 1 and sys.argv[1] == "relay":
        serve_relay(int(sys.argv[2]), sys.argv[3])
        return
    parser = argparse.ArgumentParser(description="Streaming overhead, side by side.")
    parser.add_argument("--quick", action="store_true", help="Fewer rounds and streams.")
    parser.add_argument(
        "--database",
        choices=["sqlite", "mariadb"],
        default="sqlite",
        help="Storytool's database: a temporary SQLite file, or a MariaDB database of its own.",
    )
    parser.add_argument(
        "--mariadb-url",
        default=MARIADB_ADMIN_URL,
        help="An admin URL on the MariaDB server; the bench makes its own database beside it.",
    )
    parser.add_argument(
        "--only",
        action="append",
        default=[],
        metavar="SCENARIO",
        help='Run this scenario only (repeatable), e.g. --only "1 stream".',
    )
    parser.add_argument(
        "--litellm",
        metavar="PATH",
        help="The litellm executable of a venv with litellm[proxy]==1.106.12: target d.",
    )
    arguments = parser.parse_args()
    if arguments.litellm is not None and not os.access(arguments.litellm, os.X_OK):
        parser.error(f"--litellm {arguments.litellm}: not an executable")
    asyncio.run(
        main_async(
            arguments.quick,
            arguments.database,
            arguments.mariadb_url,
            set(arguments.only),
            arguments.litellm,
        )
    )


if __name__ == "__main__":
    main()
