"""Nothing the server logs holds a prompt or a story, whatever a user does with them.

``tests/security/test_logs.py`` makes the database refuse a story's save; here the other flows
run, on each database and with each provider, every logger captured at DEBUG: a new story read
to its end, its continuation, a story cancelled midway, a verdict with a comment, the analysis
of a stored story and of a pasted text, a search for the prompt, and the exports (the thread as
Markdown and as JSON, the feedback as JSON lines). Then every text sent and every text the
database stored for those stories (inputs, drafts, stories, titles, recommendations) is looked
for, a sentence at a time, in every record the server would write (:mod:`tests.log_leaks`).
"""

from __future__ import annotations

import logging

import httpx
import pytest
from sqlalchemy import select

from storytool.config import Settings
from storytool.models import ConversationData
from tests.fakes.openai_server import FakeOpenAI
from tests.generation.conftest import (
    Database,
    cancel_when,
    deltas,
    generate,
    serving,
    settled,
)
from tests.generation.test_openai_upstream import DRAFT, REFINED, on_fake
from tests.log_leaks import assert_no_private_text, sentences

PROMPT = "소금 장수 아들이 달밤에 몰래 서당 담을 넘으니"
CONTINUATION = "훈장이 그 재주를 알아보고 제자로 삼으매"
PASTED = "화설. 남원 고을 옥중에 갇힌 이가 밤마다 편지를 쓰니 그 사연이 구슬프더라."
COMMENT = "서당 담을 넘는 대목이 참으로 생생하여 좋았노라"
STORED = ("user_input", "base_story", "story", "title", "recommendations")
"""The texts of a story the database keeps, each of them the user's."""


@pytest.fixture(params=["offline", "openai"])
def app_settings(
    request: pytest.FixtureRequest, settings: Settings, fake_openai: FakeOpenAI
) -> Settings:
    if request.param == "offline":
        return settings.model_copy(update={"offline_chars_per_second": 4000.0})
    fake_openai.behaviour.texts = {"ft:storytool-draft": DRAFT, "gpt-4o": REFINED}
    return on_fake(settings, fake_openai)


async def test_no_flow_logs_a_prompt_or_a_story(
    app_settings: Settings,
    fake_openai: FakeOpenAI,
    database: Database,
    caplog: pytest.LogCaptureFixture,
):
    caplog.set_level(logging.DEBUG)
    async with serving(app_settings) as client:
        await _user_flows(client, fake_openai, database)

    columns = [getattr(ConversationData, name) for name in STORED]
    async with database.sessionmaker() as session:
        stored = (await session.execute(select(*columns))).all()
    assert len(stored) == 3, "a new story, its continuation and a cancelled one"
    texts = [PROMPT, CONTINUATION, PASTED, COMMENT]
    for user_input, base_story, story, title, recommendations in stored:
        texts += [user_input, base_story, story, title, *(recommendations or [])]
    assert_no_private_text(
        caplog.records, [sentence for text in texts if text for sentence in sentences(text)]
    )


async def _user_flows(client: httpx.AsyncClient, fake: FakeOpenAI, database: Database) -> None:
    events = await generate(client, {"user_input": PROMPT, "tags": ["학업"]})
    assert events[-1].event == "done"
    meta = events[0].data
    continued = await generate(
        client,
        {
            "mode": "continue",
            "parent_conversation_id": meta["conversation_id"],
            "user_input": CONTINUATION,
        },
    )
    assert continued[-1].event == "done"

    fake.behaviour.tokens_per_second = 40  # the offline story is paced by its settings
    cancelled, answer = await cancel_when(client, {"user_input": PROMPT}, deltas(2))
    fake.behaviour.tokens_per_second = None
    assert answer.status_code == 200, answer.text
    await settled(database, cancelled[0].data["conversation_id"])

    calls = [
        client.post(
            "/api/updateEvaluation",
            json={"conversation_id": meta["conversation_id"], "rating": "like", "comment": COMMENT},
        ),
        client.post("/api/analyze", json={"conversation_id": meta["conversation_id"]}),
        client.post("/api/analyze", json={"text": PASTED}),
        client.post("/api/search", json={"query": PROMPT}),
        client.get(f"/api/threads/{meta['thread_id']}/export", params={"format": "md"}),
        client.get(f"/api/threads/{meta['thread_id']}/export", params={"format": "json"}),
        client.get("/api/evaluations/export"),
    ]
    for call in calls:
        answer = await call
        # Search answers 503 without an index; the request and its query were handled all the same.
        assert answer.status_code in (200, 503), answer.text
