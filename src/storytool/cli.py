"""The ``storytool`` command line."""

from __future__ import annotations

import asyncio
import json
import re
from pathlib import Path
from typing import Annotated, Any

import httpx
import typer
import uvicorn
from pydantic import ValidationError
from rich.progress import MofNCompleteColumn, Progress

from storytool.config import Settings, describe_settings_error
from storytool.db import migrations
from storytool.logging import logging_config
from storytool.search.builder import CorpusError, build_index
from storytool.search.embedders import EmbeddingError, build_embedder
from storytool.search.index import Manifest

app = typer.Typer(help="Storytool: streamed Korean classical-style stories.", no_args_is_help=True)
db_app = typer.Typer(help="Database schema.", no_args_is_help=True)
app.add_typer(db_app, name="db")
index_app = typer.Typer(help="Search indexes.", no_args_is_help=True)
app.add_typer(index_app, name="index")


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


@db_app.command("upgrade")
def db_upgrade(
    revision: Annotated[str, typer.Argument(help="Target revision.")] = "head",
) -> None:
    """Apply the schema migrations to the configured database."""
    settings = load_settings()
    asyncio.run(migrations.upgrade(_prepare_database(settings), revision))
    typer.echo(f"database at {revision}")


@app.command()
def generate(
    prompt: Annotated[str, typer.Argument(help="What the story is about.")],
    url: Annotated[str, typer.Option(help="A running Storytool server.")] = "http://127.0.0.1:8000",
    tag: Annotated[list[str] | None, typer.Option(help="A tag; repeat for several.")] = None,
    thread_id: Annotated[str | None, typer.Option(help="Continue this thread.")] = None,
    length: Annotated[str, typer.Option(help="short, medium or long.")] = "medium",
    user: Annotated[str | None, typer.Option(help="X-User-Id (auth_mode=header).")] = None,
    token: Annotated[
        str | None, typer.Option(help="Bearer token (auth_mode=jwt).", envvar="STORYTOOL_TOKEN")
    ] = None,
) -> None:
    """Stream a story from a running server to the terminal (story on stdout, the rest on
    stderr)."""
    body: dict[str, object] = {
        "user_input": prompt,
        "tags": tag or [],
        "thread_id": thread_id,
        "options": {"length": length},
    }
    headers = {"X-User-Id": user} if user else {}
    if token:
        headers["Authorization"] = f"Bearer {token}"
    try:
        code = asyncio.run(_stream_story(url, body, headers))
    except httpx.HTTPError as exc:
        typer.echo(f"cannot reach {url}: {exc}", err=True)
        code = 1
    raise typer.Exit(code=code)


async def _stream_story(url: str, body: dict[str, object], headers: dict[str, str]) -> int:
    timeout = httpx.Timeout(30.0, read=None)  # a story streams for as long as it takes
    async with httpx.AsyncClient(base_url=url, timeout=timeout) as client:
        async with client.stream("POST", "/api/generate", json=body, headers=headers) as response:
            if response.status_code != 200:
                await response.aread()
                typer.echo(f"refused ({response.status_code}): {response.text}", err=True)
                return 1
            event = ""
            async for line in response.aiter_lines():
                if line.startswith("event:"):
                    event = line.removeprefix("event:").strip()
                elif line.startswith("data:"):
                    code = _show(event, json.loads(line.removeprefix("data:")))
                    if code is not None:
                        return code
    typer.echo("\nthe stream ended without a final event", err=True)
    return 1


def _show(event: str, data: dict[str, Any]) -> int | None:
    """Prints one event; the exit code once the stream has ended."""
    if event == "delta":
        typer.echo(data["text"], nl=False)
    elif event == "meta":
        typer.echo(f"thread {data['thread_id']}", err=True)
    elif event == "title":
        typer.echo(f"\n\n《{data['title']}》")
    elif event == "recommendations":
        typer.echo("".join(f"\n· {item}" for item in data["items"]))
    elif event == "done":
        return 0
    elif event == "cancelled":
        typer.echo("\n[cancelled]", err=True)
        return 1
    elif event == "error":
        typer.echo(f"\n[error {data['code']}] {data['message']}", err=True)
        return 1
    return None


async def _build_index(settings: Settings, corpus: Path, name: str) -> Manifest:
    embedder = build_embedder(settings)
    columns = (*Progress.get_default_columns(), MofNCompleteColumn())
    try:
        with Progress(*columns) as progress:
            task = progress.add_task(f"embedding with {embedder.name}", total=None)
            return await build_index(
                settings,
                corpus,
                name=name,
                embedder=embedder,
                on_read=lambda count: progress.update(task, total=count),
                on_batch=lambda count: progress.advance(task, count),
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
