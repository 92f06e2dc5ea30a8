"""The generations this process is running: their tasks, upstream ids and owners, within limits.

A run is admitted before anything is written (so an overloaded server refuses cleanly), then bound
to its conversation and task; it leaves the registry when its task ends.
"""

from __future__ import annotations

import asyncio
from collections import Counter
from dataclasses import dataclass

from storytool.errors import ServiceUnavailable, TooManyRequests
from storytool.models import StopReason

RETRY_AFTER_SECONDS = 5
"""What a refused client is told to wait: a short story's draft stage, about when a slot frees up.
Longer only slows a user down; shorter makes clients hammer a full server."""

RECANCEL_S = 0.5
"""How long a stopped task may go on before it is cancelled again: far longer than the cleanup
a cancel runs on its way out (closing the upstream stream), which a new cancel would cut."""


@dataclass(eq=False, slots=True)
class Run:
    user_id: str
    conversation_id: str = ""
    thread_id: str = ""
    task: asyncio.Task[None] | None = None
    stop_reason: StopReason | None = None
    """Why the run is being stopped early; set once, by whoever stops it first."""
    ending: bool = False
    """The task is saving its final state; cancelling it now would cut that short."""
    hand_off: bool = False
    """Stopped for a live replica to adopt (a drain with peers): saved, not ended."""

    def stop(self, reason: StopReason) -> bool:
        """Cancels the task for ``reason``. False when it is already stopping or ending."""
        if self.stop_reason is not None or self.ending or self.task is None:
            return False
        self.stop_reason = reason
        self._cancel()
        return True

    def _cancel(self) -> None:
        """Cancels the task, and again every :data:`RECANCEL_S` until it is ending: on Python
        3.11 ``asyncio.wait_for`` drops a cancel that comes as the operation it waits on
        completes (redis-py's socket writes use it), and the story went on as if never
        stopped. Cancels made before the task next runs count as one."""
        if self.task is None or self.task.done() or self.ending:
            return
        self.task.cancel()
        asyncio.get_running_loop().call_later(RECANCEL_S, self._cancel)


class RunRegistry:
    def __init__(self, *, max_total: int, max_per_user: int) -> None:
        self._max_total = max_total
        self._max_per_user = max_per_user
        self._admitted: set[Run] = set()
        self._per_user: Counter[str] = Counter()
        self._by_conversation: dict[str, Run] = {}

    def admit(self, *, user_id: str) -> Run:
        """A slot for a new generation, or 429/503 when the user or the process is at its limit."""
        if len(self._admitted) >= self._max_total:
            raise ServiceUnavailable(
                "the server is running as many generations as it can; try again shortly",
                headers={"Retry-After": str(RETRY_AFTER_SECONDS)},
            )
        if self._per_user[user_id] >= self._max_per_user:
            raise TooManyRequests(
                f"at most {self._max_per_user} generations may run at once per user",
                headers={"Retry-After": str(RETRY_AFTER_SECONDS)},
            )
        return self.adopt(user_id=user_id)

    def adopt(self, *, user_id: str) -> Run:
        """A slot past the limits, for a story taken over from a replica that is gone: it was
        admitted there, and refusing it here would lose it."""
        run = Run(user_id=user_id)
        self._admitted.add(run)
        self._per_user[user_id] += 1
        return run

    def bind(
        self, run: Run, *, conversation_id: str, thread_id: str, task: asyncio.Task[None]
    ) -> None:
        run.conversation_id = conversation_id
        run.thread_id = thread_id
        run.task = task
        self._by_conversation[conversation_id] = run
        task.add_done_callback(lambda _task: self.release(run))

    def release(self, run: Run) -> None:
        if run not in self._admitted:
            return
        self._admitted.discard(run)
        self._per_user[run.user_id] -= 1
        if self._per_user[run.user_id] <= 0:
            del self._per_user[run.user_id]
        if self._by_conversation.get(run.conversation_id) is run:
            del self._by_conversation[run.conversation_id]

    def get(self, conversation_id: str) -> Run | None:
        return self._by_conversation.get(conversation_id)

    def running(self) -> list[Run]:
        return list(self._by_conversation.values())
