"""Declarative base, naming convention and the column types every table shares.

The naming convention makes constraint names identical on SQLite and MySQL/MariaDB, so one Alembic
history serves both and ``alembic check`` compares like with like.
"""

from __future__ import annotations

import uuid
from collections import defaultdict
from collections.abc import Iterable
from datetime import UTC, datetime
from enum import StrEnum
from typing import Any

from sqlalchemy import (
    JSON,
    DateTime,
    Dialect,
    Enum,
    Executable,
    Insert,
    MetaData,
    String,
    Table,
    Text,
    TypeDecorator,
    insert,
    inspect,
)
from sqlalchemy.dialects import mysql
from sqlalchemy.ext.asyncio import AsyncSession
from sqlalchemy.orm import DeclarativeBase, Mapped, make_transient_to_detached, mapped_column

NAMING_CONVENTION = {
    "ix": "ix_%(column_0_label)s",
    "uq": "uq_%(table_name)s_%(column_0_name)s",
    "ck": "ck_%(table_name)s_%(constraint_name)s",
    "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
    "pk": "pk_%(table_name)s",
}

MYSQL_TABLE_ARGS = {
    "mysql_engine": "InnoDB",
    "mysql_charset": "utf8mb4",
    "mysql_collate": "utf8mb4_unicode_ci",
}
"""Korean text needs utf8mb4; MySQL's older default (utf8mb3/latin1) would mangle or reject it."""

LongText = Text().with_variant(mysql.MEDIUMTEXT(), "mysql", "mariadb")
"""Stories outgrow MySQL's TEXT (64 KB is ~21,000 Korean characters in utf8mb4)."""

JSONType = JSON().with_variant(mysql.JSON(), "mysql", "mariadb")


class UTCDateTime(TypeDecorator[datetime]):
    """Stored as naive UTC with microseconds (SQLite keeps no zone); read back as aware UTC.

    Microseconds matter: keyset pages order by (updated_at, id), and whole seconds would make
    most neighbouring rows tie.
    """

    impl = DateTime
    cache_ok = True

    def load_dialect_impl(self, dialect: Dialect) -> Any:
        if dialect.name in ("mysql", "mariadb"):
            return dialect.type_descriptor(mysql.DATETIME(fsp=6))
        return dialect.type_descriptor(DateTime())

    def process_bind_param(self, value: datetime | None, dialect: Dialect) -> datetime | None:  # noqa: ARG002
        if value is None:
            return None
        if value.tzinfo is None:
            raise ValueError("naive datetime: pass an aware UTC datetime")
        return value.astimezone(UTC).replace(tzinfo=None)

    def process_result_value(self, value: datetime | None, dialect: Dialect) -> datetime | None:  # noqa: ARG002
        return None if value is None else value.replace(tzinfo=UTC)


def utcnow() -> datetime:
    return datetime.now(UTC)


def new_id() -> str:
    return str(uuid.uuid4())


def exact_string(length: int) -> String:
    """A VARCHAR compared byte for byte. MySQL/MariaDB compare by collation, and the tables'
    (``utf8mb4_unicode_ci``) ignores case: ``DAVE`` would find ``dave``'s rows. SQLite compares
    exactly already."""
    return String(length).with_variant(
        mysql.VARCHAR(length, collation="utf8mb4_bin"), "mysql", "mariadb"
    )


IdString = exact_string(36)
"""A row's id (a UUID) and the foreign keys that hold one."""

UserId = exact_string(128)
"""Whoever the auth mode says calls: every query filters by it."""


def str_enum(enum: type[StrEnum], length: int) -> Enum:
    """A VARCHAR holding the enum's values (not its names), read back as the enum.

    Not a native ENUM: adding a status later is then a code change, not a table rebuild.
    """
    return Enum(
        enum,
        native_enum=False,
        length=length,
        values_callable=lambda members: [member.value for member in members],
        validate_strings=True,
    )


class Base(DeclarativeBase):
    metadata = MetaData(naming_convention=NAMING_CONVENTION)


_INSERTS: dict[Table, Insert] = {}


def insert_into(table: Table) -> Insert:
    """The table's INSERT, built once: it takes one row's values or a list of rows."""
    statement = _INSERTS.get(table)
    if statement is None:
        statement = _INSERTS[table] = insert(table)
    return statement


def new_row(instance: Base) -> tuple[Table, dict[str, Any]]:
    """A new object's table and row: its attributes, with each column's Python default where
    one is unset (set on the object too, so every column attribute is loaded)."""
    row: dict[str, Any] = {}
    for attribute in inspect(instance).mapper.column_attrs:
        column = attribute.columns[0]
        value = getattr(instance, attribute.key)
        if value is None and column.default is not None and column.default.is_scalar:
            value = column.default.arg
        elif value is None and column.default is not None and column.default.is_callable:
            value = column.default.arg(None)
        setattr(instance, attribute.key, value)
        row[column.key] = value
    return instance.__table__, row  # type: ignore[return-value]


async def execute_by_columns(
    session: AsyncSession, statement: Executable, rows: Iterable[dict[str, Any]]
) -> int:
    """``statement``, an UPDATE whose SET clause comes from its parameters, for ``rows``: one
    executemany for each set of columns the rows carry. How many rows it matched in all."""
    by_columns: defaultdict[frozenset[str], list[dict[str, Any]]] = defaultdict(list)
    for row in rows:
        by_columns[frozenset(row)].append(row)
    matched = 0
    for same in by_columns.values():
        result = await session.execute(statement, same)
        matched += result.rowcount  # type: ignore[attr-defined]
    return matched


async def insert_new(session: AsyncSession, *instances: Base) -> None:
    """Writes new objects, in order, with one prepared Core INSERT each, and makes them
    persistent in ``session`` as if flushed: the unit of work's flush of a story's three new
    rows cost more CPU than their three statements."""
    for instance in instances:
        table, row = new_row(instance)
        await session.execute(insert_into(table), row)
    for instance in instances:
        make_transient_to_detached(instance)
    session.add_all(instances)


class TimestampMixin:
    created_at: Mapped[datetime] = mapped_column(UTCDateTime(), default=utcnow)
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime(), default=utcnow, onupdate=utcnow)
