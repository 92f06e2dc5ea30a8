"""Whether log records hold private text: a prompt, or a sentence of a story.

Judged as the server could ever write them: every record of its own loggers (``storytool``,
``uvicorn``, which ``storytool serve`` gives a handler at its level, DEBUG included) and every
record at INFO and up of any other logger. Other libraries' DEBUG traces (the database drivers'
statements with their parameters, the OpenAI SDK's request options) carry stories by design;
the server gives them no handler, and the root logger stays at WARNING.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Iterable

SERVER_LOGGERS = ("storytool", "uvicorn")


def sentences(text: str) -> list[str]:
    """The sentences of a text long enough to be its own (a story's, not a stock phrase)."""
    return [part.strip() for part in re.split(r"[.!?\n]", text) if len(part.strip()) > 10]


def logged(record: logging.LogRecord) -> str:
    """All a handler could write of the record: its message and its formatted exception."""
    formatted = logging.Formatter().format(record)
    return f"{formatted}\n{record.exc_text or ''}"


def written(record: logging.LogRecord) -> bool:
    """Whether the server would write the record anywhere."""
    ours = record.name.split(".")[0] in SERVER_LOGGERS
    return ours or record.levelno >= logging.INFO


def assert_no_private_text(records: Iterable[logging.LogRecord], private: Iterable[str]) -> None:
    texts = [text for text in private if text]
    assert texts, "nothing private to look for: the test proves nothing"
    for record in records:
        if written(record):
            text = logged(record)
            leaked = [private_text for private_text in texts if private_text in text]
            assert not leaked, f"{record.name} ({record.levelname}) logged {leaked[0]!r}"
