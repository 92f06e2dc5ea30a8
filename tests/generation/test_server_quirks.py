"""Every story completes on the servers people run, as the fake plays them (``Quirks``: llama.cpp
with and without ``/v1/responses``, LiteLLM's bridge), with nothing logged at WARNING for what
those servers are known not to do. The same checks against the real servers, slower, are in
tests/real_upstream/."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable

import pytest
from typer.testing import CliRunner

from storytool.cli import app
from storytool.config import ModelApi, Settings
from storytool.llm.base import ProviderError
from storytool.llm.openai import OpenAIClient
from storytool.models import ConversationStatus, StopReason
from tests.fakes.openai_server import QUIRK_PRESETS, FakeOpenAI, Quirks
from tests.generation.conftest import Database, cancel_when, deltas, generate, serving, story_of
from tests.generation.test_openai_upstream import DRAFT, DRAFT_MODEL, PROMPT, REFINED, on_fake

SERVERS: dict[str, Callable[[], Quirks]] = {
    "llamacpp": Quirks.llamacpp,
    "llamacpp-chat-only": Quirks.llamacpp_chat_only,
    "litellm-bridge": Quirks.litellm_bridge,
}


@pytest.fixture(params=sorted(SERVERS))
def server(request: pytest.FixtureRequest, fake_openai: FakeOpenAI) -> FakeOpenAI:
    fake_openai.behaviour.quirks = SERVERS[request.param]()
    fake_openai.behaviour.texts = {DRAFT_MODEL: DRAFT, "gpt-4o": REFINED}
    return fake_openai


def noise(caplog: pytest.LogCaptureFixture) -> list[str]:
    return [r.getMessage() for r in caplog.records if r.levelno >= logging.WARNING]


class TestStories:
    async def test_a_story_and_the_next_in_its_thread_complete_and_are_saved(
        self,
        settings: Settings,
        server: FakeOpenAI,
        database: Database,
        caplog: pytest.LogCaptureFixture,
    ):
        caplog.set_level(logging.INFO)
        async with serving(on_fake(settings, server)) as client:
            first = await generate(client, PROMPT)
            thread_id = first[0].data["thread_id"]
            # The second turn sends the first story back as an assistant item.
            second = await generate(client, {**PROMPT, "thread_id": thread_id})

        for events in (first, second):
            assert events[-1].event == "done"
            assert story_of(events) == REFINED
            assert story_of(events, stage="draft") == DRAFT
            conversation, data = await database.conversation(events[0].data["conversation_id"])
            assert conversation.status is ConversationStatus.COMPLETED
            assert data.title
            if server.behaviour.quirks.response_id_length:
                assert len(conversation.upstream_response_id or "") == 457
        assert noise(caplog) == []

    async def test_a_cancel_mid_refine_holds_and_sends_no_cancel_the_server_cannot_do(
        self,
        settings: Settings,
        server: FakeOpenAI,
        database: Database,
        caplog: pytest.LogCaptureFixture,
    ):
        caplog.set_level(logging.INFO)
        server.behaviour.tokens_per_second = 40
        async with serving(on_fake(settings, server)) as client:
            events, answer = await cancel_when(client, PROMPT, deltas(3))
            streamed = story_of(events)
            await asyncio.sleep(0.3)  # anything still coming would show in the next run

        assert answer.json()["status"] == "cancelled"
        assert answer.json()["partial_story"] == streamed
        conversation, data = await database.conversation(events[0].data["conversation_id"])
        assert conversation.status is ConversationStatus.CANCELLED
        assert data.story == streamed
        # None of these servers confirms a background run: closing the stream is the cancel.
        assert not [r for r in server.received("/v1/responses") if r.path.endswith("/cancel")]
        assert all(run.finished for run in server.runs.values())
        assert noise(caplog) == []

    async def test_a_refine_cut_at_its_token_limit_is_completed_with_stop_reason_length(
        self, settings: Settings, server: FakeOpenAI, database: Database
    ):
        # llama.cpp ends such a run "completed", saying nothing but its token count.
        server.behaviour.texts["gpt-4o"] = REFINED * 40  # 2,000 tokens; short asks for 1,500
        async with serving(on_fake(settings, server)) as client:
            events = await generate(client, {**PROMPT, "options": {"length": "short"}})

        assert events[-1].event == "done"
        assert events[-1].data["stop_reason"] == "length"
        conversation, _data = await database.conversation(events[0].data["conversation_id"])
        assert conversation.status is ConversationStatus.COMPLETED
        assert conversation.stop_reason is StopReason.LENGTH


async def test_analyze_answers_with_its_metrics(
    settings: Settings, server: FakeOpenAI, caplog: pytest.LogCaptureFixture
):
    caplog.set_level(logging.INFO)
    async with serving(on_fake(settings, server)) as client:
        response = await client.post("/api/analyze", json={"text": REFINED})
    assert response.status_code == 200
    assert response.json()["metrics"]["sentences"] > 0
    assert noise(caplog) == []


def test_a_server_without_responses_refuses_to_draft_when_told_to_use_responses():
    """With STORYTOOL_REFINE_API=responses the check before the draft says what to change."""
    with FakeOpenAI() as fake:
        fake.behaviour.quirks = Quirks.llamacpp_chat_only()
        settings = Settings(
            _env_file=None,  # type: ignore[call-arg]
            llm_provider="openai",
            openai_base_url=fake.base_url,
            openai_api_key="x",
            refine_api=ModelApi.RESPONSES,
        )

        async def prepare() -> str:
            client = OpenAIClient(settings)
            try:
                await client.prepare()
            except ProviderError as exc:
                return exc.message
            finally:
                await client.aclose()
            return ""

        message = asyncio.run(prepare())
    assert "STORYTOOL_REFINE_API" in message
    assert "404" not in message


@pytest.mark.parametrize(
    ("preset", "expected"),
    [
        ("openai", ["responses api: yes", "background runs (cancel/resume by id): yes"]),
        ("llamacpp", ["responses api: yes", "background runs (cancel/resume by id): no"]),
        ("llamacpp-chat-only", ["responses api: no", "refine runs as a streamed chat"]),
        ("litellm-bridge", ["responses api: yes", "background mode is ignored"]),
    ],
)
def test_llm_check_says_what_the_server_does(
    preset: str, expected: list[str], monkeypatch: pytest.MonkeyPatch
):
    with FakeOpenAI() as fake:
        fake.behaviour.quirks = QUIRK_PRESETS[preset]()
        monkeypatch.setenv("STORYTOOL_LLM_PROVIDER", "openai")
        monkeypatch.setenv("STORYTOOL_OPENAI_BASE_URL", fake.base_url)
        monkeypatch.setenv("STORYTOOL_OPENAI_API_KEY", "x")
        result = CliRunner().invoke(app, ["llm", "check"])
    assert result.exit_code == 0, result.output
    for line in expected:
        assert line in result.output
