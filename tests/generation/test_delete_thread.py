"""Deleting a thread while one of its stories is still being written."""

from __future__ import annotations

from storytool.config import Settings
from tests.generation.conftest import Database, deltas, read_events, serving


async def test_deleting_a_thread_stops_its_running_story_first(
    settings: Settings, database: Database
):
    async with serving(settings.model_copy(update={"offline_chars_per_second": 300.0})) as client:
        events = []
        async with client.stream(
            "POST", "/api/generate", json={"user_input": "호랑이가 은혜를 갚으니", "tags": []}
        ) as response:
            reader = read_events(response)
            async for event in reader:
                events.append(event)
                if deltas(2)(events):
                    break
            thread_id = events[0].data["thread_id"]

            deleted = await client.delete("/api/deleteThread", params={"thread_id": thread_id})

            rest = [event async for event in reader]

        assert deleted.status_code == 204
        # The stream ended with a cancel, not cut off, and not completed after the delete.
        assert rest[-1].event == "cancelled"
        assert not any(event.event in ("done", "error") for event in rest)
        assert await database.counts() == (0, 0)
        history = await client.get("/api/retrieveChatHistoryList")
        assert history.json()["items"] == []
