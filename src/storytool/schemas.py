"""What every request body shares: text that can be stored and echoed, and ids in one spelling.

JSON can carry a lone UTF-16 surrogate (``"\\ud800"``) that decodes to a Python ``str`` no codec
can encode: the database driver fails on it, and so does an answer that echoes it. Every request
model derives from :class:`RequestModel`, which refuses such text (422, naming the field) before
any route sees it. Query strings and paths cannot carry one: their percent-decoding replaces
invalid UTF-8.
"""

from __future__ import annotations

import re
import uuid
from typing import Annotated, Any

from pydantic import (
    BaseModel,
    BeforeValidator,
    ValidationInfo,
    WithJsonSchema,
    field_validator,
    model_validator,
)

_LONE_SURROGATE = re.compile("[\ud800-\udfff]")


def _holds_surrogate(value: object) -> str | None:
    """Where in ``value`` (a JSON value) a string or key holds a lone surrogate: ``""`` for the
    value itself, ``".0.name"`` for a nested one, None when it holds none."""
    if isinstance(value, str):
        return "" if _LONE_SURROGATE.search(value) else None
    if isinstance(value, dict):
        for key, item in value.items():
            if isinstance(key, str) and _LONE_SURROGATE.search(key):
                return ".<key>"
            inner = _holds_surrogate(item)
            if inner is not None:
                return f".{key}{inner}"
    if isinstance(value, list):
        for index, item in enumerate(value):
            inner = _holds_surrogate(item)
            if inner is not None:
                return f".{index}{inner}"
    return None


class RequestModel(BaseModel):
    """The base of every request body."""

    @model_validator(mode="before")
    @classmethod
    def _names_are_text(cls, data: Any) -> Any:
        if isinstance(data, dict) and any(
            isinstance(key, str) and _LONE_SURROGATE.search(key) for key in data
        ):
            raise ValueError("not valid Unicode: a field name holds a lone surrogate")
        return data

    @field_validator("*", mode="before")
    @classmethod
    def _values_are_text(cls, value: Any, info: ValidationInfo) -> Any:
        where = _holds_surrogate(value)
        if where is not None:
            raise ValueError(f"not valid Unicode: a lone surrogate at {info.field_name}{where}")
        return value


def _canonical_uuid(value: object) -> object:
    """The lowercase hyphenated form of a UUID, whatever its spelling; anything else is left for
    ``str`` validation to refuse."""
    if not isinstance(value, str):
        return value
    try:
        return str(uuid.UUID(value))
    except ValueError:
        raise ValueError("not an id: expected a UUID") from None


Id = Annotated[
    str,
    BeforeValidator(_canonical_uuid),
    WithJsonSchema({"type": "string", "format": "uuid"}),
]
"""A thread or conversation id. Ids are compared exactly (the database as much as the running
stories' registry), so ``ABC…`` and ``abc…`` must not reach them as two spellings of one id."""
