"""Structured logs: one JSON object per line, with the request and conversation they belong to.

``storytool serve`` installs :func:`logging_config` for its own loggers and uvicorn's, so a log
shipper reads every line the same way::

    {"ts": "2026-11-25T19:40:01.123Z", "level": "INFO", "logger": "storytool.generation",
     "message": "...", "request_id": "9f...", "conversation_id": "01J..."}

``request_id`` is set by :class:`storytool.api.middleware.RequestIdMiddleware`;
``conversation_id`` from :data:`conversation_id_var`, which the generation pipeline sets for its
task (a task copies the context it was created in, so the request id follows it too).

What never goes to a log at INFO: API keys, tokens and story texts. Code logs ids and counts, not
prompts or stories; as a second line of defence, :class:`JsonFormatter` masks anything shaped like
a bearer token or an OpenAI key that slipped into a message.
"""

from __future__ import annotations

import contextvars
import json
import logging
import re
import time
from typing import Any

request_id_var: contextvars.ContextVar[str | None] = contextvars.ContextVar(
    "request_id", default=None
)
conversation_id_var: contextvars.ContextVar[str | None] = contextvars.ContextVar(
    "conversation_id", default=None
)

_SECRET = re.compile(r"(?i)(bearer\s+)[A-Za-z0-9._~+/=-]+|\bsk-[A-Za-z0-9_-]{8,}")


def _mask(text: str) -> str:
    return _SECRET.sub(lambda m: f"{m.group(1) or ''}[redacted]", text)


class JsonFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        entry: dict[str, Any] = {
            "ts": time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(record.created))
            + f".{int(record.msecs):03d}Z",
            "level": record.levelname,
            "logger": record.name,
            "message": _mask(record.getMessage()),
        }
        for name, var in (("request_id", request_id_var), ("conversation_id", conversation_id_var)):
            value = var.get()
            if value is not None:
                entry[name] = value
        if record.exc_info:
            entry["exception"] = _mask(self.formatException(record.exc_info))
        return json.dumps(entry, ensure_ascii=False)


def logging_config(level: str = "INFO") -> dict[str, Any]:
    """A ``logging.config.dictConfig`` for the server: JSON lines on stderr for storytool and
    uvicorn (its access log included). At DEBUG aiosqlite logs each statement with its
    parameters, and sse-starlette each chunk it sends: a story's text. Both stay at WARNING even
    under a root logger set to DEBUG."""
    handler = {"class": "logging.StreamHandler", "formatter": "json", "stream": "ext://sys.stderr"}
    loggers: dict[str, Any] = {
        name: {"handlers": ["default"], "level": level, "propagate": False}
        for name in ("storytool", "uvicorn", "uvicorn.error", "uvicorn.access")
    }
    for name in ("aiosqlite", "sse_starlette"):
        loggers[name] = {"level": "WARNING"}
    return {
        "version": 1,
        "disable_existing_loggers": False,
        "formatters": {"json": {"()": JsonFormatter}},
        "handlers": {"default": handler},
        "loggers": loggers,
    }
