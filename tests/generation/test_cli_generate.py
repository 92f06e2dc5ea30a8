"""``storytool generate`` streams a story from a running server to the terminal."""

from __future__ import annotations

import asyncio
import os
import sys

import httpx

from storytool.generation.repository import ConversationRepository
from tests.generation.conftest import Database


async def run_generate(*args: str) -> tuple[int, str, str]:
    process = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "storytool",
        "generate",
        *args,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
        env={**os.environ, "PYTHONIOENCODING": "utf-8"},
    )
    stdout, stderr = await asyncio.wait_for(process.communicate(), timeout=60)
    assert process.returncode is not None
    return process.returncode, stdout.decode(), stderr.decode()


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
    assert out.startswith(turns[0].story)


async def test_generate_reports_a_refusal(client: httpx.AsyncClient):
    code, out, err = await run_generate("", "--url", str(client.base_url))
    assert code == 1
    assert out == ""
    assert "422" in err


async def test_generate_reports_an_unreachable_server():
    code, _out, err = await run_generate("이야기", "--url", "http://127.0.0.1:1")
    assert code == 1
    assert "cannot reach" in err
