"""Resumes that have nothing to wait for end at once, and one user holds only so many open.

A browser's ``EventSource`` reconnects after every stream that ends, sending the id of the last
event it saw: after ``done`` that is the terminal event's id. Such a resume used to stay open for
ever (a ping every 15 s, even after the log was dropped); it is now a 204, which makes an
``EventSource`` stop for good.
"""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

import httpx
import pytest
from redis.asyncio import Redis

from storytool.config import AuthMode, Settings
from storytool.generation.events import EventLog, LoggedEvent, MemoryEventLog, RedisEventLog
from storytool.generation.schemas import Delta, Done, Meta
from tests.generation.conftest import Event, generate, read_events, serving
from tests.replicas.conftest import REDIS_URL

PROMPT = {"user_input": "한 선비가 과거를 보러 길을 떠나니", "tags": ["모험"]}
USER_A = {"X-User-Id": "user-a"}
USER_B = {"X-User-Id": "user-b"}
ENDS_WITHIN_S = 10.0
"""How long a stream that has nothing to wait for may take to close: far more than it needs
(milliseconds), far less than a ping interval (15 s), which kept the old streams open."""


def events_path(events: list[Event]) -> str:
    return f"/api/generate/{events[0].data['conversation_id']}/events"


class TestResumeAtTheEnd:
    @pytest.mark.parametrize("past", [0, 1, 50])
    async def test_a_resume_at_or_past_the_terminal_event_is_204_at_once(
        self, client: httpx.AsyncClient, past: int
    ):
        events = await generate(client, PROMPT)
        async with asyncio.timeout(ENDS_WITHIN_S):
            answer = await client.get(
                events_path(events), headers={"Last-Event-ID": str(events[-1].id + past)}
            )
        assert answer.status_code == 204
        assert answer.content == b""
        assert answer.headers["content-type"].startswith("text/event-stream")

    async def test_a_resume_just_before_the_terminal_event_gets_it(self, client: httpx.AsyncClient):
        events = await generate(client, PROMPT)
        headers = {"Last-Event-ID": str(events[-2].id)}
        async with client.stream("GET", events_path(events), headers=headers) as response:
            rest = [event async for event in read_events(response)]
        assert rest == events[-1:]

    async def test_a_resume_claiming_more_than_a_running_story_wrote_ends_with_the_story(
        self, settings: Settings
    ):
        async with serving(
            settings.model_copy(update={"offline_chars_per_second": 500.0})
        ) as client:
            async with client.stream("POST", "/api/generate", json=PROMPT) as story:
                reader = read_events(story)
                first = [await anext(reader)]
                path = events_path(first)
                async with client.stream(
                    "GET", path, headers={"Last-Event-ID": "100000"}
                ) as response:
                    assert response.status_code == 200
                    resumed = asyncio.create_task(collect(response))
                    rest = [event async for event in reader]  # the story runs to its end
                    async with asyncio.timeout(ENDS_WITHIN_S):
                        nothing = await resumed

        assert rest[-1].event == "done"
        assert nothing == []  # every event is below the id it claims; its end ends it too

    async def test_a_resume_after_the_log_was_dropped_is_404(self, settings: Settings):
        brief = settings.model_copy(
            update={"offline_chars_per_second": 4000.0, "event_retention_s": 0.2}
        )
        async with serving(brief) as client:
            events = await generate(client, PROMPT)
            async with asyncio.timeout(ENDS_WITHIN_S):
                while (answer := await client.get(events_path(events))).status_code == 200:
                    await asyncio.sleep(0.1)  # kept for 0.2 s after the end
        assert answer.status_code == 404
        assert "no longer kept" in answer.json()["error"]["message"]


async def collect(response: httpx.Response) -> list[Event]:
    return [event async for event in read_events(response)]


class TestResumeCap:
    async def test_past_the_cap_a_user_is_refused_429_until_one_of_theirs_closes(
        self, settings: Settings
    ):
        capped = settings.model_copy(
            update={
                "auth_mode": AuthMode.HEADER,
                "offline_chars_per_second": 20.0,  # runs for the whole test
                "max_resume_streams_per_user": 2,
            }
        )
        async with (
            serving(capped) as client,
            running_story(client, USER_A) as path,
            running_story(client, USER_B) as theirs,
        ):
            first = await resume(client, path, USER_A)
            second = await resume(client, path, USER_A)
            refused = await client.get(path, headers=USER_A)
            others = await resume(client, theirs, USER_B)
            await others.aclose()
            await first.aclose()
            async with asyncio.timeout(ENDS_WITHIN_S):
                while (again := await resume(client, path, USER_A)).status_code == 429:
                    await again.aclose()
                    await asyncio.sleep(0.05)  # until the server has seen the first one go
            await again.aclose()
            await second.aclose()

        assert first.status_code == second.status_code == 200
        assert refused.status_code == 429
        assert refused.json()["error"]["code"] == "too_many_requests"
        assert int(refused.headers["Retry-After"]) > 0
        assert others.status_code == 200  # another user's cap is their own
        assert again.status_code == 200


@asynccontextmanager
async def running_story(client: httpx.AsyncClient, user: dict[str, str]) -> AsyncIterator[str]:
    """A story of ``user`` running (slowly) for the block, cancelled at its end; the path of its
    events."""
    async with client.stream("POST", "/api/generate", json=PROMPT, headers=user) as response:
        meta = await anext(read_events(response))
    conversation_id = meta.data["conversation_id"]
    try:
        yield f"/api/generate/{conversation_id}/events"
    finally:
        await client.post(
            "/api/cancelGeneration", json={"conversation_id": conversation_id}, headers=user
        )


async def resume(client: httpx.AsyncClient, path: str, user: dict[str, str]) -> httpx.Response:
    """A resumed stream whose headers have arrived; the caller closes it."""
    return await client.send(client.build_request("GET", path, headers=user), stream=True)


@pytest.fixture(params=["memory", "redis"])
async def log(request: pytest.FixtureRequest) -> AsyncIterator[EventLog]:
    if request.param == "memory":
        yield MemoryEventLog(retention_s=60)
        return
    redis = Redis.from_url(REDIS_URL, decode_responses=True)
    prefix = f"storytool-test-{uuid.uuid4().hex[:12]}"
    yield RedisEventLog(redis, prefix=prefix, retention_s=60, running_ttl_s=60, maxlen=1000)
    keys = [key async for key in redis.scan_iter(f"{prefix}:*")]
    if keys:
        await redis.delete(*keys)
    await redis.aclose()


class TestFollow:
    """Both logs, directly: a reader's ``after`` at or past the terminal event, or past what a
    running story has written, must not wait for ids that will never come."""

    async def test_after_the_terminal_event_nothing_is_yielded_and_it_ends(self, log: EventLog):
        await written(log, "c1", deltas=2, ended=True)
        for after in (4, 5, 99):
            async with asyncio.timeout(ENDS_WITHIN_S):
                assert await followed(log, "c1", after=after) == []

    async def test_after_more_than_was_written_it_ends_with_the_story(self, log: EventLog):
        await written(log, "c2", deltas=2, ended=False)
        follower = asyncio.create_task(followed(log, "c2", after=50))
        await log.append("c2", Delta(stage="refine", text="더"))
        await log.append("c2", Done(usage={}))
        async with asyncio.timeout(ENDS_WITHIN_S):
            assert await follower == []

    async def test_the_events_after_are_yielded_up_to_the_terminal_one(self, log: EventLog):
        await written(log, "c3", deltas=3, ended=True)
        assert [event.id for event in await followed(log, "c3", after=2)] == [3, 4, 5]

    async def test_what_is_written_comes_in_one_batch_and_new_events_as_they_come(
        self, log: EventLog
    ):
        # A reader behind the writer sends what is there in one write; one keeping up is not
        # held back waiting for more.
        await written(log, "c4", deltas=3, ended=False)
        batches = log.follow("c4")
        assert [event.id for event in await anext(batches)] == [1, 2, 3, 4]
        await log.append("c4", Delta(stage="refine", text="더"))
        assert [event.id for event in await anext(batches)] == [5]
        await log.append("c4", Done(usage={}))
        assert [event.event for event in await anext(batches)] == ["done"]
        with pytest.raises(StopAsyncIteration):
            await anext(batches)


async def written(log: EventLog, conversation_id: str, *, deltas: int, ended: bool) -> None:
    await log.open(conversation_id)
    await log.append(conversation_id, Meta(thread_id="t", conversation_id=conversation_id))
    for _ in range(deltas):
        await log.append(conversation_id, Delta(stage="refine", text="각설"))
    if ended:
        await log.append(conversation_id, Done(usage={}))


async def followed(log: EventLog, conversation_id: str, *, after: int) -> list[LoggedEvent]:
    return [event async for batch in log.follow(conversation_id, after=after) for event in batch]
