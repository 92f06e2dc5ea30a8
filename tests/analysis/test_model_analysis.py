"""The model's reading, through the real openai provider and SDK against the fake OpenAI server."""

from __future__ import annotations

import json
import re
from collections.abc import AsyncIterator

import httpx
import pytest

from storytool.analysis.schemas import (
    Character,
    PlotStage,
    PlotStageName,
    StoryAnalysis,
    StorySetting,
)
from storytool.config import Settings
from tests.analysis.conftest import URL, running
from tests.analysis.test_metrics import CLASSICAL
from tests.fakes.openai_server import FakeOpenAI, Received
from tests.history_app import ALICE


def reading(summary: str, *stages: PlotStage) -> StoryAnalysis:
    return StoryAnalysis(
        summary=summary,
        characters=[Character(name="김생", role="주인공", description="한양으로 가는 선비.")],
        setting=StorySetting(time="옛날", place="조선"),
        themes=["여정"],
        plot=list(stages),
        tone="담담함",
        suggestions=["인물의 속마음을 더 드러내라."],
    )


def stage(name: PlotStageName, first: int, last: int) -> PlotStage:
    return PlotStage(stage=name, first_sentence=first, last_sentence=last, summary=f"{name}.")


def schema_of(request: Received) -> dict | None:
    """The JSON schema a structured-output request asked for (Responses text.format)."""
    body = request.body if isinstance(request.body, dict) else {}
    answer_format = (body.get("text") or {}).get("format") or {}
    return answer_format.get("schema") if answer_format.get("type") == "json_schema" else None


def structured_requests(fake: FakeOpenAI) -> list[Received]:
    return [r for r in fake.requests if r.method == "POST" and schema_of(r)]


def sent_text(request: Received) -> str:
    return json.dumps(request.body, ensure_ascii=False)


def numbers(sent: str) -> list[int]:
    """The sentence numbers ``[n]`` a request showed the model."""
    return [int(n) for n in re.findall(r"\[(\d+)\] ", sent)]


@pytest.fixture
async def alice(openai_settings: Settings) -> AsyncIterator[httpx.AsyncClient]:
    async with running(openai_settings) as api, api.as_user(ALICE) as client:
        yield client


class TestStructuredReading:
    async def test_is_requested_with_a_schema_parsed_and_returned(
        self, alice: httpx.AsyncClient, fake_openai: FakeOpenAI
    ):
        answer = reading("김생이 한양으로 길을 떠난다.", stage("발단", 1, 1), stage("전개", 2, 3))
        fake_openai.behaviour.structured_answers.append(answer.model_dump_json())

        response = await alice.post(URL, json={"text": CLASSICAL})

        assert response.status_code == 200
        analysis = response.json()["analysis"]
        assert analysis["available"] is True
        assert analysis["provider"] == "openai"
        assert analysis["chunks"] == 1
        assert StoryAnalysis.model_validate(analysis["result"]) == answer
        (request,) = structured_requests(fake_openai)
        schema = schema_of(request)
        assert schema is not None
        assert set(schema["required"]) >= {
            "summary",
            "characters",
            "setting",
            "themes",
            "plot",
            "tone",
            "suggestions",
        }
        # The model reads numbered sentences, so its plot stages can name them.
        assert "[1] 화설 옛날에" in sent_text(request)
        assert "[3] 각설 차시에" in sent_text(request)

    async def test_stages_outside_the_text_are_dropped(
        self, alice: httpx.AsyncClient, fake_openai: FakeOpenAI
    ):
        answer = reading(
            "요약.",
            stage("발단", 1, 2),
            stage("절정", 3, 9),
            stage("결말", 3, 2),
            stage("위기", 0, 1),
        )
        fake_openai.behaviour.structured_answers.append(answer.model_dump_json())
        response = await alice.post(URL, json={"text": CLASSICAL})
        assert response.status_code == 200
        plot = response.json()["analysis"]["result"]["plot"]
        assert [(s["stage"], s["first_sentence"], s["last_sentence"]) for s in plot] == [
            ("발단", 1, 2)
        ]


class TestInvalidAnswers:
    async def test_one_malformed_answer_is_retried(
        self, alice: httpx.AsyncClient, fake_openai: FakeOpenAI
    ):
        answer = reading("두 번째에 맞았다.")
        fake_openai.behaviour.structured_answers.extend(
            ['{"summary": "끊긴 답', answer.model_dump_json()]
        )
        response = await alice.post(URL, json={"text": CLASSICAL})
        assert response.status_code == 200
        assert response.json()["analysis"]["result"]["summary"] == "두 번째에 맞았다."
        assert len(structured_requests(fake_openai)) == 2

    async def test_two_malformed_answers_still_answer_the_metrics_saying_why(
        self, alice: httpx.AsyncClient, fake_openai: FakeOpenAI
    ):
        fake_openai.behaviour.structured_answers.extend(
            ['{"summary": "끊긴 답', json.dumps({"summary": 1, "characters": "none"})]
        )
        response = await alice.post(URL, json={"text": CLASSICAL})
        assert response.status_code == 200
        body = response.json()
        assert body["metrics"]["sentences"] > 0
        assert body["analysis"]["available"] is False
        assert body["analysis"]["result"] is None
        assert "invalid_model_output" in body["analysis"]["reason"]
        assert len(structured_requests(fake_openai)) == 2

    async def test_an_upstream_that_keeps_failing_still_answers_the_metrics(
        self, alice: httpx.AsyncClient, fake_openai: FakeOpenAI
    ):
        fake_openai.behaviour.fail_next(503, times=10, path="/v1/responses")
        response = await alice.post(URL, json={"text": CLASSICAL})
        assert response.status_code == 200
        body = response.json()
        assert body["metrics"]["characters"] == len(CLASSICAL)
        assert body["analysis"]["available"] is False
        assert "503" in body["analysis"]["reason"]


class TestLongText:
    SENTENCE = "선비가 길을 떠나 깊은 산중에 이르매 노인을 만나더라."
    """30 characters; numbered it is 34 characters as [1]..[9] and 35 as [10]..[30]."""

    async def test_is_read_in_chunks_and_merged(
        self, openai_settings: Settings, fake_openai: FakeOpenAI
    ):
        text = " ".join([self.SENTENCE] * 30)
        partials = [reading(f"{n}째 부분의 요약.") for n in ("첫", "둘", "셋")]
        merged = reading("온 이야기의 요약.", stage("발단", 1, 14), stage("결말", 15, 30))
        fake_openai.behaviour.structured_answers.extend(
            [p.model_dump_json() for p in [*partials, merged]]
        )
        # One call at a time, so the scripted answers meet the chunks in order.
        async with (
            running(openai_settings, analysis_chunk_chars=500, analysis_concurrency=1) as api,
            api.as_user(ALICE) as alice,
        ):
            response = await alice.post(URL, json={"text": text})

        assert response.status_code == 200
        analysis = response.json()["analysis"]
        # By hand: [1]..[9] take 9*34 + 8 newlines = 314; five more of 36 make 494 <= 500, a
        # sixth 530. Then [15]..[27]: 13*35 + 12 = 467; [28]..[30] are the rest.
        assert analysis["chunks"] == 3
        assert StoryAnalysis.model_validate(analysis["result"]) == merged
        *chunk_requests, merge_request = structured_requests(fake_openai)
        bodies = [sent_text(request) for request in chunk_requests]
        assert len(bodies) == 3
        assert [numbers(body) for body in bodies] == [
            list(range(1, 15)),
            list(range(15, 28)),
            list(range(28, 31)),
        ]
        assert "sentences 15 to 27 of a story of 30 sentences" in bodies[1]
        merge_body = sent_text(merge_request)
        for partial in partials:
            assert partial.summary in merge_body
        assert numbers(merge_body) == []  # the merge reads the partial analyses, not the story
