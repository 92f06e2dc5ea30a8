"""Apps for the analysis tests: auth_mode=header (alice and bob) on the test's database, with the
offline provider or the openai provider pointed at the fake OpenAI server."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import httpx
import pytest
from asgi_lifespan import LifespanManager
from pydantic import SecretStr

from storytool.config import AuthMode, LLMProvider, Settings
from storytool.main import create_app
from tests.fakes.openai_server import FakeOpenAI
from tests.history_app import ALICE, Api, db

__all__ = ["db"]

URL = "/api/analyze"


@asynccontextmanager
async def running(settings: Settings, **overrides: Any) -> AsyncIterator[Api]:
    app = create_app(settings.model_copy(update=overrides))
    async with LifespanManager(app) as manager:
        yield Api(httpx.ASGITransport(app=manager.app))


@pytest.fixture
def offline_settings(settings: Settings) -> Settings:
    return settings.model_copy(update={"auth_mode": AuthMode.HEADER})


@pytest.fixture
def openai_settings(offline_settings: Settings, fake_openai: FakeOpenAI) -> Settings:
    return offline_settings.model_copy(
        update={
            "llm_provider": LLMProvider.OPENAI,
            "openai_base_url": fake_openai.base_url,
            "openai_api_key": SecretStr("test"),
            "openai_timeout_s": 10.0,
            "upstream_retry_backoff_s": 0.01,
        }
    )


@pytest.fixture
async def offline(offline_settings: Settings) -> AsyncIterator[httpx.AsyncClient]:
    """Alice's client on an app with the offline provider."""
    async with running(offline_settings) as api, api.as_user(ALICE) as client:
        yield client
