"""The typed events of a story stream: the server's payloads (see
:mod:`storytool.generation.events` for the protocol) with the SSE ``id`` they arrived under."""

from __future__ import annotations

import json

from httpx_sse import ServerSentEvent

from storytool.generation import schemas


class MetaEvent(schemas.Meta):
    id: int


class StageEvent(schemas.Stage):
    id: int


class DeltaEvent(schemas.Delta):
    id: int


class TitleEvent(schemas.Title):
    id: int


class RecommendationsEvent(schemas.Recommendations):
    id: int


class DoneEvent(schemas.Done):
    id: int


class CancelledEvent(schemas.Cancelled):
    id: int


class ErrorEvent(schemas.Error):
    id: int


StoryEvent = (
    MetaEvent
    | StageEvent
    | DeltaEvent
    | TitleEvent
    | RecommendationsEvent
    | DoneEvent
    | CancelledEvent
    | ErrorEvent
)
TerminalEvent = DoneEvent | CancelledEvent | ErrorEvent

_BY_NAME: dict[str, type[StoryEvent]] = {
    kind.event: kind
    for kind in (
        MetaEvent,
        StageEvent,
        DeltaEvent,
        TitleEvent,
        RecommendationsEvent,
        DoneEvent,
        CancelledEvent,
        ErrorEvent,
    )
}


def parse(sse: ServerSentEvent) -> StoryEvent | None:
    """The typed event, or None for an event name this client does not know (a newer server's
    addition, skipped rather than fatal). A malformed payload raises ``ValueError``."""
    kind = _BY_NAME.get(sse.event)
    if kind is None:
        return None
    if not sse.id.isdigit():
        raise ValueError(f"{sse.event} event without an integer id: {sse.id!r}")
    payload = json.loads(sse.data)
    if not isinstance(payload, dict):
        raise ValueError(f"{sse.event} event whose data is not a JSON object")
    return kind.model_validate({**payload, "id": int(sse.id)})


def is_terminal(event: StoryEvent) -> bool:
    return isinstance(event, DoneEvent | CancelledEvent | ErrorEvent)
