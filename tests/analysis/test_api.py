"""``POST /api/analyze`` with the offline provider: metrics, sources, ownership, and bad input.

Expected metric values are hand-counted (see test_metrics.py for the rules)."""

from __future__ import annotations

import uuid

import httpx
import pytest
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from storytool.config import Settings
from storytool.generation.repository import ConversationRepository
from tests.analysis.conftest import URL, running
from tests.analysis.test_metrics import CLASSICAL
from tests.factories import create_conversation
from tests.history_app import ALICE, BOB

Sessions = async_sessionmaker[AsyncSession]

STORY = "각설. 이때 춘향이 옥중에서 울더라."
"""Hand-counted: 2 sentences, 5 words, 16 non-space characters, 각설 and 이때, one -더라."""


async def seed_story(db: Sessions, story: str | None, *, user_id: str = ALICE) -> str:
    async with db() as session:
        conversation = await create_conversation(session, user_id=user_id)
        await ConversationRepository(session).save_data(
            conversation_id=conversation.id, story=story
        )
        await session.commit()
        return conversation.id


def error_of(response: httpx.Response) -> dict:
    return response.json()["error"]


class TestText:
    async def test_metrics_are_complete_and_the_reading_says_it_is_unavailable(
        self, offline: httpx.AsyncClient
    ):
        response = await offline.post(URL, json={"text": CLASSICAL})
        assert response.status_code == 200
        body = response.json()
        assert body["source"] == {"kind": "text", "conversation_id": None}
        metrics = body["metrics"]
        assert (metrics["sentences"], metrics["words"], metrics["paragraphs"]) == (3, 19, 3)
        assert metrics["markers"]["endings"]["total"] == 5
        assert metrics["markers"]["transitions"]["counts"] == {
            "화설": 1,
            "이때": 1,
            "각설": 1,
            "차시": 1,
        }
        assert body["sentences"] == [
            {"start": 0, "end": 26},
            {"start": 28, "end": 56},
            {"start": 57, "end": 78},
        ]
        analysis = body["analysis"]
        assert analysis["available"] is False
        assert "offline" in analysis["reason"]
        assert analysis["provider"] == "offline"
        assert analysis["chunks"] == 0
        assert analysis["result"] is None


class TestConversation:
    async def test_the_callers_story_is_analysed(self, offline_settings: Settings, db: Sessions):
        conversation_id = await seed_story(db, STORY)
        async with running(offline_settings) as api, api.as_user(ALICE) as alice:
            response = await alice.post(URL, json={"conversation_id": conversation_id})
        assert response.status_code == 200
        body = response.json()
        assert body["source"] == {"kind": "conversation", "conversation_id": conversation_id}
        assert body["metrics"]["sentences"] == 2
        assert body["metrics"]["words"] == 5
        assert body["metrics"]["characters_no_spaces"] == 16
        assert body["metrics"]["markers"]["transitions"]["total"] == 2
        assert body["metrics"]["markers"]["endings"]["counts"] == {"-더라": 1}

    async def test_another_users_conversation_is_not_found(
        self, offline_settings: Settings, db: Sessions
    ):
        conversation_id = await seed_story(db, STORY, user_id=ALICE)
        async with running(offline_settings) as api, api.as_user(BOB) as bob:
            theirs = await bob.post(URL, json={"conversation_id": conversation_id})
            missing = await bob.post(URL, json={"conversation_id": str(uuid.uuid4())})
        for response in (theirs, missing):
            assert response.status_code == 404
            assert error_of(response)["field"] == "conversation_id"
        assert error_of(theirs) == error_of(missing)

    async def test_a_conversation_without_a_story_yet_is_a_conflict(
        self, offline_settings: Settings, db: Sessions
    ):
        conversation_id = await seed_story(db, None)
        async with running(offline_settings) as api, api.as_user(ALICE) as alice:
            response = await alice.post(URL, json={"conversation_id": conversation_id})
        assert response.status_code == 409
        assert "no story" in error_of(response)["message"]

    async def test_a_caller_without_credentials_is_refused(self, offline_settings: Settings):
        async with running(offline_settings) as api, api.as_user(None) as anonymous:
            response = await anonymous.post(URL, json={"text": STORY})
        assert response.status_code == 401


class TestBadInput:
    @pytest.mark.parametrize(
        ("body", "field", "words"),
        [
            ({"text": ""}, "text", "empty"),
            ({"text": " \n\t "}, "text", "empty"),
            ({}, "conversation_id", "give text or conversation_id"),
            (
                {"text": STORY, "conversation_id": "00000000-0000-4000-8000-000000000000"},
                "conversation_id",
                "not both",
            ),
            ({"conversation_id": "abc"}, "conversation_id", "not an id"),
            ({"text": None, "conversation_id": None}, "conversation_id", "give text"),
            ({"text": 42}, "text", "string"),
            ({"text": STORY, "extra": 1}, "extra", "not permitted"),
        ],
    )
    async def test_is_a_422_naming_the_field(
        self, offline: httpx.AsyncClient, body: dict, field: str, words: str
    ):
        response = await offline.post(URL, json=body)
        assert response.status_code == 422
        assert error_of(response)["field"] == field
        assert words in error_of(response)["message"]

    async def test_text_over_the_limit_is_a_422_naming_the_limit(self, offline_settings: Settings):
        async with (
            running(offline_settings, max_analysis_chars=20) as api,
            api.as_user(ALICE) as alice,
        ):
            at_limit = await alice.post(URL, json={"text": "가" * 20})
            over = await alice.post(URL, json={"text": "가" * 21})
        assert at_limit.status_code == 200
        assert over.status_code == 422
        assert error_of(over)["field"] == "text"
        assert "21 characters; at most 20" in error_of(over)["message"]
