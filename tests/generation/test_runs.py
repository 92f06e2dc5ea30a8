"""Stopping a run stops its task, even one whose first cancel is lost on the way."""

from __future__ import annotations

import asyncio

from storytool.generation.runs import Run
from storytool.models import StopReason


async def test_a_stop_whose_cancel_is_dropped_still_stops_the_task():
    """On Python 3.11 ``asyncio.wait_for`` returns the result of an operation that completes in
    the same turn as the cancel, and the cancel is gone (redis-py's writes wait that way): a
    story task stopped for a drain went on reading its upstream until the shutdown timeout. Here
    the operation and the stop come in the same turn on purpose."""
    loop = asyncio.get_running_loop()
    operations: list[asyncio.Future[None]] = []
    heard: list[StopReason | None] = []
    run = Run(user_id="user")

    async def story() -> None:
        try:
            while True:
                operations.append(loop.create_future())
                await asyncio.wait_for(operations[-1], timeout=60)
        except asyncio.CancelledError:
            heard.append(run.stop_reason)
            run.ending = True

    run.task = asyncio.create_task(story())
    await asyncio.sleep(0)  # the task waits on its first operation
    operations[-1].set_result(None)
    assert run.stop(StopReason.SHUTDOWN)
    # Waited for, not awaited: a timeout here must not cancel the task itself.
    await asyncio.wait({run.task}, timeout=10)

    assert run.task.done()
    assert heard == [StopReason.SHUTDOWN]


async def test_a_stopped_task_is_cancelled_once_when_it_hears_the_first():
    """The cleanup a cancel runs on its way out is not cut by a second one."""
    run = Run(user_id="user")
    cleaned: list[bool] = []

    async def story() -> None:
        try:
            await asyncio.sleep(60)
        except asyncio.CancelledError:
            run.ending = True
            await asyncio.sleep(0.8)  # longer than the interval between cancels
            cleaned.append(True)

    run.task = asyncio.create_task(story())
    await asyncio.sleep(0)
    assert run.stop(StopReason.USER_CANCEL)
    # Waited for, not awaited: a timeout here must not cancel the task itself.
    await asyncio.wait({run.task}, timeout=10)

    assert run.task.done()
    assert cleaned == [True]
