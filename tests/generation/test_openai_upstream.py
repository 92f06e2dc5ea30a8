"""Generation through the real ``openai`` SDK against the fake OpenAI server, over loopback."""

from __future__ import annotations

import json
from typing import Any

import pytest
from pydantic import SecretStr

from storytool.config import LLMProvider, Settings
from storytool.models import ConversationStatus, StopReason
from tests.fakes.openai_server import FakeOpenAI
from tests.generation.conftest import (
    Database,
    cancel_when,
    deltas,
    generate,
    read_events,
    serving,
    story_of,
    until_deltas,
)

DRAFT_MODEL = "ft:storytool-draft"
REFINE_MODEL = "gpt-4o"
DRAFT = "화설. 한 선비가 길을 떠나 산중에 이르니 노인이 기다리더라. "
REFINED = (
    "화설. 옛적 남쪽 고을에 한 선비가 있으니 성품이 곧고 글을 좋아하더라. "
    "각설. 하루는 선비가 길을 떠나 깊은 산중에 이르매 한 노인이 나타나 이르기를 "
    "'그대의 정성이 하늘에 닿았도다' 하더라. 선비가 절하고 그 뜻을 물으니 노인이 웃으며 "
    "답하지 아니하고 구름 속으로 사라지더라. 차설. 선비가 마침내 뜻을 이루니 온 고을이 "
    "그 덕을 칭송하노라."
)
PROMPT = {"user_input": "한 선비가 과거를 보러 길을 떠나니", "tags": ["모험"]}


@pytest.fixture
def upstream(fake_openai: FakeOpenAI) -> FakeOpenAI:
    fake_openai.behaviour.texts = {DRAFT_MODEL: DRAFT, REFINE_MODEL: REFINED}
    return fake_openai


def on_fake(settings: Settings, fake: FakeOpenAI, **changes: Any) -> Settings:
    return settings.model_copy(
        update={
            "llm_provider": LLMProvider.OPENAI,
            "openai_base_url": fake.base_url,
            "openai_api_key": SecretStr("test"),
            "openai_timeout_s": 1.0,
            "upstream_retry_backoff_s": 0.01,
            "fine_tuned_model": DRAFT_MODEL,
            "refine_model": REFINE_MODEL,
            **changes,
        }
    )


def refine_requests(fake: FakeOpenAI) -> list[dict[str, Any]]:
    """The streamed Responses calls; title and recommendations are a separate, unstreamed one."""
    return [
        item.body
        for item in fake.received("/v1/responses")
        if item.method == "POST" and item.body.get("stream")
    ]


class TestStory:
    async def test_one_request_streams_and_stores_the_refined_story(
        self, settings: Settings, upstream: FakeOpenAI, database: Database
    ):
        async with serving(on_fake(settings, upstream)) as client:
            events = await generate(client, PROMPT)

        names = [event.event for event in events]
        assert [event.id for event in events] == list(range(1, len(events) + 1))
        assert names[0] == "meta"
        assert names.count("delta") > 10
        assert names.count("done") == 1
        assert names[-1] == "done"
        assert "title" in names
        assert "recommendations" in names
        assert story_of(events) == REFINED
        conversation, data = await database.conversation(events[0].data["conversation_id"])
        assert conversation.status is ConversationStatus.COMPLETED
        assert data.base_story == DRAFT
        assert data.story == REFINED
        assert conversation.models is not None
        assert conversation.models["refine"] == REFINE_MODEL
        assert conversation.upstream_response_id is not None
        assert conversation.usage == events[-1].data["usage"]

    @pytest.mark.parametrize("remote", [False, True], ids=["local-context", "remote-conversation"])
    async def test_the_second_turn_sends_the_first_as_context(
        self, settings: Settings, upstream: FakeOpenAI, database: Database, remote: bool
    ):
        async with serving(on_fake(settings, upstream, remote_conversations=remote)) as client:
            first = await generate(client, PROMPT)
            thread_id = first[0].data["thread_id"]
            second = await generate(
                client, {"user_input": "선비가 돌아오니", "thread_id": thread_id}
            )

        assert second[-1].event == "done"
        sent = refine_requests(upstream)[-1]
        thread = await database.thread(thread_id)
        if remote:
            created = [r for r in upstream.received("/v1/conversations") if r.method == "POST"]
            assert len(created) == 1
            assert thread.remote_conversation_id is not None
            assert sent["conversation"] == thread.remote_conversation_id
            assert refine_requests(upstream)[0]["conversation"] == thread.remote_conversation_id
            held = json.dumps(
                upstream.conversations[thread.remote_conversation_id], ensure_ascii=False
            )
            assert PROMPT["user_input"] in held
            assert PROMPT["user_input"] not in json.dumps(sent["input"], ensure_ascii=False)
        else:
            assert thread.remote_conversation_id is None
            assert "conversation" not in sent
            context = json.dumps(sent["input"], ensure_ascii=False)
            assert PROMPT["user_input"] in context
            assert REFINED in context


class TestUpstreamFailures:
    async def test_a_500_before_the_first_token_is_retried(
        self, settings: Settings, upstream: FakeOpenAI
    ):
        # The first answers the check for the Responses API (a 500 says it exists), the second
        # the refine, which is then tried again.
        upstream.behaviour.fail_next(500, path="/v1/responses", times=2)
        async with serving(on_fake(settings, upstream)) as client:
            events = await generate(client, PROMPT)
        assert events[-1].event == "done"
        assert story_of(events) == REFINED
        assert len(refine_requests(upstream)) == 2

    @pytest.mark.parametrize(
        ("fault", "stop_reason"),
        [
            ("error", StopReason.PROVIDER_ERROR),
            ("drop", StopReason.PROVIDER_ERROR),
            ("stall", StopReason.TIMEOUT),
        ],
    )
    async def test_a_failure_after_the_first_token_ends_with_one_error(
        self,
        settings: Settings,
        upstream: FakeOpenAI,
        database: Database,
        fault: Any,
        stop_reason: StopReason,
    ):
        upstream.behaviour.add_fault(fault, after=5, api="responses")
        async with serving(on_fake(settings, upstream, openai_timeout_s=0.5)) as client:
            events = await generate(client, PROMPT)
            later = await generate(client, PROMPT)

        names = [event.event for event in events]
        assert names[-1] == "error"
        assert names.count("error") == 1
        assert "done" not in names
        streamed = story_of(events)
        assert streamed
        assert REFINED.startswith(streamed)
        assert streamed != REFINED
        conversation, data = await database.conversation(events[0].data["conversation_id"])
        assert conversation.status is ConversationStatus.FAILED
        assert conversation.stop_reason is stop_reason
        assert data.story == streamed
        assert later[-1].event == "done"
        assert story_of(later) == REFINED

    async def test_an_unknown_upstream_event_is_ignored(
        self, settings: Settings, upstream: FakeOpenAI
    ):
        upstream.behaviour.add_fault("inject", after=3, api="responses", event_type="keepalive")
        async with serving(on_fake(settings, upstream)) as client:
            events = await generate(client, PROMPT)
        assert events[-1].event == "done"
        assert story_of(events) == REFINED


class TestLiveDraft:
    async def test_the_draft_streams_as_written_and_a_resume_mid_draft_replays_the_rest(
        self, settings: Settings, upstream: FakeOpenAI, database: Database
    ):
        upstream.behaviour.tokens_per_second = 50
        async with serving(on_fake(settings, upstream)) as client:
            before = await until_deltas(client, PROMPT, 2, stage="draft")
            conversation_id = before[0].data["conversation_id"]
            async with client.stream(
                "GET",
                f"/api/generate/{conversation_id}/events",
                headers={"Last-Event-ID": str(before[-1].id)},
            ) as response:
                after = [event async for event in read_events(response)]

        events = before + after
        assert [event.id for event in events] == list(range(1, len(events) + 1))
        stages = [event.data["stage"] for event in events if event.event == "delta"]
        assert stages == sorted(stages)  # every draft delta before the first of the refine
        assert story_of(events, stage="draft") == DRAFT
        assert story_of(events) == REFINED
        _conversation, data = await database.conversation(conversation_id)
        assert data.base_story == DRAFT
        assert data.story == REFINED


class TestCancelUpstream:
    async def test_cancel_mid_refine_stops_the_upstream_run(
        self, settings: Settings, upstream: FakeOpenAI, database: Database
    ):
        upstream.behaviour.tokens_per_second = 40
        async with serving(on_fake(settings, upstream)) as client:
            events, answer = await cancel_when(client, PROMPT, deltas(3))
        conversation_id = events[0].data["conversation_id"]

        assert answer.status_code == 200
        assert answer.json()["status"] == "cancelled"
        assert events[-1].event == "cancelled"
        streamed = story_of(events)
        assert answer.json()["partial_story"] == streamed
        assert events[-1].data["partial_story"] == streamed
        conversation, data = await database.conversation(conversation_id)
        assert conversation.status is ConversationStatus.CANCELLED
        assert conversation.stop_reason is StopReason.USER_CANCEL
        assert data.story == streamed
        assert conversation.upstream_response_id is not None
        assert upstream.cancelled == [conversation.upstream_response_id]

    async def test_cancel_during_the_draft_keeps_it_and_never_refines(
        self, settings: Settings, upstream: FakeOpenAI, database: Database
    ):
        upstream.behaviour.tokens_per_second = 20
        async with serving(on_fake(settings, upstream)) as client:
            # The draft streams as it is written: cancel after its third piece.
            events, answer = await cancel_when(client, PROMPT, deltas(3, stage="draft"))
        conversation_id = events[0].data["conversation_id"]

        names = [event.event for event in events]
        assert names[:2] == ["meta", "stage"]
        assert events[1].data["name"] == "draft"
        assert names[-1] == "cancelled"
        assert set(names[2:-1]) == {"delta"}
        assert {event.data["stage"] for event in events if event.event == "delta"} == {"draft"}
        streamed = story_of(events, stage="draft")
        conversation, data = await database.conversation(conversation_id)
        assert conversation.status is ConversationStatus.CANCELLED
        assert data.base_story == streamed
        assert DRAFT.startswith(streamed)
        assert streamed != DRAFT
        assert data.story is None
        assert answer.json()["partial_draft"] == streamed
        assert answer.json()["partial_story"] == ""
        assert events[-1].data["partial_draft"] == streamed
        assert events[-1].data["partial_story"] == ""
        assert refine_requests(upstream) == []
