"""StoryService calls that no route of this package makes: cancelling a whole thread (called by
deleteThread) and the partial story flushed while a generation runs."""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator

import pytest

from storytool.config import Settings
from storytool.generation.offline_writer import OfflineWriter
from storytool.generation.schemas import GenerateRequest
from storytool.generation.service import StoryService, build_story_service
from storytool.models import ConversationStatus, StopReason
from tests.generation.conftest import Database

USER = "local"


@pytest.fixture
async def stories(settings: Settings, database: Database) -> AsyncIterator[StoryService]:
    slow = settings.model_copy(update={"offline_chars_per_second": 60.0})
    service = build_story_service(slow, OfflineWriter(slow), database.sessionmaker)
    yield service
    await service.aclose()


async def test_cancel_thread_cancels_its_running_generation(
    stories: StoryService, database: Database
):
    started = await stories.start(
        user_id=USER, request=GenerateRequest(user_input="한 선비가 길을 떠나니")
    )
    await asyncio.sleep(0.3)

    await stories.cancel_thread(user_id="someone-else", thread_id=started.thread_id)
    conversation, _data = await database.conversation(started.conversation_id)
    assert conversation.status is ConversationStatus.IN_PROGRESS

    await stories.cancel_thread(user_id=USER, thread_id=started.thread_id)
    conversation, _data = await database.conversation(started.conversation_id)
    assert conversation.status is ConversationStatus.CANCELLED
    assert conversation.stop_reason is StopReason.USER_CANCEL


async def test_the_partial_story_is_flushed_while_it_streams(
    stories: StoryService, database: Database
):
    started = await stories.start(
        user_id=USER, request=GenerateRequest(user_input="한 선비가 길을 떠나니")
    )
    streamed = ""
    seen_stored = ""
    async for batch in stories.stream(started.conversation_id):
        for event in batch:
            if event.event == "delta" and json.loads(event.data)["stage"] == "refine":
                streamed += json.loads(event.data)["text"]
        conversation, data = await database.conversation(started.conversation_id)
        if conversation.status is ConversationStatus.IN_PROGRESS and data.story:
            seen_stored = data.story
            assert streamed.startswith(seen_stored)
            break
    assert seen_stored, "no partial story was stored while the story streamed"
