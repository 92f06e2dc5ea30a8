"""The model server misbehaves: it refuses (429/500) or stalls. Through the real SDK, against the
fake OpenAI server, on a real Storytool server.

Before the first token a failure is retried with backoff (a Retry-After wins) within
``upstream_retry_budget``; past the budget, or once text has been streamed, the stream ends with
one ``error`` and the conversation is ``failed``, with what was streamed kept (a stall or drop
after the first token: ``tests/generation/test_openai_upstream.py``).
"""

from __future__ import annotations

import time

import pytest

from storytool.config import Settings
from storytool.models import ConversationStatus, StopReason
from tests.fakes.openai_server import FakeOpenAI
from tests.generation.conftest import Database, generate, serving, story_of
from tests.generation.test_openai_upstream import DRAFT, PROMPT, REFINE_MODEL, REFINED, on_fake

DRAFT_PATH = "/v1/chat/completions"


@pytest.fixture
def upstream(fake_openai: FakeOpenAI) -> FakeOpenAI:
    fake_openai.behaviour.texts = {"ft:storytool-draft": DRAFT, REFINE_MODEL: REFINED}
    return fake_openai


class TestRefusals:
    async def test_429s_within_the_budget_are_waited_out_as_retry_after_asks(
        self, settings: Settings, upstream: FakeOpenAI
    ):
        upstream.behaviour.fail_next(429, times=2, path=DRAFT_PATH, retry_after=1)
        async with serving(on_fake(settings, upstream, upstream_retry_budget=2)) as client:
            started = time.monotonic()
            events = await generate(client, PROMPT)
            elapsed = time.monotonic() - started

        assert events[-1].event == "done"
        assert story_of(events) == REFINED
        assert len(upstream.received(DRAFT_PATH)) == 3
        assert elapsed >= 2.0  # two waits of the one second Retry-After asked for

    @pytest.mark.parametrize("status", [429, 500])
    async def test_past_the_budget_the_stream_ends_with_error_and_the_story_is_failed(
        self, settings: Settings, upstream: FakeOpenAI, database: Database, status: int
    ):
        upstream.behaviour.fail_next(status, times=5, path=DRAFT_PATH)
        app_settings = on_fake(
            settings, upstream, upstream_retry_budget=2, upstream_retry_backoff_s=0.2
        )
        async with serving(app_settings) as client:
            started = time.monotonic()
            events = await generate(client, PROMPT)
            elapsed = time.monotonic() - started

        names = [event.event for event in events]
        assert names[-1] == "error"
        assert names.count("error") == 1
        assert "delta" not in names
        assert len(upstream.received(DRAFT_PATH)) == 3  # the first try and two retries
        assert elapsed >= 0.2 + 0.4  # backoff doubles
        conversation, _data = await database.conversation(events[0].data["conversation_id"])
        assert conversation.status is ConversationStatus.FAILED
        assert conversation.stop_reason is StopReason.PROVIDER_ERROR


class TestStalls:
    async def test_a_stall_before_the_first_token_times_out_and_is_retried(
        self, settings: Settings, upstream: FakeOpenAI
    ):
        upstream.behaviour.add_fault("stall", after=0, api="responses")
        async with serving(on_fake(settings, upstream, openai_timeout_s=0.5)) as client:
            events = await generate(client, PROMPT)
        assert events[-1].event == "done"
        assert story_of(events) == REFINED

    async def test_a_stall_on_every_try_ends_with_error_once_the_budget_is_spent(
        self, settings: Settings, upstream: FakeOpenAI, database: Database
    ):
        for _ in range(3):
            upstream.behaviour.add_fault("stall", after=0, api="responses")
        app_settings = on_fake(
            settings,
            upstream,
            openai_timeout_s=0.3,
            upstream_retry_budget=2,
            upstream_retry_backoff_s=0.05,
        )
        async with serving(app_settings) as client:
            events = await generate(client, PROMPT)

        assert events[-1].event == "error"
        assert story_of(events) == ""  # no refined text ever came
        assert story_of(events, stage="draft") == DRAFT  # the draft had streamed
        conversation, data = await database.conversation(events[0].data["conversation_id"])
        assert conversation.status is ConversationStatus.FAILED
        assert conversation.stop_reason is StopReason.TIMEOUT
        assert data.base_story == DRAFT  # the draft that was written is kept
