"""A replica killed mid-story (kill -9): a live peer adopts its story once the lease expires, or the
replica itself does when it starts again, and the story is written to its end in the same event
log; a live replica's story is never touched. A story whose run cannot be resumed ends
``interrupted`` with the text it had saved (tests/replicas/test_adoption.py: on a server without
background runs)."""

from __future__ import annotations

import asyncio
from collections.abc import Callable

import httpx

from storytool.models import ConversationStatus
from tests.generation.conftest import Database, Event, settled, story_of
from tests.replicas.conftest import PROMPT, Replica, deltas, generate_then, mariadb, resume

pytestmark = mariadb

PACE = {"STORYTOOL_OFFLINE_CHARS_PER_SECOND": "100"}
"""A long story takes several seconds: still being written whatever the test does meanwhile."""
LONG = {**PROMPT, "options": {"length": "long"}}


async def begin(http: httpx.AsyncClient, replica: Replica, count: int) -> list[Event]:
    """Starts a long story on ``replica`` and leaves after its ``count``-th refine delta (the
    story goes on being written)."""
    events, _ = await generate_then(http, replica, deltas(count), body=LONG)
    return events


async def assert_whole(database: Database, before: list[Event], after: list[Event]) -> None:
    """The story completed, and its readers got every event once, in order, with the stored
    story exactly what they were sent."""
    conversation_id = before[0].data["conversation_id"]
    assert await settled(database, conversation_id) is ConversationStatus.COMPLETED
    ids = [event.id for event in before + after]
    assert ids == list(range(1, len(ids) + 1))
    assert [event.event for event in after][-1] == "done"
    _conversation, data = await database.conversation(conversation_id)
    assert story_of(before) + story_of(after) == data.story
    assert data.title


class TestAdoption:
    async def test_a_live_peer_carries_on_a_killed_replicas_story_and_keeps_its_own(
        self,
        replicas: Callable[..., Replica],
        http: httpx.AsyncClient,
        database: Database,
    ):
        a, b = replicas("a", **PACE), replicas("b", **PACE)
        a.wait()
        b.wait()
        on_a = await begin(http, a, 3)
        on_b = await begin(http, b, 1)
        await asyncio.sleep(1.2)  # past a flush of A's story
        a.kill()

        # The reader comes back through B (a load balancer would send it there).
        rest = await resume(http, b, on_a)
        await assert_whole(database, on_a, rest)
        adopted, _data = await database.conversation(on_a[0].data["conversation_id"])
        assert adopted.owner_instance == "b"

        live_id = on_b[0].data["conversation_id"]
        live, _data = await database.conversation(live_id)
        assert live.owner_instance == "b"
        if live.status is ConversationStatus.IN_PROGRESS:
            cancelled = await http.post(
                f"{b.url}/api/cancelGeneration", json={"conversation_id": live_id}
            )
            assert cancelled.json()["status"] == "cancelled"
        b.kill()

    async def test_a_replica_started_again_carries_on_the_story_its_previous_life_left(
        self,
        replicas: Callable[..., Replica],
        http: httpx.AsyncClient,
        database: Database,
    ):
        # Alone (no peer to notice), with a lease far longer than the restart.
        lease = {**PACE, "STORYTOOL_INSTANCE_LEASE_S": "60"}
        first = replicas("solo", **lease)
        first.wait()
        events = await begin(http, first, 3)
        await asyncio.sleep(1.2)
        first.kill()
        again = replicas("solo", **lease)
        again.wait()  # the same id, as a pod with a stable name

        # Start-up recovery picked it up before the replica served its first request.
        rest = await resume(http, again, events)
        await assert_whole(database, events, rest)
        again.kill()
