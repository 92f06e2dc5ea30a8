"""Searches run off the event loop: the pool's FAISS OpenMP threads, and loop lag under load."""

from __future__ import annotations

import asyncio
import os
import threading
import time

import faiss
import httpx
import numpy as np

from storytool.config import EmbedderKind, IndexType, Settings
from storytool.search.embedders import E5Embedder
from storytool.search.index import VectorIndex
from storytool.search.service import create_executor
from tests.apps import app_client
from tests.search.test_index import low_rank

LOAD_VECTORS = 200_000
SEARCHERS = 8


def test_every_pool_worker_runs_faiss_with_one_openmp_thread(settings: Settings):
    executor = create_executor(settings.model_copy(update={"search_threads": 3}))
    together = threading.Barrier(3)

    def report() -> tuple[str, int]:
        together.wait(timeout=10)  # holds each worker until all three have taken a task
        return threading.current_thread().name, faiss.omp_get_max_threads()

    try:
        answers = [future.result() for future in [executor.submit(report) for _ in range(3)]]
    finally:
        executor.shutdown()
    assert len({name for name, _ in answers}) == 3
    assert [threads for _, threads in answers] == [1, 1, 1]
    # the setting is per thread: this one (not a pool worker) still has one thread per core
    assert faiss.omp_get_max_threads() == os.cpu_count()


async def test_healthz_stays_fast_while_eight_searches_run_on_200k_vectors(settings: Settings):
    settings = settings.model_copy(
        update={
            "embedder": EmbedderKind.E5,
            "index_name": "load",
            "search_threads": 2,
            # One user searching non-stop: the per-user request rate is not what is measured.
            "rate_limit": "1000000/minute",
        }
    )
    VectorIndex.build(
        name="load",
        embedder=E5Embedder.name,
        vectors=low_rank(LOAD_VECTORS, E5Embedder.dimension, rank=48),
        ids=np.arange(1, LOAD_VECTORS + 1),
        index_type=IndexType.FLAT,
    ).save(settings.index_dir)
    searches = 0
    stop = asyncio.Event()

    async def search(client: httpx.AsyncClient, number: int) -> None:
        nonlocal searches
        while not stop.is_set():
            response = await client.post(
                "/api/search", json={"query": f"{number}번째 나그네가 길을 묻다", "top_k": 10}
            )
            assert response.status_code == 200
            searches += 1

    async def healthz_latencies(client: httpx.AsyncClient, seconds: float) -> list[float]:
        latencies = []
        deadline = time.perf_counter() + seconds
        while time.perf_counter() < deadline:
            started = time.perf_counter()
            assert (await client.get("/healthz")).status_code == 200
            latencies.append(time.perf_counter() - started)
            await asyncio.sleep(0.005)
        return latencies

    async with app_client(settings) as client:
        assert (await client.get("/readyz")).json()["status"] == "ready"
        idle = float(np.percentile(await healthz_latencies(client, 1.0), 99))
        searchers = [asyncio.create_task(search(client, n)) for n in range(SEARCHERS)]
        lags = await healthz_latencies(client, 3.0)
        stop.set()
        await asyncio.gather(*searchers)
    p99 = float(np.percentile(lags, 99))
    assert searches >= SEARCHERS, "the searches did not run"
    assert p99 < 0.020, (
        f"/healthz p99 {p99 * 1000:.1f} ms while searching, {idle * 1000:.1f} ms idle "
        f"(load average {os.getloadavg()[0]:.1f} on {os.cpu_count()} cores)"
    )
