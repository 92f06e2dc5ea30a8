"""Two app processes sharing MariaDB and Redis: a cancel or a resume lands on either one."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from typing import Any

import httpx
from sqlalchemy import select, text
from sqlalchemy.orm import InstrumentedAttribute

from storytool.models import ConversationData, ConversationStatus, StopReason, Thread
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

        again = await http.get(
            f"{b.url}/api/generate/{conversation_id}/events",
            headers={"Last-Event-ID": str(after[-1].id)},
        )

        ids = [event.id for event in before + after]
        assert ids == list(range(1, len(ids) + 1))  # every event once, in order, none missing
        assert after[-1].event == "done"
        assert again.status_code == 204  # from the terminal event on, nothing: it ends at once
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


SHORT: dict[str, Any] = {**PROMPT, "options": {"length": "short"}}


async def _race_once(
    http: httpx.AsyncClient, owner: Replica, other: Replica, trigger: tuple[str, str]
) -> tuple[list[Event], httpx.Response]:
    events, answer = await generate_then(
        http, owner, at_stage(trigger), cancel_through(http, other), SHORT
    )
    assert answer is not None
    return events, answer


async def one_end(database: Database, events: list[Event], answer: httpx.Response) -> str:
    """Checks that the story ended in exactly one state, the one its stream, its stored row and
    the cancel's answer all give; returns it."""
    names = [event.event for event in events]
    terminals = [name for name in names if name in ("done", "cancelled", "error")]
    assert terminals == [names[-1]]  # exactly one terminal event, and it is the last
    conversation, data = await database.conversation(events[0].data["conversation_id"])
    streamed = story_of(events)
    assert data.story == streamed
    if answer.status_code == 200:
        assert conversation.status is ConversationStatus.CANCELLED
        assert conversation.stop_reason is StopReason.USER_CANCEL
        assert names[-1] == "cancelled"
        assert events[-1].data["partial_story"] == streamed
        assert answer.json()["partial_story"] == streamed
        assert "title" not in names  # a cancelled story is not announced as titled
        assert data.title is None
    else:
        assert answer.status_code == 409
        assert conversation.status is ConversationStatus.COMPLETED
        assert names[-1] == "done"
        assert "title" in names
    return names[-1]


def sides(pair: tuple[Replica, Replica], i: int) -> tuple[Replica, Replica]:
    """The replica running the story and the one the cancel goes through: the same replica on
    even turns, the other one on odd turns."""
    a, b = pair
    return (a, a) if i % 2 == 0 else (a, b)


class TestCancelRacesCompletion:
    """A cancel and the story's own end race for the status (one conditional update each;
    whichever commits first holds). Each outcome is forced by holding the story on the database
    at the moment it is saved as completed, so both are checked on a busy machine as well."""

    async def test_a_cancel_landing_as_the_story_is_about_to_be_saved_wins(
        self, pair: tuple[Replica, Replica], http: httpx.AsyncClient, database: Database
    ):
        # Behind the stream, the story's text is written to its conversation_data row; with
        # that row locked the write waits, and so does the story's end, which waits out any
        # write still carrying its text (StageWriter.settle) before it sets the status.
        for i in range(4):
            end = await cancel_while_held(
                http,
                database,
                sides(pair, i),
                ConversationData.conversation_id,
                held=running("UPDATE conversation_data"),
                release_when=cancelled,
            )
            assert end == "cancelled"

    async def test_a_cancel_landing_as_the_completion_commits_loses(
        self, pair: tuple[Replica, Replica], http: httpx.AsyncClient, database: Database
    ):
        # The completing transaction sets the status, then touches the thread's row: with
        # that row locked it holds the status unsaved, and the cancel's update of the status
        # queues behind it.
        for i in range(4):
            end = await cancel_while_held(
                http,
                database,
                sides(pair, i),
                Thread.id,
                held=running("UPDATE threads"),
                release_when=running("UPDATE conversations SET status"),
            )
            assert end == "done"

    async def test_races_left_to_chance_end_in_one_state_either_way(
        self, pair: tuple[Replica, Replica], http: httpx.AsyncClient, database: Database
    ):
        a, b = pair
        runs = await asyncio.gather(
            *(
                _race_once(http, *((a, b) if i % 2 else (b, a)), RACE_TRIGGERS[i % 3])
                for i in range(20)
            )
        )
        for events, answer in runs:
            await one_end(database, events, answer)


Condition = Callable[[Database, str], Awaitable[bool]]
"""Something to wait for, given the database and the story's conversation id."""


async def cancel_while_held(
    http: httpx.AsyncClient,
    database: Database,
    sides: tuple[Replica, Replica],
    key: InstrumentedAttribute[str],
    *,
    held: Condition,
    release_when: Condition,
) -> str:
    """Starts a story on the first replica and locks its row in ``key``'s table (its thread's
    or its conversation's). Once the story is making its title (its last step before it is
    saved) and is ``held`` by that row, cancels it through the second replica of ``sides``, and
    lets the row go once ``release_when``. Checks how the story ended; returns that."""
    owner, through = sides
    async with http.stream("POST", f"{owner.url}/api/generate", json=SHORT) as response:
        reader = read_events(response)
        events = [await anext(reader)]
        meta = events[0].data
        row_id = meta["thread_id"] if key.class_ is Thread else meta["conversation_id"]
        async with holding(database, key, row_id):
            events += [event async for event in reader_until_started(reader)]
            await until(held, database, meta["conversation_id"])
            cancel = asyncio.create_task(cancel_through(http, through)(events))
            await until(release_when, database, meta["conversation_id"])
        events += [event async for event in reader]
    return await one_end(database, events, await cancel)


async def reader_until_started(reader: AsyncIterator[Event]) -> AsyncIterator[Event]:
    """The events up to the one that says the title is being made."""
    async for event in reader:
        yield event
        if at_stage(("recommend", "started"))([event]):
            return


@asynccontextmanager
async def holding(
    database: Database, key: InstrumentedAttribute[str], row_id: str
) -> AsyncIterator[None]:
    """Holds the lock of the row whose ``key`` is ``row_id`` (SELECT ... FOR UPDATE) for the
    block."""
    async with database.engine.connect() as connection, connection.begin():
        await connection.execute(select(key).where(key == row_id).with_for_update())
        yield


async def until(condition: Condition, database: Database, conversation_id: str) -> None:
    async with asyncio.timeout(30):
        while not await condition(database, conversation_id):
            await asyncio.sleep(0.02)


async def cancelled(database: Database, conversation_id: str) -> bool:
    conversation, _data = await database.conversation(conversation_id)
    return conversation.status is ConversationStatus.CANCELLED


def running(statement: str) -> Condition:
    """Whether a statement beginning with ``statement`` is executing on the test's database:
    held by the row the test locks, or queued behind the story's own update. Sent as text it
    shows as a ``Query``, as a prepared statement (the app's connections) as an ``Execute``."""

    async def condition(database: Database, _conversation_id: str) -> bool:
        async with database.engine.connect() as connection:
            found = await connection.scalar(
                text(
                    "SELECT COUNT(*) FROM information_schema.PROCESSLIST "
                    "WHERE DB = DATABASE() AND COMMAND IN ('Query', 'Execute') "
                    "AND INFO LIKE :statement"
                ),
                {"statement": f"{statement}%"},
            )
        return bool(found)

    return condition


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
