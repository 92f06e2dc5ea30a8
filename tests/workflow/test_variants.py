"""Regenerate, continue and pick: every variant is stored and streamed like any story, grouped
under its input in the history detail, and the user's pick is kept."""

from __future__ import annotations

import httpx

from storytool.config import Settings
from storytool.main import create_app
from tests.fakes.server_thread import ServerThread
from tests.generation.conftest import (
    Database,
    cancel_when,
    deltas,
    read_events,
    settled,
    story_of,
)
from tests.workflow.conftest import Server, ids_of, write

PROMPT = "한 선비가 과거 길에 여우를 만나니"


async def detail(client: httpx.AsyncClient, thread_id: str) -> dict:
    answer = await client.get("/api/retrieveChatHistoryDetail", params={"thread_id": thread_id})
    assert answer.status_code == 200
    return answer.json()


async def rate(client: httpx.AsyncClient, conversation_id: str, rating: str, **more) -> dict:
    answer = await client.post(
        "/api/updateEvaluation",
        json={"conversation_id": conversation_id, "rating": rating, **more},
    )
    assert answer.status_code == 200, answer.text
    return answer.json()


class TestVariants:
    async def test_three_regenerates_and_a_continuation_each_keep_their_own_story(
        self, alice: httpx.AsyncClient, database: Database
    ):
        thread_id, first = ids_of(await write(alice, {"user_input": PROMPT, "tags": ["여우"]}))
        regenerate = {"mode": "regenerate", "parent_conversation_id": first}
        short = await write(alice, {**regenerate, "options": {"length": "short"}})
        # Regenerating from a variant adds a sibling under the same input, not a chain.
        cancelled, answer = await cancel_when(
            alice,
            {**regenerate, "parent_conversation_id": ids_of(short)[1]},
            deltas(2),
        )
        assert answer.status_code == 200
        assert cancelled[-1].event == "cancelled"
        long = await write(alice, {**regenerate, "options": {"length": "long"}})
        continued = await write(
            alice,
            {
                "mode": "continue",
                "parent_conversation_id": ids_of(long)[1],
                "user_input": "호랑이가 나타나니",
            },
        )
        variants = [first, ids_of(short)[1], ids_of(cancelled)[1], ids_of(long)[1]]
        assert {ids_of(events)[0] for events in (short, cancelled, long, continued)} == {thread_id}
        await rate(alice, variants[1], "dislike", reasons=["too_short", "style"])
        await rate(alice, ids_of(continued)[1], "like", reasons=["plot"])

        shown = await detail(alice, thread_id)

        first_input, continuation = shown["inputs"]
        assert first_input == {
            "conversation_id": first,
            "mode": "new",
            "continues": None,
            "user_input": PROMPT,
            "tags": ["여우"],
            "variants": variants,
            "selected": None,
        }
        assert continuation["mode"] == "continue"
        assert continuation["continues"] == variants[3]
        assert continuation["variants"] == [ids_of(continued)[1]]
        assert continuation["user_input"] == "호랑이가 나타나니"
        by_id = {item["id"]: item for item in shown["conversations"]}
        assert [by_id[key]["status"] for key in variants] == [
            "completed",
            "completed",
            "cancelled",
            "completed",
        ]
        assert by_id[ids_of(continued)[1]]["status"] == "completed"
        stories = [by_id[key]["story"] for key in variants]
        assert stories[1] == story_of(short)
        assert stories[3] == story_of(long)
        assert stories[0] != stories[1] != stories[3]  # each written for its own length
        assert stories[2]
        assert stories[2] == story_of(cancelled)
        # The continuation stores only its new text, not the story it extends.
        assert by_id[ids_of(continued)[1]]["story"] == story_of(continued)
        assert stories[3] not in by_id[ids_of(continued)[1]]["story"]
        assert by_id[variants[1]]["evaluation"]["reasons"] == ["too_short", "style"]
        produced_by = by_id[variants[1]]["evaluation"]["produced_by"]
        assert produced_by["mode"] == "regenerate"
        assert produced_by["options"] == {"length": "short", "temperature": None}
        assert produced_by["models"]
        assert all(produced_by["models"].values())
        assert by_id[variants[0]]["evaluation"] is None
        assert by_id[ids_of(continued)[1]]["evaluation"]["rating"] == "like"
        assert by_id[variants[2]]["parent_conversation_id"] == first
        stored, _data = await database.conversation(ids_of(long)[1])
        assert stored.options == {"length": "long", "temperature": None}

    async def test_cancelling_a_variant_leaves_the_others_running(
        self, alice: httpx.AsyncClient, database: Database
    ):
        thread_id, first = ids_of(await write(alice, {"user_input": PROMPT}))
        regenerate = {"mode": "regenerate", "parent_conversation_id": first}
        async with alice.stream("POST", "/api/generate", json=regenerate) as kept:
            kept_events = kept.aiter_lines()
            async for line in kept_events:
                if line.startswith("data:") and "conversation_id" in line:
                    break
            cancelled, answer = await cancel_when(alice, regenerate, deltas(1))
            assert answer.json()["status"] == "cancelled"
            async for _line in kept_events:
                pass
        statuses = {
            item["id"]: item["status"] for item in (await detail(alice, thread_id))["conversations"]
        }
        assert statuses[ids_of(cancelled)[1]] == "cancelled"
        assert sorted(statuses.values()) == ["cancelled", "completed", "completed"]
        assert await settled(database, first) == "completed"

    async def test_a_cancelled_continuation_shows_its_own_input_not_the_story_it_read(
        self, alice: httpx.AsyncClient
    ):
        _thread_id, first = ids_of(await write(alice, {"user_input": PROMPT}))
        body = {"mode": "continue", "parent_conversation_id": first, "user_input": "밤이 깊으니"}
        events, answer = await cancel_when(alice, body, deltas(1))
        assert events[-1].event == "cancelled"
        assert events[-1].data["user_input"] == "밤이 깊으니"
        assert answer.json()["user_input"] == "밤이 깊으니"

    async def test_the_pick_is_one_per_input_and_shown_in_the_detail(
        self, alice: httpx.AsyncClient, bob: httpx.AsyncClient
    ):
        thread_id, first = ids_of(await write(alice, {"user_input": PROMPT}))
        regenerate = {"mode": "regenerate", "parent_conversation_id": first}
        second = ids_of(await write(alice, regenerate))[1]
        later = ids_of(await write(alice, {"user_input": "다른 이야기", "thread_id": thread_id}))[1]

        picked = await alice.post("/api/selectVariant", json={"conversation_id": second})
        assert picked.json() == {"conversation_id": second, "input_conversation_id": first}
        refused = await bob.post("/api/selectVariant", json={"conversation_id": first})
        assert refused.status_code == 404
        await alice.post("/api/selectVariant", json={"conversation_id": later})

        groups = (await detail(alice, thread_id))["inputs"]
        assert [(group["variants"], group["selected"]) for group in groups] == [
            ([first, second], second),
            ([later], later),
        ]
        await alice.post("/api/selectVariant", json={"conversation_id": first})
        groups = (await detail(alice, thread_id))["inputs"]
        assert [group["selected"] for group in groups] == [first, later]
        shown = (await detail(alice, thread_id))["conversations"]
        assert [item["selected"] for item in shown] == [True, False, True]


class TestRefusals:
    async def test_another_users_conversation_is_not_found_for_either_mode(
        self, alice: httpx.AsyncClient, bob: httpx.AsyncClient, database: Database
    ):
        _thread_id, first = ids_of(await write(alice, {"user_input": PROMPT}))
        before = await database.counts()
        for mode in ("regenerate", "continue"):
            answer = await bob.post(
                "/api/generate", json={"mode": mode, "parent_conversation_id": first}
            )
            assert answer.status_code == 404
            assert answer.json()["error"]["field"] == "parent_conversation_id"
        assert await database.counts() == before

    async def test_continuing_a_story_still_being_written_is_a_conflict(
        self, workflow_settings: Settings, database: Database
    ):
        slow = workflow_settings.model_copy(update={"offline_chars_per_second": 100.0})
        with ServerThread(create_app(slow)) as running:
            async with Server(running.url).as_user("alice") as alice:
                async with alice.stream(
                    "POST", "/api/generate", json={"user_input": PROMPT}
                ) as response:
                    events = read_events(response)
                    meta = await anext(events)
                    parent = meta.data["conversation_id"]
                    answer = await alice.post(
                        "/api/generate", json={"mode": "continue", "parent_conversation_id": parent}
                    )
                    assert answer.status_code == 409
                    assert answer.json()["error"]["field"] == "parent_conversation_id"
                    await alice.post("/api/cancelGeneration", json={"conversation_id": parent})
                    assert [event.event async for event in events][-1] == "cancelled"
        assert await database.counts() == (1, 1)

    async def test_a_parent_id_that_does_not_fit_the_mode_is_invalid(
        self, alice: httpx.AsyncClient
    ):
        _thread_id, first = ids_of(await write(alice, {"user_input": PROMPT}))
        cases = [
            ({"mode": "regenerate"}, "parent_conversation_id"),
            ({"mode": "continue"}, "parent_conversation_id"),
            ({"user_input": PROMPT, "parent_conversation_id": first}, "parent_conversation_id"),
            (
                {"mode": "regenerate", "parent_conversation_id": first, "user_input": "x"},
                "user_input",
            ),
            ({"mode": "sideways", "parent_conversation_id": first}, "mode"),
        ]
        for body, field in cases:
            answer = await alice.post("/api/generate", json=body)
            assert answer.status_code == 422, body
            assert answer.json()["error"]["field"] == field, body

    async def test_unknown_reason_tags_are_invalid_and_change_nothing(
        self, alice: httpx.AsyncClient
    ):
        thread_id, first = ids_of(await write(alice, {"user_input": PROMPT}))
        answer = await alice.post(
            "/api/updateEvaluation",
            json={"conversation_id": first, "rating": "like", "reasons": ["plot", "vibes"]},
        )
        assert answer.status_code == 422
        assert answer.json()["error"]["field"] == "reasons.1"
        assert (await detail(alice, thread_id))["conversations"][0]["evaluation"] is None
