"""The per-user request rate (settings.rate_limit): 429 JSON with Retry-After past it."""

from __future__ import annotations

import uuid

import httpx
import pytest
from pydantic import ValidationError

from storytool.config import AuthMode, Settings
from storytool.ratelimit import build_rate_limiter
from tests.apps import app_client

REDIS_URL = "redis://127.0.0.1:6379/0"


"""The app with its lifespan run, and a client for it."""


def limited(settings: Settings, **changes: object) -> Settings:
    return settings.model_copy(
        update={"auth_mode": AuthMode.HEADER, "rate_limit": "3/minute", **changes}
    )


async def history(client: httpx.AsyncClient, user: str) -> httpx.Response:
    return await client.get("/api/retrieveChatHistoryList", headers={"X-User-Id": user})


class TestRateLimit:
    async def test_past_the_limit_a_user_gets_429_with_retry_after(self, settings: Settings):
        async with app_client(limited(settings)) as client:
            answers = [await history(client, "alice") for _ in range(4)]
            other = await history(client, "bob")
            health = await client.get("/healthz")

        assert [answer.status_code for answer in answers] == [200, 200, 200, 429]
        refused = answers[-1]
        assert refused.json()["error"]["code"] == "too_many_requests"
        assert 0 < int(refused.headers["retry-after"]) <= 60
        assert other.status_code == 200  # counted per user
        assert health.status_code == 200  # probes are never limited

    async def test_replicas_on_redis_share_one_count(self, settings: Settings):
        user = f"user-{uuid.uuid4().hex}"
        shared = limited(settings, redis_url=REDIS_URL)
        async with app_client(shared) as first, app_client(shared) as second:
            answers = [await history(client, user) for client in (first, second, first, second)]
        assert [answer.status_code for answer in answers] == [200, 200, 200, 429]

    async def test_with_its_redis_away_requests_go_through_uncounted(self, settings: Settings):
        limiter = build_rate_limiter(limited(settings, redis_url="redis://127.0.0.1:1/0"))
        for _ in range(4):
            await limiter.hit("alice")  # neither 429 nor an error: the limit is not applied


def test_an_unreadable_limit_stops_start_up_naming_the_setting():
    with pytest.raises(ValidationError, match="rate_limit"):
        Settings(_env_file=None, rate_limit="plenty")  # type: ignore[call-arg]
