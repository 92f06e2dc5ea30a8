"""A FAISS index keyed by passage id, and the manifest that says how it was built.

On disk, per index name::

    indexes/<name>.faiss            the vectors (IndexIDMap over Flat or HNSW, inner product)
    indexes/<name>.manifest.json    embedder, dimension, count, index type, build time

Both are written to a temporary file and renamed into place (faiss first, manifest last), so a
reader never sees half a file, and a manifest always describes a complete index. Loading checks
the manifest against the embedder the process uses: vectors from two embedders are not comparable,
so a mismatch refuses to load and says how to fix it.
"""

from __future__ import annotations

import json
import os
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import asdict, dataclass
from datetime import UTC, datetime
from pathlib import Path

import faiss
import numpy as np
import numpy.typing as npt

from storytool.config import IndexType

FloatArray = npt.NDArray[np.float32]
IdArray = npt.NDArray[np.int64]


EXACT_FILTER_LIMIT = 20_000
"""A filter that keeps at most this many passages is searched exactly over their vectors: HNSW
with a selective filter walks a graph whose neighbours are mostly filtered out, and misses."""


class IndexMissing(Exception):
    """No index of that name has been built."""


class IndexMismatch(Exception):
    """The index was built by another embedder (or dimension) than the one configured."""


@dataclass(frozen=True, slots=True)
class Manifest:
    name: str
    embedder: str
    dimension: int
    count: int
    index_type: str
    built_at: str
    build_seconds: float


@dataclass(frozen=True, slots=True)
class HNSWParams:
    m: int = 32
    ef_construction: int = 80
    ef_search: int = 64


def index_paths(directory: Path, name: str) -> tuple[Path, Path]:
    return directory / f"{name}.faiss", directory / f"{name}.manifest.json"


class VectorIndex:
    """Unit vectors under passage ids; :meth:`search` is thread-safe and releases the GIL."""

    def __init__(self, index: faiss.Index, manifest: Manifest, hnsw: HNSWParams) -> None:
        id_map = faiss.downcast_index(index)
        if not isinstance(id_map, faiss.IndexIDMap):
            raise ValueError(f"not an id-mapped index: {type(id_map).__name__}")
        self._index = id_map
        # downcast_index makes new wrappers that own nothing: the original wrapper keeps the
        # vectors (and, for a built index, its Python-owned inner index) alive.
        self._owner = index
        self.manifest = manifest
        self._hnsw = hnsw
        self._inner = faiss.downcast_index(id_map.index)
        self._ids: IdArray = faiss.vector_to_array(id_map.id_map).astype(np.int64)

    @classmethod
    def build(
        cls,
        *,
        name: str,
        embedder: str,
        vectors: FloatArray,
        ids: IdArray,
        index_type: IndexType,
        hnsw: HNSWParams | None = None,
        build_seconds: float = 0.0,
    ) -> VectorIndex:
        """``build_seconds`` is the time spent before this call (embedding); the time spent
        adding vectors is added to it."""
        hnsw = hnsw or HNSWParams()
        started = time.perf_counter()
        dimension = int(vectors.shape[1])
        inner: faiss.Index
        if index_type is IndexType.HNSW:
            graph = faiss.IndexHNSWFlat(dimension, hnsw.m, faiss.METRIC_INNER_PRODUCT)
            graph.hnsw.efConstruction = hnsw.ef_construction
            inner = graph
        else:
            inner = faiss.IndexFlatIP(dimension)
        index = faiss.IndexIDMap(inner)
        index.add_with_ids(
            np.ascontiguousarray(vectors, dtype=np.float32), np.asarray(ids, dtype=np.int64)
        )
        manifest = Manifest(
            name=name,
            embedder=embedder,
            dimension=dimension,
            count=int(index.ntotal),
            index_type=index_type.value,
            built_at=datetime.now(UTC).isoformat(timespec="seconds"),
            build_seconds=round(build_seconds + time.perf_counter() - started, 3),
        )
        return cls(index, manifest, hnsw)

    def search(
        self, queries: FloatArray, k: int, *, allowed: IdArray | None = None
    ) -> tuple[FloatArray, IdArray]:
        """Scores (cosine) and ids, best first; missing hits have id -1. ``allowed`` restricts
        the search to those ids (a filter)."""
        queries = np.ascontiguousarray(queries, dtype=np.float32)
        if allowed is not None and len(allowed) <= EXACT_FILTER_LIMIT:
            return self._search_exact(queries, k, allowed)
        params: faiss.SearchParameters | None = None
        if self.manifest.index_type == IndexType.HNSW.value:
            hnsw_params = faiss.SearchParametersHNSW()  # type: ignore[attr-defined]  # not in stubs
            hnsw_params.efSearch = max(self._hnsw.ef_search, k)
            params = hnsw_params
        elif allowed is not None:
            params = faiss.SearchParameters()
        if allowed is not None and params is not None:
            params.sel = faiss.IDSelectorBatch(np.asarray(allowed, dtype=np.int64))
        scores, ids = self._index.search(queries, k, params=params)
        return scores, ids

    def _search_exact(
        self, queries: FloatArray, k: int, allowed: IdArray
    ) -> tuple[FloatArray, IdArray]:
        positions = np.flatnonzero(np.isin(self._ids, allowed))
        scores = np.full((len(queries), k), -np.inf, dtype=np.float32)
        ids = np.full((len(queries), k), -1, dtype=np.int64)
        if len(positions) == 0:
            return scores, ids
        vectors = self._inner.reconstruct_batch(positions)
        similarity = queries @ vectors.T
        take = min(k, len(positions))
        for row, sims in enumerate(similarity):
            best = np.argsort(-sims, kind="stable")[:take]
            scores[row, :take] = sims[best]
            ids[row, :take] = self._ids[positions[best]]
        return scores, ids

    def save(self, directory: Path) -> None:
        directory.mkdir(parents=True, exist_ok=True)
        faiss_path, manifest_path = index_paths(directory, self.manifest.name)
        with _replacing(faiss_path) as tmp:
            faiss.write_index(self._index, str(tmp))
        with _replacing(manifest_path) as tmp:
            tmp.write_text(json.dumps(asdict(self.manifest), indent=2) + "\n", encoding="utf-8")

    @classmethod
    def load(
        cls,
        directory: Path,
        name: str,
        *,
        embedder: str,
        dimension: int,
        hnsw: HNSWParams | None = None,
    ) -> VectorIndex:
        faiss_path, manifest_path = index_paths(directory, name)
        if not manifest_path.exists() or not faiss_path.exists():
            raise IndexMissing(f"index {name!r} has not been built: no {faiss_path}")
        manifest = read_manifest(manifest_path)
        if manifest.embedder != embedder or manifest.dimension != dimension:
            raise IndexMismatch(
                f"index {name!r} was built with embedder {manifest.embedder} "
                f"({manifest.dimension}-d), but this process embeds with {embedder} "
                f"({dimension}-d); their vectors are not comparable. Rebuild the index with "
                f"`storytool index build CORPUS.jsonl --name {name}`, or set STORYTOOL_EMBEDDER "
                "to the embedder it was built with."
            )
        index = faiss.read_index(str(faiss_path))
        return cls(index, manifest, hnsw or HNSWParams())


def read_manifest(path: Path) -> Manifest:
    return Manifest(**json.loads(path.read_text(encoding="utf-8")))


@contextmanager
def _replacing(target: Path) -> Iterator[Path]:
    """A temporary path beside ``target``, renamed over it when the block succeeds."""
    fd, name = tempfile.mkstemp(dir=target.parent, prefix=f".{target.name}.")
    os.close(fd)
    tmp = Path(name)
    tmp.chmod(0o644)  # mkstemp makes it private; other replicas and users read index files
    try:
        yield tmp
        os.replace(tmp, target)
    finally:
        tmp.unlink(missing_ok=True)
