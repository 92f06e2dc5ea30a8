from __future__ import annotations

import base64
import uuid
from datetime import timedelta

import httpx
import pytest
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from storytool.db.base import utcnow
from storytool.generation.repository import ConversationRepository
from storytool.models import (
    ContentEvaluation,
    Conversation,
    ConversationData,
    ConversationStatus,
    Rating,
    Thread,
)
from tests.factories import create_conversation, create_thread
from tests.history_app import ALICE, BOB, count, counting_queries

Sessions = async_sessionmaker[AsyncSession]


async def seed_thread(
    db: Sessions, *, user_id: str = ALICE, turns: int = 1, story: str | None = None, **fields
) -> Thread:
    """A committed thread with ``turns`` conversations; the last one has ``story``."""
    async with db() as session:
        thread = await create_thread(session, user_id=user_id, **fields)
        for turn in range(turns):
            conversation = await create_conversation(
                session, user_id=user_id, thread_id=thread.id, user_input=f"{turn}번째 이야기"
            )
        if turns and story is not None:
            await ConversationRepository(session).save_data(
                conversation_id=conversation.id, story=story
            )
        await session.commit()
        return thread


async def list_all(client: httpx.AsyncClient, limit: int) -> list[dict]:
    items: list[dict] = []
    cursor = None
    while True:
        params: dict = {"limit": limit} | ({"cursor": cursor} if cursor else {})
        response = await client.get("/api/retrieveChatHistoryList", params=params)
        assert response.status_code == 200, response.text
        page = response.json()
        assert len(page["items"]) <= limit
        items += page["items"]
        cursor = page["next_cursor"]
        if cursor is None:
            return items


class TestList:
    async def test_newest_activity_first_with_summary(self, db: Sessions, alice):
        now = utcnow()
        older = await seed_thread(db, title="옛 이야기", updated_at=now - timedelta(hours=1))
        newer = await seed_thread(db, turns=3, story="화설 " + "가" * 500, updated_at=now)
        await seed_thread(db, user_id=BOB)

        response = await alice.get("/api/retrieveChatHistoryList")

        assert response.status_code == 200
        items = response.json()["items"]
        assert [item["id"] for item in items] == [newer.id, older.id]
        assert items[0]["conversation_count"] == 3
        assert items[0]["last_status"] == "in_progress"
        assert items[0]["preview"] == ("화설 " + "가" * 500)[:120]
        assert items[1]["title"] == "옛 이야기"
        # No story written yet: the prompt stands in.
        assert items[1]["preview"] == "0번째 이야기"
        assert response.json()["next_cursor"] is None

    async def test_250_threads_with_one_timestamp_page_exactly_once_in_order(
        self, db: Sessions, alice
    ):
        stamp = utcnow()
        async with db() as session:
            session.add_all(
                Thread(user_id=ALICE, created_at=stamp, updated_at=stamp) for _ in range(250)
            )
            await session.commit()

        items = await list_all(alice, limit=7)

        ids = [item["id"] for item in items]
        assert {(item["conversation_count"], item["last_status"]) for item in items} == {(0, None)}
        assert len(ids) == 250
        assert len(set(ids)) == 250
        assert ids == sorted(ids, reverse=True)  # ties on updated_at broken by id, descending

    async def test_a_thread_moves_to_the_top_when_it_has_new_activity(self, db: Sessions, alice):
        first = await seed_thread(db, updated_at=utcnow() - timedelta(minutes=5))
        second = await seed_thread(db)
        async with db() as session:
            await create_conversation(session, user_id=ALICE, thread_id=first.id)
            await session.commit()

        items = (await alice.get("/api/retrieveChatHistoryList")).json()["items"]

        assert [item["id"] for item in items] == [first.id, second.id]
        assert items[0]["conversation_count"] == 2

    async def test_a_page_costs_the_same_queries_for_5_and_100_threads(self, db: Sessions, alice):
        for _ in range(110):
            await seed_thread(db, turns=2, story="각설")
        await alice.get("/api/retrieveChatHistoryList", params={"limit": 1})  # warm the pool

        with counting_queries() as small:
            response = await alice.get("/api/retrieveChatHistoryList", params={"limit": 5})
        assert len(response.json()["items"]) == 5
        with counting_queries() as large:
            response = await alice.get("/api/retrieveChatHistoryList", params={"limit": 100})
        assert len(response.json()["items"]) == 100
        assert all(item["conversation_count"] == 2 for item in response.json()["items"])

        assert len(small) == len(large) == 1


class TestDetail:
    async def test_conversations_in_order_with_stories_and_the_callers_evaluation(
        self, db: Sessions, alice
    ):
        async with db() as session:
            thread = await create_thread(session, user_id=ALICE, title="선비전")
            first = await create_conversation(
                session, user_id=ALICE, thread_id=thread.id, tags=["모험", "사랑"]
            )
            await ConversationRepository(session).save_data(
                conversation_id=first.id,
                base_story="초고",
                story="화설 조선 시절에",
                title="선비전",
                recommendations=["다음 장"],
            )
            await ConversationRepository(session).finish(
                conversation_id=first.id, status=ConversationStatus.COMPLETED
            )
            session.add(
                ContentEvaluation(
                    conversation_id=first.id, user_id=ALICE, rating=Rating.LIKE, comment="좋다"
                )
            )
            second = await create_conversation(session, user_id=ALICE, thread_id=thread.id)
            await session.commit()

        response = await alice.get(
            "/api/retrieveChatHistoryDetail", params={"thread_id": thread.id}
        )

        assert response.status_code == 200
        body = response.json()
        assert body["id"] == thread.id
        assert body["title"] == "선비전"
        done, running = body["conversations"]
        assert [done["id"], running["id"]] == [first.id, second.id]
        assert done["status"] == "completed"
        assert done["tags"] == ["모험", "사랑"]
        assert done["base_story"] == "초고"
        assert done["story"] == "화설 조선 시절에"
        assert done["recommendations"] == ["다음 장"]
        assert done["evaluation"]["rating"] == "like"
        assert done["evaluation"]["comment"] == "좋다"
        assert running["status"] == "in_progress"
        assert running["story"] is None
        assert running["evaluation"] is None

    async def test_costs_the_same_queries_for_1_and_20_conversations(self, db: Sessions, alice):
        short = await seed_thread(db, turns=1, story="각설")
        long = await seed_thread(db, turns=20, story="각설")
        await alice.get("/api/retrieveChatHistoryList")  # warm the pool

        counts = []
        for thread, turns in ((short, 1), (long, 20)):
            with counting_queries() as statements:
                response = await alice.get(
                    "/api/retrieveChatHistoryDetail", params={"thread_id": thread.id}
                )
            assert len(response.json()["conversations"]) == turns
            counts.append(len(statements))

        assert counts[0] == counts[1] == 2  # the thread, then its conversations


class TestDelete:
    async def test_removes_the_thread_and_everything_in_it(self, db: Sessions, alice):
        async with db() as session:
            thread = await create_thread(session, user_id=ALICE)
            conversation = await create_conversation(session, user_id=ALICE, thread_id=thread.id)
            session.add(
                ContentEvaluation(
                    conversation_id=conversation.id, user_id=ALICE, rating=Rating.DISLIKE
                )
            )
            await session.commit()
        kept = await seed_thread(db)

        response = await alice.delete("/api/deleteThread", params={"thread_id": thread.id})

        assert response.status_code == 204
        assert await count(db, Thread, id=thread.id) == 0
        assert await count(db, Conversation, thread_id=thread.id) == 0
        assert await count(db, ConversationData, conversation_id=conversation.id) == 0
        assert await count(db, ContentEvaluation, conversation_id=conversation.id) == 0
        assert await count(db, Thread, id=kept.id) == 1
        detail = await alice.get("/api/retrieveChatHistoryDetail", params={"thread_id": thread.id})
        assert detail.status_code == 404

    async def test_deleting_twice_is_404(self, db: Sessions, alice):
        thread = await seed_thread(db)
        assert (
            await alice.delete("/api/deleteThread", params={"thread_id": thread.id})
        ).status_code == 204

        again = await alice.delete("/api/deleteThread", params={"thread_id": thread.id})

        assert again.status_code == 404
        assert again.json()["error"]["code"] == "not_found"


class TestOtherUsersData:
    """Bob sees none of Alice's threads: each attempt is a 404 and changes nothing."""

    async def test_bobs_list_holds_none_of_alices_threads(self, db: Sessions, bob):
        await seed_thread(db, user_id=ALICE)
        mine = await seed_thread(db, user_id=BOB)

        items = await list_all(bob, limit=100)

        assert [item["id"] for item in items] == [mine.id]

    async def test_reading_alices_thread_is_404(self, db: Sessions, bob):
        thread = await seed_thread(db, user_id=ALICE, story="비밀")

        response = await bob.get("/api/retrieveChatHistoryDetail", params={"thread_id": thread.id})

        assert response.status_code == 404
        assert "비밀" not in response.text

    async def test_deleting_alices_thread_is_404_and_keeps_it(self, db: Sessions, alice, bob):
        thread = await seed_thread(db, user_id=ALICE, turns=2)

        response = await bob.delete("/api/deleteThread", params={"thread_id": thread.id})

        assert response.status_code == 404
        assert await count(db, Thread, id=thread.id) == 1
        assert await count(db, Conversation, thread_id=thread.id) == 2
        detail = await alice.get("/api/retrieveChatHistoryDetail", params={"thread_id": thread.id})
        assert len(detail.json()["conversations"]) == 2

    async def test_alices_cursor_is_refused_for_bob(self, db: Sessions, alice, bob):
        for _ in range(3):
            await seed_thread(db, user_id=ALICE)
        cursor = (await alice.get("/api/retrieveChatHistoryList", params={"limit": 1})).json()[
            "next_cursor"
        ]

        response = await bob.get("/api/retrieveChatHistoryList", params={"cursor": cursor})

        assert response.status_code == 422
        assert response.json()["error"]["field"] == "cursor"


class TestAuth:
    @pytest.mark.parametrize(
        ("method", "path", "params"),
        [
            ("GET", "/api/retrieveChatHistoryList", {}),
            ("GET", "/api/retrieveChatHistoryDetail", {"thread_id": str(uuid.uuid4())}),
            ("DELETE", "/api/deleteThread", {"thread_id": str(uuid.uuid4())}),
        ],
    )
    async def test_no_user_header_is_401_json(self, api, method, path, params):
        async with api.as_user(None) as anonymous:
            response = await anonymous.request(method, path, params=params)

        assert response.status_code == 401
        assert response.json()["error"]["code"] == "unauthorized"


def _forged(cursor: str) -> str:
    """Alice's cursor with its position moved, the signature left as it was."""
    body, _, signature = cursor.partition(".")
    payload = base64.urlsafe_b64decode(body + "=" * (-len(body) % 4)).decode()
    stamp, _, thread_id = payload.partition("|")
    moved = f"{stamp}|{'f' * 8}{thread_id[8:]}".encode()
    return base64.urlsafe_b64encode(moved).rstrip(b"=").decode() + "." + signature


class TestBadInput:
    @pytest.mark.parametrize(
        ("path", "params", "field"),
        [
            ("/api/retrieveChatHistoryList", {"limit": 0}, "limit"),
            ("/api/retrieveChatHistoryList", {"limit": 1000}, "limit"),
            ("/api/retrieveChatHistoryList", {"limit": "ten"}, "limit"),
            ("/api/retrieveChatHistoryList", {"cursor": "not-a-cursor"}, "cursor"),
            ("/api/retrieveChatHistoryList", {"cursor": "%%%.!!!"}, "cursor"),
            ("/api/retrieveChatHistoryDetail", {"thread_id": "42"}, "thread_id"),
            ("/api/retrieveChatHistoryDetail", {}, "thread_id"),
        ],
    )
    async def test_is_422_naming_the_field(self, alice, path, params, field):
        response = await alice.get(path, params=params)

        assert response.status_code == 422
        assert response.json()["error"]["field"] == field

    async def test_malformed_thread_id_on_delete_is_422(self, alice):
        response = await alice.delete("/api/deleteThread", params={"thread_id": "x'; DROP"})

        assert response.status_code == 422
        assert response.json()["error"]["field"] == "thread_id"

    async def test_forged_and_corrupted_cursors_are_422(self, db: Sessions, alice):
        for _ in range(3):
            await seed_thread(db, user_id=ALICE)
        cursor = (await alice.get("/api/retrieveChatHistoryList", params={"limit": 1})).json()[
            "next_cursor"
        ]
        corrupted = cursor[:-3] + ("AAA" if not cursor.endswith("AAA") else "BBB")

        for bad in (_forged(cursor), corrupted, cursor.replace(".", "")):
            response = await alice.get("/api/retrieveChatHistoryList", params={"cursor": bad})
            assert response.status_code == 422, bad
            assert response.json()["error"]["field"] == "cursor"
        good = await alice.get("/api/retrieveChatHistoryList", params={"cursor": cursor})
        assert good.status_code == 200
        assert len(good.json()["items"]) == 2
