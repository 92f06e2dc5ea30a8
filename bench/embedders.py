"""Which local embedder finds a passage from a paraphrase of it? Recall on the demo corpus.

    .venv/bin/python bench/embedders.py
    .venv/bin/python bench/embedders.py --corpus my.corpus.jsonl --queries my.queries.jsonl

For each embedder: the time to embed the whole corpus (what ``storytool index build`` spends),
the time per query, and recall@1/@3/@10: the share of held-out paraphrased queries whose passage
is among the first 1, 3 or 10 results of an exact (flat) search. The queries file holds
``{"query": ..., "key": ...}`` lines, each naming the passage (by corpus key) it should find.
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import numpy as np

from storytool.config import IndexType
from storytool.search.builder import read_corpus
from storytool.search.embedders import E5Embedder, HashingEmbedder, HybridEmbedder
from storytool.search.index import VectorIndex

LocalEmbedder = HashingEmbedder | E5Embedder | HybridEmbedder


def encode(embedder: LocalEmbedder, texts: list[str], *, query: bool) -> np.ndarray:
    if isinstance(embedder, HashingEmbedder):
        return embedder.encode(texts)
    return embedder.encode(texts, purpose="query" if query else "passage")


def read_queries(path: Path, split: str) -> list[dict[str, str]]:
    lines = [json.loads(line) for line in path.read_text("utf-8").splitlines() if line.strip()]
    return [line for line in lines if split == "all" or line.get("split", "all") == split]


def measure(embedder: LocalEmbedder, corpus: Path, asked: list[dict[str, str]]) -> str:
    passages = read_corpus(corpus)
    keys = [passage.key for passage in passages]
    started = time.perf_counter()
    vectors = np.vstack(
        [
            encode(embedder, [p.text for p in passages[start : start + 64]], query=False)
            for start in range(0, len(passages), 64)
        ]
    )
    build_s = time.perf_counter() - started
    index = VectorIndex.build(
        name="bench",
        embedder=embedder.name,
        vectors=vectors,
        ids=np.arange(len(passages)),
        index_type=IndexType.FLAT,
    )
    started = time.perf_counter()
    query_vectors = encode(embedder, [item["query"] for item in asked], query=True)
    per_query_ms = (time.perf_counter() - started) * 1000 / len(asked)
    _, found = index.search(query_vectors, 10)
    ranks = []
    for item, row in zip(asked, found, strict=True):
        found_keys = [keys[i] for i in row if i >= 0]
        ranks.append(found_keys.index(item["key"]) if item["key"] in found_keys else 99)
    recall = {k: sum(rank < k for rank in ranks) / len(ranks) for k in (1, 3, 10)}
    return (
        f"| {embedder.name} | {embedder.dimension} | {recall[1]:.2f} | {recall[3]:.2f} "
        f"| {recall[10]:.2f} | {build_s:.1f} | {per_query_ms:.1f} |"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--corpus", type=Path, default=Path("indexes/demo.corpus.jsonl"))
    parser.add_argument("--queries", type=Path, default=Path("indexes/demo.queries.jsonl"))
    parser.add_argument("--split", default="dev", help="dev, test or all (the queries' split)")
    parser.add_argument("--hashing-dimension", type=int, default=4096)
    parser.add_argument("--weights", default="0.5,0.7,0.85", help="hybrid e5 weights to try")
    args = parser.parse_args()
    e5, hashing = E5Embedder(), HashingEmbedder(dimension=args.hashing_dimension)
    embedders: list[LocalEmbedder] = [hashing, e5]
    embedders += [
        HybridEmbedder(semantic_weight=float(weight), e5=e5, hashing=hashing)
        for weight in args.weights.split(",")
    ]
    passages = len(read_corpus(args.corpus))
    asked = read_queries(args.queries, args.split)
    print(f"{passages} passages, {len(asked)} held-out paraphrased queries ({args.split})")
    print("| embedder | dim | recall@1 | recall@3 | recall@10 | corpus embed s | ms/query |")
    print("|---|---|---|---|---|---|---|")
    for embedder in embedders:
        print(measure(embedder, args.corpus, asked), flush=True)


if __name__ == "__main__":
    main()
