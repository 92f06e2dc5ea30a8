"""Every script in examples/ runs as a user would run it, against a live server, and prints what
its docstring promises."""

from __future__ import annotations

import asyncio
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from storytool.client import StorytoolClient
from storytool.config import EmbedderKind, Settings
from storytool.main import create_app
from tests.fakes.server_thread import ServerThread
from tests.search.conftest import build

EXAMPLES = Path(__file__).parents[2] / "examples"


async def run(script: str, *args: str, url: str, cwd: Path | None = None) -> tuple[str, str]:
    """The script's stdout and stderr; it must exit 0."""
    result = await asyncio.to_thread(
        subprocess.run,
        [sys.executable, str(EXAMPLES / script), *args, "--url", url],
        capture_output=True,
        text=True,
        timeout=60,
        cwd=cwd,
    )
    assert result.returncode == 0, result.stderr
    return result.stdout, result.stderr


@pytest.fixture
def example_settings(settings: Settings) -> Settings:
    """Local auth as under ``make run``; quick stories; the hashing embedder over the sample
    corpus for search."""
    return settings.model_copy(
        update={
            "offline_chars_per_second": 3000.0,
            "embedder": EmbedderKind.HASHING,
            "index_name": "sample",
        }
    )


@pytest.fixture
def server(example_settings: Settings) -> Iterator[ServerThread]:
    with ServerThread(create_app(example_settings)) as server:
        yield server


async def test_stream_story_prints_the_story_then_title_and_recommendations(
    server: ServerThread,
):
    out, err = await run(
        "stream_story.py", "한 선비가 길을 떠나니", "--tag", "모험", "--length", "short",
        url=server.url,
    )  # fmt: skip

    thread_id = err.split("thread ", 1)[1].split()[0]
    async with StorytoolClient(server.url) as client:
        turn = (await client.detail(thread_id)).conversations[0]
    assert turn.story is not None
    assert turn.recommendations
    assert out == (
        f"{turn.story}\n\n《{turn.title}》\n"
        + "\n".join(f"· {item}" for item in turn.recommendations)
        + "\n"
    )
    assert "[refine started]" in err
    assert err.rstrip().endswith("completed")


async def test_cancel_after_prints_the_partial_story_and_the_confirmation(
    example_settings: Settings,
):
    # A long story at this pace takes seconds: the cancel lands in its middle.
    slow = example_settings.model_copy(update={"offline_chars_per_second": 400.0})
    with ServerThread(create_app(slow)) as server:
        out, _err = await run("cancel_after.py", "0.5", url=server.url)

        shown, _, confirmation = out.rpartition("\nstatus: ")
        draft, _, text = shown.partition("\n[다듬은 이야기] ")
        async with StorytoolClient(server.url) as client:
            [summary] = [summary async for summary in client.history()]
            turn = (await client.detail(summary.id)).conversations[0]
    assert turn.status == "cancelled"
    # The draft was shown first, marked, then the refined text that replaced it.
    assert draft == f"[초고] {turn.base_story}"
    assert turn.story == text
    assert 0 < len(text)
    assert confirmation == (
        f"cancelled, saved {len(text)} characters of story"
        f" and {len(turn.base_story or '')} of draft\n"
    )


async def test_export_history_lists_threads_and_writes_the_newest_as_markdown(
    server: ServerThread, tmp_path: Path
):
    async with StorytoolClient(server.url) as client:
        thread_ids = []
        for prompt in ("호랑이가 산을 내려오니", "두 벗이 달밤에 이별하니"):
            events = [event async for event in client.generate(prompt, length="short")]
            thread_ids.append(events[0].thread_id)
        newest = await client.detail(thread_ids[-1])

    out, _err = await run("export_history.py", "--out", str(tmp_path), url=server.url)

    lines = out.splitlines()
    assert [line.split()[0] for line in lines[:2]] == thread_ids[::-1]
    assert lines[0] == f"{newest.id}  completed  {newest.title}"
    path = tmp_path / f"storytool-{newest.id}.md"
    assert lines[-1] == f"exported {path}"
    markdown = path.read_text(encoding="utf-8")
    assert markdown.startswith(f"# {newest.title}\n")
    assert "> 두 벗이 달밤에 이별하니" in markdown
    assert newest.conversations[0].story in markdown


async def test_search_corpus_prints_passages_closest_first(example_settings: Settings):
    await build(example_settings)
    with ServerThread(create_app(example_settings)) as server:
        out, _err = await run(
            "search_corpus.py", "사또가 소저를 옥에 가두니 서생을 그리며 울더라", "--top-k", "3",
            url=server.url,
        )  # fmt: skip

    blocks, _, recommendations = out.partition("다음 이야기:\n")
    heads = [line for line in blocks.splitlines() if line and not line.startswith("    ")]
    assert len(heads) == 3
    scores = [float(head.split()[0]) for head in heads]
    assert scores == sorted(scores, reverse=True)
    assert recommendations.startswith("· ")
