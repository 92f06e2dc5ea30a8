from __future__ import annotations

import time
import uuid

import httpx
import jwt
import pytest
from pydantic import SecretStr
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from storytool.config import AuthMode, Settings
from storytool.models import ContentEvaluation, Conversation
from tests.apps import app_client
from tests.factories import create_conversation
from tests.history_app import ALICE, BOB, count

Sessions = async_sessionmaker[AsyncSession]
URL = "/api/updateEvaluation"


async def seed_conversation(db: Sessions, *, user_id: str = ALICE) -> Conversation:
    async with db() as session:
        conversation = await create_conversation(session, user_id=user_id)
        await session.commit()
        return conversation


async def detail_evaluation(client: httpx.AsyncClient, conversation: Conversation) -> dict | None:
    response = await client.get(
        "/api/retrieveChatHistoryDetail", params={"thread_id": conversation.thread_id}
    )
    return response.json()["conversations"][0]["evaluation"]


class TestUpdate:
    async def test_like_is_stored_and_answered(self, db: Sessions, alice):
        conversation = await seed_conversation(db)

        response = await alice.post(
            URL, json={"conversation_id": conversation.id, "rating": "like", "comment": "명문"}
        )

        assert response.status_code == 200
        body = response.json()
        assert body["conversation_id"] == conversation.id
        assert body["rating"] == "like"
        assert body["comment"] == "명문"
        assert await detail_evaluation(alice, conversation) == body

    async def test_a_second_verdict_replaces_the_first(self, db: Sessions, alice):
        conversation = await seed_conversation(db)
        first = await alice.post(
            URL, json={"conversation_id": conversation.id, "rating": "like", "comment": "좋다"}
        )

        second = await alice.post(
            URL, json={"conversation_id": conversation.id, "rating": "dislike"}
        )

        assert second.json()["rating"] == "dislike"
        assert second.json()["comment"] is None
        assert second.json()["created_at"] == first.json()["created_at"]
        assert await count(db, ContentEvaluation, conversation_id=conversation.id) == 1

    async def test_none_clears_the_verdict(self, db: Sessions, alice):
        conversation = await seed_conversation(db)
        await alice.post(
            URL, json={"conversation_id": conversation.id, "rating": "like", "comment": "좋다"}
        )

        response = await alice.post(
            URL, json={"conversation_id": conversation.id, "rating": "none", "comment": "  "}
        )

        assert response.status_code == 200
        assert response.json()["rating"] == "none"
        assert response.json()["comment"] is None
        assert (await detail_evaluation(alice, conversation))["rating"] == "none"


class TestOtherUsersData:
    async def test_evaluating_alices_conversation_is_404_and_changes_nothing(
        self, db: Sessions, alice, bob
    ):
        conversation = await seed_conversation(db)
        mine = await alice.post(URL, json={"conversation_id": conversation.id, "rating": "like"})

        response = await bob.post(
            URL, json={"conversation_id": conversation.id, "rating": "dislike"}
        )

        assert response.status_code == 404
        assert response.json()["error"]["field"] == "conversation_id"
        assert await count(db, ContentEvaluation, conversation_id=conversation.id) == 1
        assert await count(db, ContentEvaluation, user_id=BOB) == 0
        assert await detail_evaluation(alice, conversation) == mine.json()

    async def test_an_unknown_conversation_is_404(self, alice):
        response = await alice.post(
            URL, json={"conversation_id": str(uuid.uuid4()), "rating": "like"}
        )

        assert response.status_code == 404


class TestBadInput:
    @pytest.mark.parametrize(
        ("body", "field"),
        [
            ({"rating": "like"}, "conversation_id"),
            ({"conversation_id": "abc", "rating": "like"}, "conversation_id"),
            ({"conversation_id": "{id}", "rating": "love"}, "rating"),
            ({"conversation_id": "{id}"}, "rating"),
            ({"conversation_id": "{id}", "rating": "like", "comment": "가" * 51}, "comment"),
            ({"conversation_id": "{id}", "rating": "like", "stars": 5}, "stars"),
        ],
    )
    async def test_is_422_naming_the_field_and_stores_nothing(
        self, db: Sessions, alice, body, field
    ):
        conversation = await seed_conversation(db)
        if body.get("conversation_id") == "{id}":
            body = body | {"conversation_id": conversation.id}

        response = await alice.post(URL, json=body)

        assert response.status_code == 422
        assert response.json()["error"]["field"] == field
        assert await count(db, ContentEvaluation) == 0

    async def test_a_comment_at_the_limit_is_accepted(self, db: Sessions, alice):
        conversation = await seed_conversation(db)

        response = await alice.post(
            URL, json={"conversation_id": conversation.id, "rating": "like", "comment": "가" * 50}
        )

        assert response.status_code == 200


class TestAuth:
    async def test_no_user_header_is_401_json(self, db: Sessions, api):
        conversation = await seed_conversation(db)
        async with api.as_user(None) as anonymous:
            response = await anonymous.post(
                URL, json={"conversation_id": conversation.id, "rating": "like"}
            )

        assert response.status_code == 401
        assert response.json()["error"]["code"] == "unauthorized"
        assert await count(db, ContentEvaluation) == 0


SECRET = "a-test-secret-of-sufficient-length-for-hs256"


@pytest.fixture
async def jwt_api(settings: Settings):
    jwt_settings = settings.model_copy(
        update={"auth_mode": AuthMode.JWT, "jwt_secret": SecretStr(SECRET)}
    )
    async with app_client(jwt_settings) as client:
        yield client


def bearer(key: str, **claims) -> dict[str, str]:
    claims = {"sub": ALICE, "exp": int(time.time()) + 60} | claims
    return {"Authorization": "Bearer " + jwt.encode(claims, key, algorithm="HS256")}


class TestJwt:
    """The history and evaluation routes under auth_mode=jwt: the token's subject is the user."""

    async def test_a_valid_token_reaches_the_callers_data(self, db: Sessions, jwt_api):
        conversation = await seed_conversation(db, user_id=ALICE)

        response = await jwt_api.post(
            URL, json={"conversation_id": conversation.id, "rating": "like"}, headers=bearer(SECRET)
        )
        listed = await jwt_api.get("/api/retrieveChatHistoryList", headers=bearer(SECRET))

        assert response.status_code == 200
        assert [item["id"] for item in listed.json()["items"]] == [conversation.thread_id]

    @pytest.mark.parametrize(
        "headers",
        [
            bearer("another-secret-of-sufficient-length-xx"),
            bearer(SECRET, exp=int(time.time()) - 10),
            {"Authorization": "Bearer not.a.jwt"},
            {},
        ],
        ids=["wrong-key", "expired", "malformed", "missing"],
    )
    @pytest.mark.parametrize(
        ("method", "path"),
        [
            ("GET", "/api/retrieveChatHistoryList"),
            ("GET", "/api/retrieveChatHistoryDetail"),
            ("DELETE", "/api/deleteThread"),
            ("POST", URL),
        ],
    )
    async def test_a_bad_token_is_401_json(self, db: Sessions, jwt_api, headers, method, path):
        conversation = await seed_conversation(db, user_id=ALICE)
        params = {} if method == "POST" else {"thread_id": conversation.thread_id}
        body = {"conversation_id": conversation.id, "rating": "like"} if method == "POST" else None

        response = await jwt_api.request(method, path, params=params, json=body, headers=headers)

        assert response.status_code == 401
        assert response.json()["error"]["code"] == "unauthorized"
        assert await count(db, Conversation, id=conversation.id) == 1
        assert await count(db, ContentEvaluation) == 0
