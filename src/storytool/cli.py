"""The ``storytool`` command line."""

from __future__ import annotations

import asyncio
import os
import re
from collections.abc import Awaitable, Callable, Iterator
from contextlib import contextmanager
from enum import StrEnum
from pathlib import Path
from typing import Annotated

import httpx
import typer
import uvicorn
from pydantic import ValidationError
from rich.console import Console
from rich.progress import MofNCompleteColumn, Progress

from storytool.client import (
    CancelledEvent,
    DeltaEvent,
    ErrorEvent,
    MetaEvent,
    RecommendationsEvent,
    StageEvent,
    StorytoolClient,
    StorytoolClientError,
    TitleEvent,
)
from storytool.config import ENV_PREFIX, AuthMode, Settings, describe_settings_error
from storytool.db import migrations
from storytool.evaluations.schemas import Reason
from storytool.generation.story import StoryLength
from storytool.llm import build_client
from storytool.llm.base import Capabilities, ProviderError
from storytool.logging import logging_config
from storytool.models import Rating
from storytool.search.builder import CorpusError, build_index
from storytool.search.embedders import EmbeddingError, build_embedder
from storytool.search.index import Manifest
from storytool.threads.export import UNTITLED

app = typer.Typer(help="Storytool: streamed Korean classical-style stories.", no_args_is_help=True)
db_app = typer.Typer(help="Database schema.", no_args_is_help=True)
app.add_typer(db_app, name="db")
index_app = typer.Typer(help="Search indexes.", no_args_is_help=True)
app.add_typer(index_app, name="index")
llm_app = typer.Typer(help="The model server.", no_args_is_help=True)
app.add_typer(llm_app, name="llm")

CURSOR_SECRET = f"{ENV_PREFIX}HISTORY_CURSOR_SECRET"


def load_settings() -> Settings:
    try:
        return Settings()
    except ValidationError as exc:
        typer.echo(describe_settings_error(exc), err=True)
        raise typer.Exit(code=2) from exc


def _prepare_database(settings: Settings) -> str:
    if settings.database_url is None:
        settings.data_dir.mkdir(parents=True, exist_ok=True)
    return settings.effective_database_url


@app.command()
def serve(
    host: Annotated[str, typer.Option(help="Interface to listen on.")] = "127.0.0.1",
    port: Annotated[int, typer.Option(help="TCP port.")] = 8000,
    workers: Annotated[int, typer.Option(min=1, help="Worker processes.")] = 1,
) -> None:
    """Serve the API. On the embedded SQLite default, migrates the database first."""
    settings = load_settings()
    if workers > 1 and settings.instance_id:
        # Every worker would take the one id: a worker restarted by uvicorn would then end its
        # siblings' running stories as its own leftovers, and cancels would reach any of them.
        typer.echo(
            "STORYTOOL_INSTANCE_ID names one process; with --workers "
            f"{workers} leave it unset so that each worker takes an id of its own",
            err=True,
        )
        raise typer.Exit(code=2)
    if workers > 1 and "history_cursor_secret" not in settings.model_fields_set:
        # Each worker would draw a key of its own, and a history page's cursor would be refused
        # by every worker but the one that signed it.
        if settings.auth_mode is not AuthMode.LOCAL:
            typer.echo(
                f"{CURSOR_SECRET} is unset: with --workers {workers} set one value (at least "
                "32 bytes) for every worker and replica, so that the next page of a history "
                "list is found on any of them",
                err=True,
            )
            raise typer.Exit(code=2)
        # One machine, one user: the workers share a key drawn here (it dies with the server).
        os.environ[CURSOR_SECRET] = settings.history_cursor_secret.get_secret_value()
    url = _prepare_database(settings)
    if settings.is_sqlite:
        asyncio.run(migrations.upgrade(url))
    uvicorn.run(
        "storytool.main:create_app",
        factory=True,
        host=host,
        port=port,
        workers=workers,
        log_config=logging_config(),
    )


@llm_app.command("check")
def llm_check() -> None:
    """Asks the model server at STORYTOOL_OPENAI_BASE_URL what it can do (a few tiny calls) and
    says, in words, what Storytool will do there and which setting changes it."""
    settings = load_settings()
    client = build_client(settings)
    if client is None:
        typer.echo("provider: offline (no model server; set STORYTOOL_OPENAI_BASE_URL or a key)")
        return

    async def check() -> Capabilities:
        try:
            return await client.check()
        finally:
            await client.aclose()

    try:
        found = asyncio.run(check())
    except ProviderError as exc:
        typer.echo(
            f"the model server at {settings.openai_base_url} failed: {exc.message}", err=True
        )
        raise typer.Exit(code=1) from exc

    def said(value: bool | None) -> str:
        return "unknown" if value is None else "yes" if value else "no"

    typer.echo(f"server: {settings.openai_base_url or 'https://api.openai.com/v1'}")
    typer.echo(f"responses api: {said(found.responses)}")
    typer.echo(f"background runs (cancel/resume by id): {said(found.background)}")
    typer.echo(f"structured output, responses json_schema: {said(found.json_schema)}")
    typer.echo(f"structured output, chat json_schema: {said(found.chat_json_schema)}")
    for note in found.notes:
        typer.echo(f"- {note}")


@db_app.command("upgrade")
def db_upgrade(
    revision: Annotated[str, typer.Argument(help="Target revision.")] = "head",
) -> None:
    """Apply the schema migrations to the configured database."""
    settings = load_settings()
    asyncio.run(migrations.upgrade(_prepare_database(settings), revision))
    typer.echo(f"database at {revision}")


class _ProgressLines:
    """Progress as plain lines, one per tenth of the work, for output that is not a terminal (a
    pipe, a log, CI): there a bar's redraws arrive as one garbled line."""

    STEPS = 10

    def __init__(self, label: str) -> None:
        self._label = label
        self._total = 0
        self._done = 0
        self._step = 0

    def start(self, total: int) -> None:
        self._total = total
        typer.echo(f"{self._label}: 0/{total}")

    def advance(self, count: int) -> None:
        self._done += count
        step = self._done * self.STEPS // max(self._total, 1)
        if step > self._step or self._done >= self._total:
            self._step = step
            typer.echo(f"{self._label}: {self._done}/{self._total}")


@contextmanager
def _progress(label: str) -> Iterator[tuple[Callable[[int], None], Callable[[int], None]]]:
    """``(start(total), advance(count))`` of a progress bar on a terminal, plain lines elsewhere."""
    if not Console().is_terminal:
        lines = _ProgressLines(label)
        yield lines.start, lines.advance
        return
    with Progress(*Progress.get_default_columns(), MofNCompleteColumn()) as progress:
        task = progress.add_task(label, total=None)
        yield (
            lambda total: progress.update(task, total=total),
            lambda count: progress.advance(task, count),
        )


async def _build_index(settings: Settings, corpus: Path, name: str) -> Manifest:
    embedder = build_embedder(settings)
    try:
        with _progress(f"embedding with {embedder.name}") as (start, advance):
            return await build_index(
                settings, corpus, name=name, embedder=embedder, on_read=start, on_batch=advance
            )
    finally:
        await embedder.aclose()


@index_app.command("build")
def index_build(
    corpus: Annotated[
        Path, typer.Argument(exists=True, dir_okay=False, help="JSON Lines corpus file.")
    ],
    name: Annotated[str, typer.Option(help="Name of the corpus and of its index files.")] = "demo",
) -> None:
    """Load a corpus into the database (replacing that corpus' passages), embed it in batches and
    write indexes/<name>.faiss with its manifest. A running server swaps the new index in."""
    if not re.fullmatch(r"[A-Za-z0-9_-]+", name):
        typer.echo(f"--name {name!r}: use letters, digits, '-' and '_' only", err=True)
        raise typer.Exit(code=2)
    settings = load_settings()
    url = _prepare_database(settings)
    if settings.is_sqlite:
        asyncio.run(migrations.upgrade(url))
    try:
        manifest = asyncio.run(_build_index(settings, corpus, name))
    except (CorpusError, EmbeddingError) as exc:
        typer.echo(str(exc), err=True)
        raise typer.Exit(code=1) from exc
    typer.echo(
        f"index {name!r}: {manifest.count} passages, {manifest.embedder} "
        f"({manifest.dimension}-d, {manifest.index_type}) in {manifest.build_seconds} s "
        f"-> {settings.index_dir / name}.faiss"
    )


class StoryLengthChoice(StrEnum):
    SHORT = "short"
    MEDIUM = "medium"
    LONG = "long"


ServerUrl = Annotated[
    str, typer.Option("--url", help="A running Storytool server.", envvar="STORYTOOL_URL")
]
User = Annotated[str | None, typer.Option("--user", help="X-User-Id (auth_mode=header).")]
Token = Annotated[
    str | None,
    typer.Option("--token", help="Bearer token (auth_mode=jwt).", envvar="STORYTOOL_TOKEN"),
]
DEFAULT_URL = "http://127.0.0.1:8000"


def _call(
    url: str, user: str | None, token: str | None, work: Callable[[StorytoolClient], Awaitable[int]]
) -> None:
    """Runs ``work`` with a client of the server and exits with its code; a server that cannot be
    reached or refuses the request is a message on stderr and exit code 1."""

    async def run() -> int:
        async with StorytoolClient(url, user_id=user, token=token) as client:
            return await work(client)

    try:
        code = asyncio.run(run())
    except httpx.TransportError as exc:
        typer.echo(f"cannot reach {url}: {exc}", err=True)
        code = 1
    except StorytoolClientError as exc:
        typer.echo(f"refused: {exc}", err=True)
        code = 1
    raise typer.Exit(code=code)


@app.command()
def generate(
    prompt: Annotated[str, typer.Argument(help="What the story is about.")],
    url: ServerUrl = DEFAULT_URL,
    tag: Annotated[list[str] | None, typer.Option(help="A tag; repeat for several.")] = None,
    thread_id: Annotated[str | None, typer.Option(help="Continue this thread.")] = None,
    length: Annotated[
        StoryLengthChoice, typer.Option(help="Story length.")
    ] = StoryLengthChoice.MEDIUM,
    user: User = None,
    token: Token = None,
) -> None:
    """Stream a story from a running server to the terminal (story on stdout, the rest on
    stderr)."""
    _call(
        url,
        user,
        token,
        lambda client: _stream_story(client, prompt, tag or [], thread_id, length.value),
    )


async def _stream_story(
    client: StorytoolClient,
    prompt: str,
    tags: list[str],
    thread_id: str | None,
    length: StoryLength,
) -> int:
    """Prints the story as it streams (resumed by the client if the connection drops); the
    exit code. The draft streams first, dimmed, to stderr; the refined story, which replaces it,
    to stdout, so ``storytool generate ... > story.txt`` keeps the finished text alone."""
    stream = client.generate(prompt, tags=tags, thread_id=thread_id, length=length)
    async for event in stream:
        match event:
            case MetaEvent():
                typer.echo(
                    f"thread {event.thread_id} conversation {event.conversation_id}", err=True
                )
            case StageEvent(name="draft", status="started"):
                typer.secho("[초고]", err=True, bold=True)
            case StageEvent(name="refine", status="started"):
                typer.secho("\n[다듬은 이야기]", err=True, bold=True)
            case DeltaEvent(stage="draft"):
                typer.secho(event.text, nl=False, err=True, dim=True)
            case DeltaEvent():
                typer.echo(event.text, nl=False)
            case TitleEvent():
                typer.echo(f"\n\n《{event.title}》")
            case RecommendationsEvent():
                typer.echo("".join(f"\n· {item}" for item in event.items))
            case CancelledEvent():
                typer.echo("\n[cancelled]", err=True)
                return 1
            case ErrorEvent():
                typer.echo(f"\n[error {event.code}] {event.message}", err=True)
                return 1
    return 0


@app.command()
def history(url: ServerUrl = DEFAULT_URL, user: User = None, token: Token = None) -> None:
    """List your story threads, most recently active first: id, last activity (UTC), status of
    the latest story, number of stories, title."""

    async def listing(client: StorytoolClient) -> int:
        async for thread in client.history():
            typer.echo(
                "  ".join(
                    [
                        thread.id,
                        thread.updated_at.strftime("%Y-%m-%d %H:%M"),
                        thread.last_status or "-",
                        str(thread.conversation_count),
                        thread.title or UNTITLED,
                    ]
                )
            )
        return 0

    _call(url, user, token, listing)


@app.command()
def evaluate(
    conversation_id: Annotated[str, typer.Argument(help="The story's conversation id.")],
    rating: Annotated[Rating, typer.Argument(help="none clears an earlier verdict.")],
    reason: Annotated[
        list[Reason] | None, typer.Option(help="Why; repeat for several.", show_choices=True)
    ] = None,
    comment: Annotated[str | None, typer.Option(help="A comment of your own.")] = None,
    url: ServerUrl = DEFAULT_URL,
    user: User = None,
    token: Token = None,
) -> None:
    """Like or dislike one of your stories. Reasons and comment replace the earlier ones."""

    async def verdict(client: StorytoolClient) -> int:
        stored = await client.evaluate(conversation_id, rating.value, comment, reasons=reason or [])
        reasons = ", ".join(stored.reasons) or "no reasons"
        typer.echo(f"{stored.conversation_id}: {stored.rating} ({reasons})")
        return 0

    _call(url, user, token, verdict)


class ExportFormatChoice(StrEnum):
    MD = "md"
    JSON = "json"


@app.command()
def export(
    thread_id: Annotated[str, typer.Argument(help="The thread to export.")],
    format: Annotated[
        ExportFormatChoice, typer.Option(help="md (Markdown) or json.")
    ] = ExportFormatChoice.MD,
    out: Annotated[
        Path | None, typer.Option(dir_okay=False, help="Write to this file, not stdout.")
    ] = None,
    url: ServerUrl = DEFAULT_URL,
    user: User = None,
    token: Token = None,
) -> None:
    """Export one of your threads with all its stories, to stdout or to --out."""

    async def download(client: StorytoolClient) -> int:
        text = await client.export_thread(thread_id, format.value)
        if out is None:
            typer.echo(text, nl=not text.endswith("\n"))
        else:
            out.parent.mkdir(parents=True, exist_ok=True)
            out.write_text(text, encoding="utf-8")
            typer.echo(f"exported {out}", err=True)
        return 0

    _call(url, user, token, download)
