"""The feedback export: judged, completed stories as OpenAI chat fine-tuning lines, the caller's
own (everyone's for an admin token), streamed row by row."""

from __future__ import annotations

import json
import tracemalloc
from collections.abc import AsyncIterator
from datetime import timedelta
from typing import Any

import httpx
import jwt
import pytest
from pydantic import SecretStr

from storytool.config import AuthMode, Settings
from storytool.db.base import utcnow
from storytool.db.engine import create_engine, create_sessionmaker
from storytool.evaluations.export import EXPORT_BATCH_ROWS, FeedbackExport
from storytool.main import create_app
from storytool.models import (
    Conversation,
    ConversationStatus,
    GenerationMode,
    Rating,
)
from tests.apps import app_client as running_app
from tests.factories import judged_story, seed_judged
from tests.fakes.server_thread import ServerThread
from tests.stalled_client import StalledClient, until_dropped

SYSTEM_PROMPT = "너는 조선 후기 고전 소설의 문체로 이야기를 쓰는 작가다."
SECRET = "workflow-test-secret-0123456789abcdef"


def checked_example(line: str) -> list[dict[str, str]]:
    """The line's messages, once they pass OpenAI's checks for a chat fine-tuning example."""
    example = json.loads(line)
    assert set(example) == {"messages"}
    messages = example["messages"]
    assert [message["role"] for message in messages] == ["system", "user", "assistant"]
    for message in messages:
        assert set(message) == {"role", "content"}
        assert isinstance(message["content"], str)
        assert message["content"].strip()
    return messages


class TestMemory:
    async def test_ten_thousand_liked_stories_stream_with_flat_memory(self, committed_url: str):
        await seed_judged(committed_url, user_id="alice", count=10_000)
        await seed_judged(committed_url, user_id="alice", count=20, rating=Rating.DISLIKE)
        engine = create_engine(Settings(), url=committed_url)
        export = FeedbackExport(create_sessionmaker(engine), system_prompt=SYSTEM_PROMPT)
        streamed_bytes = 0
        numbers: set[int] = set()
        try:
            tracemalloc.start()
            async for line in export.lines(user_id="alice", rating=Rating.LIKE, since=None):
                streamed_bytes += len(line.encode())
                assistant = checked_example(line)[2]["content"]
                numbers.add(int(assistant.partition("번째")[0]))
            _now, peak = tracemalloc.get_traced_memory()
        finally:
            tracemalloc.stop()
            await engine.dispose()
        assert numbers == set(range(10_000))  # every liked story once, no dislike
        # All rows at once would take more than the lines' bytes (28 MB here); the stream holds
        # one batch of rows and one line at a time.
        assert streamed_bytes > 25_000_000
        assert peak < streamed_bytes / 5, (peak, streamed_bytes)


class TestBatches:
    async def test_everyones_export_walks_each_user_in_batches_with_each_story_once(
        self, committed_url: str
    ):
        # Each user's verdicts share one instant (bulk-made), and batches end mid-user.
        counts = {"alice": 150, "bob": EXPORT_BATCH_ROWS, "carol": 5}
        for user_id, count in counts.items():
            await seed_judged(committed_url, user_id=user_id, count=count)
        engine = create_engine(Settings(), url=committed_url)
        export = FeedbackExport(create_sessionmaker(engine), system_prompt=SYSTEM_PROMPT)
        try:
            prompts = [
                checked_example(line)[1]["content"].partition("\n")[0]
                async for line in export.lines(user_id=None, rating=Rating.LIKE, since=None)
            ]
        finally:
            await engine.dispose()
        expected = [
            f"줄거리: {user_id}의 {number}번째 줄거리"
            for user_id, count in counts.items()
            for number in range(count)
        ]
        assert sorted(prompts) == sorted(expected)  # each once
        assert [prompt.split("의")[0] for prompt in prompts] == [
            prompt.split("의")[0] for prompt in expected
        ]  # user by user


@pytest.fixture
def jwt_settings(settings: Settings) -> Settings:
    return settings.model_copy(
        update={
            "auth_mode": AuthMode.JWT,
            "jwt_secret": SecretStr(SECRET),
            "system_prompt": SYSTEM_PROMPT,
        }
    )


@pytest.fixture
async def app_client(jwt_settings: Settings) -> AsyncIterator[httpx.AsyncClient]:
    async with running_app(jwt_settings) as client:
        yield client


def token(user_id: str, **claims: Any) -> dict[str, str]:
    payload = {"sub": user_id, "exp": utcnow() + timedelta(minutes=5), **claims}
    return {"Authorization": "Bearer " + jwt.encode(payload, SECRET, algorithm="HS256")}


async def exported(
    client: httpx.AsyncClient, headers: dict[str, str], **params: str
) -> list[list[dict[str, str]]]:
    answer = await client.get("/api/evaluations/export", params=params, headers=headers)
    assert answer.status_code == 200, answer.text
    assert answer.headers["content-type"].startswith("application/jsonl")
    return [checked_example(line) for line in answer.text.splitlines()]


class TestExport:
    async def test_each_caller_gets_their_own_and_an_admin_everyones(
        self, app_client: httpx.AsyncClient, committed_url: str
    ):
        await seed_judged(committed_url, user_id="alice", count=3)
        await seed_judged(committed_url, user_id="bob", count=2)
        await seed_judged(committed_url, user_id="alice", count=4, rating=Rating.DISLIKE)
        await seed_judged(
            committed_url, user_id="alice", count=5, status=ConversationStatus.CANCELLED
        )

        alices = await exported(app_client, token("alice"))
        assert sorted(messages[1]["content"] for messages in alices) == [
            f"줄거리: alice의 {number}번째 줄거리\n태그: 사랑\n분량: 짧게, 800자 안팎으로"
            for number in range(3)
        ]
        assert sorted(messages[2]["content"] for messages in alices) == [
            judged_story(n) for n in range(3)
        ]
        assert {messages[0]["content"] for messages in alices} == {SYSTEM_PROMPT}
        assert len(await exported(app_client, token("bob", roles=["writer"]))) == 2
        assert len(await exported(app_client, token("carol"))) == 0
        assert len(await exported(app_client, token("carol", roles=["admin"]))) == 5
        assert len(await exported(app_client, token("carol", role="admin"))) == 5
        disliked = await exported(app_client, token("alice"), rating="dislike")
        assert len(disliked) == 4

    async def test_since_keeps_only_later_verdicts(
        self, app_client: httpx.AsyncClient, committed_url: str
    ):
        await seed_judged(
            committed_url, user_id="alice", count=2, judged_at_offset=-timedelta(days=3)
        )
        await seed_judged(committed_url, user_id="alice", count=3)
        since = (utcnow() - timedelta(days=1)).replace(tzinfo=None).isoformat()
        assert len(await exported(app_client, token("alice"), since=since)) == 3
        assert len(await exported(app_client, token("alice"))) == 5

    async def test_a_continuation_is_shown_with_the_end_of_the_story_it_continues(
        self, app_client: httpx.AsyncClient, committed_url: str
    ):
        [parent] = await seed_judged(committed_url, user_id="alice", count=1, rating=Rating.DISLIKE)
        [child] = await seed_judged(committed_url, user_id="alice", count=1)
        engine = create_engine(Settings(), url=committed_url)
        try:
            async with engine.begin() as connection:
                await connection.execute(
                    Conversation.__table__.update()
                    .where(Conversation.__table__.c.id == child)
                    .values(mode=GenerationMode.CONTINUE, parent_conversation_id=parent)
                )
        finally:
            await engine.dispose()

        [messages] = await exported(app_client, token("alice"))

        assert messages[1]["content"].startswith(
            "줄거리: alice의 0번째 줄거리\n\n앞 이야기의 끝:\n"
        )
        assert judged_story(0)[-200:] in messages[1]["content"]
        assert messages[2]["content"] == judged_story(0)

    async def test_an_unknown_format_or_rating_is_invalid(self, app_client: httpx.AsyncClient):
        for params, field in (({"format": "csv"}, "format"), ({"rating": "none"}, "rating")):
            answer = await app_client.get(
                "/api/evaluations/export", params=params, headers=token("alice")
            )
            assert answer.status_code == 422
            assert answer.json()["error"]["field"] == field


FROZEN_SEND_TIMEOUT_S = 10.0
"""Far longer than five history pages take, so those are asked while the export still waits."""


class TestFrozenReader:
    """A client that stops reading the export holds no pooled connection while its socket is
    full (the export reads a batch per short transaction and sends it after), and is dropped
    once it has taken nothing for ``send_timeout_s``."""

    async def test_with_a_pool_of_one_others_are_served_while_an_export_sits_unread(
        self, settings: Settings, committed_url: str, drops: list[str]
    ):
        await seed_judged(committed_url, user_id="alice", count=150, story_chars=20_000, batch=50)
        one_connection = settings.model_copy(
            update={
                "auth_mode": AuthMode.HEADER,
                "db_pool_size": 1,
                "db_max_overflow": 0,
                "send_timeout_s": FROZEN_SEND_TIMEOUT_S,
            }
        )
        with ServerThread(create_app(one_connection), send_buffer=4096) as server:
            frozen = await StalledClient.request(
                server.port, "GET", "/api/evaluations/export", headers={"X-User-Id": "alice"}
            )
            try:
                # Its first line is out: the export is past its first query, its socket fills.
                await frozen.read_until(b'{"messages"')
                async with httpx.AsyncClient(base_url=server.url, timeout=10) as client:
                    others = [
                        await client.get(
                            "/api/retrieveChatHistoryList", headers={"X-User-Id": "bob"}
                        )
                        for _ in range(5)
                    ]
                    ready = await client.get("/readyz")
                waiting_meanwhile = "GET /api/evaluations/export" not in drops
                await until_dropped(
                    drops, "GET /api/evaluations/export", send_timeout_s=FROZEN_SEND_TIMEOUT_S
                )
                rest = await frozen.read_to_end()
            finally:
                frozen.close()

        assert [answer.status_code for answer in others] == [200] * 5
        assert ready.status_code == 200
        assert waiting_meanwhile  # they were served while the export sat on a full socket
        assert rest.count(b'{"messages"') < 150  # cut off when it was dropped
