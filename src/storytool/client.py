"""An async Python client for a Storytool server, on httpx.

::

    async with StorytoolClient("http://127.0.0.1:8000") as client:
        async for event in client.generate("한 선비가 길을 떠나니", tags=["모험"]):
            if isinstance(event, StageEvent) and event.status == "started":
                print(f"\n[{event.name}]")
            elif isinstance(event, DeltaEvent):  # event.stage: "draft", then "refine"
                print(event.text, end="", flush=True)

The draft streams first (``DeltaEvent.stage == "draft"``) so text is on screen at once; the
refined story (``stage == "refine"``) then replaces it: show the draft as provisional.

A story's stream survives a dropped connection: the client reconnects to
``GET /api/generate/{conversation_id}/events`` with ``Last-Event-ID`` (a bounded number of
times, with backoff) and yields every event exactly once, in order. Error answers raise the
typed exceptions below, carrying the server's ``code``, ``message`` and ``field``.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncGenerator, AsyncIterator, Sequence
from contextlib import aclosing
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Literal

import httpx
from httpx_sse import EventSource

from storytool._client.errors import (
    APIError,
    Conflict,
    InvalidInput,
    NotFound,
    PayloadTooLarge,
    RateLimited,
    ServerError,
    ServiceUnavailable,
    StorytoolClientError,
    StreamLost,
    Unauthorized,
    api_error,
)
from storytool._client.events import (
    CancelledEvent,
    DeltaEvent,
    DoneEvent,
    ErrorEvent,
    MetaEvent,
    RecommendationsEvent,
    StageEvent,
    StoryEvent,
    TerminalEvent,
    TitleEvent,
    is_terminal,
    parse,
)
from storytool.analysis.schemas import AnalyzeResponse
from storytool.evaluations.schemas import Evaluation, Reason
from storytool.generation.schemas import CancelResponse
from storytool.generation.story import StoryLength
from storytool.search.schemas import SearchResponse
from storytool.threads.schemas import HistoryPage, SelectedVariant, ThreadDetail, ThreadSummary

__all__ = [
    "APIError",
    "CancelResponse",
    "CancelledEvent",
    "Conflict",
    "DeltaEvent",
    "DoneEvent",
    "ErrorEvent",
    "InvalidInput",
    "MetaEvent",
    "NotFound",
    "PayloadTooLarge",
    "RateLimited",
    "Reason",
    "RecommendationsEvent",
    "SelectedVariant",
    "ServerError",
    "ServiceUnavailable",
    "StageEvent",
    "StoryEvent",
    "StorytoolClient",
    "StorytoolClientError",
    "StreamLost",
    "TerminalEvent",
    "TitleEvent",
    "Unauthorized",
]

DEFAULT_BASE_URL = "http://127.0.0.1:8000"

STREAM_READ_TIMEOUT_S = 45.0
"""The server pings an idle stream every 15 s, so three missed pings mean the connection is dead
even when no error reached us (a half-open socket); the client then reconnects."""

_DROPS = (httpx.TransportError, httpx.StreamError)
"""What a dropped stream raises: a reset, an incomplete chunked body, a read timeout."""


class _NothingFollows(Exception):
    """The server answered a resume with 204: the story ended at or before the last event."""


class StorytoolClient:
    """One connection pool to one server; use as ``async with``, or call :meth:`aclose`.

    Auth follows the server's mode: nothing for ``local``, ``user_id`` (sent as ``X-User-Id``)
    behind a trusted gateway (``header``), ``token`` (a Bearer JWT) for ``jwt``.
    """

    def __init__(
        self,
        base_url: str = DEFAULT_BASE_URL,
        *,
        token: str | None = None,
        user_id: str | None = None,
        timeout: float = 30.0,
        stream_read_timeout: float = STREAM_READ_TIMEOUT_S,
        max_reconnects: int = 5,
        reconnect_backoff: float = 0.5,
        transport: httpx.AsyncBaseTransport | None = None,
    ) -> None:
        """``max_reconnects`` bounds the reconnections in a row that bring no new event;
        the wait before each doubles from ``reconnect_backoff`` seconds (capped at 10 s)."""
        headers = {}
        if token is not None:
            headers["Authorization"] = f"Bearer {token}"
        if user_id is not None:
            headers["X-User-Id"] = user_id
        self._http = httpx.AsyncClient(
            base_url=base_url, headers=headers, timeout=timeout, transport=transport
        )
        self._stream_timeout = httpx.Timeout(timeout, read=stream_read_timeout)
        self._max_reconnects = max_reconnects
        self._backoff = reconnect_backoff

    async def __aenter__(self) -> StorytoolClient:
        return self

    async def __aexit__(self, *_exc: object) -> None:
        await self.aclose()

    async def aclose(self) -> None:
        await self._http.aclose()

    # --- stories ---------------------------------------------------------------------------

    def generate(
        self,
        user_input: str,
        *,
        tags: Sequence[str] = (),
        thread_id: str | None = None,
        length: StoryLength = "medium",
        temperature: float | None = None,
    ) -> AsyncIterator[StoryEvent]:
        """Writes a story: ``meta`` first (the thread and conversation ids), then stages,
        deltas (the draft's, then the refine's, which replaces it), title, recommendations, and
        one terminal event (done, cancelled or error), after which the iterator ends. A refused
        request raises before the first event; a stream that cannot be resumed raises StreamLost
        (or NotFound once the server no longer keeps the story's events)."""
        body = {"user_input": user_input, "tags": list(tags), "thread_id": thread_id}
        return self._start(body, length=length, temperature=temperature)

    def regenerate(
        self,
        conversation_id: str,
        *,
        length: StoryLength = "medium",
        temperature: float | None = None,
    ) -> AsyncIterator[StoryEvent]:
        """Another story for that conversation's input and tags, in its thread; the same events
        as :meth:`generate`."""
        body = {"mode": "regenerate", "parent_conversation_id": conversation_id}
        return self._start(body, length=length, temperature=temperature)

    def continue_story(
        self,
        conversation_id: str,
        user_input: str | None = None,
        *,
        tags: Sequence[str] = (),
        length: StoryLength = "medium",
        temperature: float | None = None,
    ) -> AsyncIterator[StoryEvent]:
        """What comes after that conversation's (finished) story, steered by ``user_input`` if
        given; the same events as :meth:`generate`."""
        body = {
            "mode": "continue",
            "parent_conversation_id": conversation_id,
            "user_input": user_input,
            "tags": list(tags),
        }
        return self._start(body, length=length, temperature=temperature)

    def resume(self, conversation_id: str, last_event_id: int = 0) -> AsyncIterator[StoryEvent]:
        """The events of a running (or recently ended) story after ``last_event_id``, then the
        live ones to its end. NotFound once the server no longer keeps its events; its story is
        then in :meth:`detail`."""
        return self._follow(_Position(conversation_id, last_event_id), first=None)

    async def cancel(self, conversation_id: str) -> CancelResponse:
        """Stops a story; answers once its partial text is saved. Conflict if it already ended
        otherwise."""
        response = await self._request(
            "POST", "/api/cancelGeneration", json={"conversation_id": conversation_id}
        )
        return CancelResponse.model_validate(response.json())

    # --- history -----------------------------------------------------------------------------

    async def history_page(self, *, limit: int = 20, cursor: str | None = None) -> HistoryPage:
        params: dict[str, Any] = {"limit": limit}
        if cursor is not None:
            params["cursor"] = cursor
        response = await self._request("GET", "/api/retrieveChatHistoryList", params=params)
        return HistoryPage.model_validate(response.json())

    async def history(self, *, page_size: int = 20) -> AsyncIterator[ThreadSummary]:
        """Every thread of the caller, most recently active first, fetched a page at a time."""
        cursor: str | None = None
        while True:
            page = await self.history_page(limit=page_size, cursor=cursor)
            for summary in page.items:
                yield summary
            if page.next_cursor is None:
                return
            cursor = page.next_cursor

    async def detail(self, thread_id: str) -> ThreadDetail:
        response = await self._request(
            "GET", "/api/retrieveChatHistoryDetail", params={"thread_id": thread_id}
        )
        return ThreadDetail.model_validate(response.json())

    async def export_thread(self, thread_id: str, format: Literal["md", "json"] = "md") -> str:
        """The thread as a Markdown document or as JSON text, as the download would save it."""
        response = await self._request(
            "GET", f"/api/threads/{thread_id}/export", params={"format": format}
        )
        return response.text

    async def select_variant(self, conversation_id: str) -> SelectedVariant:
        """Marks that story as the chosen variant of its input (the others stay in the thread)."""
        response = await self._request(
            "POST", "/api/selectVariant", json={"conversation_id": conversation_id}
        )
        return SelectedVariant.model_validate(response.json())

    async def evaluate(
        self,
        conversation_id: str,
        rating: Literal["like", "dislike", "none"],
        comment: str | None = None,
        *,
        reasons: Sequence[Reason | str] = (),
    ) -> Evaluation:
        """Stores the caller's verdict on a story; ``comment`` and ``reasons`` (see
        :class:`Reason`) replace the earlier ones, so send them all each time."""
        body = {
            "conversation_id": conversation_id,
            "rating": rating,
            "comment": comment,
            "reasons": list(reasons),
        }
        response = await self._request("POST", "/api/updateEvaluation", json=body)
        return Evaluation.model_validate(response.json())

    async def export_feedback(
        self,
        *,
        rating: Literal["like", "dislike"] = "like",
        since: datetime | None = None,
    ) -> AsyncIterator[dict[str, Any]]:
        """The caller's judged, completed stories as OpenAI chat fine-tuning examples (one dict
        per story, ``{"messages": [...]}``), read as the server streams them; an admin's token
        gets every user's."""
        params: dict[str, Any] = {"rating": rating}
        if since is not None:
            params["since"] = since.isoformat()
        request = self._http.build_request("GET", "/api/evaluations/export", params=params)
        response = await self._http.send(request, stream=True)
        try:
            if response.is_error:
                await response.aread()
                raise api_error(response)
            async for line in response.aiter_lines():
                if line:
                    yield json.loads(line)
        finally:
            await response.aclose()

    async def delete(self, thread_id: str) -> None:
        await self._request("DELETE", "/api/deleteThread", params={"thread_id": thread_id})

    # --- corpus --------------------------------------------------------------------------------

    async def search(
        self, query: str, *, top_k: int = 5, work: str | None = None
    ) -> SearchResponse:
        body = {"query": query, "top_k": top_k, "filters": {"work": work}}
        response = await self._request("POST", "/api/search", json=body)
        return SearchResponse.model_validate(response.json())

    async def analyze(
        self, *, text: str | None = None, conversation_id: str | None = None
    ) -> AnalyzeResponse:
        """Metrics and the model's reading of ``text`` or of one of the caller's stories."""
        body = {"text": text, "conversation_id": conversation_id}
        response = await self._request("POST", "/api/analyze", json=body)
        return AnalyzeResponse.model_validate(response.json())

    # --- plumbing ------------------------------------------------------------------------------

    def _start(
        self, body: dict[str, Any], *, length: StoryLength, temperature: float | None
    ) -> AsyncIterator[StoryEvent]:
        options: dict[str, Any] = {"length": length}
        if temperature is not None:
            options["temperature"] = temperature
        request = ("POST", "/api/generate", {**body, "options": options})
        return self._follow(_Position(), first=request)

    async def _request(self, method: str, url: str, **kwargs: Any) -> httpx.Response:
        response = await self._http.request(method, url, **kwargs)
        if response.is_error:
            raise api_error(response)
        return response

    async def _follow(
        self, position: _Position, *, first: tuple[str, str, dict[str, Any]] | None
    ) -> AsyncIterator[StoryEvent]:
        """Reads a story stream to its terminal event, reconnecting after drops. Events at or
        below the last id seen are skipped, so a replay never yields one twice."""
        failures = 0
        while True:
            if first is not None:
                method, url, body = first
                request = self._http.build_request(
                    method, url, json=body, timeout=self._stream_timeout
                )
                first = None  # a retried POST would start a second story
            else:
                if position.conversation_id is None:
                    raise StreamLost(
                        "the stream dropped before its first event; the story may have started",
                        conversation_id=None,
                        last_event_id=0,
                    )
                if failures > self._max_reconnects:
                    raise StreamLost(
                        f"the story's stream dropped and {self._max_reconnects} reconnections "
                        "in a row brought nothing new",
                        conversation_id=position.conversation_id,
                        last_event_id=position.last_event_id,
                    )
                if failures:
                    await asyncio.sleep(min(self._backoff * 2 ** (failures - 1), 10.0))
                request = self._http.build_request(
                    "GET",
                    f"/api/generate/{position.conversation_id}/events",
                    headers={"Last-Event-ID": str(position.last_event_id)},
                    timeout=self._stream_timeout,
                )
            try:
                # aclosing: a caller who stops iterating closes the connection now, not at GC.
                async with aclosing(self._read(request, position)) as events:
                    async for event in events:
                        failures = 0
                        yield event
                        if is_terminal(event):
                            return
            except _NothingFollows:
                return  # the story ended at or before the last event seen
            except httpx.ConnectError:
                if position.conversation_id is None:
                    raise  # the request never reached the server: no story was started
            except _DROPS:
                pass
            except (ServerError, ServiceUnavailable):
                if position.conversation_id is None:
                    raise  # the story was refused, or never started: nothing to resume
            failures += 1

    async def _read(
        self, request: httpx.Request, position: _Position
    ) -> AsyncGenerator[StoryEvent, None]:
        """The new events of one connection, advancing ``position``; ends when the connection
        does (cleanly or not)."""
        request.headers["Accept"] = "text/event-stream"
        response = await self._http.send(request, stream=True)
        try:
            if response.is_error:
                await response.aread()
                raise api_error(response)
            if response.status_code == httpx.codes.NO_CONTENT:
                raise _NothingFollows
            async for sse in EventSource(response).aiter_sse():
                event = parse(sse)
                if event is None or event.id <= position.last_event_id:
                    continue
                position.last_event_id = event.id
                if isinstance(event, MetaEvent):
                    position.conversation_id = event.conversation_id
                yield event
        finally:
            await response.aclose()


@dataclass(slots=True)
class _Position:
    """Where a story's stream is: its conversation and the last event id yielded."""

    conversation_id: str | None = None
    last_event_id: int = 0
