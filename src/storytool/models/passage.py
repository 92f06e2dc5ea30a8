from __future__ import annotations

from typing import Any

from sqlalchemy import Index, Integer, String
from sqlalchemy.orm import Mapped, mapped_column

from storytool.db.base import MYSQL_TABLE_ARGS, Base, JSONType, LongText


class Passage(Base):
    """A passage of the search corpus; its id is the FAISS vector's id."""

    __tablename__ = "passages"
    __table_args__ = (
        Index("ix_passages_work", "work"),
        MYSQL_TABLE_ARGS,
    )

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    work: Mapped[str] = mapped_column(String(200))
    chapter: Mapped[str | None] = mapped_column(String(200), default=None)
    scene: Mapped[str | None] = mapped_column(String(200), default=None)
    text: Mapped[str] = mapped_column(LongText)
    extra: Mapped[dict[str, Any] | None] = mapped_column(JSONType, default=None)
