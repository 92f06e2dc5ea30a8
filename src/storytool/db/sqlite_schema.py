"""Edits a SQLite table's definition in place, for migrations that leave its rows as they are."""

from __future__ import annotations

from collections.abc import Callable

import sqlalchemy as sa
from sqlalchemy.engine import Connection


def edit_table_sql(bind: Connection, table: str, edit: Callable[[str], str]) -> None:
    """Rewrites ``table``'s CREATE statement with ``edit``, for changes SQLite cannot ALTER.

    Batch mode would copy the table, and dropping the old copy with foreign keys on (they are,
    on every connection) cascades to every story's data and evaluation. A change that leaves the
    stored rows as they are (a constraint, a declared type of the same affinity) can take SQLite's
    documented alternative: edit the statement in ``sqlite_master`` and bump ``schema_version``
    so every connection re-reads it.
    """
    version = bind.exec_driver_sql("PRAGMA schema_version").scalar_one()
    sql = bind.execute(
        sa.text("SELECT sql FROM sqlite_master WHERE type = 'table' AND name = :table"),
        {"table": table},
    ).scalar_one()
    edited = edit(sql)
    if edited == sql:
        raise RuntimeError(
            f"the edit of {table} changed nothing: its definition is not the expected one"
        )
    bind.exec_driver_sql("PRAGMA writable_schema = ON")
    bind.execute(
        sa.text("UPDATE sqlite_master SET sql = :sql WHERE type = 'table' AND name = :table"),
        {"sql": edited, "table": table},
    )
    bind.exec_driver_sql(f"PRAGMA schema_version = {int(version) + 1}")
    bind.exec_driver_sql("PRAGMA writable_schema = OFF")
