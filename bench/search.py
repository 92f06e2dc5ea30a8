"""FAISS search benchmark: flat vs HNSW on low-rank synthetic embeddings.

    .venv/bin/python bench/search.py                       # 100k, 1M at 384-d; 100k at 1536-d
    .venv/bin/python bench/search.py --sizes 100000:384    # quicker

For each (count, dimension, index type): build time; memory (the index file's size, which is what
it holds in RAM once loaded); single-query latency p50/p99 (one query at a time in one thread
with one OpenMP thread, as the service's pool runs them); recall@10 against the exact (flat)
answer; and the event loop's lag p99 (lateness waking from 1 ms sleeps) while 8 searches run
continuously in the service's pool, of 1 and of 2 threads: on 2 cores, two busy search threads
leave the event loop's thread waiting for a core.

The vectors are low-rank and clustered (1000 topics in a random 64-d subspace, plus noise, unit
length), like real embeddings. i.i.d. random vectors are far apart from everything, so HNSW's
graph has no neighbourhoods to walk and its recall collapses; they would measure nothing useful.
Everything runs in-process; nothing is downloaded.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import statistics
import tempfile
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import faiss
import numpy as np
import numpy.typing as npt

from storytool.config import IndexType, Settings
from storytool.search.index import HNSWParams, VectorIndex, index_paths
from storytool.search.service import create_executor

Floats = npt.NDArray[np.float32]
QUERIES = 300
CLUSTERS = 1000
LAG_SECONDS = 3.0
SEARCHERS = 8


def low_rank(count: int, dimension: int, *, rank: int = 64, seed: int = 0) -> Floats:
    """Unit vectors from a mixture of ``CLUSTERS`` Gaussians in a random ``rank``-d subspace, plus
    full-dimensional noise: topics (clusters), a low intrinsic dimension, and no exact ties."""
    rng = np.random.default_rng(seed)
    basis = rng.standard_normal((rank, dimension), dtype=np.float32)
    centers = rng.standard_normal((CLUSTERS, rank), dtype=np.float32)
    out = np.empty((count, dimension), dtype=np.float32)
    for start in range(0, count, 100_000):  # in chunks: 1M x 1536 would not fit twice
        stop = min(start + 100_000, count)
        labels = rng.integers(0, CLUSTERS, stop - start)
        latent = centers[labels] + rng.standard_normal((stop - start, rank), dtype=np.float32)
        chunk = latent @ basis
        chunk += rng.standard_normal((stop - start, dimension), dtype=np.float32)
        out[start:stop] = chunk / np.linalg.norm(chunk, axis=1, keepdims=True)
    return out


def variants(index: VectorIndex, ef_searches: list[int]) -> Iterator[tuple[str, VectorIndex]]:
    """The built index, or for HNSW the same graph loaded back once per efSearch (a search-time
    knob: one build serves them all)."""
    if index.manifest.index_type != IndexType.HNSW.value:
        yield index.manifest.index_type, index
        return
    with tempfile.TemporaryDirectory() as folder:
        index.save(Path(folder))
        for ef in ef_searches:
            loaded = VectorIndex.load(
                Path(folder),
                index.manifest.name,
                embedder=index.manifest.embedder,
                dimension=index.manifest.dimension,
                hnsw=HNSWParams(ef_search=ef),
            )
            yield f"hnsw ef={ef}", loaded


def size_mb(index: VectorIndex) -> float:
    """The index file's size: what the index holds in memory once loaded (vectors + graph)."""
    with tempfile.TemporaryDirectory() as folder:
        index.save(Path(folder))
        return index_paths(Path(folder), index.manifest.name)[0].stat().st_size / 2**20


def latencies(index: VectorIndex, queries: Floats) -> tuple[float, float]:
    faiss.omp_set_num_threads(1)
    timings = []
    for query in queries:
        started = time.perf_counter()
        index.search(query[None, :], 10)
        timings.append((time.perf_counter() - started) * 1000)
    cuts = statistics.quantiles(timings, n=100)
    return cuts[49], cuts[98]


def recall_at_10(index: VectorIndex, exact: npt.NDArray[np.int64], queries: Floats) -> float:
    _, found = index.search(queries, 10)
    hits = sum(len(set(row) & set(truth)) for row, truth in zip(found, exact, strict=True))
    return hits / exact.size


async def loop_lag_p99(index: VectorIndex, queries: Floats, executor: ThreadPoolExecutor) -> float:
    """The loop's lateness waking from 1 ms sleeps while 8 searches run continuously."""
    loop = asyncio.get_running_loop()
    stop = asyncio.Event()

    async def searcher(offset: int) -> None:
        position = offset
        while not stop.is_set():
            query = queries[position % len(queries)][None, :]
            await loop.run_in_executor(executor, index.search, query, 10)
            position += SEARCHERS

    tasks = [asyncio.create_task(searcher(n)) for n in range(SEARCHERS)]
    lags = []
    deadline = time.perf_counter() + LAG_SECONDS
    while time.perf_counter() < deadline:
        started = time.perf_counter()
        await asyncio.sleep(0.001)
        lags.append((time.perf_counter() - started - 0.001) * 1000)
    stop.set()
    await asyncio.gather(*tasks)
    return statistics.quantiles(lags, n=100)[98]


def run(
    count: int,
    dimension: int,
    hnsw: HNSWParams,
    ef_searches: list[int],
    pools: dict[int, ThreadPoolExecutor],
    cache: Path | None,
) -> None:
    data = low_rank(count + QUERIES, dimension)  # held-out queries from the same distribution
    vectors, queries = data[:count], data[count:]
    ids = np.arange(count, dtype=np.int64)
    exact: npt.NDArray[np.int64] | None = None
    for index_type in (IndexType.FLAT, IndexType.HNSW):
        faiss.omp_set_num_threads(2)  # building may use both cores; searching uses one
        name = f"bench-{count}-{dimension}-m{hnsw.m}-efc{hnsw.ef_construction}"
        if (
            index_type is IndexType.HNSW
            and cache is not None
            and index_paths(cache, name)[0].exists()
        ):
            built = VectorIndex.load(
                cache, name, embedder="synthetic", dimension=dimension, hnsw=hnsw
            )
        else:
            built = VectorIndex.build(
                name=name,
                embedder="synthetic",
                vectors=vectors,
                ids=ids,
                index_type=index_type,
                hnsw=hnsw,
            )
            if index_type is IndexType.HNSW and cache is not None:
                built.save(cache)
        build_s = built.manifest.build_seconds
        memory = size_mb(built)
        if exact is None:
            exact = built.search(queries, 10)[1]
        for label, index in variants(built, ef_searches):
            recall = recall_at_10(index, exact, queries)
            p50, p99 = latencies(index, queries)
            lags = [asyncio.run(loop_lag_p99(index, queries, pool)) for pool in pools.values()]
            print(
                f"| {count:,} | {dimension} | {label} | {build_s:.1f} | {memory:.0f} "
                f"| {p50:.2f} | {p99:.2f} | {recall:.3f} | "
                + " | ".join(f"{lag:.2f}" for lag in lags)
                + " |",
                flush=True,
            )
        del built


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--sizes", default="100000:384,1000000:384,100000:1536")
    # The service's defaults (STORYTOOL_HNSW_M, STORYTOOL_HNSW_EF_CONSTRUCTION).
    defaults = Settings(_env_file=None)
    parser.add_argument("--hnsw-m", type=int, default=defaults.hnsw_m)
    parser.add_argument("--ef-construction", type=int, default=defaults.hnsw_ef_construction)
    parser.add_argument("--ef-search", default="64,128,256", help="HNSW efSearch values to try")
    parser.add_argument("--pool-threads", default="1,2", help="search pool sizes for the lag")
    parser.add_argument(
        "--cache",
        type=Path,
        help="Keep built HNSW indexes here and reuse them on the next run (same size and M/efC)",
    )
    args = parser.parse_args()
    hnsw = HNSWParams(m=args.hnsw_m, ef_construction=args.ef_construction)
    ef_searches = [int(value) for value in args.ef_search.split(",")]
    pools = {
        threads: create_executor(Settings(_env_file=None, search_threads=threads))
        for threads in (int(value) for value in args.pool_threads.split(","))
    }
    print(
        f"HNSW M={hnsw.m} efConstruction={hnsw.ef_construction}; "
        f"{QUERIES} queries; lag: {SEARCHERS} searches running for {LAG_SECONDS:.0f} s; "
        f"{os.cpu_count()} cores, load average {os.getloadavg()[0]:.1f}"
    )
    lags = " | ".join(f"lag p99 ms, pool of {threads}" for threads in pools)
    print(f"| vectors | dim | index | build s | memory MB | p50 ms | p99 ms | recall@10 | {lags} |")
    print("|---|---|---|---|---|---|---|---|" + "---|" * len(pools))
    for size in args.sizes.split(","):
        count, dimension = (int(part) for part in size.split(":"))
        run(count, dimension, hnsw, ef_searches, pools, args.cache)
    for pool in pools.values():
        pool.shutdown()


if __name__ == "__main__":
    main()
