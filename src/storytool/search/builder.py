"""``storytool index build``: corpus file → passages table → vectors → index files.

The corpus is JSON Lines, one passage per line (see ``indexes/README.md``)::

    {"key": "chunhyang-03-02", "work": "...", "chapter": "...", "scene": "...", "text": "..."}

Order of work: read and check the whole file, embed (the slow part; nothing is written if it
fails), then replace the corpus' rows in one transaction and commit, then write the index files.
Rows are matched by ``key``, so a passage that stays keeps its id and a running server's index
stays valid until the rebuilt one is swapped in.
"""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np
from pydantic import BaseModel, ConfigDict, Field, ValidationError

from storytool.config import Settings
from storytool.db.engine import create_engine, create_sessionmaker
from storytool.search.embedders import Embedder, FloatArray
from storytool.search.index import HNSWParams, Manifest, VectorIndex
from storytool.search.repository import CorpusPassage, PassageRepository


class CorpusError(Exception):
    """The corpus file cannot be indexed; the message names the line."""


class _CorpusLine(BaseModel):
    model_config = ConfigDict(extra="allow")

    key: str = Field(min_length=1, max_length=200)
    work: str = Field(min_length=1, max_length=200)
    chapter: str | None = Field(default=None, max_length=200)
    scene: str | None = Field(default=None, max_length=200)
    text: str = Field(min_length=1)


def read_corpus(path: Path) -> list[CorpusPassage]:
    passages: list[CorpusPassage] = []
    seen: set[str] = set()
    with path.open(encoding="utf-8") as lines:
        for number, line in enumerate(lines, start=1):
            if not line.strip():
                continue
            try:
                item = _CorpusLine.model_validate(json.loads(line))
            except (json.JSONDecodeError, ValidationError) as exc:
                raise CorpusError(f"{path}:{number}: not a passage: {exc}") from exc
            if item.key in seen:
                raise CorpusError(f"{path}:{number}: key {item.key!r} appears twice")
            seen.add(item.key)
            passages.append(
                CorpusPassage(
                    key=item.key,
                    work=item.work,
                    chapter=item.chapter,
                    scene=item.scene,
                    text=item.text.strip(),
                )
            )
    if not passages:
        raise CorpusError(f"{path}: no passages")
    return passages


async def embed_passages(
    embedder: Embedder,
    texts: list[str],
    *,
    batch_size: int,
    on_batch: Callable[[int], None] | None = None,
) -> FloatArray:
    batches = []
    for start in range(0, len(texts), batch_size):
        batch = texts[start : start + batch_size]
        batches.append(await embedder.embed(batch, purpose="passage"))
        if on_batch is not None:
            on_batch(len(batch))
    return np.vstack(batches)


async def build_index(
    settings: Settings,
    corpus: Path,
    *,
    name: str,
    embedder: Embedder,
    on_batch: Callable[[int], None] | None = None,
    on_read: Callable[[int], None] | None = None,
) -> Manifest:
    """Loads ``corpus`` as the passages of corpus ``name`` and writes ``indexes/<name>.*``.
    ``on_read`` gets the passage count, ``on_batch`` each embedded batch's size."""
    passages = read_corpus(corpus)
    if on_read is not None:
        on_read(len(passages))
    started = time.perf_counter()
    vectors = await embed_passages(
        embedder,
        [passage.text for passage in passages],
        batch_size=settings.embed_batch_size,
        on_batch=on_batch,
    )
    embed_seconds = time.perf_counter() - started
    engine = create_engine(settings)
    try:
        async with create_sessionmaker(engine)() as session, session.begin():
            ids = await PassageRepository(session).replace_corpus(name, passages)
    finally:
        await engine.dispose()
    index = VectorIndex.build(
        name=name,
        embedder=embedder.name,
        vectors=vectors,
        ids=np.asarray(ids, dtype=np.int64),
        index_type=settings.index_type,
        hnsw=HNSWParams(
            m=settings.hnsw_m,
            ef_construction=settings.hnsw_ef_construction,
            ef_search=settings.hnsw_ef_search,
        ),
        build_seconds=embed_seconds,
    )
    await asyncio.to_thread(index.save, settings.index_dir)
    return index.manifest
