"""Stories stay out of the logs, even when the database refuses them.

A failed statement's exception text carries its parameters (``[parameters: ...]``), and every
logged failure of a story's save carried the whole story: five times for one story. The database
is made to refuse every save of a story's text (a trigger), and no log record may then hold the
prompt or a line of the story: none from any logger at INFO and up, none from Storytool's own at
DEBUG. (Drivers trace every statement at DEBUG, aiosqlite included; the server leaves them at the
root logger's WARNING.)
"""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

import pytest
from sqlalchemy import text

from storytool.config import Settings
from storytool.db.engine import create_engine
from tests.fakes.openai_server import FakeOpenAI
from tests.generation.conftest import Database, generate, serving, settled
from tests.generation.test_openai_upstream import DRAFT, REFINED, on_fake
from tests.log_leaks import assert_no_private_text, logged, sentences

PROMPT = {"user_input": "비밀스러운 사연을 품은 나그네가 주막에 들르니", "tags": []}
_REFUSE = {
    "sqlite": "CREATE TRIGGER refuse_stories BEFORE UPDATE ON conversation_data "
    "BEGIN SELECT RAISE(ABORT, 'story refused'); END",
    "mysql": "CREATE TRIGGER refuse_stories BEFORE UPDATE ON conversation_data FOR EACH ROW "
    "SIGNAL SQLSTATE '45000' SET MESSAGE_TEXT = 'story refused'",
}


@asynccontextmanager
async def stories_refused(url: str) -> AsyncIterator[None]:
    """Every update of a story's data fails in the database inside the block."""
    engine = create_engine(Settings(), url=url)
    try:
        async with engine.begin() as connection:
            await connection.execute(text(_REFUSE[connection.dialect.name]))
        yield
    finally:
        async with engine.begin() as connection:
            await connection.execute(text("DROP TRIGGER IF EXISTS refuse_stories"))
        await engine.dispose()


async def test_a_refused_save_logs_no_story_text(
    settings: Settings,
    committed_url: str,
    database: Database,
    fake_openai: FakeOpenAI,
    caplog: pytest.LogCaptureFixture,
):
    fake_openai.behaviour.texts = {"ft:storytool-draft": DRAFT, "gpt-4o": REFINED}
    caplog.set_level(logging.DEBUG)
    async with serving(on_fake(settings, fake_openai)) as client:
        async with stories_refused(committed_url):
            events = await generate(client, PROMPT)
        # The story's end is saved again once the database takes it: the retries log too.
        await settled(database, events[0].data["conversation_id"])

    assert events[-1].event == "error"
    refused = [record for record in caplog.records if "story refused" in logged(record)]
    assert refused, "the database's refusal was never logged: the test proves nothing"
    assert_no_private_text(
        caplog.records, [PROMPT["user_input"], *sentences(DRAFT), *sentences(REFINED)]
    )
