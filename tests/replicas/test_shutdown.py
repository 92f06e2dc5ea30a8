"""SIGTERM, as an orchestrator stops a pod: the streams in flight end with their terminal event,
and their text is saved, before the process exits."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable

import httpx

from storytool.models import ConversationStatus, StopReason
from tests.generation.conftest import Database, Event, read_events, story_of
from tests.replicas.conftest import PROMPT, Replica, mariadb

pytestmark = mariadb

SHUTDOWN_TIMEOUT_S = 5


class TestGracefulShutdown:
    async def test_sigterm_ends_streams_in_flight_with_a_terminal_event_and_saves_them(
        self, replicas: Callable[..., Replica], http: httpx.AsyncClient, database: Database
    ):
        replica = replicas(
            "stopping",
            STORYTOOL_OFFLINE_CHARS_PER_SECOND="40",
            STORYTOOL_SHUTDOWN_TIMEOUT_S=str(SHUTDOWN_TIMEOUT_S),
        )
        replica.wait()
        body = {**PROMPT, "options": {"length": "long"}}
        events: list[Event] = []
        async with http.stream("POST", f"{replica.url}/api/generate", json=body) as response:
            reader = read_events(response)
            async for event in reader:
                events.append(event)
                if sum(e.event == "delta" and e.data["stage"] == "refine" for e in events) == 3:
                    break
            began = time.monotonic()
            stopping = asyncio.create_task(asyncio.to_thread(replica.terminate))
            events += [event async for event in reader]
            await stopping  # uvicorn exits by re-raising the SIGTERM once it has shut down
        took = time.monotonic() - began

        assert took < SHUTDOWN_TIMEOUT_S
        assert events[-1].event == "error"
        assert events[-1].data["code"] == "shutdown"
        conversation, data = await database.conversation(events[0].data["conversation_id"])
        assert conversation.status is ConversationStatus.INTERRUPTED
        assert conversation.stop_reason is StopReason.SHUTDOWN
        assert data.story == story_of(events)
