"""Which local embedder finds a passage from a paraphrase of it? Recall on the demo corpus.

    .venv/bin/python bench/embedders.py                  # the dev queries (tuning)
    .venv/bin/python bench/embedders.py --split test     # the 10 acceptance queries

For each embedder: the time to embed the whole corpus (what ``storytool index build`` spends),
the time per query, and recall@1/@3/@10: the share of held-out paraphrased queries whose passage
is among the first 1, 3 or 10 results of an exact (flat) search. The queries file holds
``{"query", "key", "split"}`` lines, each naming the passage (by corpus key) it should find.

e5 runs once; each hybrid combines those e5 rows with the hashing rows exactly as
:class:`HybridEmbedder` does, so its times are the sum of the two parts.
"""

from __future__ import annotations

import argparse
import json
import time
from collections.abc import Callable
from functools import partial
from pathlib import Path

import numpy as np

from storytool.config import IndexType
from storytool.search.builder import read_corpus
from storytool.search.embedders import E5Embedder, FloatArray, HashingEmbedder, HybridEmbedder
from storytool.search.index import VectorIndex


def timed(work: Callable[[], FloatArray]) -> tuple[FloatArray, float]:
    started = time.perf_counter()
    return work(), time.perf_counter() - started


def recall(
    passages: FloatArray, queries: FloatArray, keys: list[str], asked: list[dict[str, str]]
) -> dict[int, float]:
    index = VectorIndex.build(
        name="bench",
        embedder="bench",
        vectors=passages,
        ids=np.arange(len(keys)),
        index_type=IndexType.FLAT,
    )
    _, found = index.search(queries, 10)
    ranks = []
    for item, row in zip(asked, found, strict=True):
        found_keys = [keys[i] for i in row if i >= 0]
        ranks.append(found_keys.index(item["key"]) if item["key"] in found_keys else 99)
    return {k: sum(rank < k for rank in ranks) / len(ranks) for k in (1, 3, 10)}


def row(name: str, dimension: int, hits: dict[int, float], build_s: float, query_s: float) -> str:
    return (
        f"| {name} | {dimension} | {hits[1]:.2f} | {hits[3]:.2f} | {hits[10]:.2f} "
        f"| {build_s:.1f} | {query_s * 1000:.1f} |"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--corpus", type=Path, default=Path("indexes/demo.corpus.jsonl"))
    parser.add_argument("--queries", type=Path, default=Path("indexes/demo.queries.jsonl"))
    parser.add_argument("--splits", default="dev,test", help="a table per split of the queries")
    parser.add_argument("--hashing-dimensions", default="4096,1024")
    parser.add_argument("--weights", default="0.5,0.6,0.7,0.8", help="hybrid e5 weights")
    args = parser.parse_args()
    passages = read_corpus(args.corpus)
    keys = [passage.key for passage in passages]
    texts = [passage.text for passage in passages]
    asked = [json.loads(line) for line in args.queries.read_text("utf-8").splitlines() if line]
    questions = [item["query"] for item in asked]
    e5 = E5Embedder()
    e5_passages, e5_build = timed(lambda: e5.encode(texts, purpose="passage"))
    e5_queries, e5_query = timed(lambda: e5.encode(questions, purpose="query"))
    # name -> (dimension, passage rows, query rows, corpus seconds, seconds per query)
    spaces = {e5.name: (e5.dimension, e5_passages, e5_queries, e5_build, e5_query / len(asked))}
    for dimension in (int(value) for value in args.hashing_dimensions.split(",")):
        hashing = HashingEmbedder(dimension=dimension)
        lexical_passages, lexical_build = timed(partial(hashing.encode, texts))
        lexical_queries, lexical_query = timed(partial(hashing.encode, questions))
        spaces[hashing.name] = (
            dimension,
            lexical_passages,
            lexical_queries,
            lexical_build,
            lexical_query / len(asked),
        )
        for weight in (float(value) for value in args.weights.split(",")):
            hybrid = HybridEmbedder(semantic_weight=weight, e5=e5, hashing=hashing)
            spaces[hybrid.name] = (
                hybrid.dimension,
                hybrid.combine(e5_passages, lexical_passages),
                hybrid.combine(e5_queries, lexical_queries),
                e5_build + lexical_build,
                (e5_query + lexical_query) / len(asked),
            )
    for split in args.splits.split(","):
        chosen = [n for n, item in enumerate(asked) if split in ("all", item.get("split"))]
        print(f"\n{len(passages)} passages, {len(chosen)} paraphrased queries (split: {split})")
        print("| embedder | dim | recall@1 | recall@3 | recall@10 | corpus embed s | ms/query |")
        print("|---|---|---|---|---|---|---|")
        for name, (dimension, rows, queries, build_s, query_s) in spaces.items():
            hits = recall(rows, queries[chosen], keys, [asked[n] for n in chosen])
            print(row(name, dimension, hits, build_s, query_s))


if __name__ == "__main__":
    main()
