"""Leaving, resuming, cancelling and limits of a generation, over real HTTP on loopback."""

from __future__ import annotations

import asyncio
import json
import logging
from typing import Any

import httpx
import pytest
from sqlalchemy import update

from storytool.config import AuthMode, Settings
from storytool.main import create_app
from storytool.models import Conversation, ConversationStatus, StopReason
from tests.fakes.server_thread import ServerThread
from tests.generation.conftest import (
    Database,
    cancel_when,
    deltas,
    generate,
    read_events,
    serving,
    settled,
    story_of,
    until_deltas,
)

PROMPT = {"user_input": "한 선비가 과거를 보러 길을 떠나니", "tags": ["모험"]}
USER_A = {"X-User-Id": "user-a"}
USER_B = {"X-User-Id": "user-b"}
UNKNOWN_ID = "00000000-0000-4000-8000-000000000000"
"""A well-formed id that no thread or conversation has."""


def paced(settings: Settings, chars_per_second: float, **changes: Any) -> Settings:
    return settings.model_copy(update={"offline_chars_per_second": chars_per_second, **changes})


class TestResume:
    async def test_resume_after_3_deltas_gets_every_later_event_once(
        self, settings: Settings, database: Database
    ):
        async with serving(paced(settings, 1000)) as client:
            before = await until_deltas(client, PROMPT, 3)
            conversation_id = before[0].data["conversation_id"]
            last_id = before[-1].id
            async with client.stream(
                "GET",
                f"/api/generate/{conversation_id}/events",
                headers={"Last-Event-ID": str(last_id)},
            ) as response:
                assert response.status_code == 200
                after = [event async for event in read_events(response)]

        assert [e.id for e in after] == list(range(last_id + 1, last_id + 1 + len(after)))
        assert [e.event for e in after].count("done") == 1
        assert after[-1].event == "done"
        _conversation, data = await database.conversation(conversation_id)
        assert story_of(before) + story_of(after) == data.story

    async def test_a_whole_replay_matches_the_first_stream(self, client: httpx.AsyncClient):
        first = await generate(client, PROMPT)
        conversation_id = first[0].data["conversation_id"]
        async with client.stream("GET", f"/api/generate/{conversation_id}/events") as response:
            replay = [event async for event in read_events(response)]
        assert replay == first

    async def test_resume_with_the_id_in_capitals_replays_the_same_story(
        self, client: httpx.AsyncClient
    ):
        first = await generate(client, PROMPT)
        conversation_id = first[0].data["conversation_id"]
        async with client.stream(
            "GET", f"/api/generate/{conversation_id.upper()}/events"
        ) as response:
            assert response.status_code == 200
            replay = [event async for event in read_events(response)]
        assert replay == first

    async def test_resume_of_another_users_or_unknown_conversation_is_404(self, settings: Settings):
        async with serving(paced(settings, 4000, auth_mode=AuthMode.HEADER)) as client:
            events = await generate(client, PROMPT, headers=USER_A)
            conversation_id = events[0].data["conversation_id"]
            theirs = await client.get(f"/api/generate/{conversation_id}/events", headers=USER_B)
            unknown = await client.get(f"/api/generate/{UNKNOWN_ID}/events", headers=USER_A)
        assert theirs.status_code == unknown.status_code == 404
        assert theirs.json()["error"]["code"] == "not_found"


class TestCancel:
    async def test_cancel_mid_refine_ends_the_stream_with_what_was_streamed(
        self, settings: Settings, database: Database
    ):
        async with serving(paced(settings, 300)) as client:
            events, answer = await cancel_when(client, PROMPT, deltas(3))
            conversation_id = events[0].data["conversation_id"]
            again = await client.post(
                "/api/cancelGeneration", json={"conversation_id": conversation_id}
            )

        assert answer.status_code == 200
        body = answer.json()
        assert body["status"] == "cancelled"
        assert body["user_input"] == PROMPT["user_input"]
        assert body["tags"] == PROMPT["tags"]
        assert events[-1].event == "cancelled"
        assert [e.event for e in events].count("cancelled") == 1
        assert "done" not in [e.event for e in events]
        streamed = story_of(events)
        assert len(streamed) > 0
        assert body["partial_story"] == streamed == events[-1].data["partial_story"]
        assert again.status_code == 200
        assert again.json() == body
        conversation, data = await database.conversation(conversation_id)
        assert conversation.status is ConversationStatus.CANCELLED
        assert conversation.stop_reason is StopReason.USER_CANCEL
        assert data.story == streamed
        assert data.title is None

    async def test_cancel_with_the_id_in_capitals_stops_the_story(
        self, settings: Settings, database: Database
    ):
        """One conversation, one id: the running story and its row are found by any spelling,
        so the story stops where the answer says (it streamed on, cancelled only in the
        database, when the database alone matched the capitals)."""
        async with serving(paced(settings, 300)) as client:
            async with client.stream("POST", "/api/generate", json=PROMPT) as response:
                reader = read_events(response)
                events = []
                async for event in reader:
                    events.append(event)
                    if deltas(3)(events):
                        break
                conversation_id = events[0].data["conversation_id"]
                answer = await client.post(
                    "/api/cancelGeneration", json={"conversation_id": conversation_id.upper()}
                )
                events += [event async for event in reader]

        assert answer.status_code == 200
        assert answer.json()["conversation_id"] == conversation_id
        assert answer.json()["status"] == "cancelled"
        assert events[-1].event == "cancelled"
        assert answer.json()["partial_story"] == story_of(events)
        conversation, data = await database.conversation(conversation_id)
        assert conversation.status is ConversationStatus.CANCELLED
        assert data.story == story_of(events)

    async def test_cancel_after_completion_is_409_and_unknown_is_404(
        self, client: httpx.AsyncClient
    ):
        events = await generate(client, PROMPT)
        finished = await client.post(
            "/api/cancelGeneration", json={"conversation_id": events[0].data["conversation_id"]}
        )
        unknown = await client.post("/api/cancelGeneration", json={"conversation_id": UNKNOWN_ID})
        assert finished.status_code == 409
        assert finished.json()["error"]["code"] == "conflict"
        assert unknown.status_code == 404

    async def test_another_users_conversation_cannot_be_cancelled(
        self, settings: Settings, database: Database
    ):
        async with serving(paced(settings, 300, auth_mode=AuthMode.HEADER)) as client:
            events = await until_deltas(client, PROMPT, 1, headers=USER_A)
            conversation_id = events[0].data["conversation_id"]
            theirs = await client.post(
                "/api/cancelGeneration",
                json={"conversation_id": conversation_id},
                headers=USER_B,
            )
            assert theirs.status_code == 404
            assert await settled(database, conversation_id) is ConversationStatus.COMPLETED

    async def test_client_gone_cancels_when_the_setting_says_so(
        self, settings: Settings, database: Database
    ):
        async with serving(paced(settings, 300, cancel_on_disconnect=True)) as client:
            events = await until_deltas(client, PROMPT, 2)
            conversation_id = events[0].data["conversation_id"]
            assert await settled(database, conversation_id) is ConversationStatus.CANCELLED
        conversation, data = await database.conversation(conversation_id)
        assert conversation.stop_reason is StopReason.CLIENT_GONE
        assert data.story
        assert data.story.startswith(story_of(events))

    async def test_shutdown_interrupts_and_keeps_the_text(
        self, settings: Settings, database: Database
    ):
        async with serving(paced(settings, 300)) as client:
            events = await until_deltas(client, PROMPT, 2)
        conversation, data = await database.conversation(events[0].data["conversation_id"])
        assert conversation.status is ConversationStatus.INTERRUPTED
        assert conversation.stop_reason is StopReason.SHUTDOWN
        assert data.story
        assert data.story.startswith(story_of(events))

    async def test_a_story_that_cannot_stop_in_time_is_named_with_where_it_waits(
        self, settings: Settings, database: Database, caplog: pytest.LogCaptureFixture
    ):
        """The replica exits after its shutdown timeout whatever a story waits on, and says
        which story held it and where, so a slow exit can be traced."""
        caplog.set_level(logging.WARNING, logger="storytool")
        server = ServerThread(create_app(paced(settings, 300, shutdown_timeout_s=0.5)))
        server.start()
        try:
            async with httpx.AsyncClient(base_url=server.url, timeout=30) as client:
                events = await until_deltas(client, PROMPT, 2)
            conversation_id = events[0].data["conversation_id"]
            # Another transaction holds the story's row: its end waits for it.
            async with database.engine.connect() as holder:
                await holder.execute(
                    update(Conversation)
                    .where(Conversation.id == conversation_id)
                    .values(status=Conversation.status)
                )
                stopping = asyncio.create_task(asyncio.to_thread(server.stop))
                async with asyncio.timeout(30):
                    while not any("shutdown timeout" in r.message for r in caplog.records):
                        await asyncio.sleep(0.05)
                await holder.rollback()
            await stopping
        finally:
            server.stop()  # at once if the test stopped it already; else a failure's cleanup

        [warning] = [record for record in caplog.records if "shutdown timeout" in record.message]
        assert f"generation-{conversation_id} did not stop within the 0.5 s" in warning.message
        assert "_end_early" in warning.message  # saving its end, not stuck upstream
        # Left as it stood, for the next start's recovery to end.
        conversation, _data = await database.conversation(conversation_id)
        assert conversation.status is ConversationStatus.IN_PROGRESS


class TestLimits:
    async def test_output_limit_stops_the_story_where_the_limit_falls(
        self, settings: Settings, database: Database
    ):
        # Within the draft, whichever variant the conversation's id makes of it: every offline
        # draft is longer than this.
        limit = 40
        async with serving(paced(settings, 4000, max_output_chars=limit)) as client:
            events = await generate(client, PROMPT)
        assert events[-1].event == "error"
        assert events[-1].data["code"] == "output_limit"
        assert len(story_of(events, "draft")) == limit
        assert story_of(events) == ""
        conversation, data = await database.conversation(events[0].data["conversation_id"])
        assert conversation.status is ConversationStatus.FAILED
        assert conversation.stop_reason is StopReason.OUTPUT_LIMIT
        assert data.base_story == story_of(events, "draft")

    async def test_a_generation_past_its_time_ends_with_timeout(
        self, settings: Settings, database: Database
    ):
        async with serving(paced(settings, 100, max_generation_seconds=0.4)) as client:
            events = await generate(client, PROMPT)
        assert events[-1].event == "error"
        assert events[-1].data["code"] == "timeout"
        conversation, data = await database.conversation(events[0].data["conversation_id"])
        assert conversation.status is ConversationStatus.FAILED
        assert conversation.stop_reason is StopReason.TIMEOUT
        assert data.story == story_of(events) != ""

    @pytest.mark.parametrize(
        ("limit", "status"), [("max_running_per_user", 429), ("max_running_total", 503)]
    )
    async def test_past_the_running_limit_is_refused_with_retry_after(
        self, settings: Settings, database: Database, limit: str, status: int
    ):
        async with serving(paced(settings, 300, **{limit: 1})) as client:
            async with client.stream("POST", "/api/generate", json=PROMPT) as response:
                assert (await anext(read_events(response))).event == "meta"
                counts = await database.counts()
                refused = await client.post("/api/generate", json=PROMPT)
                assert await database.counts() == counts
        assert refused.status_code == status
        assert int(refused.headers["retry-after"]) > 0


class TestInvalidInput:
    @pytest.mark.parametrize(
        ("content", "status", "field"),
        [
            (json.dumps({"user_input": ""}), 422, "user_input"),
            (json.dumps({"user_input": "   "}), 422, "user_input"),
            (json.dumps({"user_input": "가" * 4001}), 422, "user_input"),
            (json.dumps({"user_input": 5}), 422, "user_input"),
            (json.dumps({"user_input": "이야기", "tags": "모험"}), 422, "tags"),
            (json.dumps({"user_input": "이야기", "options": {"length": "epic"}}), 422, None),
            ('{"user_input": "이야기"', 422, None),
            (json.dumps({"user_input": "이야기", "thread_id": "no-such-thread"}), 422, "thread_id"),
            (json.dumps({"user_input": "이야기", "thread_id": UNKNOWN_ID}), 404, None),
        ],
    )
    async def test_bad_requests_are_refused_before_any_stream_and_write_nothing(
        self,
        client: httpx.AsyncClient,
        database: Database,
        content: str,
        status: int,
        field: str | None,
    ):
        response = await client.post(
            "/api/generate", content=content, headers={"Content-Type": "application/json"}
        )
        assert response.status_code == status
        assert response.headers["content-type"] == "application/json"
        error = response.json()["error"]
        if field is not None:
            assert error["field"] == field
        assert await database.counts() == (0, 0)

    async def test_another_users_thread_is_404_and_writes_nothing(
        self, settings: Settings, database: Database
    ):
        async with serving(paced(settings, 4000, auth_mode=AuthMode.HEADER)) as client:
            events = await generate(client, PROMPT, headers=USER_A)
            counts = await database.counts()
            theirs = await client.post(
                "/api/generate",
                json={**PROMPT, "thread_id": events[0].data["thread_id"]},
                headers=USER_B,
            )
        assert theirs.status_code == 404
        assert theirs.json()["error"]["field"] == "thread_id"
        assert await database.counts() == counts
