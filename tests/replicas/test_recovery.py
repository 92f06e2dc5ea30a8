"""A replica killed mid-story (kill -9): its conversation becomes ``interrupted`` with the text it
had saved, found by a live peer once the lease expires or by the replica itself when it starts
again; a live replica's story is never touched."""

from __future__ import annotations

import asyncio
from collections.abc import Callable

import httpx

from storytool.models import ConversationStatus, StopReason
from tests.generation.conftest import Database, Event, read_events, settled, story_of
from tests.replicas.conftest import PROMPT, Replica, deltas, generate_then, mariadb

pytestmark = mariadb

SLOW = {"STORYTOOL_OFFLINE_CHARS_PER_SECOND": "40"}
"""About 20 s for a long story: it is still being written whatever the test does meanwhile."""
LONG = {**PROMPT, "options": {"length": "long"}}


async def begin(http: httpx.AsyncClient, replica: Replica, count: int) -> list[Event]:
    """Starts a long story on ``replica`` and leaves after its ``count``-th delta (the story
    goes on being written)."""
    events, _ = await generate_then(http, replica, deltas(count), body=LONG)
    return events


async def assert_interrupted_with_its_text(database: Database, events: list[Event]) -> str:
    conversation_id: str = events[0].data["conversation_id"]
    conversation, data = await database.conversation(conversation_id)
    assert conversation.status is ConversationStatus.INTERRUPTED
    assert conversation.stop_reason is StopReason.CRASH
    # The last flush: the story as far as it had streamed (it went on after the client left),
    # so the one is the start of the other.
    streamed = story_of(events)
    assert data.story
    assert data.story.startswith(streamed) or streamed.startswith(data.story)
    return conversation_id


class TestRecovery:
    async def test_a_live_peer_ends_a_killed_replicas_story_and_keeps_its_own(
        self,
        replicas: Callable[..., Replica],
        http: httpx.AsyncClient,
        database: Database,
    ):
        a, b = replicas("a", **SLOW), replicas("b", **SLOW)
        a.wait()
        b.wait()
        on_a = await begin(http, a, 3)
        on_b = await begin(http, b, 1)
        await asyncio.sleep(1.2)  # past a flush of A's story
        a.kill()

        killed_id = on_a[0].data["conversation_id"]
        assert await settled(database, killed_id) is ConversationStatus.INTERRUPTED
        await assert_interrupted_with_its_text(database, on_a)
        live_id = on_b[0].data["conversation_id"]
        live, _data = await database.conversation(live_id)
        assert live.status is ConversationStatus.IN_PROGRESS
        assert live.owner_instance == "b"

        # A resume of the killed story through B ends with the interruption, not a hang.
        async with http.stream(
            "GET",
            f"{b.url}/api/generate/{killed_id}/events",
            headers={"Last-Event-ID": str(on_a[-1].id)},
        ) as response:
            rest = [event async for event in read_events(response)]
        assert [event.event for event in rest][-1] == "error"
        assert rest[-1].data["code"] == "interrupted"

        cancelled = await http.post(
            f"{b.url}/api/cancelGeneration", json={"conversation_id": live_id}
        )
        assert cancelled.json()["status"] == "cancelled"
        b.kill()

    async def test_a_replica_started_again_ends_the_story_its_previous_life_left(
        self,
        replicas: Callable[..., Replica],
        http: httpx.AsyncClient,
        database: Database,
    ):
        # Alone (no peer to notice), with a lease far longer than the restart.
        lease = {**SLOW, "STORYTOOL_INSTANCE_LEASE_S": "60"}
        first = replicas("solo", **lease)
        first.wait()
        events = await begin(http, first, 3)
        await asyncio.sleep(1.2)
        first.kill()
        replicas("solo", **lease).wait()  # the same id, as a pod with a stable name

        # Start-up recovery ran before the replica served its first request.
        await assert_interrupted_with_its_text(database, events)
