"""Stories' ends, written together.

A story's end is one transaction: its final status, set only if nothing else (a cancel, another
replica) ended it first; its text, whichever end holds; and, for a completed story whose end
holds, its title and recommendations, and the thread's title if it has none. Stories that end
while another batch of ends is being written share the next transaction, with one statement per
kind of row (:class:`storytool.db.batches.GroupCommit`). A batch in which any story had already
been ended by someone else is written again one story at a time, so each end learns whether it
held and, if not, the status that did.
"""

from __future__ import annotations

from contextlib import AbstractAsyncContextManager
from dataclasses import dataclass
from typing import Any

from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from storytool.db.base import execute_by_columns
from storytool.db.batches import GroupCommit, WriteAlone
from storytool.generation.repository import SAVE_DATA, ConversationRepository
from storytool.models import ConversationStatus
from storytool.threads.service import title_threads, touch_thread


@dataclass(frozen=True, slots=True)
class StoryEnd:
    conversation_id: str
    thread_id: str
    finish: dict[str, Any]
    """:func:`storytool.generation.repository.finish_values`."""
    text: dict[str, Any]
    """``conversation_data`` columns saved whichever end holds (the text written)."""
    title: str | None = None
    """With ``recommendations``, saved only when this end holds."""
    recommendations: list[str] | None = None

    def data(self, *, held: bool) -> dict[str, Any]:
        if held and self.title is not None:
            return {**self.text, "title": self.title, "recommendations": self.recommendations}
        return self.text


class EndWriter(GroupCommit[StoryEnd, ConversationStatus | None]):
    """:meth:`write` answers None when the end held, else the status another party set first."""

    def __init__(
        self,
        sessionmaker: async_sessionmaker[AsyncSession],
        gate: AbstractAsyncContextManager[Any],
    ) -> None:
        super().__init__("end-writer")
        self._sessionmaker = sessionmaker
        self._gate = gate

    async def write(self, end: StoryEnd) -> ConversationStatus | None:
        return await self.submit(end)

    async def _write_one(self, item: StoryEnd) -> ConversationStatus | None:
        async with self._gate, self._sessionmaker.begin() as session:
            conversations = ConversationRepository(session)
            held = await conversations.finish_all([{"row_id": item.conversation_id, **item.finish}])
            values = item.data(held=bool(held))
            if values:
                await conversations.save_data(conversation_id=item.conversation_id, **values)
            if held and item.title is not None:
                await touch_thread(session, thread_id=item.thread_id, title=item.title)
            if not held:
                ended = await conversations.status(conversation_id=item.conversation_id)
                return ended or ConversationStatus.INTERRUPTED
        return None

    async def _write_many(self, items: list[StoryEnd]) -> list[ConversationStatus | None]:
        finish = [{"row_id": item.conversation_id, **item.finish} for item in items]
        data = [
            {"row_id": item.conversation_id, **values}
            for item in items
            if (values := item.data(held=True))
        ]
        titles = [(item.thread_id, item.title) for item in items if item.title is not None]
        async with self._gate, self._sessionmaker.begin() as session:
            if await ConversationRepository(session).finish_all(finish) != len(items):
                raise WriteAlone("a story of the batch had been ended already")
            await execute_by_columns(session, SAVE_DATA, data)
            if titles:
                await title_threads(session, titles)
        return [None] * len(items)
