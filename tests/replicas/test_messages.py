"""Cancels between two replicas when Redis loses messages: a cancel published while nobody
listened is resent, and a lost acknowledgement is covered by the terminal event in the log.

Two StoryServices in this process stand for the replicas (the loss is injected where our code
publishes, which a separate process would not allow); they share the test's database and Redis.
"""

from __future__ import annotations

import asyncio
import json
import logging
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

import pytest

from storytool.config import Settings
from storytool.generation.events import LoggedEvent
from storytool.generation.offline_writer import OfflineWriter
from storytool.generation.replicas import Replicas
from storytool.generation.schemas import GenerateRequest
from storytool.generation.service import StoryService, build_story_service
from storytool.models import ConversationStatus
from tests.generation.conftest import Database
from tests.replicas.conftest import REDIS_URL

USER = "local"
CANCEL_WAIT_S = 5.0

Send = Callable[[Replicas, str, dict[str, Any]], Awaitable[None]]


@pytest.fixture
async def two(
    settings: Settings, database: Database, redis_prefix: str
) -> AsyncIterator[tuple[StoryService, StoryService]]:
    services = []
    for name in ("a", "b"):
        replica = settings.model_copy(
            update={
                "redis_url": REDIS_URL,
                "redis_prefix": redis_prefix,
                "instance_id": name,
                "offline_chars_per_second": 100.0,
                "cancel_ack_timeout_s": 0.1,
                "cancel_wait_s": CANCEL_WAIT_S,
            }
        )
        service = build_story_service(replica, OfflineWriter(replica), database.sessionmaker)
        await service.open()
        services.append(service)
    yield services[0], services[1]
    for service in services:
        await service.aclose()


@pytest.fixture
def sent(monkeypatch: pytest.MonkeyPatch) -> Callable[[Callable[[dict[str, Any]], bool]], list]:
    """Makes Redis lose the messages ``lose`` picks; returns every message sent, lost or not."""

    def losing(lose: Callable[[dict[str, Any]], bool]) -> list[dict[str, Any]]:
        messages: list[dict[str, Any]] = []
        send: Send = Replicas._send

        async def lossy(self: Replicas, instance_id: str, message: dict[str, Any]) -> None:
            messages.append(message)
            if not lose(message):
                await send(self, instance_id, message)

        monkeypatch.setattr(Replicas, "_send", lossy)
        return messages

    return losing


async def cancel_on_b(a: StoryService, b: StoryService) -> tuple[list[LoggedEvent], Any, float]:
    """Starts a story on A, cancels it through B after 3 deltas; A's events, B's answer and how
    long B took to answer."""
    started = await a.start(
        user_id=USER, request=GenerateRequest(user_input="한 선비가 길을 떠나니")
    )
    events: list[LoggedEvent] = []
    three = asyncio.Event()

    async def read() -> None:
        async for batch in a.stream(started.conversation_id):
            events.extend(batch)
            if sum(refined(seen) for seen in events) >= 3:
                three.set()

    reader = asyncio.create_task(read())
    await three.wait()
    began = time.monotonic()
    answer = await b.cancel(user_id=USER, conversation_id=started.conversation_id)
    took = time.monotonic() - began
    await asyncio.wait_for(reader, timeout=5)
    return events, answer, took


def refined(event: LoggedEvent) -> bool:
    return event.event == "delta" and json.loads(event.data)["stage"] == "refine"


def streamed(events: list[LoggedEvent]) -> str:
    return "".join(json.loads(event.data)["text"] for event in events if refined(event))


class TestLostMessages:
    async def test_a_lost_cancel_is_sent_again(
        self, two: tuple[StoryService, StoryService], sent: Any, database: Database
    ):
        lost: list[str] = []

        def first_cancel(message: dict[str, Any]) -> bool:
            if message["kind"] == "cancel" and not lost:
                lost.append(message["request_id"])
                return True
            return False

        messages = sent(first_cancel)
        events, answer, took = await cancel_on_b(*two)

        assert answer.status is ConversationStatus.CANCELLED
        assert events[-1].event == "cancelled"
        assert answer.partial_story == streamed(events)
        cancels = [message for message in messages if message["kind"] == "cancel"]
        assert len(cancels) >= 2
        assert cancels[1]["request_id"] == lost[0]  # the same request, sent again
        assert took < CANCEL_WAIT_S  # it did not wait out the bound
        conversation, data = await database.conversation(answer.conversation_id)
        assert conversation.status is ConversationStatus.CANCELLED
        assert data.story == answer.partial_story

    async def test_a_lost_acknowledgement_is_covered_by_the_terminal_event(
        self, two: tuple[StoryService, StoryService], sent: Any, database: Database
    ):
        messages = sent(lambda message: message["kind"] == "ack")
        events, answer, took = await cancel_on_b(*two)

        assert any(message["kind"] == "ack" for message in messages)  # there were acks to lose
        assert answer.status is ConversationStatus.CANCELLED
        assert answer.partial_story == streamed(events)
        assert took < 1.0  # released by the terminal event, not by the bound
        _conversation, data = await database.conversation(answer.conversation_id)
        assert data.story == answer.partial_story


async def test_without_redis_the_start_up_log_says_one_process_does_everything(
    settings: Settings, database: Database, caplog: pytest.LogCaptureFixture
):
    service = build_story_service(settings, OfflineWriter(settings), database.sessionmaker)
    with caplog.at_level(logging.INFO, logger="storytool.generation"):
        await service.open()
    await service.aclose()
    assert "one process" in caplog.text
