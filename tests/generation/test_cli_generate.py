"""``storytool generate`` streams a story from a running server to the terminal.

The command runs in a worker thread (it drives its own event loop) against a real server on
loopback."""

from __future__ import annotations

import asyncio

import httpx
from sqlalchemy import select
from typer.testing import CliRunner

from storytool.cli import app
from storytool.generation.repository import ConversationRepository
from storytool.models import Conversation, ConversationData
from tests.generation.conftest import Database


async def run_generate(*args: str) -> tuple[int, str, str]:
    result = await asyncio.to_thread(CliRunner().invoke, app, ["generate", *args])
    return result.exit_code, result.stdout, result.stderr


async def test_generate_prints_the_stored_story_and_its_title(
    client: httpx.AsyncClient, database: Database
):
    code, out, err = await run_generate(
        "한 선비가 길을 떠나니", "--tag", "모험", "--url", str(client.base_url)
    )

    assert code == 0, err
    thread_id = err.split("thread ", 1)[1].split()[0]
    thread = await database.thread(thread_id)
    assert thread.title is not None
    assert f"《{thread.title}》" in out
    async with database.sessionmaker() as session:
        turns = await ConversationRepository(session).history(thread_id=thread_id, limit=1)
        draft = await session.scalar(
            select(ConversationData.base_story)
            .join(Conversation, Conversation.id == ConversationData.conversation_id)
            .where(Conversation.thread_id == thread_id)
        )
    # The refined story on stdout; the draft, shown first as it streamed, on stderr.
    assert out.startswith(turns[0].story)
    assert draft
    assert err.index("[초고]") < err.index(draft) < err.index("[다듬은 이야기]")


async def test_generate_reports_a_refusal(client: httpx.AsyncClient, database: Database):
    code, out, err = await run_generate("   ", "--url", str(client.base_url))
    assert code == 1
    assert out == ""
    assert "422" in err
    assert "user_input" in err
    assert await database.counts() == (0, 0)


async def test_generate_reports_an_unreachable_server():
    code, _out, err = await run_generate("이야기", "--url", "http://127.0.0.1:1")
    assert code == 1
    assert "cannot reach" in err
