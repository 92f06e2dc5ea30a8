from __future__ import annotations

import asyncio
import time

import pytest

from storytool.config import Settings
from storytool.generation.classical_phrases import THEMES
from storytool.generation.korean import fill
from storytool.generation.offline_writer import OfflineWriter
from storytool.generation.story import StoryExtras, StoryRequest, build_writer
from storytool.llm import build_client
from storytool.llm.base import (
    ProviderError,
    StreamEvent,
    StreamFinished,
    TextDelta,
    UpstreamStarted,
)
from storytool.models import StopReason

FAST = 100_000.0


def provider(chars_per_second: float = FAST) -> OfflineWriter:
    return OfflineWriter(
        Settings(_env_file=None, offline_chars_per_second=chars_per_second)  # type: ignore[call-arg]
    )


def request(**overrides) -> StoryRequest:
    values = {"user_input": "가난한 선비가 과거를 보러 가다", "tags": ["충효", "모험"]}
    values.update(overrides)
    return StoryRequest(**values)


async def collect(events) -> list[StreamEvent]:
    return [event async for event in events]


def text_of(events: list[StreamEvent]) -> str:
    return "".join(event.text for event in events if isinstance(event, TextDelta))


class TestDraft:
    async def test_is_a_classical_story_about_the_prompt_and_tags(self):
        events = await collect(provider().draft(request()))
        story = text_of(events)
        assert story.startswith("화설. ")
        assert "가난한 선비가 과거를 보러 가니, " in story  # the prompt as a clause
        for tag in ("충효", "모험"):
            theme = next(theme for theme in THEMES if tag in theme.tags)
            assert any(fill(scene, {"hero": "선비"}) in story for scene in theme.scenes)
        assert story.endswith(("더라.", "리오.", "노라.", "도다."))
        assert isinstance(events[-1], StreamFinished)
        assert events[-1].usage["output_chars"] == len(story)

    async def test_same_conversation_same_story_each_variant_its_own(self):
        first = text_of(await collect(provider().draft(request(seed="conversation-1"))))
        again = text_of(await collect(provider().draft(request(seed="conversation-1"))))
        variant = text_of(await collect(provider().draft(request(seed="conversation-2"))))
        other = text_of(await collect(provider().draft(request(user_input="용왕의 딸을 만나다"))))
        assert first == again
        assert variant != first
        assert other != first

    async def test_longer_length_gives_a_longer_story(self):
        short = text_of(await collect(provider().draft(request(length="short"))))
        long = text_of(await collect(provider().draft(request(length="long"))))
        assert len(long) > len(short)

    async def test_quotes_the_nearest_passage_whole(self):
        passage = "춘향이 옥중에서 이 도령을 기다리더라."
        story = text_of(await collect(provider().draft(request(passages=[passage]))))
        assert "'춘향이 옥중에서 이 도령을 기다리더라'" in story


class TestRefine:
    async def test_streams_an_extended_story_in_order(self):
        llm = provider()
        base = text_of(await collect(llm.draft(request())))
        events = await collect(llm.refine(request(), base))
        assert isinstance(events[0], UpstreamStarted)
        assert events[0].response_id.startswith("offline_")
        assert isinstance(events[-1], StreamFinished)
        deltas = [event for event in events if isinstance(event, TextDelta)]
        assert len(deltas) > 10
        numbers = [delta.sequence_number for delta in deltas]
        assert numbers == sorted(numbers)
        refined = text_of(events)
        assert len(refined) > len(base)
        assert base.split("\n\n")[0] in refined
        assert refined.endswith(base.split("\n\n")[-1])

    async def test_is_paced_at_the_configured_speed(self):
        base = "화설. " + "가" * 195
        started = time.monotonic()
        story = text_of(await collect(provider(chars_per_second=1000).refine(request(), base)))
        elapsed = time.monotonic() - started
        assert elapsed >= 0.9 * len(story) / 1000

    async def test_resume_continues_after_the_given_sequence_number(self):
        llm = provider()
        events = await collect(llm.refine(request(), "화설. 옛날 이야기로다."))
        started = events[0]
        assert isinstance(started, UpstreamStarted)
        deltas = [event for event in events if isinstance(event, TextDelta)]
        resumed = await collect(
            llm.refine(request(), "화설. 옛날 이야기로다.", resume=(started.response_id, 2))
        )
        assert resumed[0] == UpstreamStarted(started.response_id, background=True)
        assert [delta.sequence_number for delta in deltas[:2]] == [1, 2]
        assert text_of(deltas[:2]) + text_of(resumed) == text_of(events)

    async def test_cancel_stops_the_stream_with_user_cancel(self):
        llm = provider(chars_per_second=400)
        stream = llm.refine(request(), "화설. " + "나" * 400)
        started = await anext(stream)
        assert isinstance(started, UpstreamStarted)
        received = [await anext(stream)]
        await llm.cancel(started.response_id)
        with pytest.raises(ProviderError) as caught:
            received.extend([event async for event in stream])
        assert caught.value.stop_reason is StopReason.USER_CANCEL
        assert len(received) <= 2

    async def test_cancelling_an_unknown_or_finished_run_is_harmless(self):
        llm = provider()
        events = await collect(llm.refine(request(), "화설. 짧은 이야기로다."))
        started = events[0]
        assert isinstance(started, UpstreamStarted)
        await llm.cancel(started.response_id)
        await llm.cancel("offline_unknown")
        again = await collect(llm.refine(request(), "화설. 짧은 이야기로다."))
        assert text_of(again) == text_of(events)


class TestExtrasAndTheRest:
    async def test_extras_give_a_bare_title_and_three_directions(self):
        extras = await provider().extras(request(), "화설. 이야기로다.")
        assert isinstance(extras, StoryExtras)
        assert "선비" in extras.title
        assert not set("〈〉《》") & set(extras.title)  # clients add their own brackets
        assert len(extras.recommendations) == 3
        assert len(set(extras.recommendations)) == 3
        assert all(item.endswith("다") for item in extras.recommendations)

    async def test_says_it_is_offline(self):
        llm = provider()
        assert set(llm.models.values()) == {"offline"}
        assert llm.name == "offline"


def test_without_a_key_there_is_no_model_server_and_stories_are_composed_offline():
    settings = Settings(_env_file=None)  # type: ignore[call-arg]
    client = build_client(settings)
    assert client is None
    assert isinstance(build_writer(settings, client), OfflineWriter)


async def test_refine_does_not_block_the_event_loop():
    llm = provider(chars_per_second=2000)
    ticks = 0

    async def tick() -> None:
        nonlocal ticks
        while True:
            ticks += 1
            await asyncio.sleep(0.005)

    ticker = asyncio.create_task(tick())
    await collect(llm.refine(request(), "화설. " + "다" * 200))
    ticker.cancel()
    assert ticks > 5
