"""Two app processes sharing MariaDB and Redis: a cancel or a resume lands on either one."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from typing import Any

import httpx

from storytool.models import ConversationStatus, StopReason
from tests.generation.conftest import Database, Event, read_events, story_of
from tests.replicas.conftest import PROMPT, Replica, deltas, generate_then, mariadb

pytestmark = mariadb


class TestCancelAcrossReplicas:
    async def test_cancel_through_b_ends_the_stream_on_a_with_the_saved_text(
        self, pair: tuple[Replica, Replica], http: httpx.AsyncClient, database: Database
    ):
        a, b = pair
        events, answer = await generate_then(http, a, deltas(3), cancel_through(http, b))
        conversation_id = events[0].data["conversation_id"]

        assert answer is not None
        assert answer.status_code == 200
        body = answer.json()
        assert body["status"] == "cancelled"
        terminal = events[-1]
        assert terminal.event == "cancelled"
        assert [event.event for event in events].count("cancelled") == 1
        streamed = story_of(events)
        assert streamed  # it was cut mid-refine, not before
        assert terminal.data["partial_story"] == streamed
        assert body["partial_story"] == streamed  # B answered once A had saved it
        conversation, data = await database.conversation(conversation_id)
        assert conversation.status is ConversationStatus.CANCELLED
        assert conversation.stop_reason is StopReason.USER_CANCEL
        assert conversation.owner_instance == "a"
        assert data.story == streamed

        again = await http.post(
            f"{b.url}/api/cancelGeneration", json={"conversation_id": conversation_id}
        )
        assert again.status_code == 200
        assert again.json() == body

    async def test_resume_through_b_gets_the_remaining_events_once_each(
        self, pair: tuple[Replica, Replica], http: httpx.AsyncClient, database: Database
    ):
        a, b = pair
        before, _ = await generate_then(http, a, deltas(3))
        conversation_id = before[0].data["conversation_id"]
        async with http.stream(
            "GET",
            f"{b.url}/api/generate/{conversation_id}/events",
            headers={"Last-Event-ID": str(before[-1].id)},
        ) as response:
            assert response.status_code == 200
            after = [event async for event in read_events(response)]

        ids = [event.id for event in before + after]
        assert ids == list(range(1, len(ids) + 1))  # every event once, in order, none missing
        assert after[-1].event == "done"
        conversation, data = await database.conversation(conversation_id)
        assert conversation.status is ConversationStatus.COMPLETED
        assert data.story == story_of(before + after)


RACE_TRIGGERS = [("refine", "done"), ("title", "started"), ("recommend", "started")]
"""The moments a racing cancel is sent: the last delta is out and the story is about to be
saved as completed, so the cancel and the completion commit within milliseconds of each other."""


def cancel_through(
    http: httpx.AsyncClient, replica: Replica
) -> Callable[[list[Event]], Awaitable[httpx.Response]]:
    async def cancel(events: list[Event]) -> httpx.Response:
        conversation_id = events[0].data["conversation_id"]
        return await http.post(
            f"{replica.url}/api/cancelGeneration", json={"conversation_id": conversation_id}
        )

    return cancel


def at_stage(trigger: tuple[str, str]) -> Callable[[list[Event]], bool]:
    def ready(events: list[Event]) -> bool:
        event = events[-1]
        return event.event == "stage" and (event.data["name"], event.data["status"]) == trigger

    return ready


async def _race_once(
    http: httpx.AsyncClient, owner: Replica, other: Replica, trigger: tuple[str, str]
) -> tuple[str, list[Event], httpx.Response]:
    body: dict[str, Any] = {**PROMPT, "options": {"length": "short"}}
    events, answer = await generate_then(
        http, owner, at_stage(trigger), cancel_through(http, other), body
    )
    assert answer is not None
    return events[0].data["conversation_id"], events, answer


class TestCancelRacesCompletion:
    async def test_every_story_ends_in_one_state_matching_its_stream_and_the_answer(
        self, pair: tuple[Replica, Replica], http: httpx.AsyncClient, database: Database
    ):
        a, b = pair
        runs = await asyncio.gather(
            *(
                _race_once(http, *((a, b) if i % 2 else (b, a)), RACE_TRIGGERS[i % 3])
                for i in range(50)
            )
        )
        outcomes = set()
        for conversation_id, events, answer in runs:
            names = [event.event for event in events]
            terminals = [name for name in names if name in ("done", "cancelled", "error")]
            assert terminals == [names[-1]]  # exactly one terminal event, and it is the last
            conversation, data = await database.conversation(conversation_id)
            streamed = story_of(events)
            assert data.story == streamed
            if answer.status_code == 200:
                assert conversation.status is ConversationStatus.CANCELLED
                assert names[-1] == "cancelled"
                assert events[-1].data["partial_story"] == streamed
                assert answer.json()["partial_story"] == streamed
                assert "title" not in names  # a cancelled story is not announced as titled
            else:
                assert answer.status_code == 409
                assert conversation.status is ConversationStatus.COMPLETED
                assert names[-1] == "done"
            outcomes.add(conversation.status)
        # Both ends happen: otherwise the trigger does not race anything.
        assert outcomes == {ConversationStatus.CANCELLED, ConversationStatus.COMPLETED}


class TestDeleteThreadAcrossReplicas:
    async def test_deleting_through_b_stops_the_story_running_on_a_first(
        self, pair: tuple[Replica, Replica], http: httpx.AsyncClient, database: Database
    ):
        a, b = pair

        async def delete(events: list[Event]) -> httpx.Response:
            thread_id = events[0].data["thread_id"]
            return await http.delete(f"{b.url}/api/deleteThread", params={"thread_id": thread_id})

        events, deleted = await generate_then(http, a, deltas(2), delete)

        assert deleted is not None
        assert deleted.status_code == 204
        assert events[-1].event == "cancelled"
        assert events[-1].data["partial_story"] == story_of(events)
        assert await database.counts() == (0, 0)
