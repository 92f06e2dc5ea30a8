"""A written story is never failed by what comes after it, nor by what a model says.

Title and recommendations are optional: when the small model's answers stay invalid, the story is
still ``completed``, titled from its input. A model that stops at its token limit leaves a shorter
story, not a failed one. Model-given strings are cut to their columns, so a long title cannot fail
the save (on MariaDB it would be ``Data too long``). After an upstream failure, nothing of ours is
left to stop upstream, so no cancel is sent."""

from __future__ import annotations

import json
import logging

import pytest
from sqlalchemy import text

from storytool.config import Settings
from storytool.db.engine import create_engine
from storytool.models import ConversationStatus, StopReason
from tests.fakes.openai_server import FakeOpenAI
from tests.generation.conftest import Database, generate, serving, story_of
from tests.generation.test_openai_upstream import PROMPT, REFINED, on_fake


@pytest.fixture
def upstream(fake_openai: FakeOpenAI) -> FakeOpenAI:
    fake_openai.behaviour.texts = {"gpt-4o": REFINED}
    return fake_openai


def of(events, name: str):
    return [event.data for event in events if event.event == name]


class TestTitleFallback:
    async def test_invalid_answers_leave_a_completed_story_titled_from_its_input(
        self,
        settings: Settings,
        upstream: FakeOpenAI,
        database: Database,
        caplog: pytest.LogCaptureFixture,
    ):
        upstream.behaviour.structured_answers.extend(['{"title": 1}', '{"recommendations": 2}'])
        with caplog.at_level(logging.INFO):
            async with serving(on_fake(settings, upstream)) as client:
                events = await generate(client, PROMPT)
                metrics = (await client.get("/metrics")).text

        assert events[-1].event == "done"
        assert 'storytool_optional_fallbacks_total{step="title"} 1.0' in metrics
        assert of(events, "title") == [{"title": PROMPT["user_input"], "fallback": True}]
        assert of(events, "recommendations") == [{"items": []}]
        conversation, data = await database.conversation(events[0].data["conversation_id"])
        assert conversation.status is ConversationStatus.COMPLETED
        assert data.story == REFINED
        assert data.title == PROMPT["user_input"]
        assert data.recommendations == []
        thread = await database.thread(events[0].data["thread_id"])
        assert thread.title == PROMPT["user_input"]
        assert not [r for r in caplog.records if r.levelno >= logging.WARNING]

    async def test_a_long_input_gives_a_short_fallback_title(
        self, settings: Settings, upstream: FakeOpenAI
    ):
        upstream.behaviour.structured_answers.extend(["[]", "[]"])
        long_input = "한 선비가 " + "먼 길을 " * 40 + "떠나니"
        async with serving(on_fake(settings, upstream)) as client:
            events = await generate(client, {"user_input": long_input})
        title = of(events, "title")[0]
        assert title["fallback"] is True
        assert len(title["title"]) == 40
        assert title["title"].endswith("…")
        assert long_input.startswith(title["title"][:-1])


class TestModelStringsFitTheirColumns:
    async def test_a_201_character_title_is_saved_cut_to_200(
        self, settings: Settings, upstream: FakeOpenAI, database: Database
    ):
        title = "가" * 201
        answer = {"title": title, "recommendations": ["나" * 500, " ", "다"]}
        upstream.behaviour.structured_answers.append(json.dumps(answer, ensure_ascii=False))
        async with serving(on_fake(settings, upstream)) as client:
            events = await generate(client, PROMPT)

        assert events[-1].event == "done"
        assert of(events, "title") == [{"title": "가" * 200, "fallback": False}]
        conversation, data = await database.conversation(events[0].data["conversation_id"])
        assert conversation.status is ConversationStatus.COMPLETED
        assert data.title == "가" * 200
        assert data.recommendations == ["나" * 300, "다"]
        thread = await database.thread(events[0].data["thread_id"])
        assert thread.title == "가" * 200


class TestLengthCut:
    async def test_a_refine_cut_at_its_token_limit_is_completed_with_its_text(
        self, settings: Settings, upstream: FakeOpenAI, database: Database
    ):
        upstream.behaviour.add_fault("incomplete", after=5, api="responses")
        async with serving(on_fake(settings, upstream)) as client:
            events = await generate(client, PROMPT)

            metrics = (await client.get("/metrics")).text

        assert 'storytool_generations_total{status="completed",stop_reason="length"} 1.0' in metrics
        assert events[-1].event == "done"
        assert events[-1].data["stop_reason"] == "length"
        refine_done = [e for e in of(events, "stage") if e["name"] == "refine"][-1]
        assert refine_done == {"name": "refine", "status": "done", "stop_reason": "length"}
        streamed = story_of(events)
        assert streamed
        assert REFINED.startswith(streamed)
        assert streamed != REFINED
        conversation, data = await database.conversation(events[0].data["conversation_id"])
        assert conversation.status is ConversationStatus.COMPLETED
        assert conversation.stop_reason is StopReason.LENGTH
        assert data.story == streamed
        assert data.title

    async def test_each_stage_asks_for_at_most_its_lengths_tokens(
        self, settings: Settings, upstream: FakeOpenAI
    ):
        async with serving(on_fake(settings, upstream)) as client:
            await generate(client, {**PROMPT, "options": {"length": "short"}})
        draft = upstream.received("/v1/chat/completions")[0].body
        refine = next(r.body for r in upstream.received("/v1/responses") if r.body.get("stream"))
        assert draft["max_tokens"] == 1500
        assert refine["max_output_tokens"] == 1500


class TestNoCancelAfterAFailure:
    async def test_a_failed_refine_sends_no_upstream_cancel(
        self, settings: Settings, upstream: FakeOpenAI, caplog: pytest.LogCaptureFixture
    ):
        upstream.behaviour.add_fault("failed", after=3, api="responses")
        with caplog.at_level(logging.DEBUG):
            async with serving(on_fake(settings, upstream)) as client:
                events = await generate(client, PROMPT)
        assert events[-1].event == "error"
        assert upstream.cancelled == []
        assert not [r for r in upstream.received("/v1/responses") if r.path.endswith("/cancel")]


TITLE_TOO_LONG = (
    "CREATE TRIGGER title_too_long BEFORE UPDATE ON conversation_data FOR EACH ROW "
    "BEGIN IF NEW.title IS NOT NULL THEN "
    "SIGNAL SQLSTATE '22001' SET MYSQL_ERRNO = 1406, MESSAGE_TEXT = 'Data too long for title'; "
    "END IF; END"
)


class TestAValueThatDoesNotFit:
    @pytest.mark.parametrize("backend_url", ["mariadb"], indirect=True)
    async def test_a_data_error_ends_the_story_failed_at_once_not_as_the_database_away(
        self,
        settings: Settings,
        committed_url: str,
        upstream: FakeOpenAI,
        database: Database,
        caplog: pytest.LogCaptureFixture,
    ):
        """MariaDB's own 'Data too long' (1406), as a title longer than its column once caused:
        the story ends ``failed`` with code ``data_error`` and its text, at once (no retrying
        for minutes), and nothing says the database is away."""
        engine = create_engine(Settings(), url=committed_url)
        async with engine.begin() as connection:
            await connection.execute(text(TITLE_TOO_LONG))
        try:
            async with serving(on_fake(settings, upstream)) as client:
                events = await generate(client, PROMPT)
                metrics = (await client.get("/metrics")).text
        finally:
            async with engine.begin() as connection:
                await connection.execute(text("DROP TRIGGER IF EXISTS title_too_long"))
            await engine.dispose()

        assert events[-1].event == "error"
        assert events[-1].data["code"] == "data_error"
        conversation, data = await database.conversation(events[0].data["conversation_id"])
        assert conversation.status is ConversationStatus.FAILED
        assert "data_error" in (conversation.error or "")
        assert data.story == REFINED
        assert data.title is None
        assert (
            'storytool_generations_total{status="failed",stop_reason="data_error"} 1.0' in metrics
        )
        assert not [r for r in caplog.records if "database_unavailable" in r.getMessage()]
        assert [r for r in caplog.records if "data_error" in r.getMessage()]
