"""The OpenAI client, and stories written through it, with the real SDK against the fake OpenAI
server on loopback."""

from __future__ import annotations

import json
import socket
import time

import openai
import pytest
from pydantic import BaseModel

from storytool.config import Settings, UpstreamHttp
from storytool.generation.model_writer import ModelWriter
from storytool.generation.story import StoryExtras, StoryRequest, Turn
from storytool.llm.base import (
    InvalidModelOutput,
    ProviderError,
    StreamFinished,
    TextDelta,
    UpstreamStarted,
)
from storytool.llm.openai import DRAIN_TIMEOUT_S, OpenAIClient
from storytool.models import StopReason
from tests.fakes.openai_server import DEFAULT_STORY, FakeOpenAI, tokenize

FIRST_STORY = "화설. 첫 이야기로다."


@pytest.fixture(autouse=True, params=list(UpstreamHttp))
def http_client(request, monkeypatch) -> UpstreamHttp:
    """Every test here runs over each HTTP library the SDK can use: retries, drops, stalls and
    cancels must behave the same over both."""
    monkeypatch.setenv("STORYTOOL_OPENAI_HTTP_CLIENT", request.param.value)
    return request.param


def make_settings(fake: FakeOpenAI, **overrides) -> Settings:
    values = {
        "llm_provider": "openai",
        "openai_api_key": "sk-test",
        "openai_base_url": fake.base_url,
        "upstream_retry_backoff_s": 0.01,
        "openai_timeout_s": 2.0,
        "fine_tuned_model": "ft:draft",
        "refine_model": "refine",
        "mini_model": "mini",
    }
    values.update(overrides)
    return Settings(_env_file=None, **values)  # type: ignore[call-arg]


async def ready_client(fake: FakeOpenAI, settings: Settings) -> OpenAIClient:
    """A client that has already asked whether the server has the Responses API, with the
    fake's records of that cleared, so a test sees only its own calls."""
    client = OpenAIClient(settings)
    await client.prepare()
    fake.reset()
    return client


@pytest.fixture
async def client(fake_openai: FakeOpenAI):
    client = await ready_client(fake_openai, make_settings(fake_openai))
    yield client
    await client.aclose()


@pytest.fixture
def provider(client: OpenAIClient, fake_openai: FakeOpenAI) -> ModelWriter:
    """Stories written through the client: prompts from generation, transport from llm."""
    return ModelWriter(client, make_settings(fake_openai))


def request(**overrides) -> StoryRequest:
    values = {"user_input": "효녀가 아비를 구하다", "tags": ["효", "바다"]}
    values.update(overrides)
    return StoryRequest(**values)


async def collect_into(stream, received: list) -> None:
    async for event in stream:
        received.append(event)


async def collect(stream) -> list:
    received: list = []
    await collect_into(stream, received)
    return received


def text_of(events) -> str:
    return "".join(event.text for event in events if isinstance(event, TextDelta))


def refine_posts(fake: FakeOpenAI) -> list:
    return fake.received("/v1/responses")


class TestDraft:
    async def test_streams_the_fine_tuned_models_text(self, provider, fake_openai):
        draft = "각설. 심청이 바다에 몸을 던지니라."
        fake_openai.behaviour.texts["ft:draft"] = draft
        events = await collect(provider.draft(request(temperature=0.7, passages=["옛 글 한 줄"])))
        assert text_of(events) == draft
        assert isinstance(events[-1], StreamFinished)
        assert events[-1].usage["completion_tokens"] == len(tokenize(draft))
        sent = fake_openai.received("/v1/chat/completions")[0].body
        assert sent["model"] == "ft:draft"
        assert sent["temperature"] == 0.7
        assert sent["messages"][0] == {"role": "system", "content": Settings().system_prompt}
        user = sent["messages"][1]["content"]
        assert "효녀가 아비를 구하다" in user
        assert "효, 바다" in user
        assert "옛 글 한 줄" in user

    async def test_500_before_the_first_token_is_retried(self, provider, fake_openai):
        fake_openai.behaviour.fail_next(500, times=2, path="/v1/chat/completions")
        events = await collect(provider.draft(request()))
        assert text_of(events) == DEFAULT_STORY
        assert len(fake_openai.received("/v1/chat/completions")) == 3

    async def test_a_keepalive_comment_mid_stream_is_ignored(self, provider, fake_openai):
        fake_openai.behaviour.add_fault("inject", after=1, api="chat")
        events = await collect(provider.draft(request()))
        assert text_of(events) == DEFAULT_STORY

    async def test_a_drop_after_text_is_final(self, provider, fake_openai):
        fake_openai.behaviour.add_fault("drop", after=2, api="chat")
        received: list = []
        with pytest.raises(ProviderError) as caught:
            await collect_into(provider.draft(request()), received)
        assert caught.value.stop_reason is StopReason.PROVIDER_ERROR
        assert text_of(received) == "".join(tokenize(DEFAULT_STORY)[:2])
        assert len(fake_openai.received("/v1/chat/completions")) == 1


class TestRefine:
    async def test_deltas_join_to_the_text_with_the_upstream_id(self, provider, fake_openai):
        events = await collect(provider.refine(request(), "초고로다."))
        assert isinstance(events[0], UpstreamStarted)
        assert events[0].response_id in fake_openai.runs
        assert text_of(events) == DEFAULT_STORY
        numbers = [e.sequence_number for e in events if isinstance(e, TextDelta)]
        assert numbers == sorted(numbers)
        assert isinstance(events[-1], StreamFinished)
        assert events[-1].usage["output_tokens"] == len(tokenize(DEFAULT_STORY))
        sent = refine_posts(fake_openai)[0].body
        assert sent["model"] == "refine"
        assert sent["background"] is True
        assert sent["stream"] is True
        assert "초고로다." in sent["input"][-1]["content"]

    async def test_second_turn_sends_the_first_from_history(self, provider, fake_openai):
        first = Turn(user_input="첫 줄거리", tags=["충"], story=FIRST_STORY)
        await collect(provider.refine(request(history=[first]), "둘째 초고"))
        sent = refine_posts(fake_openai)[0].body
        assert "conversation" not in sent
        roles = [(item["role"], item["content"]) for item in sent["input"]]
        assert roles[0][0] == "user"
        assert "첫 줄거리" in roles[0][1]
        assert roles[1] == ("assistant", FIRST_STORY)
        assert roles[2][0] == "user"
        assert "둘째 초고" in roles[2][1]

    async def test_second_turn_uses_the_remote_conversation(self, fake_openai):
        settings = make_settings(fake_openai, remote_conversations=True)
        client = await ready_client(fake_openai, settings)
        provider = ModelWriter(client, settings)
        conversation_id = await client.create_conversation()
        assert conversation_id in fake_openai.conversations
        fake_openai.behaviour.texts["refine"] = FIRST_STORY
        await collect(provider.refine(request(remote_conversation_id=conversation_id), "첫 초고"))
        second = request(
            user_input="이어서",
            remote_conversation_id=conversation_id,
            history=[Turn(user_input="효녀가 아비를 구하다", tags=[], story=FIRST_STORY)],
        )
        await collect(provider.refine(second, "둘째 초고"))
        sent = refine_posts(fake_openai)[1].body
        assert sent["conversation"] == conversation_id
        assert len(sent["input"]) == 1
        assert "둘째 초고" in sent["input"][0]["content"]
        items = fake_openai.conversations[conversation_id]
        assert [item["role"] for item in items[:2]] == ["user", "assistant"]
        assert items[1]["content"][0]["text"] == FIRST_STORY
        await client.delete_conversation(conversation_id)
        assert conversation_id not in fake_openai.conversations
        await client.delete_conversation(conversation_id)
        await client.aclose()

    async def test_without_background_the_setting_is_sent(self, fake_openai):
        settings = make_settings(fake_openai, refine_background=False)
        client = await ready_client(fake_openai, settings)
        provider = ModelWriter(client, settings)
        events = await collect(provider.refine(request(), "초고"))
        assert text_of(events) == DEFAULT_STORY
        assert refine_posts(fake_openai)[0].body["background"] is False
        await client.aclose()


class TestRetriesBeforeTheFirstToken:
    async def test_500_is_retried_within_the_budget(self, provider, fake_openai):
        fake_openai.behaviour.fail_next(500, times=2, path="/v1/responses")
        events = await collect(provider.refine(request(), "초고"))
        assert text_of(events) == DEFAULT_STORY
        assert len(refine_posts(fake_openai)) == 3

    async def test_past_the_budget_it_fails(self, provider, fake_openai):
        fake_openai.behaviour.fail_next(503, times=3, path="/v1/responses")
        with pytest.raises(ProviderError) as caught:
            await collect(provider.refine(request(), "초고"))
        assert caught.value.stop_reason is StopReason.PROVIDER_ERROR
        assert "503" in caught.value.message
        assert len(refine_posts(fake_openai)) == 3

    async def test_a_400_is_not_retried(self, provider, fake_openai):
        fake_openai.behaviour.fail_next(400, path="/v1/responses")
        with pytest.raises(ProviderError):
            await collect(provider.refine(request(), "초고"))
        assert len(refine_posts(fake_openai)) == 1

    async def test_a_drop_before_text_retries_and_cancels_the_abandoned_run(
        self, provider, fake_openai
    ):
        fake_openai.behaviour.add_fault("drop", after=0, api="responses")
        events = await collect(provider.refine(request(), "초고"))
        started = [e.response_id for e in events if isinstance(e, UpstreamStarted)]
        assert len(started) == 2
        assert fake_openai.cancelled == [started[0]]
        assert text_of(events) == DEFAULT_STORY

    async def test_a_refused_connection_is_a_failed_connection_not_a_timeout(self, fake_openai):
        with socket.socket() as closed:  # a port nothing listens on
            closed.bind(("127.0.0.1", 0))
            port = closed.getsockname()[1]
        settings = make_settings(
            fake_openai, openai_base_url=f"http://127.0.0.1:{port}/v1", upstream_retry_budget=0
        )
        client = OpenAIClient(settings)
        with pytest.raises(ProviderError) as caught:
            await collect(ModelWriter(client, settings).draft(request()))
        await client.aclose()
        assert caught.value.code == "upstream_error"
        assert caught.value.stop_reason is StopReason.PROVIDER_ERROR
        assert "connection to the model server failed" in str(caught.value)


class TestFailuresAfterTheFirstToken:
    @pytest.mark.parametrize("kind", ["error", "failed"])
    async def test_upstream_failure_event_is_a_provider_error(self, provider, fake_openai, kind):
        fake_openai.behaviour.add_fault(kind, after=2)
        received: list = []
        with pytest.raises(ProviderError) as caught:
            await collect_into(provider.refine(request(), "초고"), received)
        assert caught.value.stop_reason is StopReason.PROVIDER_ERROR
        assert text_of(received) == "".join(tokenize(DEFAULT_STORY)[:2])
        assert len(refine_posts(fake_openai)) == 1

    async def test_a_run_cut_at_its_token_limit_ends_with_its_text_marked_cut(
        self, provider, fake_openai
    ):
        fake_openai.behaviour.add_fault("incomplete", after=2)
        events = await collect(provider.refine(request(), "초고"))
        assert text_of(events) == "".join(tokenize(DEFAULT_STORY)[:2])
        assert isinstance(events[-1], StreamFinished)
        assert events[-1].cut is True

    async def test_a_stall_is_a_timeout(self, fake_openai):
        settings = make_settings(fake_openai, openai_timeout_s=0.3)
        client = await ready_client(fake_openai, settings)
        provider = ModelWriter(client, settings)
        fake_openai.behaviour.add_fault("stall", after=2)
        received: list = []
        with pytest.raises(ProviderError) as caught:
            await collect_into(provider.refine(request(), "초고"), received)
        assert caught.value.stop_reason is StopReason.TIMEOUT
        assert text_of(received) == "".join(tokenize(DEFAULT_STORY)[:2])
        assert len(refine_posts(fake_openai)) == 1
        await client.aclose()

    async def test_a_body_left_open_after_the_end_does_not_hold_the_story(
        self, provider, fake_openai
    ):
        fake_openai.behaviour.add_fault("linger", api="responses")
        started = time.perf_counter()
        received = await collect(provider.refine(request(), "초고"))
        assert text_of(received) == DEFAULT_STORY
        assert isinstance(received[-1], StreamFinished)
        assert time.perf_counter() - started < DRAIN_TIMEOUT_S + 2

    async def test_a_dropped_stream_is_a_provider_error_and_resumes(self, provider, fake_openai):
        fake_openai.behaviour.add_fault("drop", after=3)
        received: list = []
        with pytest.raises(ProviderError) as caught:
            await collect_into(provider.refine(request(), "초고"), received)
        assert caught.value.stop_reason is StopReason.PROVIDER_ERROR
        assert len(refine_posts(fake_openai)) == 1
        started = received[0]
        last = [e for e in received if isinstance(e, TextDelta)][-1].sequence_number
        rest = await collect(provider.refine(request(), "초고", resume=(started.response_id, last)))
        assert rest[0] == started
        assert text_of(received) + text_of(rest) == DEFAULT_STORY
        assert isinstance(rest[-1], StreamFinished)
        assert len(refine_posts(fake_openai)) == 1

    async def test_an_unknown_event_type_is_ignored(self, provider, fake_openai):
        fake_openai.behaviour.add_fault("inject", after=2, event_type="keepalive")
        events = await collect(provider.refine(request(), "초고"))
        assert text_of(events) == DEFAULT_STORY
        assert isinstance(events[-1], StreamFinished)


class TestCancel:
    async def test_cancel_reaches_the_fake_for_the_running_id(self, client, provider, fake_openai):
        fake_openai.behaviour.tokens_per_second = 100
        stream = provider.refine(request(), "초고")
        started = await anext(stream)
        assert isinstance(started, UpstreamStarted)
        assert isinstance(await anext(stream), TextDelta)
        await client.cancel(started.response_id)
        with pytest.raises(ProviderError) as caught:
            await collect(stream)
        assert caught.value.stop_reason is StopReason.USER_CANCEL
        assert fake_openai.cancelled == [started.response_id]
        assert fake_openai.runs[started.response_id].status == "cancelled"

    async def test_cancelling_unknown_or_finished_runs_is_harmless(
        self, client, provider, fake_openai
    ):
        events = await collect(provider.refine(request(), "초고"))
        await client.cancel(events[0].response_id)
        await client.cancel("resp_unknown")
        assert fake_openai.received("/v1/responses/resp_unknown/cancel")


class Verdict(BaseModel):
    score: int
    reason: str


class TestStructured:
    async def test_schema_is_sent_and_the_answer_parsed(self, client, fake_openai):
        fake_openai.behaviour.structured_answers.append('{"score": 4, "reason": "고풍스럽다"}')
        verdict = await client.structured(Verdict, model="mini", instructions="평가", text="화설.")
        assert verdict == Verdict(score=4, reason="고풍스럽다")
        sent = fake_openai.received("/v1/responses")[0].body
        assert sent["model"] == "mini"
        assert sent["instructions"] == "평가"
        fmt = sent["text"]["format"]
        assert fmt["type"] == "json_schema"
        assert fmt["strict"] is True
        assert set(fmt["schema"]["properties"]) == {"score", "reason"}

    async def test_invalid_then_valid_is_parsed(self, client, fake_openai):
        fake_openai.behaviour.structured_answers.extend(
            ["{not json", '{"score": 1, "reason": "x"}']
        )
        verdict = await client.structured(Verdict, model="mini", instructions="평가", text="화설.")
        assert verdict.score == 1
        assert len(fake_openai.received("/v1/responses")) == 2

    async def test_invalid_twice_is_invalid_model_output(self, client, fake_openai):
        fake_openai.behaviour.structured_answers.extend(['{"score": "many"}', "[]"])
        with pytest.raises(InvalidModelOutput) as caught:
            await client.structured(Verdict, model="mini", instructions="평가", text="화설.")
        assert caught.value.code == "invalid_model_output"
        assert "Verdict" in caught.value.message

    async def test_extras_are_the_mini_models_title_and_recommendations(
        self, provider, fake_openai
    ):
        answer = {"title": "심청전", "recommendations": ["가", "나", "다"]}
        fake_openai.behaviour.structured_answers.append(json.dumps(answer, ensure_ascii=False))
        extras = await provider.extras(request(), "화설. 이야기로다.")
        assert extras == StoryExtras(**answer)
        sent = fake_openai.received("/v1/responses")[0].body
        assert "화설. 이야기로다." in sent["input"]


def test_the_models_recorded_with_a_story_are_those_of_the_settings(provider):
    assert provider.models == {
        "draft": "ft:draft",
        "refine": "refine",
        "mini": "mini",
        "embedding": "text-embedding-3-small",
    }


def test_the_setting_picks_the_http_library(client, http_client):
    sdk_http = client._client._client  # the SDK's own HTTP client, over the chosen transport
    uses_aiohttp = isinstance(sdk_http, openai.DefaultAioHttpClient)
    assert uses_aiohttp == (http_client is UpstreamHttp.AIOHTTP)
