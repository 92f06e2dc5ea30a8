"""Search fixtures: a small corpus written for these tests, settings that use it, an app."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import httpx
import pytest

from storytool.config import EmbedderKind, Settings
from storytool.search.builder import build_index
from storytool.search.embedders import build_embedder
from storytool.search.index import Manifest
from tests.apps import app_client

SAMPLE_CORPUS = Path(__file__).with_name("sample_corpus.jsonl")


@pytest.fixture
def search_settings(settings: Settings) -> Settings:
    """The test database and a fresh index folder; the hashing embedder, which is instant."""
    return settings.model_copy(
        update={"embedder": EmbedderKind.HASHING, "index_name": "sample", "embed_batch_size": 5}
    )


async def build(settings: Settings, corpus: Path = SAMPLE_CORPUS, name: str = "sample") -> Manifest:
    embedder = build_embedder(settings)
    try:
        return await build_index(settings, corpus, name=name, embedder=embedder)
    finally:
        await embedder.aclose()


@pytest.fixture
async def sample_index(search_settings: Settings) -> Manifest:
    return await build(search_settings)


@pytest.fixture
async def client(search_settings: Settings) -> AsyncIterator[httpx.AsyncClient]:
    """An app whose index holds the sample corpus."""
    await build(search_settings)
    async with app_client(search_settings) as client:
        yield client
