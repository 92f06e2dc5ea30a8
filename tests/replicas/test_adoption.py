"""Stories that outlive their replica, through the real ``openai`` SDK against the fake OpenAI
server (background runs, resumable with ``starting_after``), on two real processes sharing MariaDB
and Redis.

A replica killed (kill -9) or drained (SIGTERM) mid-refine leaves its stories to its peer, which
re-attaches to each upstream run after the last event it saved: every reader that comes back with
its ``Last-Event-ID`` gets the whole story the upstream wrote, once, in order, and the upstream run
is never started twice. On a server without background runs the same story ends ``interrupted``
with its text. Two replicas claiming one story: exactly one wins."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable, Iterator

import httpx
import pytest
from sqlalchemy.ext.asyncio import AsyncEngine

from storytool.config import Settings
from storytool.db.engine import create_engine, create_sessionmaker
from storytool.generation.repository import ConversationRepository
from storytool.models import ConversationStatus, StopReason
from tests.factories import create_conversation
from tests.fakes.openai_server import FakeOpenAI
from tests.generation.conftest import Database, Event, settled, story_of
from tests.generation.test_openai_upstream import REFINE_MODEL, REFINED
from tests.replicas.conftest import Replica, deltas, generate_then, mariadb, resume

STORIES = 20
HELD_AFTER = 10
"""The refine runs stop after this many tokens until the test lets them go: every story is
still mid-refine when its replica goes, however slowly a loaded machine started them."""


@pytest.fixture
def upstream(fake_openai: FakeOpenAI) -> FakeOpenAI:
    """The refine takes a few seconds (about 60 tokens at 15 a second): time to kill its
    replica in the middle."""
    fake_openai.behaviour.texts = {REFINE_MODEL: REFINED}
    fake_openai.behaviour.tokens_per_second = 15
    return fake_openai


def on_fake(fake: FakeOpenAI, **extra: str) -> dict[str, str]:
    return {
        "STORYTOOL_LLM_PROVIDER": "openai",
        "STORYTOOL_OPENAI_BASE_URL": fake.base_url,
        "STORYTOOL_OPENAI_API_KEY": "test",
        "STORYTOOL_REFINE_MODEL": REFINE_MODEL,
        "STORYTOOL_MAX_RESUME_STREAMS_PER_USER": "100",
        **extra,
    }


@pytest.fixture
def two(
    replicas: Callable[..., Replica], upstream: FakeOpenAI, request: pytest.FixtureRequest
) -> Iterator[tuple[Replica, Replica]]:
    """Replicas A and B on the fake, with a lease of 10 s unless a test says otherwise."""
    extra = getattr(request, "param", {})
    env = on_fake(upstream, STORYTOOL_INSTANCE_LEASE_S="10", **extra)
    suffix = time.monotonic_ns()
    a, b = replicas(f"a-{suffix}", **env), replicas(f"b-{suffix}", **env)
    a.wait()
    b.wait()
    yield a, b
    a.stop()
    b.stop()


async def begin(http: httpx.AsyncClient, replica: Replica, count: int) -> list[list[Event]]:
    """Starts ``count`` stories on ``replica`` at once, each read to its third refine delta and
    then left (the story goes on)."""
    started = [generate_then(http, replica, deltas(3)) for _ in range(count)]
    return [events for events, _answer in await asyncio.gather(*started)]


async def assert_carried_on(
    http: httpx.AsyncClient,
    peer: Replica,
    upstream: FakeOpenAI,
    database: Database,
    stories: list[list[Event]],
    *,
    owner: str | None = None,
) -> None:
    """Every story read to its end through ``peer`` is whole and stored completed, by ``owner``
    when given; each upstream run was started once."""
    rests = await asyncio.gather(*(resume(http, peer, events) for events in stories))
    for before, after in zip(stories, rests, strict=True):
        ids = [event.id for event in before + after]
        assert ids == list(range(1, len(ids) + 1))
        assert after[-1].event == "done"
        # Byte for byte what the upstream wrote: no delta twice, none missing.
        assert story_of(before) + story_of(after) == REFINED
        conversation_id = before[0].data["conversation_id"]
        assert await settled(database, conversation_id) is ConversationStatus.COMPLETED
        conversation, data = await database.conversation(conversation_id)
        assert data.story == REFINED
        assert owner is None or conversation.owner_instance == owner
    refines = [
        received
        for received in upstream.received("/v1/responses")
        if received.method == "POST" and isinstance(received.body, dict)
        if received.body.get("stream")
    ]
    assert len(refines) == len(stories)  # each run started once, then only re-attached to


@mariadb
class TestAdoption:
    async def test_a_killed_replicas_stories_are_finished_by_its_peer(
        self,
        two: tuple[Replica, Replica],
        upstream: FakeOpenAI,
        http: httpx.AsyncClient,
        database: Database,
    ):
        a, b = two
        upstream.behaviour.held_after = {REFINE_MODEL: HELD_AFTER}
        stories = await begin(http, a, STORIES)
        a.kill()
        upstream.behaviour.release()
        await assert_carried_on(http, b, upstream, database, stories, owner=b.name)

    async def test_a_drained_replica_hands_its_stories_over_at_once(
        self,
        two: tuple[Replica, Replica],
        upstream: FakeOpenAI,
        http: httpx.AsyncClient,
        database: Database,
    ):
        a, b = two
        upstream.behaviour.held_after = {REFINE_MODEL: HELD_AFTER}
        stories = await begin(http, a, STORIES)
        began = time.monotonic()
        await asyncio.to_thread(a.terminate)
        stopped = time.monotonic() - began
        upstream.behaviour.release()
        [first] = await resume(http, b, stories[0], first_only=True)
        handed = time.monotonic() - began

        assert stopped < 5  # it did not wait for its stories to finish
        assert handed < 5  # the peer took them over well before A's 10 s lease would expire
        assert first.event == "delta"
        await assert_carried_on(http, b, upstream, database, stories, owner=b.name)

    async def test_a_rolling_restart_cuts_no_story(
        self,
        replicas: Callable[..., Replica],
        upstream: FakeOpenAI,
        http: httpx.AsyncClient,
        database: Database,
    ):
        upstream.behaviour.tokens_per_second = 6  # a refine of about 10 s: the restart fits in it
        env = on_fake(upstream, STORYTOOL_INSTANCE_LEASE_S="10")
        suffix = time.monotonic_ns()
        a, b = replicas(f"ra-{suffix}", **env), replicas(f"rb-{suffix}", **env)
        a.wait()
        b.wait()
        on_a, on_b = await asyncio.gather(begin(http, a, 25), begin(http, b, 25))
        running = [*on_a, *on_b]

        await asyncio.to_thread(a.terminate)  # A's stories go to B
        a = replicas(f"ra-{suffix}", **env)
        a.wait()
        await asyncio.to_thread(b.terminate)  # B's, its own and A's, go to the new A
        # Each story was written to its end by whichever replica held it then.
        await assert_carried_on(http, a, upstream, database, running)
        a.stop()

    @pytest.mark.parametrize("two", [{"STORYTOOL_REFINE_BACKGROUND": "false"}], indirect=True)
    async def test_without_background_runs_a_killed_story_ends_interrupted_with_its_text(
        self,
        two: tuple[Replica, Replica],
        http: httpx.AsyncClient,
        database: Database,
    ):
        a, b = two
        [events] = await begin(http, a, 1)
        await asyncio.sleep(1.2)  # past a flush of its text
        a.kill()
        rest = await resume(http, b, events)

        assert [event.event for event in rest][-1] == "error"
        assert rest[-1].data["code"] == "interrupted"
        assert "mode: continue" in rest[-1].data["message"]
        conversation, data = await database.conversation(events[0].data["conversation_id"])
        assert conversation.status is ConversationStatus.INTERRUPTED
        assert conversation.stop_reason is StopReason.CRASH
        assert data.story is not None
        assert REFINED.startswith(data.story)


class TestClaim:
    async def test_of_two_replicas_claiming_one_story_exactly_one_wins(
        self, engine: AsyncEngine, committed_url: str
    ):
        ids = []
        sessionmaker = create_sessionmaker(engine)
        async with sessionmaker.begin() as session:
            for _ in range(50):
                conversation = await create_conversation(session, owner_instance="gone")
                ids.append(conversation.id)
        # Two replicas: two engines, so each claim runs on a connection of its own.
        engines = [create_engine(Settings(), url=committed_url) for _ in range(2)]
        try:
            makers = [create_sessionmaker(each) for each in engines]

            async def claim(maker, conversation_id: str, by: str) -> bool:
                async with maker.begin() as session:
                    return await ConversationRepository(session).claim(
                        conversation_id=conversation_id, owner="gone", by=by
                    )

            for conversation_id in ids:
                won = await asyncio.gather(
                    claim(makers[0], conversation_id, "x"), claim(makers[1], conversation_id, "y")
                )
                assert sorted(won) == [False, True]
        finally:
            for each in engines:
                await each.dispose()
