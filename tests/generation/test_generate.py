"""``POST /api/generate`` end to end on the offline provider, over real HTTP on loopback."""

from __future__ import annotations

import httpx

from storytool.models import ConversationStatus
from tests.generation.conftest import Database, read_events, settled, story_of, until_deltas

PROMPT = {"user_input": "한 선비가 과거를 보러 길을 떠나니", "tags": ["모험", "우정"]}


class TestStream:
    async def test_a_story_streams_in_order_and_is_stored(
        self, client: httpx.AsyncClient, database: Database
    ):
        async with client.stream("POST", "/api/generate", json=PROMPT) as response:
            events = [event async for event in read_events(response)]

        assert response.headers["content-type"].startswith("text/event-stream")
        assert response.headers["cache-control"] == "no-cache, no-transform"
        assert response.headers["x-accel-buffering"] == "no"
        names = [event.event for event in events]
        assert names[0] == "meta"
        assert [event.id for event in events] == list(range(1, len(events) + 1))
        assert names.count("delta") > 10
        assert [(e.data["name"], e.data["status"]) for e in events if e.event == "stage"] == [
            ("draft", "started"),
            ("draft", "done"),
            ("refine", "started"),
            ("refine", "done"),
            ("title", "started"),
            ("recommend", "started"),
            ("title", "done"),
            ("recommend", "done"),
        ]
        assert names[-1] == "done"
        assert names.count("done") == 1
        assert names.index("title") < names.index("recommendations") < names.index("done")

        meta = events[0].data
        conversation, data = await database.conversation(meta["conversation_id"])
        assert conversation.status is ConversationStatus.COMPLETED
        assert conversation.stop_reason is None
        assert data.story == story_of(events)
        assert data.base_story
        assert data.base_story != data.story
        title = next(e.data["title"] for e in events if e.event == "title")
        items = next(e.data["items"] for e in events if e.event == "recommendations")
        assert data.title == title
        assert data.recommendations == items
        assert items
        assert (await database.thread(meta["thread_id"])).title == title
        assert conversation.models == {
            "draft": "offline",
            "refine": "offline",
            "mini": "offline",
            "embedding": "offline",
        }
        assert conversation.usage == events[-1].data["usage"]
        assert conversation.usage["output_chars"] > 0

    async def test_a_story_goes_on_when_its_client_leaves(
        self, client: httpx.AsyncClient, database: Database
    ):
        events = await until_deltas(client, PROMPT, 1)
        conversation_id = events[0].data["conversation_id"]

        assert await settled(database, conversation_id) is ConversationStatus.COMPLETED
        _conversation, data = await database.conversation(conversation_id)
        assert data.title
        assert data.story
        assert data.story.startswith(story_of(events))
        assert len(data.story) > len(story_of(events))
