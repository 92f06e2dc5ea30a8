"""The embedders: unit vectors, stable across processes, and the OpenAI one through the real SDK
against the fake server."""

from __future__ import annotations

import json
import subprocess
import sys

import numpy as np
import pytest

from storytool.config import Settings
from storytool.llm.openai import OpenAIClient
from storytool.search.embedders import (
    E5Embedder,
    EmbeddingError,
    HashingEmbedder,
    HybridEmbedder,
    OpenAIEmbedder,
)
from tests.fakes.openai_server import FakeOpenAI, embed

LEAVING = "청운이 과거를 보러 떠날 때 모친이 눈물을 흘리며 손을 잡고 몸조심하라 당부하더라"
PARAPHRASE = "어머니가 울면서 시험 치러 길을 나서는 아들에게 건강을 잘 챙기라고 말했다"
UNRELATED = "호랑이가 밤마다 산돼지를 물어다 나무꾼의 집 앞에 두고 가더라"


class TestHashing:
    def test_vectors_are_unit_length_and_favour_shared_words(self):
        vectors = HashingEmbedder().encode([LEAVING, "모친이 눈물을 흘리며 손을 잡다", UNRELATED])
        assert vectors.dtype == np.float32
        assert np.allclose(np.linalg.norm(vectors, axis=1), 1.0, atol=1e-5)
        assert vectors[0] @ vectors[1] > vectors[0] @ vectors[2] + 0.2

    def test_the_same_text_gives_the_same_vector_in_another_process(self):
        code = (
            "import json; from storytool.search.embedders import HashingEmbedder;"
            f"print(json.dumps(HashingEmbedder().encode([{LEAVING!r}])[0].tolist()))"
        )
        other = subprocess.run(
            [sys.executable, "-c", code], capture_output=True, text=True, check=True
        )
        here = HashingEmbedder().encode([LEAVING])[0]
        assert np.allclose(np.array(json.loads(other.stdout)), here)

    def test_blank_text_is_a_zero_vector_not_nan(self):
        assert not np.isnan(HashingEmbedder().encode(["  "])).any()


class TestE5:
    async def test_a_paraphrase_in_other_words_is_nearer_than_an_unrelated_scene(self):
        embedder = E5Embedder()
        query = await embedder.embed([PARAPHRASE], purpose="query")
        passages = await embedder.embed([LEAVING, UNRELATED], purpose="passage")
        assert query.shape == (1, 384)
        assert np.allclose(np.linalg.norm(passages, axis=1), 1.0, atol=1e-5)
        near, far = passages @ query[0]
        assert near > far  # e5 scores sit in a narrow band (0.7-0.9); the order is what counts


class TestHybrid:
    def test_the_inner_product_is_the_weighted_sum_of_both(self):
        e5, hashing = E5Embedder(), HashingEmbedder(dimension=512)
        hybrid = HybridEmbedder(semantic_weight=0.6, e5=e5, hashing=hashing)
        texts = [PARAPHRASE, LEAVING]
        a, b = hybrid.encode(texts, purpose="passage")
        s1, s2 = e5.encode(texts, purpose="passage")
        h1, h2 = hashing.encode(texts)
        assert hybrid.dimension == 384 + 512
        assert a @ b == pytest.approx(0.6 * (s1 @ s2) + 0.4 * (h1 @ h2), abs=1e-5)
        assert np.linalg.norm(a) == pytest.approx(1.0, abs=1e-5)

    def test_its_name_carries_the_weight_so_indexes_of_two_weights_never_mix(self):
        e5, hashing = E5Embedder(), HashingEmbedder()
        names = {HybridEmbedder(semantic_weight=w, e5=e5, hashing=hashing).name for w in (0.5, 0.7)}
        assert len(names) == 2


def model_client(fake: FakeOpenAI, *, retries: int = 2) -> OpenAIClient:
    """The model server's one client, as the app builds it."""
    settings = Settings(
        _env_file=None,  # type: ignore[call-arg]
        openai_api_key="test",
        openai_base_url=fake.base_url,
        upstream_retry_budget=retries,
        upstream_retry_backoff_s=0.01,
    )
    return OpenAIClient(settings)


def openai_embedder(fake: FakeOpenAI, **kwargs: object) -> OpenAIEmbedder:
    return OpenAIEmbedder(
        model_client(fake),
        model="text-embedding-3-small",
        owns_client=True,
        **kwargs,  # type: ignore[arg-type]
    )


class TestOpenAI:
    async def test_batches_and_decodes_the_default_base64_answer(self, fake_openai: FakeOpenAI):
        fake_openai.behaviour.embedding_dimension = 1536
        embedder = openai_embedder(fake_openai, batch_size=2)
        texts = ["가", "나", "다", "라", "마"]
        vectors = await embedder.embed(texts, purpose="passage")
        await embedder.aclose()
        requests = fake_openai.received("/v1/embeddings")
        assert [len(request.body["input"]) for request in requests] == [2, 2, 1]
        assert requests[0].body["encoding_format"] == "base64"
        assert embedder.name == "openai-text-embedding-3-small-1536"
        assert vectors.shape == (5, 1536)
        assert np.allclose(vectors[3], embed("라", 1536), atol=1e-6)

    async def test_asks_for_a_smaller_dimension_when_set(self, fake_openai: FakeOpenAI):
        embedder = openai_embedder(fake_openai, dimension=64)
        vectors = await embedder.embed(["가"], purpose="query")
        await embedder.aclose()
        assert fake_openai.received("/v1/embeddings")[0].body["dimensions"] == 64
        assert vectors.shape == (1, 64)
        assert embedder.name == "openai-text-embedding-3-small-64"

    async def test_retries_a_server_error(self, fake_openai: FakeOpenAI):
        fake_openai.behaviour.fail_next(500, path="/v1/embeddings")
        embedder = openai_embedder(fake_openai, dimension=64)
        vectors = await embedder.embed(["가"], purpose="query")
        await embedder.aclose()
        assert len(fake_openai.received("/v1/embeddings")) == 2
        assert np.allclose(vectors[0], embed("가", 64), atol=1e-6)

    async def test_a_persistent_failure_is_an_embedding_error(self, fake_openai: FakeOpenAI):
        fake_openai.behaviour.fail_next(503, times=3, path="/v1/embeddings")
        embedder = OpenAIEmbedder(
            model_client(fake_openai, retries=0),
            model="text-embedding-3-small",
            dimension=64,
            owns_client=True,
        )
        with pytest.raises(EmbeddingError, match="embedding request failed"):
            await embedder.embed(["가"], purpose="query")
        await embedder.aclose()

    async def test_vectors_of_the_wrong_size_are_refused(self, fake_openai: FakeOpenAI):
        embedder = openai_embedder(fake_openai)  # expects 1536; the fake answers 64
        with pytest.raises(EmbeddingError, match="expected"):
            await embedder.embed(["가"], purpose="query")
        await embedder.aclose()

    def test_an_unknown_model_needs_its_dimension(self, fake_openai: FakeOpenAI):
        with pytest.raises(ValueError, match="STORYTOOL_EMBEDDING_DIMENSIONS"):
            OpenAIEmbedder(model_client(fake_openai), model="my-own-model")
