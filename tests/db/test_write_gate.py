"""SQLite's writers queue in the process: a writer waits as long as the queue moves, and gives up
with a 503-shaped error only when nothing has got through for a whole busy timeout."""

from __future__ import annotations

import asyncio
import time
from pathlib import Path

import pytest
import sqlalchemy.exc

from storytool.config import Settings
from storytool.db.engine import create_engine, create_sessionmaker, write_gate

TIMEOUT_S = 0.2


@pytest.fixture
async def gate(tmp_path: Path):
    engine = create_engine(Settings(), url=f"sqlite+aiosqlite:///{tmp_path / 'gate.db'}")
    yield write_gate(create_sessionmaker(engine), timeout_s=TIMEOUT_S)
    await engine.dispose()


async def _write(gate, seconds: float, *, fail: bool = False) -> None:
    async with gate:
        await asyncio.sleep(seconds)
        if fail:
            raise RuntimeError("the write failed")


async def test_a_writer_far_back_in_a_moving_queue_waits_its_turn(gate) -> None:
    # Six writers of 0.15 s each go first: the last one waits ~0.9 s, over four busy timeouts,
    # but one of them gets through every 0.15 s.
    ahead = [asyncio.create_task(_write(gate, 0.15)) for _ in range(6)]
    await asyncio.sleep(0)
    started = time.perf_counter()
    await _write(gate, 0)
    assert time.perf_counter() - started > 4 * TIMEOUT_S
    await asyncio.gather(*ahead)


async def test_a_writer_behind_a_stuck_queue_gives_up_after_the_busy_timeout(gate) -> None:
    stuck = asyncio.create_task(_write(gate, 5 * TIMEOUT_S, fail=True))
    await asyncio.sleep(0)
    started = time.perf_counter()
    with pytest.raises(sqlalchemy.exc.TimeoutError):
        await _write(gate, 0)
    assert time.perf_counter() - started < 3 * TIMEOUT_S
    with pytest.raises(RuntimeError):
        await stuck
    await _write(gate, 0)  # the queue works again once the stuck writer is gone


async def test_a_cancelled_wait_does_not_keep_the_turn(gate) -> None:
    holder = asyncio.create_task(_write(gate, 0.05))
    await asyncio.sleep(0)
    waiting = asyncio.create_task(_write(gate, 0))
    await asyncio.sleep(0.01)
    waiting.cancel()
    with pytest.raises(asyncio.CancelledError):
        await waiting
    await holder
    async with asyncio.timeout(1):
        await _write(gate, 0)
