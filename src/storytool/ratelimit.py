"""Requests per user, counted in a moving window by the ``limits`` library.

In memory for one process; on Redis (``redis_url``) when replicas must share one count, so a user
cannot multiply the limit by the replica count. The limit is read from ``settings.rate_limit``
(``"120/minute"``, or several joined by ``;``); every one of them must hold.
"""

from __future__ import annotations

import logging
import math
import time

from limits import RateLimitItem, parse_many
from limits.aio.storage import MemoryStorage, RedisStorage, Storage
from limits.aio.strategies import MovingWindowRateLimiter
from limits.errors import StorageError

from storytool.config import Settings
from storytool.errors import TooManyRequests

logger = logging.getLogger("storytool.ratelimit")


class RateLimiter:
    def __init__(self, storage: Storage, items: list[RateLimitItem]) -> None:
        self._storage = storage
        self._limiter = MovingWindowRateLimiter(storage)
        self._items = items

    async def hit(self, user_id: str) -> None:
        """Counts one request; 429 with ``Retry-After`` when a limit is spent. A refused request
        is not counted, so a client that waits as told gets through. When the count's storage
        (Redis) is away the request goes through uncounted: a limiter outage must not become an
        outage of the whole API."""
        try:
            await self._check_and_count(user_id)
        except StorageError as exc:
            logger.warning(
                "rate limit not applied, its storage failed: %s", type(exc.storage_error).__name__
            )

    async def _check_and_count(self, user_id: str) -> None:
        for item in self._items:
            if not await self._limiter.test(item, user_id):
                reset_at, _remaining = await self._limiter.get_window_stats(item, user_id)
                wait = max(1, math.ceil(reset_at - time.time()))
                raise TooManyRequests(
                    f"more than {item} requests; try again in {wait} s",
                    headers={"Retry-After": str(wait)},
                )
        for item in self._items:
            await self._limiter.hit(item, user_id)


def build_rate_limiter(settings: Settings) -> RateLimiter:
    storage: Storage
    if settings.redis_url:
        storage = RedisStorage(
            f"async+{settings.redis_url}",
            implementation="redispy",
            key_prefix="storytool-rate",
            wrap_exceptions=True,
        )
    else:
        storage = MemoryStorage()
    return RateLimiter(storage, parse_many(settings.rate_limit))
