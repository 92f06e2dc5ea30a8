"""StorytoolClient against a live server: typed events, typed errors, and streams that survive
real connection drops."""

from __future__ import annotations

import time
import uuid

import pytest

from storytool.client import (
    CancelledEvent,
    Conflict,
    DeltaEvent,
    DoneEvent,
    InvalidInput,
    MetaEvent,
    NotFound,
    RateLimited,
    RecommendationsEvent,
    ServerError,
    StageEvent,
    StoryEvent,
    StorytoolClient,
    StreamLost,
    TitleEvent,
    Unauthorized,
)
from storytool.config import Settings
from storytool.main import create_app
from tests.fakes.cutting_proxy import CuttingProxy
from tests.fakes.server_thread import ServerThread

PROMPT = "한 선비가 과거 길에 올라 산적을 만나니"


def story_of(events: list[StoryEvent]) -> str:
    return "".join(
        event.text for event in events if isinstance(event, DeltaEvent) and event.stage == "refine"
    )


async def collect(stream, into: list[StoryEvent] | None = None) -> list[StoryEvent]:
    """The stream's events; ``into`` keeps those read before an exception."""
    events = [] if into is None else into
    async for event in stream:
        events.append(event)
    return events


class TestGenerate:
    async def test_a_story_arrives_as_typed_events_in_protocol_order(self, alice: StorytoolClient):
        events = await collect(alice.generate(PROMPT, tags=["모험"], length="short"))

        meta, *_, done = events
        assert isinstance(meta, MetaEvent)
        assert isinstance(done, DoneEvent)
        assert [event.id for event in events] == list(range(1, len(events) + 1))
        stages = [(e.name, e.status) for e in events if isinstance(e, StageEvent)]
        assert stages[:2] == [("draft", "started"), ("draft", "done")]
        title = next(e for e in events if isinstance(e, TitleEvent))
        assert next(e for e in events if isinstance(e, RecommendationsEvent)).items

        thread = await alice.detail(meta.thread_id)
        assert thread.title == title.title
        assert thread.conversations[0].id == meta.conversation_id
        assert thread.conversations[0].story == story_of(events)

    async def test_cancel_confirms_the_saved_partial_story(self, server: ServerThread):
        async with StorytoolClient(server.url, user_id="alice") as client:
            events: list[StoryEvent] = []
            stream = client.generate(PROMPT, length="long")
            async for event in stream:
                events.append(event)
                if isinstance(event, DeltaEvent) and event.stage == "refine":
                    answer = await client.cancel(events[0].conversation_id)
                    break
            events += [event async for event in stream]

        assert answer.status == "cancelled"
        assert isinstance(events[-1], CancelledEvent)
        assert events[-1].partial_story == answer.partial_story
        assert answer.partial_story.startswith(story_of(events[:-1])[:8])


class TestVariants:
    async def test_regenerate_and_continue_write_new_stories_in_the_same_thread(
        self, alice: StorytoolClient
    ):
        first = await collect(alice.generate(PROMPT, tags=["모험"], length="short"))
        parent = first[0].conversation_id

        again = await collect(alice.regenerate(parent, length="short"))
        more = await collect(alice.continue_story(parent, "산적이 뉘우치니", length="short"))

        assert {again[0].thread_id, more[0].thread_id} == {first[0].thread_id}
        assert isinstance(again[-1], DoneEvent)
        assert isinstance(more[-1], DoneEvent)
        turns = {turn.id: turn for turn in (await alice.detail(first[0].thread_id)).conversations}
        regenerated, continued = turns[again[0].conversation_id], turns[more[0].conversation_id]
        assert (regenerated.user_input, regenerated.tags) == (PROMPT, ["모험"])
        assert regenerated.story == story_of(again)
        assert continued.user_input == "산적이 뉘우치니"
        assert continued.story == story_of(more)

    async def test_regenerate_of_another_users_story_is_not_found(
        self, alice: StorytoolClient, bob: StorytoolClient
    ):
        parent = (await collect(alice.generate(PROMPT, length="short")))[0].conversation_id
        with pytest.raises(NotFound):
            await collect(bob.regenerate(parent))


class TestErrors:
    async def test_invalid_input_names_the_field_before_any_event(self, alice: StorytoolClient):
        with pytest.raises(InvalidInput) as raised:
            await collect(alice.generate("   "))
        assert raised.value.status_code == 422
        assert raised.value.code == "invalid_input"
        assert raised.value.field == "user_input"
        assert [summary async for summary in alice.history()] == []

    async def test_another_users_thread_is_not_found(
        self, alice: StorytoolClient, bob: StorytoolClient
    ):
        meta = (await collect(alice.generate(PROMPT, length="short")))[0]
        assert isinstance(meta, MetaEvent)

        for attempt in (
            bob.detail(meta.thread_id),
            bob.export_thread(meta.thread_id),
            bob.delete(meta.thread_id),
            bob.evaluate(meta.conversation_id, "like"),
            collect(bob.resume(meta.conversation_id)),
        ):
            with pytest.raises(NotFound) as raised:
                await attempt
            assert raised.value.code == "not_found"
        assert (await alice.detail(meta.thread_id)).id == meta.thread_id

    async def test_cancelling_a_finished_story_is_a_conflict(self, alice: StorytoolClient):
        meta = (await collect(alice.generate(PROMPT, length="short")))[0]
        assert isinstance(meta, MetaEvent)
        with pytest.raises(Conflict) as raised:
            await alice.cancel(meta.conversation_id)
        assert raised.value.status_code == 409

    async def test_missing_credentials_are_unauthorized(self, server: ServerThread):
        async with StorytoolClient(server.url) as anonymous:
            with pytest.raises(Unauthorized):
                await anonymous.history_page()

    async def test_too_many_running_stories_is_rate_limited_with_retry_after(
        self, client_settings: Settings
    ):
        slow = client_settings.model_copy(
            update={"max_running_per_user": 1, "offline_chars_per_second": 50.0}
        )
        with ServerThread(create_app(slow)) as server:
            async with StorytoolClient(server.url, user_id="alice") as client:
                first = client.generate(PROMPT, length="long")
                meta = await anext(first)
                with pytest.raises(RateLimited) as raised:
                    await anext(client.generate(PROMPT))
                await client.cancel(meta.conversation_id)
                await collect(first)
        assert raised.value.status_code == 429
        assert raised.value.retry_after is not None
        assert raised.value.retry_after > 0


class TestHistory:
    async def test_history_pages_through_every_thread_newest_first(self, alice: StorytoolClient):
        threads = []
        for number in range(5):
            meta = (await collect(alice.generate(f"{PROMPT} {number}", length="short")))[0]
            threads.append(meta.thread_id)

        listed = [summary.id async for summary in alice.history(page_size=2)]

        assert listed == threads[::-1]

    async def test_evaluate_and_delete(self, alice: StorytoolClient):
        meta = (await collect(alice.generate(PROMPT, length="short")))[0]

        stored = await alice.evaluate(meta.conversation_id, "dislike", "너무 짧도다")
        assert (stored.rating, stored.comment) == ("dislike", "너무 짧도다")
        detail = await alice.detail(meta.thread_id)
        assert detail.conversations[0].evaluation.rating == "dislike"

        await alice.delete(meta.thread_id)
        with pytest.raises(NotFound):
            await alice.detail(meta.thread_id)

    async def test_analyze_a_stored_story(self, alice: StorytoolClient):
        events = await collect(alice.generate(PROMPT, length="short"))

        analysis = await alice.analyze(conversation_id=events[0].conversation_id)

        assert analysis.source.conversation_id == events[0].conversation_id
        assert analysis.metrics.characters == len(story_of(events))


class TestDroppedStreams:
    async def test_two_drops_mid_stream_still_yield_the_whole_story_exactly_once(
        self, server: ServerThread
    ):
        async with (
            CuttingProxy(server.port, cuts=[6, 9]) as proxy,
            StorytoolClient(proxy.url, user_id="alice", reconnect_backoff=0.01) as client,
        ):
            events = await collect(client.generate(PROMPT, length="medium"))

        assert proxy.cut == 2
        assert proxy.connections == 3
        assert [event.id for event in events] == list(range(1, len(events) + 1))
        assert isinstance(events[-1], DoneEvent)
        assert sum(isinstance(event, DoneEvent) for event in events) == 1
        async with StorytoolClient(server.url, user_id="alice") as direct:
            thread = await direct.detail(events[0].thread_id)
        assert thread.conversations[0].story == story_of(events)

    async def test_a_silent_connection_is_given_up_and_resumed(self, server: ServerThread):
        async with (
            CuttingProxy(server.port, cuts=[6], stall_s=30.0) as proxy,
            StorytoolClient(
                proxy.url, user_id="alice", stream_read_timeout=2.0, reconnect_backoff=0.01
            ) as client,
        ):
            started = time.monotonic()
            events = await collect(client.generate(PROMPT, length="short"))
            elapsed = time.monotonic() - started

        assert proxy.cut == 1
        assert proxy.connections >= 2
        assert elapsed < 15.0  # the read timeout, not the stall's end, ended the first connection
        assert [event.id for event in events] == list(range(1, len(events) + 1))
        assert isinstance(events[-1], DoneEvent)

    async def test_it_gives_up_after_bounded_reconnects_and_resume_continues_later(
        self, server: ServerThread
    ):
        async with (
            CuttingProxy(server.port, cuts=[4], refuse=True) as proxy,
            StorytoolClient(
                proxy.url, user_id="alice", max_reconnects=2, reconnect_backoff=0.01
            ) as client,
        ):
            events: list[StoryEvent] = []
            with pytest.raises(StreamLost) as raised:
                await collect(client.generate(PROMPT, length="short"), into=events)

        assert proxy.connections == 1 + 2
        lost = raised.value
        assert lost.conversation_id == events[0].conversation_id
        assert lost.last_event_id == events[-1].id
        async with StorytoolClient(server.url, user_id="alice") as direct:
            rest = await collect(direct.resume(lost.conversation_id, lost.last_event_id))
            thread = await direct.detail(events[0].thread_id)
        assert [event.id for event in events + rest] == list(range(1, len(events + rest) + 1))
        assert isinstance(rest[-1], DoneEvent)
        assert thread.conversations[0].story == story_of(events + rest)

    async def test_a_drop_before_the_first_event_is_reported_not_retried(
        self, server: ServerThread
    ):
        async with (
            CuttingProxy(server.port, cuts=[], refuse=True) as proxy,
            StorytoolClient(proxy.url, user_id="alice") as client,
        ):
            with pytest.raises(StreamLost) as raised:
                await collect(client.generate(PROMPT))
        assert raised.value.conversation_id is None
        assert proxy.connections == 1


async def test_a_proxys_html_error_page_is_a_server_error_with_its_text():
    async def bad_gateway(_scope, _receive, send) -> None:
        await send({"type": "http.response.start", "status": 502, "headers": []})
        await send({"type": "http.response.body", "body": b"<h1>502 Bad Gateway</h1>"})

    with ServerThread(bad_gateway, lifespan="off") as gateway:
        async with StorytoolClient(gateway.url) as client:
            with pytest.raises(ServerError) as raised:
                await client.history_page()
    assert raised.value.status_code == 502
    assert raised.value.code == "http_error"
    assert raised.value.message == "<h1>502 Bad Gateway</h1>"


async def test_unknown_conversation_resume_is_not_found(alice: StorytoolClient):
    with pytest.raises(NotFound) as raised:
        await collect(alice.resume(str(uuid.uuid4())))
    assert raised.value.field == "conversation_id"


async def test_a_resume_after_the_end_yields_nothing_and_ends(alice: StorytoolClient):
    """What an EventSource does after ``done``: the server answers 204, and nothing follows."""
    events = await collect(alice.generate(PROMPT, length="short"))
    started = time.monotonic()
    again = await collect(alice.resume(events[0].conversation_id, last_event_id=events[-1].id))
    assert again == []
    assert time.monotonic() - started < 2.0  # at once, not after reconnecting and giving up
