"""An app with its lifespan run, called in-process through httpx's ASGI transport.

ASGITransport buffers whole bodies and reports a disconnect only at the end, so stream, disconnect
and resume tests use a real server instead (tests/fakes/server_thread.py)."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

import httpx
from asgi_lifespan import LifespanManager

from storytool.config import Settings
from storytool.main import create_app


@asynccontextmanager
async def app_client(settings: Settings) -> AsyncIterator[httpx.AsyncClient]:
    async with LifespanManager(create_app(settings)) as manager:
        transport = httpx.ASGITransport(app=manager.app)
        async with httpx.AsyncClient(transport=transport, base_url="http://test") as client:
            yield client
