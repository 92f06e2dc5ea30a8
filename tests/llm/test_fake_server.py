"""The fake OpenAI server, driven by the real ``openai`` SDK: whatever it sends must parse."""

from __future__ import annotations

import asyncio
import json
import socket
import subprocess
import sys
import time

import httpx
import openai
import pytest
from pydantic import BaseModel

from tests.fakes.openai_server import (
    DEFAULT_STORY,
    NOT_FOUND_BODY,
    FakeOpenAI,
    Quirks,
    embed,
    tokenize,
)


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


class Extras(BaseModel):
    title: str
    recommendations: list[str]


def user(text: str) -> list:
    return [{"role": "user", "content": text}]


class TestLengthLimits:
    async def test_max_output_tokens_ends_a_response_incomplete(self, client):
        events = await events_of(
            await client.responses.create(
                model="gpt-4o", input="이야기", stream=True, max_output_tokens=3
            )
        )
        assert deltas_of(events) == "".join(tokenize(DEFAULT_STORY)[:3])
        end = events[-1]
        assert end.type == "response.incomplete"
        assert end.response.status == "incomplete"
        assert end.response.incomplete_details.reason == "max_output_tokens"
        assert end.response.usage.output_tokens == 3

    async def test_a_limit_the_answer_fits_in_completes(self, client):
        response = await client.responses.create(
            model="gpt-4o", input="이야기", max_output_tokens=1000
        )
        assert response.status == "completed"
        assert response.output_text == DEFAULT_STORY

    async def test_llamacpp_ends_a_cut_response_completed(self, client, fake_openai):
        fake_openai.behaviour.quirks = Quirks(incomplete_as="completed")
        response = await client.responses.create(
            model="gpt-4o", input="이야기", max_output_tokens=3
        )
        assert response.status == "completed"
        assert response.incomplete_details is None
        assert response.output_text == "".join(tokenize(DEFAULT_STORY)[:3])
        assert response.usage.output_tokens == 3

    @pytest.mark.parametrize("parameter", ["max_tokens", "max_completion_tokens"])
    async def test_chat_stops_at_the_limit_with_finish_reason_length(self, client, parameter):
        stream = await client.chat.completions.create(
            model="m", messages=user("이야기"), stream=True, **{parameter: 2}
        )
        chunks = [chunk async for chunk in stream]
        text = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
        assert text == "".join(tokenize(DEFAULT_STORY)[:2])
        assert chunks[-1].choices[0].finish_reason == "length"
        whole = await client.chat.completions.create(model="m", messages=user("이"), max_tokens=2)
        assert whole.choices[0].finish_reason == "length"
        assert whole.usage.completion_tokens == 2

    async def test_chat_only_llamacpp_ignores_max_completion_tokens(self, client, fake_openai):
        fake_openai.behaviour.quirks = Quirks.llamacpp_chat_only()
        ignored = await client.chat.completions.create(
            model="m", messages=user("이야기"), max_completion_tokens=2
        )
        assert ignored.choices[0].message.content == DEFAULT_STORY
        assert ignored.choices[0].finish_reason == "stop"
        honoured = await client.chat.completions.create(
            model="m", messages=user("이야기"), max_tokens=2
        )
        assert honoured.choices[0].finish_reason == "length"


class TestChatStructuredOutput:
    async def test_json_schema_answer_parses_into_the_type(self, client, fake_openai):
        completion = await client.chat.completions.parse(
            model="mini", messages=user("제목"), response_format=Extras
        )
        parsed = completion.choices[0].message.parsed
        assert isinstance(parsed, Extras)
        assert len(parsed.recommendations) == 3
        body = fake_openai.received("/v1/chat/completions")[0].body
        assert body["response_format"]["type"] == "json_schema"

    async def test_scripted_answers_apply_to_chat(self, client, fake_openai):
        fake_openai.behaviour.structured_answers.append(
            '{"title": "춘향전", "recommendations": []}'
        )
        completion = await client.chat.completions.parse(
            model="mini", messages=user("제목"), response_format=Extras
        )
        assert completion.choices[0].message.parsed == Extras(title="춘향전", recommendations=[])
        second = await client.chat.completions.parse(
            model="mini", messages=user("제목"), response_format=Extras
        )
        assert second.choices[0].message.parsed.title == "각설"

    async def test_json_object_answers_the_schema_the_prompt_states(self, client):
        schema = json.dumps(Extras.model_json_schema())
        completion = await client.chat.completions.create(
            model="mini",
            messages=[
                {"role": "system", "content": f"Answer in JSON with this schema:\n{schema}"},
                {"role": "user", "content": "제목"},
            ],
            response_format={"type": "json_object"},
        )
        assert Extras.model_validate_json(completion.choices[0].message.content).title == "각설"

    async def test_json_object_without_a_schema_is_still_an_object(self, client):
        completion = await client.chat.completions.create(
            model="mini", messages=user("JSON으로"), response_format={"type": "json_object"}
        )
        assert isinstance(json.loads(completion.choices[0].message.content), dict)

    async def test_ignored_json_schema_answers_free_text(self, client, fake_openai):
        fake_openai.behaviour.quirks = Quirks(chat_json_schema=False)
        fake_openai.behaviour.structured_answers.append('{"title": "unused"}')
        completion = await client.chat.completions.create(
            model="mini",
            messages=user("제목"),
            response_format={
                "type": "json_schema",
                "json_schema": {"name": "extras", "schema": Extras.model_json_schema()},
            },
        )
        assert completion.choices[0].message.content == DEFAULT_STORY
        assert list(fake_openai.behaviour.structured_answers) == ['{"title": "unused"}']


class TestQuirks:
    async def test_chat_only_server_answers_404_file_not_found_on_every_responses_path(
        self, client, fake_openai
    ):
        fake_openai.behaviour.quirks = Quirks.llamacpp_chat_only()
        with pytest.raises(openai.NotFoundError) as caught:
            await client.responses.create(model="gpt-4o", input="이야기", stream=True)
        assert caught.value.body == NOT_FOUND_BODY["error"]
        assert caught.value.message == "Error code: 404 - File Not Found"
        for call in (
            lambda: client.responses.cancel("resp_x"),
            lambda: client.responses.retrieve("resp_x"),
            lambda: client.responses.retrieve("resp_x", stream=True, starting_after=1),
            lambda: client.conversations.create(),
        ):
            with pytest.raises(openai.NotFoundError):
                await call()
        raw = httpx.post(f"{fake_openai.base_url}/responses", json={})
        assert (raw.status_code, raw.json()) == (404, NOT_FOUND_BODY)
        chat = await client.chat.completions.create(model="m", messages=user("이야기"))
        assert chat.choices[0].message.content == DEFAULT_STORY

    async def test_a_server_with_responses_refuses_a_body_it_cannot_run(self, fake_openai):
        fake_openai.behaviour.quirks = Quirks.llamacpp()
        runs = len(fake_openai.runs)
        unrunnable = [{"input": 0}, {"input": "x", "temperature": "hot"}]
        for body in unrunnable:
            raw = httpx.post(f"{fake_openai.base_url}/responses", json=body)
            assert raw.status_code == 400
        assert len(fake_openai.runs) == runs

    async def test_ignored_background_runs_a_non_streamed_create_to_its_end(
        self, client, fake_openai
    ):
        fake_openai.behaviour.quirks = Quirks(background=False)
        response = await client.responses.create(model="gpt-4o", input="이야기", background=True)
        assert response.background is None
        assert response.status == "completed"
        assert response.output_text == DEFAULT_STORY

    async def test_ignored_background_ties_the_run_to_its_stream(self, client, fake_openai):
        fake_openai.behaviour.quirks = Quirks(background=False)
        fake_openai.behaviour.tokens_per_second = 50
        stream = await client.responses.create(
            model="gpt-4o", input="이야기", stream=True, background=True
        )
        received = []
        async for event in stream:
            received.append(event)
            if event.type == "response.output_text.delta":
                break
        await stream.close()
        created = received[0].response
        assert created.background is None
        assert created.status == "in_progress"
        run = fake_openai.runs[created.id]
        for _ in range(50):
            if run.status == "cancelled":
                break
            await asyncio.sleep(0.02)
        assert run.status == "cancelled"
        assert len(run.written) < len(DEFAULT_STORY)

    async def test_honoured_background_outlives_its_stream(self, client, fake_openai):
        fake_openai.behaviour.tokens_per_second = 200
        stream = await client.responses.create(
            model="gpt-4o", input="이야기", stream=True, background=True
        )
        created = (await stream.__anext__()).response
        await stream.close()
        assert created.background is True
        run = fake_openai.runs[created.id]
        for _ in range(250):
            if run.finished:
                break
            await asyncio.sleep(0.02)
        assert run.status == "completed"
        assert (await client.responses.retrieve(created.id)).output_text == DEFAULT_STORY

    async def test_ignored_text_format_answers_free_text(self, client, fake_openai):
        fake_openai.behaviour.quirks = Quirks(text_format=False)
        with pytest.raises(ValueError, match=r"json_invalid|Invalid JSON"):
            await client.responses.parse(model="mini", input="제목", text_format=Extras)
        honoured = Quirks()
        fake_openai.behaviour.quirks = honoured
        parsed = await client.responses.parse(model="mini", input="제목", text_format=Extras)
        assert isinstance(parsed.output_parsed, Extras)

    async def test_events_without_sequence_numbers(self, client, fake_openai):
        fake_openai.behaviour.quirks = Quirks(sequence_numbers=False)
        events = await events_of(
            await client.responses.create(model="gpt-4o", input="이야기", stream=True)
        )
        assert {event.sequence_number for event in events} == {None}
        assert deltas_of(events) == DEFAULT_STORY
        assert events[-1].type == "response.completed"

    @pytest.mark.parametrize(
        ("status", "error", "words"),
        [
            (404, openai.NotFoundError, "File Not Found"),
            (405, openai.APIStatusError, "not supported"),
            (500, openai.InternalServerError, "CANCEL responses is not supported"),
        ],
    )
    async def test_cancel_answers_the_configured_status(
        self, client, fake_openai, status, error, words
    ):
        fake_openai.behaviour.quirks = Quirks(cancel_status=status)
        fake_openai.behaviour.tokens_per_second = 100
        stream = await client.responses.create(
            model="gpt-4o", input="이야기", stream=True, background=True
        )
        created = (await stream.__anext__()).response
        with pytest.raises(error) as caught:
            await client.responses.cancel(created.id)
        assert caught.value.status_code == status
        assert words in caught.value.message
        assert fake_openai.cancelled == []
        assert deltas_of(await events_of(stream)) == DEFAULT_STORY

    @pytest.mark.parametrize("status", [404, 500])
    async def test_retrieve_answers_the_configured_status_streamed_or_not(
        self, client, fake_openai, status
    ):
        fake_openai.behaviour.quirks = Quirks(retrieve_status=status)
        response = await client.responses.create(model="gpt-4o", input="이야기")
        for call in (
            lambda: client.responses.retrieve(response.id),
            lambda: client.responses.retrieve(response.id, stream=True, starting_after=1),
        ):
            with pytest.raises(openai.APIStatusError) as caught:
                await call()
            assert caught.value.status_code == status
        if status == 500:
            assert "GET responses is not supported" in caught.value.message

    async def test_long_response_ids(self, client, fake_openai):
        fake_openai.behaviour.quirks = Quirks(response_id_length=457)
        events = await events_of(
            await client.responses.create(model="gpt-4o", input="이야기", stream=True)
        )
        response_id = events[0].response.id
        assert len(response_id) == 457
        assert response_id.startswith("resp_")
        assert events[-1].response.id == response_id
        assert (await client.responses.retrieve(response_id)).status == "completed"

    async def test_untyped_assistant_items_are_refused_like_llamacpp(self, client, fake_openai):
        fake_openai.behaviour.quirks = Quirks.llamacpp()
        history = [{"role": "user", "content": "첫째"}, {"role": "assistant", "content": "답"}]
        with pytest.raises(openai.BadRequestError, match="Cannot determine type of 'item'"):
            await client.responses.create(model="gpt-4o", input=[*history, *user("둘째")])
        typed = [history[0], {"type": "message", **history[1]}, *user("둘째")]
        response = await client.responses.create(model="gpt-4o", input=typed)
        assert response.output_text == DEFAULT_STORY

    async def test_embeddings_unsupported(self, client, fake_openai):
        fake_openai.behaviour.quirks = Quirks(embeddings=False)
        with pytest.raises(openai.InternalServerError) as caught:
            await client.embeddings.create(model="e", input="가")
        assert caught.value.status_code == 501
        assert "--embeddings" in caught.value.message


class TestPresets:
    """Each preset, seen by a client doing what Storytool does: a capped background refine
    streamed, then a cancel and a resume of it."""

    async def refine(self, client):
        stream = await client.responses.create(
            model="gpt-4o", input="이야기", stream=True, background=True, max_output_tokens=3
        )
        return await events_of(stream)

    async def test_llamacpp(self, client, fake_openai):
        fake_openai.behaviour.quirks = Quirks.llamacpp()
        events = await self.refine(client)
        assert events[0].response.background is None
        assert {event.sequence_number for event in events} == {None}
        assert events[-1].type == "response.completed"
        response_id = events[0].response.id
        assert len(response_id) == 37
        with pytest.raises(openai.NotFoundError):
            await client.responses.cancel(response_id)
        with pytest.raises(openai.NotFoundError):
            await client.responses.retrieve(response_id, stream=True, starting_after=1)
        free = await client.responses.create(
            model="mini",
            input="제목",
            text={"format": {"type": "json_schema", "name": "x", "schema": SCHEMA}},
        )
        assert free.output_text == DEFAULT_STORY
        chat = await client.chat.completions.parse(
            model="mini", messages=user("제목"), response_format=Extras
        )
        assert isinstance(chat.choices[0].message.parsed, Extras)

    async def test_litellm_bridge(self, client, fake_openai):
        fake_openai.behaviour.quirks = Quirks.litellm_bridge()
        events = await self.refine(client)
        assert events[0].response.background is None
        assert events[-1].type == "response.incomplete"
        response_id = events[0].response.id
        assert len(response_id) == 457
        with pytest.raises(openai.InternalServerError, match="not supported"):
            await client.responses.cancel(response_id)
        with pytest.raises(openai.InternalServerError, match="not supported"):
            await client.responses.retrieve(response_id, stream=True, starting_after=1)
        parsed = await client.responses.parse(model="mini", input="제목", text_format=Extras)
        assert isinstance(parsed.output_parsed, Extras)

    async def test_llamacpp_chat_only(self, client, fake_openai):
        fake_openai.behaviour.quirks = Quirks.llamacpp_chat_only()
        with pytest.raises(openai.NotFoundError):
            await self.refine(client)
        stream = await client.chat.completions.create(
            model="m", messages=user("이야기"), stream=True, max_tokens=3
        )
        chunks = [chunk async for chunk in stream]
        assert chunks[-1].choices[0].finish_reason == "length"

    def test_command_line_serves_a_preset(self):
        with socket.socket() as probe:
            probe.bind(("127.0.0.1", 0))
            port = probe.getsockname()[1]
        args = ["--port", str(port), "--quirks", "llamacpp-chat-only"]
        process = subprocess.Popen([sys.executable, "-m", "tests.fakes.openai_server", *args])
        try:
            deadline = time.monotonic() + 20
            while True:
                try:
                    answer = httpx.post(f"http://127.0.0.1:{port}/v1/responses", json={})
                    break
                except httpx.TransportError:
                    assert time.monotonic() < deadline, "the fake did not start"
                    time.sleep(0.1)
            assert (answer.status_code, answer.json()) == (404, NOT_FOUND_BODY)
        finally:
            process.terminate()
            process.wait(10)
