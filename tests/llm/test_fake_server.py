"""The fake OpenAI server, driven by the real ``openai`` SDK: whatever it sends must parse."""

from __future__ import annotations

import json
import time

import openai
import pytest

from tests.fakes.openai_server import DEFAULT_STORY, FakeOpenAI, embed, tokenize


@pytest.fixture
async def client(fake_openai: FakeOpenAI):
    client = openai.AsyncOpenAI(
        api_key="sk-test", base_url=fake_openai.base_url, max_retries=0, timeout=5.0
    )
    yield client
    await client.close()


async def events_of(stream) -> list:
    return [event async for event in stream]


async def collect_into(stream, received: list) -> None:
    async for event in stream:
        received.append(event)


def deltas_of(events) -> str:
    return "".join(e.delta for e in events if e.type == "response.output_text.delta")


class TestResponsesStreaming:
    async def test_streams_the_real_event_sequence(self, client, fake_openai):
        stream = await client.responses.create(model="gpt-4o", input="이야기", stream=True)
        events = await events_of(stream)
        types = [event.type for event in events]
        assert types[:4] == [
            "response.created",
            "response.in_progress",
            "response.output_item.added",
            "response.content_part.added",
        ]
        assert types[-4:] == [
            "response.output_text.done",
            "response.content_part.done",
            "response.output_item.done",
            "response.completed",
        ]
        assert [event.sequence_number for event in events] == list(range(len(events)))
        assert deltas_of(events) == DEFAULT_STORY
        completed = events[-1].response
        assert completed.status == "completed"
        assert completed.output_text == DEFAULT_STORY
        assert completed.usage.output_tokens == types.count("response.output_text.delta")
        assert events[0].response.id == completed.id
        assert fake_openai.received("/v1/responses")[0].headers["authorization"] == "Bearer sk-test"

    async def test_first_token_delay_and_pace(self, client, fake_openai):
        fake_openai.behaviour.first_token_delay = 0.2
        fake_openai.behaviour.tokens_per_second = 100
        started = time.monotonic()
        first_delta = None
        stream = await client.responses.create(model="gpt-4o", input="이야기", stream=True)
        async for event in stream:
            if event.type == "response.output_text.delta" and first_delta is None:
                first_delta = time.monotonic() - started
        total = time.monotonic() - started
        assert first_delta is not None
        assert first_delta >= 0.2
        assert total >= 0.2 + len(tokenize(DEFAULT_STORY)) / 100 * 0.9

    async def test_non_streaming_answers_the_whole_text(self, client, fake_openai):
        fake_openai.behaviour.texts["gpt-4o"] = "차설. 짧은 이야기로다."
        response = await client.responses.create(model="gpt-4o", input="이야기")
        assert response.status == "completed"
        assert response.output_text == "차설. 짧은 이야기로다."

    async def test_dropped_background_stream_resumes_after_a_sequence_number(
        self, client, fake_openai
    ):
        fake_openai.behaviour.add_fault("drop", after=3)
        stream = await client.responses.create(
            model="gpt-4o", input="이야기", stream=True, background=True
        )
        received = []
        with pytest.raises(openai.APIConnectionError):
            await collect_into(stream, received)
        assert deltas_of(received) != ""
        last = received[-1].sequence_number
        resumed = await client.responses.retrieve(
            received[0].response.id, stream=True, starting_after=last
        )
        rest = await events_of(resumed)
        assert rest[0].sequence_number == last + 1
        assert deltas_of(received) + deltas_of(rest) == DEFAULT_STORY
        assert rest[-1].type == "response.completed"

    async def test_cancel_stops_a_background_run(self, client, fake_openai):
        fake_openai.behaviour.tokens_per_second = 50
        stream = await client.responses.create(
            model="gpt-4o", input="이야기", stream=True, background=True
        )
        received = []
        async for event in stream:
            received.append(event)
            if event.type == "response.output_text.delta":
                cancelled = await client.responses.cancel(received[0].response.id)
                assert cancelled.status == "cancelled"
        assert received[-1].type == "response.output_text.delta"
        assert len(deltas_of(received)) < len(DEFAULT_STORY)
        assert fake_openai.cancelled == [received[0].response.id]
        snapshot = await client.responses.retrieve(received[0].response.id)
        assert snapshot.status == "cancelled"

    async def test_cancel_of_an_unknown_response_is_404(self, client):
        with pytest.raises(openai.NotFoundError):
            await client.responses.cancel("resp_missing")

    async def test_stall_makes_the_sdk_time_out(self, fake_openai):
        fake_openai.behaviour.add_fault("stall", after=2)
        client = openai.AsyncOpenAI(
            api_key="k", base_url=fake_openai.base_url, max_retries=0, timeout=0.3
        )
        stream = await client.responses.create(model="gpt-4o", input="이야기", stream=True)
        received = []
        with pytest.raises(openai.APITimeoutError):
            await collect_into(stream, received)
        assert deltas_of(received) == "".join(tokenize(DEFAULT_STORY)[:2])
        await client.close()

    async def test_unknown_event_type_arrives_mid_stream(self, client, fake_openai):
        fake_openai.behaviour.add_fault("inject", after=2, event_type="keepalive")
        events = await events_of(
            await client.responses.create(model="gpt-4o", input="이야기", stream=True)
        )
        types = [event.type for event in events]
        assert "keepalive" in types
        assert types.index("keepalive") > types.index("response.output_text.delta")
        assert deltas_of(events) == DEFAULT_STORY

    @pytest.mark.parametrize("kind", ["failed", "incomplete", "error"])
    async def test_mid_stream_failure_ends_the_stream_with_its_event(
        self, client, fake_openai, kind
    ):
        fake_openai.behaviour.add_fault(kind, after=2)
        events = await events_of(
            await client.responses.create(model="gpt-4o", input="이야기", stream=True)
        )
        expected = "error" if kind == "error" else f"response.{kind}"
        assert events[-1].type == expected
        assert len([e for e in events if e.type == "response.output_text.delta"]) == 2

    async def test_http_errors_are_answered_then_requests_work(self, client, fake_openai):
        fake_openai.behaviour.fail_next(500)
        fake_openai.behaviour.fail_next(429, retry_after=2)
        with pytest.raises(openai.InternalServerError):
            await client.responses.create(model="gpt-4o", input="이야기")
        with pytest.raises(openai.RateLimitError) as caught:
            await client.responses.create(model="gpt-4o", input="이야기")
        assert caught.value.response.headers["retry-after"] == "2"
        response = await client.responses.create(model="gpt-4o", input="이야기")
        assert response.output_text == DEFAULT_STORY


SCHEMA = {
    "type": "object",
    "properties": {"title": {"type": "string"}, "recommendations": {"type": "array"}},
    "required": ["title", "recommendations"],
    "additionalProperties": False,
}


class TestStructuredOutput:
    def text_format(self):
        return {"format": {"type": "json_schema", "name": "extras", "schema": SCHEMA}}

    async def test_scripted_answers_come_in_order(self, client, fake_openai):
        fake_openai.behaviour.structured_answers.extend(["not json", '{"title": "춘향전"}'])
        first = await client.responses.create(model="mini", input="x", text=self.text_format())
        second = await client.responses.create(model="mini", input="x", text=self.text_format())
        assert first.output_text == "not json"
        assert json.loads(second.output_text) == {"title": "춘향전"}
        assert fake_openai.received("/v1/responses")[0].body["text"]["format"]["schema"] == (SCHEMA)

    async def test_unscripted_answer_satisfies_the_schema(self, client):
        response = await client.responses.create(model="mini", input="x", text=self.text_format())
        answer = json.loads(response.output_text)
        assert isinstance(answer["title"], str)
        assert len(answer["recommendations"]) == 3


class TestChatCompletions:
    async def test_streams_chunks_with_usage_then_done(self, client, fake_openai):
        fake_openai.behaviour.texts["ft:draft"] = "각설. 초고로다."
        stream = await client.chat.completions.create(
            model="ft:draft",
            messages=[{"role": "user", "content": "이야기"}],
            stream=True,
            stream_options={"include_usage": True},
        )
        chunks = [chunk async for chunk in stream]
        text = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
        assert text == "각설. 초고로다."
        assert chunks[-2].choices[0].finish_reason == "stop"
        assert chunks[-1].choices == []
        assert chunks[-1].usage.completion_tokens == 2

    async def test_non_streaming(self, client):
        completion = await client.chat.completions.create(
            model="m", messages=[{"role": "user", "content": "이야기"}]
        )
        assert completion.choices[0].message.content == DEFAULT_STORY
        assert completion.usage.total_tokens > 0

    async def test_dropped_chat_stream_raises_connection_error(self, client, fake_openai):
        fake_openai.behaviour.add_fault("drop", after=1, api="chat")
        stream = await client.chat.completions.create(
            model="m", messages=[{"role": "user", "content": "이야기"}], stream=True
        )
        with pytest.raises(openai.APIConnectionError):
            await collect_into(stream, [])


class TestEmbeddings:
    async def test_base64_by_default_and_float_on_request_agree(self, client, fake_openai):
        fake_openai.behaviour.embedding_dimension = 16
        default = await client.embeddings.create(model="e", input=["가", "나"])
        floats = await client.embeddings.create(model="e", input="가", encoding_format="float")
        assert fake_openai.received("/v1/embeddings")[0].body["encoding_format"] == "base64"
        assert len(default.data) == 2
        assert default.data[0].embedding == pytest.approx(floats.data[0].embedding, abs=1e-6)
        assert floats.data[0].embedding == embed("가", 16)
        assert default.data[0].embedding != pytest.approx(default.data[1].embedding)

    async def test_dimensions_parameter(self, client):
        answer = await client.embeddings.create(
            model="e", input="가", dimensions=8, encoding_format="float"
        )
        assert len(answer.data[0].embedding) == 8


class TestConversations:
    async def test_items_and_responses_accumulate_then_delete(self, client):
        conversation = await client.conversations.create()
        await client.conversations.items.create(
            conversation.id, items=[{"type": "message", "role": "user", "content": "첫 줄거리"}]
        )
        await client.responses.create(model="gpt-4o", input="둘째", conversation=conversation.id)
        items = [item async for item in client.conversations.items.list(conversation.id)]
        assert [item.role for item in items] == ["assistant", "user", "user"]
        assert items[0].content[0].text == DEFAULT_STORY
        deleted = await client.conversations.delete(conversation.id)
        assert deleted.deleted
        with pytest.raises(openai.NotFoundError):
            await client.conversations.delete(conversation.id)

    async def test_unknown_conversation_is_404(self, client):
        with pytest.raises(openai.NotFoundError):
            await client.responses.create(model="gpt-4o", input="x", conversation="conv_none")
