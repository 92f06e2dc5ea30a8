"""Statements over ``passages``. A corpus is the set of rows whose ``extra`` holds its name; each
row also keeps the corpus file's stable ``key``, so rebuilding a corpus updates rows in place and
passage ids (the FAISS ids) stay the same for passages that did not go away."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from sqlalchemy import delete, select
from sqlalchemy.ext.asyncio import AsyncSession

from storytool.models import Passage

INSERT_BATCH = 500
"""Rows added per flush: one round trip per batch instead of per row, small enough to keep a
MariaDB packet well under its limit for long passages."""


@dataclass(frozen=True, slots=True)
class CorpusPassage:
    """A line of a corpus file."""

    key: str
    work: str
    chapter: str | None
    scene: str | None
    text: str


class PassageRepository:
    def __init__(self, session: AsyncSession) -> None:
        self.session = session

    async def by_ids(self, ids: Sequence[int]) -> dict[int, Passage]:
        if not ids:
            return {}
        result = await self.session.execute(select(Passage).where(Passage.id.in_(ids)))
        return {passage.id: passage for passage in result.scalars()}

    async def works(self) -> list[str]:
        """The works the corpus holds, by name."""
        result = await self.session.execute(select(Passage.work).distinct().order_by(Passage.work))
        return list(result.scalars())

    async def ids_of_work(self, work: str) -> list[int]:
        result = await self.session.execute(select(Passage.id).where(Passage.work == work))
        return list(result.scalars())

    async def replace_corpus(self, corpus: str, passages: Sequence[CorpusPassage]) -> list[int]:
        """Makes the corpus' rows exactly ``passages``: same key → same row (updated), new key →
        new row, key gone → row deleted. Returns the ids in the order of ``passages``."""
        result = await self.session.execute(
            select(Passage).where(Passage.extra["corpus"].as_string() == corpus)
        )
        existing = {str((row.extra or {}).get("key")): row for row in result.scalars()}
        rows: list[Passage] = []
        for number, item in enumerate(passages, start=1):
            row = existing.pop(item.key, None)
            if row is None:
                row = Passage(extra={"corpus": corpus, "key": item.key})
                self.session.add(row)
            row.work, row.chapter, row.scene, row.text = (
                item.work,
                item.chapter,
                item.scene,
                item.text,
            )
            rows.append(row)
            if number % INSERT_BATCH == 0:
                await self.session.flush()
        if existing:
            stale = [row.id for row in existing.values()]
            for start in range(0, len(stale), INSERT_BATCH):
                await self.session.execute(
                    delete(Passage).where(Passage.id.in_(stale[start : start + INSERT_BATCH]))
                )
        await self.session.flush()
        return [row.id for row in rows]
