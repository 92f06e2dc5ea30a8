"""The FAISS index files: round trip, refusal under another embedder, filtered search."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from storytool.config import IndexType
from storytool.search.index import IndexMismatch, IndexMissing, VectorIndex, index_paths


def low_rank(count: int, dimension: int, *, rank: int = 16, seed: int = 0) -> np.ndarray:
    """Unit vectors near a ``rank``-dimensional subspace, like real embeddings (not i.i.d.)."""
    rng = np.random.default_rng(seed)
    basis = rng.standard_normal((rank, dimension)).astype(np.float32)
    weights = rng.standard_normal((count, rank)).astype(np.float32)
    noise = 0.1 * rng.standard_normal((count, dimension)).astype(np.float32)
    vectors = weights @ basis + noise
    return vectors / np.linalg.norm(vectors, axis=1, keepdims=True)


@pytest.fixture(params=list(IndexType))
def index_type(request: pytest.FixtureRequest) -> IndexType:
    return request.param


def make(index_type: IndexType, count: int = 2000, dimension: int = 32) -> VectorIndex:
    vectors = low_rank(count, dimension)
    return VectorIndex.build(
        name="t",
        embedder="test-embedder",
        vectors=vectors,
        ids=np.arange(10_000, 10_000 + count),
        index_type=index_type,
    )


class TestRoundTrip:
    def test_a_saved_index_loads_and_answers_the_same(self, tmp_path: Path, index_type):
        index = make(index_type)
        queries = low_rank(5, 32, seed=1)
        index.save(tmp_path)
        loaded = VectorIndex.load(tmp_path, "t", embedder="test-embedder", dimension=32)
        assert loaded.manifest == index.manifest
        assert loaded.manifest.index_type == index_type.value
        assert np.array_equal(loaded.search(queries, 5)[1], index.search(queries, 5)[1])

    def test_finds_a_stored_vector_under_its_passage_id(self, index_type):
        index = make(index_type)
        vectors = low_rank(2000, 32)
        scores, ids = index.search(vectors[[7, 1500]], 1)
        assert ids[:, 0].tolist() == [10_007, 11_500]
        assert scores[:, 0] == pytest.approx([1.0, 1.0], abs=1e-4)


class TestRefusal:
    def test_another_embedder_is_refused_with_the_reason_and_the_fix(self, tmp_path: Path):
        make(IndexType.FLAT).save(tmp_path)
        with pytest.raises(IndexMismatch) as raised:
            VectorIndex.load(tmp_path, "t", embedder="other-embedder", dimension=32)
        message = str(raised.value)
        assert "test-embedder (32-d)" in message
        assert "other-embedder (32-d)" in message
        assert "storytool index build CORPUS.jsonl --name t" in message

    def test_another_dimension_is_refused(self, tmp_path: Path):
        make(IndexType.FLAT).save(tmp_path)
        with pytest.raises(IndexMismatch, match="64-d"):
            VectorIndex.load(tmp_path, "t", embedder="test-embedder", dimension=64)

    def test_a_missing_index_says_so(self, tmp_path: Path):
        with pytest.raises(IndexMissing, match="has not been built"):
            VectorIndex.load(tmp_path, "nothing", embedder="e", dimension=1)

    def test_a_save_leaves_no_temporary_files(self, tmp_path: Path):
        make(IndexType.FLAT).save(tmp_path)
        make(IndexType.FLAT).save(tmp_path)
        assert sorted(path.name for path in tmp_path.iterdir()) == sorted(
            path.name for path in index_paths(tmp_path, "t")
        )


class TestFilter:
    def test_a_selective_filter_still_finds_the_best_allowed(self, index_type):
        index = make(index_type)
        vectors = low_rank(2000, 32)
        allowed = np.array([10_003, 10_500, 11_999])
        scores, ids = index.search(vectors[[500]], 5, allowed=allowed)
        expected = allowed[np.argsort(-(vectors[allowed - 10_000] @ vectors[500]))]
        assert ids[0, :3].tolist() == expected.tolist()
        assert ids[0, 3:].tolist() == [-1, -1]
        assert scores[0, 0] == pytest.approx(1.0, abs=1e-4)
