"""A fake OpenAI server that speaks the real wire format, for tests and ``bench/``.

The real ``openai`` SDK (3.x, on httpx2) must parse everything it sends, so the shapes follow the
SDK's own types (``openai/types/responses/response_stream_event.py``, ``types/chat``,
``types/conversations``) and its SSE decoder (``openai/_streaming.py``). Served paths:

    POST   /v1/responses              stream / non-stream / background, text.format json_schema,
                                      max_output_tokens (response.incomplete)
    GET    /v1/responses/{id}         snapshot, or ?stream=true&starting_after=N: replay + follow
    POST   /v1/responses/{id}/cancel  stops a background run; its stream ends
    POST   /v1/chat/completions       chat.completion(.chunk), usage chunk, data: [DONE];
                                      max_tokens (finish_reason length), response_format
    POST   /v1/embeddings             float or base64, deterministic vectors
    POST   /v1/conversations          + /{id}/items (POST, GET), DELETE /{id}

A Responses run is produced by its own task and kept in memory with every event it emitted, so a
background run goes on when its stream is dropped and ``starting_after`` replays what was missed.
Faults (a stall, a dropped connection, an injected unknown event, a mid-stream failure) belong to
the *connection* that first streams a run: they are queued on :class:`Behaviour` and each is used
once. HTTP errors are queued the same way.

Real servers depart from OpenAI in ways a client must survive; :class:`Quirks` (on
``Behaviour.quirks``) switches each one on, and its presets answer as llama.cpp's server, the
chat-only llama.cpp and LiteLLM's chat bridge were measured to (``--quirks`` on the command line).

In tests: ``with FakeOpenAI() as fake: AsyncOpenAI(base_url=fake.base_url, ...)``; change
``fake.behaviour`` and read ``fake.requests`` / ``fake.cancelled``. For benchmarks, a process:
``python -m tests.fakes.openai_server --port 8300 --tokens-per-second 50 --story-tokens 200``.
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import hashlib
import json
import random
import re
import secrets
import struct
import threading
import time
import uuid
from collections import deque
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field
from typing import Any, Literal

import uvicorn
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response, StreamingResponse
from starlette.routing import Route

from tests.fakes.server_thread import ServerThread

DEFAULT_STORY = (
    "화설. 옛적 남쪽 고을에 한 선비가 있으니, 성품이 곧고 글을 좋아하더라. "
    "각설. 하루는 선비가 길을 떠나 깊은 산중에 이르매, 한 노인이 나타나 이르기를 "
    "'그대의 정성이 하늘에 닿았도다' 하더라. "
    "차설. 선비가 마침내 뜻을 이루니, 온 고을이 그 덕을 칭송하노라."
)

FaultKind = Literal["stall", "drop", "inject", "error", "failed", "incomplete", "linger"]
Api = Literal["responses", "chat"]
RUN_FAILURES = ("error", "failed", "incomplete")


@dataclass
class Fault:
    """Something that goes wrong on the next stream of ``api`` (any when None), after ``after``
    text deltas: ``stall`` stops sending without closing, ``drop`` closes the connection,
    ``linger`` sends the whole stream but then keeps the body open,
    ``inject`` sends an event of an unknown type (``event_type``; in chat streams an SSE comment
    of that name) and carries on, ``error`` /
    ``failed`` / ``incomplete`` end a Responses run with that event (chat streams: an error
    chunk)."""

    kind: FaultKind
    after: int = 0
    api: Api | None = None
    event_type: str = "keepalive"


@dataclass
class HttpError:
    status: int
    path: str | None = None
    """Only requests whose path starts with this (e.g. ``/v1/responses``); any when None."""
    retry_after: int | None = None


NOT_FOUND_BODY = {"error": {"message": "File Not Found", "type": "not_found_error", "code": 404}}
"""llama.cpp's answer to a path it does not serve (its whole body; no ``param``)."""


@dataclass
class Quirks:
    """Where a real OpenAI-compatible server departs from OpenAI; the defaults are OpenAI's own
    behaviour, the class methods the servers as probed (xllamacpp 2026.10.11549 and 0.2.8 with
    SmolLM2, LiteLLM 1.106.12's ``llamafile/`` bridge in front of the former)."""

    responses: bool = True
    """False: every ``/v1/responses*`` path answers 404 ``File Not Found`` (chat-only llama.cpp)."""
    background: bool = True
    """False: ``background: true`` is accepted and ignored: no response says ``background``
    (the SDK reads None), a non-streamed create runs to its end before answering, and a streamed
    run lives only as long as its stream (dropping it ends the run)."""
    text_format: bool = True
    """False: Responses ``text.format`` json_schema is ignored; the answer is the model's free
    text (``Behaviour.text_for``), not JSON."""
    chat_json_schema: bool = True
    """False: chat ``response_format`` json_schema is ignored (free text). Both llama.cpp
    versions honour it (a grammar), so no preset turns it off."""
    sequence_numbers: bool = True
    """False: stream events carry no ``sequence_number``."""
    cancel_status: int | None = None
    """``POST /v1/responses/{id}/cancel`` answers this status with the real server's body: 404
    llama.cpp's ``File Not Found``, 500 LiteLLM's ``CANCEL responses is not supported``."""
    retrieve_status: int | None = None
    """The same for ``GET /v1/responses/{id}``, with or without ``stream=true``."""
    response_id_length: int | None = None
    """Response ids of exactly this many characters (``resp_`` + base64url), as LiteLLM's."""
    incomplete_as: Literal["incomplete", "completed"] = "incomplete"
    """How a run cut by ``max_output_tokens`` ends: ``response.incomplete`` (reason
    ``max_output_tokens``; OpenAI, LiteLLM's bridge) or ``response.completed`` with status
    completed, the cut told by nothing but ``usage.output_tokens`` (llama.cpp)."""
    conversations: bool = True
    """False: ``/v1/conversations*`` answer 404 ``File Not Found`` (llama.cpp, LiteLLM)."""
    embeddings: bool = True
    """False: ``/v1/embeddings`` answers 501 ``not_supported_error`` (llama.cpp started without
    ``--embeddings``)."""
    typed_assistant_items: bool = False
    """True: a Responses input item with role assistant but no ``"type": "message"`` is refused
    with 400 ``Cannot determine type of 'item'`` (llama.cpp 2026; user, system and developer
    items without a type pass)."""
    max_completion_tokens: bool = True
    """False: chat ``max_completion_tokens`` is ignored, only ``max_tokens`` counts (0.2.8)."""

    @classmethod
    def llamacpp(cls) -> Quirks:
        """llama.cpp's own server from ``xllamacpp==2026.10.11549``."""
        return cls(
            background=False,
            text_format=False,
            sequence_numbers=False,
            cancel_status=404,
            retrieve_status=404,
            incomplete_as="completed",
            conversations=False,
            embeddings=False,
            typed_assistant_items=True,
        )

    @classmethod
    def llamacpp_chat_only(cls) -> Quirks:
        """llama.cpp from ``xllamacpp==0.2.8``: Chat Completions only."""
        return cls(
            responses=False,
            background=False,
            text_format=False,
            sequence_numbers=False,
            cancel_status=404,
            retrieve_status=404,
            incomplete_as="completed",
            conversations=False,
            embeddings=False,
            max_completion_tokens=False,
        )

    @classmethod
    def litellm_bridge(cls) -> Quirks:
        """LiteLLM 1.106.12 with a ``llamafile/`` model: Responses bridged onto chat (so
        ``text.format`` is honoured through ``response_format``)."""
        return cls(
            background=False,
            sequence_numbers=False,
            cancel_status=500,
            retrieve_status=500,
            response_id_length=457,
            conversations=False,
            embeddings=False,
        )


QUIRK_PRESETS: dict[str, Callable[[], Quirks]] = {
    "openai": Quirks,
    "llamacpp": Quirks.llamacpp,
    "llamacpp-chat-only": Quirks.llamacpp_chat_only,
    "litellm-bridge": Quirks.litellm_bridge,
}


@dataclass
class Behaviour:
    """How the server answers; tests change it between (or during) requests."""

    story: str = DEFAULT_STORY
    texts: dict[str, str] = field(default_factory=dict)
    """Text per model name, when a model should write something other than ``story``."""
    tokens_per_second: float | None = None
    """Pace of text deltas; None sends them as fast as the loop allows."""
    first_token_delay: float = 0.0
    structured_answers: deque[str] = field(default_factory=deque)
    """Raw answers for structured requests (Responses ``text.format`` json_schema, chat
    ``response_format`` json_schema or json_object), used in order; when empty, a valid
    default."""
    embedding_dimension: int = 64
    faults: list[Fault] = field(default_factory=list)
    http_errors: list[HttpError] = field(default_factory=list)
    quirks: Quirks = field(default_factory=Quirks)
    held_after: dict[str, int] = field(default_factory=dict)
    """Per model name: its Responses runs write this many tokens, then wait for
    :meth:`release`. A test holds every run mid-story for as long as it needs, however loaded
    the machine, instead of racing the model's pace."""
    released: threading.Event = field(default_factory=threading.Event)

    def release(self) -> None:
        """Lets the held runs (and any held later) go on to their end."""
        self.released.set()

    def fail_next(
        self,
        status: int = 500,
        *,
        times: int = 1,
        path: str | None = None,
        retry_after: int | None = None,
    ) -> None:
        self.http_errors.extend(HttpError(status, path, retry_after) for _ in range(times))

    def add_fault(
        self,
        kind: FaultKind,
        *,
        after: int = 0,
        api: Api | None = None,
        event_type: str = "keepalive",
    ) -> None:
        self.faults.append(Fault(kind, after, api, event_type))

    def text_for(self, model: str) -> str:
        return self.texts.get(model, self.story)

    def take_fault(self, api: Api) -> Fault | None:
        for index, fault in enumerate(self.faults):
            if fault.api in (None, api):
                return self.faults.pop(index)
        return None

    def take_http_error(self, path: str) -> HttpError | None:
        for index, error in enumerate(self.http_errors):
            if error.path is None or path.startswith(error.path):
                return self.http_errors.pop(index)
        return None


@dataclass
class Received:
    method: str
    path: str
    query: dict[str, str]
    headers: dict[str, str]
    body: Any


def tokenize(text: str) -> list[str]:
    """Word-sized pieces (each keeps its trailing space) that join back to ``text`` exactly."""
    return [piece for piece in re.split(r"(?<=\s)(?=\S)", text) if piece]


def embed(text: str, dimension: int) -> list[float]:
    """A unit vector derived from the text only: same text, same vector, on every run."""
    seed = int.from_bytes(hashlib.sha256(text.encode("utf-8")).digest()[:8], "big")
    rng = random.Random(seed)
    vector = [rng.gauss(0.0, 1.0) for _ in range(dimension)]
    norm = sum(value * value for value in vector) ** 0.5 or 1.0
    return [value / norm for value in vector]


def default_for_schema(schema: dict[str, Any], root: dict[str, Any] | None = None) -> Any:
    """A value that satisfies a (Pydantic-made) JSON schema, for unscripted structured answers."""
    root = root or schema
    if "$ref" in schema:
        name = schema["$ref"].rsplit("/", 1)[-1]
        return default_for_schema(root.get("$defs", {})[name], root)
    for key in ("anyOf", "oneOf", "allOf"):
        if key in schema:
            return default_for_schema(schema[key][0], root)
    if "enum" in schema:
        return schema["enum"][0]
    kind = schema.get("type", "object")
    if isinstance(kind, list):
        kind = next(item for item in kind if item != "null")
    if kind == "object":
        properties = schema.get("properties", {})
        return {name: default_for_schema(sub, root) for name, sub in properties.items()}
    if kind == "array":
        count = max(3, schema.get("minItems", 0))
        return [default_for_schema(schema.get("items", {}), root) for _ in range(count)]
    defaults = {"string": "각설", "integer": 1, "number": 0.5, "boolean": True, "null": None}
    return defaults[kind]


def _error_body(message: str, kind: str, code: str | None = None) -> dict[str, Any]:
    return {"error": {"message": message, "type": kind, "param": None, "code": code}}


def _sse(data: dict[str, Any], event: str | None = None) -> bytes:
    head = f"event: {event}\n" if event else ""
    return f"{head}data: {json.dumps(data, ensure_ascii=False)}\n\n".encode()


def _format_of(body: dict[str, Any], api: Api) -> dict[str, Any]:
    """The requested output format: Responses ``text.format`` or chat ``response_format``."""
    if api == "responses":
        return dict((body.get("text") or {}).get("format") or {})
    return dict(body.get("response_format") or {})


def _schema_in(texts: list[str]) -> dict[str, Any] | None:
    """The largest JSON schema (an object with ``properties``) written inside the prompt: a
    json_object request states its schema in words, and a server that honours it answers JSON
    that fits."""
    decoder = json.JSONDecoder()
    found: dict[str, Any] | None = None
    size = 0
    for text in texts:
        for start in (index for index, char in enumerate(text) if char == "{"):
            try:
                value, end = decoder.raw_decode(text, start)
            except ValueError:
                continue
            if isinstance(value, dict) and "properties" in value and end - start > size:
                found, size = value, end - start
    return found


def _prompt_texts(body: dict[str, Any]) -> list[str]:
    """Every text of a request's prompt: chat messages, Responses instructions and input."""
    texts = [body["instructions"]] if isinstance(body.get("instructions"), str) else []
    value = body.get("messages") or body.get("input") or []
    items = [{"content": value}] if isinstance(value, str) else value
    for item in items:
        content = item.get("content") if isinstance(item, dict) else None
        if isinstance(content, str):
            texts.append(content)
        elif isinstance(content, list):
            texts.extend(part["text"] for part in content if isinstance(part.get("text"), str))
    return texts


def _response_id(length: int | None) -> str:
    if length is None:
        return f"resp_{uuid.uuid4().hex}"
    body = secrets.token_urlsafe(length)
    return f"resp_{body[: length - 5]}"


def _unsupported(status: int, verb: str) -> JSONResponse:
    """What a server that lacks a Responses sub-path answers, body included."""
    if status == 404:
        return JSONResponse(NOT_FOUND_BODY, 404)
    if status == 500:
        message = (
            "litellm.APIConnectionError: APIConnectionError: LlamafileException - "
            f"{verb} responses is not supported for llamafile\n\nLiteLLM: model group "
            f"'{hashlib.sha256(b'fake').hexdigest()}' failed with the error above. "
            "No fallback was attempted."
        )
        body = {
            "error": {
                "message": message,
                "type": "internal_server_error",
                "param": None,
                "code": "500",
            }
        }
        return JSONResponse(body, 500)
    message = f"{verb} responses is not supported"
    return JSONResponse(_error_body(message, "invalid_request_error", str(status)), status)


def _input_items(value: Any) -> list[dict[str, Any]]:
    """Responses ``input`` (a string or items) as conversation items with ids."""
    items = [{"role": "user", "content": value}] if isinstance(value, str) else list(value or [])
    normalized = []
    for item in items:
        content = item.get("content", "")
        kind = "output_text" if item.get("role") == "assistant" else "input_text"
        if isinstance(content, str):
            content = [{"type": kind, "text": content}]
        normalized.append(
            {
                "type": "message",
                "id": f"msg_{uuid.uuid4().hex}",
                "status": "completed",
                "role": item.get("role", "user"),
                "content": content,
            }
        )
    return normalized


def _count_tokens(value: Any) -> int:
    return max(1, len(json.dumps(value, ensure_ascii=False)) // 4)


@dataclass
class Run:
    """One Responses run: every event it emitted, kept for replay."""

    id: str
    body: dict[str, Any]
    text: str
    fault: Fault | None
    created_at: int = field(default_factory=lambda: int(time.time()))
    item_id: str = field(default_factory=lambda: f"msg_{uuid.uuid4().hex}")
    status: str = "queued"
    events: list[dict[str, Any]] = field(default_factory=list)
    written: str = ""
    usage: dict[str, Any] | None = None
    error: dict[str, str] | None = None
    incomplete_details: dict[str, str] | None = None
    task: asyncio.Task[None] | None = None
    changed: asyncio.Event = field(default_factory=asyncio.Event)
    background: bool = False
    """Asked for and honoured: the run outlives its stream and can be cancelled by id."""
    says_background: bool = True
    """Responses carry a ``background`` field (servers that ignore it leave it out)."""
    numbered: bool = True
    """Events carry ``sequence_number``."""
    limit: int | None = None
    """``max_output_tokens``: the run stops after this many tokens."""
    cut_as: Literal["incomplete", "completed"] = "incomplete"

    @property
    def finished(self) -> bool:
        return self.status in ("completed", "failed", "incomplete", "cancelled")

    @property
    def item_status(self) -> str:
        if self.status == "incomplete":
            return "incomplete"
        return "completed" if self.finished else "in_progress"

    def message(self, status: str) -> dict[str, Any]:
        content = [{"type": "output_text", "text": self.written, "annotations": [], "logprobs": []}]
        return {
            "id": self.item_id,
            "type": "message",
            "status": status,
            "role": "assistant",
            "content": content if status != "in_progress" or self.written else [],
        }

    def snapshot(self) -> dict[str, Any]:
        body = self.body
        conversation = body.get("conversation")
        if isinstance(conversation, str):
            conversation = {"id": conversation}
        return {
            "id": self.id,
            "object": "response",
            "created_at": self.created_at,
            "status": self.status,
            **({"background": self.background} if self.says_background else {}),
            "error": self.error,
            "incomplete_details": self.incomplete_details,
            "instructions": body.get("instructions"),
            "max_output_tokens": body.get("max_output_tokens"),
            "model": body.get("model", ""),
            "output": [self.message(self.item_status)]
            if self.written or self.status == "completed"
            else [],
            "parallel_tool_calls": True,
            "previous_response_id": body.get("previous_response_id"),
            "conversation": conversation,
            "reasoning": {"effort": None, "summary": None},
            "store": body.get("store", True),
            "temperature": body.get("temperature", 1.0),
            "text": body.get("text") or {"format": {"type": "text"}},
            "tool_choice": "auto",
            "tools": [],
            "top_p": body.get("top_p", 1.0),
            "truncation": "disabled",
            "usage": self.usage,
            "user": None,
            "metadata": body.get("metadata") or {},
        }

    def emit(self, event_type: str, **payload: Any) -> None:
        numbered = {"sequence_number": len(self.events)} if self.numbered else {}
        self.events.append({"type": event_type, **numbered, **payload})
        self.changed.set()
        self.changed = asyncio.Event()


class FakeOpenAI:
    """The fake server: an ASGI app plus, when started, a uvicorn server in its own thread."""

    def __init__(self, behaviour: Behaviour | None = None, *, keep_records: bool = True) -> None:
        self.behaviour = behaviour or Behaviour()
        self.keep_records = keep_records
        """Off for benchmarks, whose thousands of requests would only grow the fake's memory."""
        self.requests: list[Received] = []
        self.cancelled: list[str] = []
        self.runs: dict[str, Run] = {}
        self.conversations: dict[str, list[dict[str, Any]]] = {}
        self.app = Starlette(
            routes=[
                Route("/v1/responses", self._create_response, methods=["POST"]),
                Route("/v1/responses/{id}", self._retrieve_response, methods=["GET"]),
                Route("/v1/responses/{id}/cancel", self._cancel_response, methods=["POST"]),
                Route("/v1/chat/completions", self._chat_completions, methods=["POST"]),
                Route("/v1/embeddings", self._embeddings, methods=["POST"]),
                Route("/v1/conversations", self._create_conversation, methods=["POST"]),
                Route("/v1/conversations/{id}", self._delete_conversation, methods=["DELETE"]),
                Route(
                    "/v1/conversations/{id}/items",
                    self._conversation_items,
                    methods=["GET", "POST"],
                ),
            ]
        )
        self._thread = ServerThread(self.app, lifespan="off", shutdown_s=1)

    # --- lifecycle -------------------------------------------------------------------------

    @property
    def base_url(self) -> str:
        return f"{self._thread.url}/v1"

    def start(self) -> FakeOpenAI:
        self._thread.start()
        return self

    def stop(self) -> None:
        self._thread.stop()

    def __enter__(self) -> FakeOpenAI:
        return self.start()

    def __exit__(self, *_exc: object) -> None:
        self.stop()

    def reset(self) -> None:
        """A fresh behaviour and empty records, for the next test on a shared server."""
        self.behaviour = Behaviour()
        self.requests.clear()
        self.cancelled.clear()
        self.conversations.clear()

    def received(self, path: str) -> list[Received]:
        return [item for item in self.requests if item.path == path]

    # --- plumbing --------------------------------------------------------------------------

    async def _receive(self, request: Request) -> tuple[Any, Response | None]:
        """Records the request; answers a queued HTTP error instead when one matches."""
        raw = await request.body()
        body = json.loads(raw) if raw else None
        if self.keep_records:
            self.requests.append(
                Received(
                    request.method,
                    request.url.path,
                    dict(request.query_params),
                    dict(request.headers),
                    body,
                )
            )
        error = self.behaviour.take_http_error(request.url.path)
        if error is None:
            return body, None
        headers = {"retry-after": str(error.retry_after)} if error.retry_after is not None else {}
        kind = "rate_limit_exceeded" if error.status == 429 else "server_error"
        answer = JSONResponse(
            _error_body(f"fake error {error.status}", kind), error.status, headers=headers
        )
        return body, answer

    async def _pace(self, index: int) -> None:
        if index == 0 and self.behaviour.first_token_delay:
            await asyncio.sleep(self.behaviour.first_token_delay)
        if self.behaviour.tokens_per_second:
            await asyncio.sleep(1 / self.behaviour.tokens_per_second)
        else:
            await asyncio.sleep(0)

    def _answer_text(self, body: dict[str, Any], api: Api) -> str:
        """The model's free text, or — for a structured request the server honours — the next
        scripted answer, else JSON that fits the schema (json_schema: the request's; json_object:
        the one the prompt states, if any)."""
        fmt = _format_of(body, api)
        quirks = self.behaviour.quirks
        honoured = quirks.text_format if api == "responses" else quirks.chat_json_schema
        if fmt.get("type") == "json_schema" and honoured:
            schema = fmt.get("schema") or (fmt.get("json_schema") or {}).get("schema") or {}
        elif fmt.get("type") == "json_object" and (api == "chat" or quirks.text_format):
            schema = _schema_in(_prompt_texts(body)) or {"type": "object"}
        else:
            return self.behaviour.text_for(body.get("model", ""))
        if self.behaviour.structured_answers:
            return self.behaviour.structured_answers.popleft()
        return json.dumps(default_for_schema(schema), ensure_ascii=False)

    @staticmethod
    async def _deliver(
        chunks: AsyncIterator[tuple[bytes, bool]], fault: Fault | None, inject: Callable[[], bytes]
    ) -> AsyncIterator[bytes]:
        """Sends ``(bytes, is_text_delta)`` chunks, applying a connection fault after
        ``fault.after`` text deltas."""
        deltas = 0
        async for chunk, is_delta in chunks:
            if fault is not None and is_delta and deltas >= fault.after:
                if fault.kind == "stall":
                    await asyncio.Event().wait()
                if fault.kind == "drop":
                    raise ConnectionAbortedError("fake OpenAI: connection dropped on purpose")
                if fault.kind == "inject":
                    yield inject()
                    fault = None
            yield chunk
            deltas += is_delta
        if fault is not None and fault.kind == "linger":
            await asyncio.Event().wait()

    # --- Responses -------------------------------------------------------------------------

    async def _create_response(self, request: Request) -> Response:
        body, error = await self._receive(request)
        if error is not None:
            return error
        quirks = self.behaviour.quirks
        if not quirks.responses:
            return JSONResponse(NOT_FOUND_BODY, 404)
        if not isinstance(body.get("input"), str | list):
            # As OpenAI does: a body it cannot run is refused before anything is generated.
            message = "Invalid type for 'input': expected a string or an array."
            return JSONResponse(_error_body(message, "invalid_request_error"), 400)
        temperature = body.get("temperature")
        if temperature is not None and not isinstance(temperature, int | float):
            message = "Invalid type for 'temperature': expected a decimal, but got a string."
            return JSONResponse(_error_body(message, "invalid_request_error"), 400)
        temperature = body.get("temperature")
        if temperature is not None and not isinstance(temperature, int | float):
            message = "Invalid type for 'temperature': expected a number."
            return JSONResponse(_error_body(message, "invalid_request_error"), 400)
        if quirks.typed_assistant_items and any(
            isinstance(item, dict) and item.get("role") == "assistant" and "type" not in item
            for item in body["input"]
            if isinstance(body["input"], list)
        ):
            message = "Cannot determine type of 'item'"
            answer = {"error": {"code": 400, "message": message, "type": "invalid_request_error"}}
            return JSONResponse(answer, 400)
        conversation = body.get("conversation")
        conversation_id = conversation.get("id") if isinstance(conversation, dict) else conversation
        if conversation_id is not None and conversation_id not in self.conversations:
            return JSONResponse(
                _error_body(f"Conversation {conversation_id} not found", "invalid_request_error"),
                404,
            )
        if conversation_id is not None:
            self.conversations[conversation_id].extend(_input_items(body.get("input")))
        fault = self.behaviour.take_fault("responses") if body.get("stream") else None
        limit = body.get("max_output_tokens")
        run = Run(
            _response_id(quirks.response_id_length),
            body,
            self._answer_text(body, "responses"),
            fault,
            background=bool(body.get("background")) and quirks.background,
            says_background=quirks.background,
            numbered=quirks.sequence_numbers,
            limit=limit if isinstance(limit, int) else None,
            cut_as=quirks.incomplete_as,
        )
        self.runs[run.id] = run
        run.task = asyncio.create_task(self._produce(run, conversation_id))
        if body.get("stream"):
            return self._stream_run(run, after=-1, fault=fault)
        if not run.background:
            await run.task
        return JSONResponse(run.snapshot())

    async def _produce(self, run: Run, conversation_id: str | None) -> None:
        fault = run.fault if run.fault and run.fault.kind in RUN_FAILURES else None
        run.status = "in_progress"
        run.emit("response.created", response=run.snapshot())
        run.emit("response.in_progress", response=run.snapshot())
        run.emit("response.output_item.added", output_index=0, item=run.message("in_progress"))
        part = {"type": "output_text", "text": "", "annotations": [], "logprobs": []}
        where = {"item_id": run.item_id, "output_index": 0, "content_index": 0}
        run.emit("response.content_part.added", part=part, **where)
        tokens = tokenize(run.text)
        cut = run.limit is not None and len(tokens) > run.limit
        if run.limit is not None:
            tokens = tokens[: run.limit]
        held_after = self.behaviour.held_after.get(str(run.body.get("model")))
        for index, token in enumerate(tokens):
            if fault is not None and index >= fault.after:
                self._fail(run, fault.kind)
                return
            if held_after is not None and index >= held_after:
                while not self.behaviour.released.is_set():
                    await asyncio.sleep(0.01)
            await self._pace(index)
            run.written += token
            run.emit("response.output_text.delta", delta=token, logprobs=[], **where)
        if cut and run.cut_as == "incomplete":
            run.status = "incomplete"
            run.incomplete_details = {"reason": "max_output_tokens"}
        run.emit("response.output_text.done", text=run.written, logprobs=[], **where)
        run.emit("response.content_part.done", part={**part, "text": run.written}, **where)
        run.emit("response.output_item.done", output_index=0, item=run.message(run.item_status))
        output_tokens = len(tokens)
        input_tokens = _count_tokens(run.body.get("input"))
        run.usage = {
            "input_tokens": input_tokens,
            "input_tokens_details": {"cached_tokens": 0, "cache_write_tokens": 0},
            "output_tokens": output_tokens,
            "output_tokens_details": {"reasoning_tokens": 0},
            "total_tokens": input_tokens + output_tokens,
        }
        if run.status == "incomplete":
            run.emit("response.incomplete", response=run.snapshot())
            return
        run.status = "completed"
        run.emit("response.completed", response=run.snapshot())
        if conversation_id in self.conversations:
            self.conversations[conversation_id].append(run.message("completed"))

    @staticmethod
    def _fail(run: Run, kind: FaultKind) -> None:
        if kind == "error":
            run.status = "failed"
            run.emit("error", code="server_error", message="fake mid-stream error", param=None)
            return
        if kind == "failed":
            run.status = "failed"
            run.error = {"code": "server_error", "message": "fake mid-stream failure"}
        else:
            run.status = "incomplete"
            run.incomplete_details = {"reason": "max_output_tokens"}
        run.emit(f"response.{run.status}", response=run.snapshot())

    def _stream_run(self, run: Run, *, after: int, fault: Fault | None) -> StreamingResponse:
        async def events() -> AsyncIterator[tuple[bytes, bool]]:
            index = after + 1
            while True:
                while index < len(run.events):
                    event = run.events[index]
                    index += 1
                    yield _sse(event, event["type"]), event["type"] == "response.output_text.delta"
                if run.finished:
                    return
                await run.changed.wait()

        async def body() -> AsyncIterator[bytes]:
            try:
                async for chunk in self._deliver(events(), fault, inject):
                    yield chunk
            finally:
                if not run.background and not run.finished and run.task is not None:
                    run.task.cancel()
                    run.status = "cancelled"

        def inject() -> bytes:
            event_type = fault.event_type if fault else "keepalive"
            return _sse({"type": event_type}, event_type)

        return StreamingResponse(body(), media_type="text/event-stream")

    async def _find_run(self, request: Request, status: int | None, verb: str) -> Run | Response:
        """The run the path names, or the answer to send instead (queued error, a server
        without this path, 404)."""
        _body, error = await self._receive(request)
        if error is not None:
            return error
        if not self.behaviour.quirks.responses:
            return JSONResponse(NOT_FOUND_BODY, 404)
        if status is not None:
            return _unsupported(status, verb)
        run = self.runs.get(request.path_params["id"])
        return run if run is not None else _not_found("response", request.path_params["id"])

    async def _retrieve_response(self, request: Request) -> Response:
        run = await self._find_run(request, self.behaviour.quirks.retrieve_status, "GET")
        if not isinstance(run, Run):
            return run
        if request.query_params.get("stream") == "true":
            after = int(request.query_params.get("starting_after", "-1"))
            return self._stream_run(run, after=after, fault=None)
        return JSONResponse(run.snapshot())

    async def _cancel_response(self, request: Request) -> Response:
        run = await self._find_run(request, self.behaviour.quirks.cancel_status, "CANCEL")
        if not isinstance(run, Run):
            return run
        if not run.background:
            return JSONResponse(
                _error_body(
                    "Only responses created with background=true can be cancelled",
                    "invalid_request_error",
                ),
                400,
            )
        self.cancelled.append(run.id)
        if not run.finished and run.task is not None:
            run.task.cancel()
            run.status = "cancelled"
            run.changed.set()
        return JSONResponse(run.snapshot())

    # --- Chat Completions ------------------------------------------------------------------

    async def _chat_completions(self, request: Request) -> Response:
        body, error = await self._receive(request)
        if error is not None:
            return error
        quirks = self.behaviour.quirks
        tokens = tokenize(self._answer_text(body, "chat"))
        limit = body.get("max_tokens")
        if quirks.max_completion_tokens and body.get("max_completion_tokens") is not None:
            limit = body["max_completion_tokens"]
        finish = "stop"
        if isinstance(limit, int) and len(tokens) > limit:
            tokens, finish = tokens[:limit], "length"
        text = "".join(tokens)
        prompt_tokens = _count_tokens(body.get("messages"))
        usage = {
            "prompt_tokens": prompt_tokens,
            "completion_tokens": len(tokens),
            "total_tokens": prompt_tokens + len(tokens),
        }
        head = {
            "id": f"chatcmpl-{uuid.uuid4().hex}",
            "created": int(time.time()),
            "model": body.get("model", ""),
            "system_fingerprint": None,
        }
        if not body.get("stream"):
            for index in range(len(tokens)):
                await self._pace(index)
            message = {"role": "assistant", "content": text, "refusal": None}
            choice = {"index": 0, "message": message, "finish_reason": finish, "logprobs": None}
            return JSONResponse(
                {**head, "object": "chat.completion", "choices": [choice], "usage": usage}
            )
        fault = self.behaviour.take_fault("chat")
        include_usage = bool((body.get("stream_options") or {}).get("include_usage"))

        def chunk(delta: dict[str, Any], finish: str | None) -> bytes:
            choice = {"index": 0, "delta": delta, "finish_reason": finish, "logprobs": None}
            return _sse({**head, "object": "chat.completion.chunk", "choices": [choice]})

        async def chunks() -> AsyncIterator[tuple[bytes, bool]]:
            yield chunk({"role": "assistant", "content": ""}, None), False
            for index, token in enumerate(tokens):
                if fault is not None and fault.kind in RUN_FAILURES:
                    if index >= fault.after:
                        yield _sse(_error_body("fake mid-stream error", "server_error")), False
                        return
                await self._pace(index)
                yield chunk({"content": token}, None), True
            yield chunk({}, finish), False
            if include_usage:
                last = {**head, "object": "chat.completion.chunk", "choices": [], "usage": usage}
                yield _sse(last), False
            yield b"data: [DONE]\n\n", False

        def inject() -> bytes:
            """Chat streams carry no event types; servers keep them alive with SSE comments."""
            return f": {fault.event_type if fault else 'keepalive'}\n\n".encode()

        return StreamingResponse(
            self._deliver(chunks(), fault, inject), media_type="text/event-stream"
        )

    # --- Embeddings ------------------------------------------------------------------------

    async def _embeddings(self, request: Request) -> Response:
        body, error = await self._receive(request)
        if error is not None:
            return error
        if not self.behaviour.quirks.embeddings:
            message = "This server does not support embeddings. Start it with `--embeddings`"
            answer = {"error": {"code": 501, "message": message, "type": "not_supported_error"}}
            return JSONResponse(answer, 501)
        texts = [body["input"]] if isinstance(body["input"], str) else list(body["input"])
        dimension = body.get("dimensions") or self.behaviour.embedding_dimension
        data = []
        for index, text in enumerate(texts):
            vector = embed(str(text), dimension)
            value: list[float] | str = vector
            if body.get("encoding_format") == "base64":
                value = base64.b64encode(struct.pack(f"<{dimension}f", *vector)).decode()
            data.append({"object": "embedding", "index": index, "embedding": value})
        tokens = sum(_count_tokens(text) for text in texts)
        return JSONResponse(
            {
                "object": "list",
                "data": data,
                "model": body.get("model", ""),
                "usage": {"prompt_tokens": tokens, "total_tokens": tokens},
            }
        )

    # --- Conversations ---------------------------------------------------------------------

    async def _create_conversation(self, request: Request) -> Response:
        body, error = await self._receive(request)
        if error is not None:
            return error
        if not self.behaviour.quirks.conversations:
            return JSONResponse(NOT_FOUND_BODY, 404)
        conversation_id = f"conv_{uuid.uuid4().hex}"
        self.conversations[conversation_id] = _input_items((body or {}).get("items"))
        return JSONResponse(
            {
                "id": conversation_id,
                "object": "conversation",
                "created_at": int(time.time()),
                "metadata": (body or {}).get("metadata") or {},
            }
        )

    async def _conversation_items(self, request: Request) -> Response:
        body, error = await self._receive(request)
        if error is not None:
            return error
        if not self.behaviour.quirks.conversations:
            return JSONResponse(NOT_FOUND_BODY, 404)
        conversation_id = request.path_params["id"]
        items = self.conversations.get(conversation_id)
        if items is None:
            return _not_found("conversation", conversation_id)
        if request.method == "POST":
            added = _input_items(body.get("items"))
            items.extend(added)
            return JSONResponse(_item_list(added, has_more=False))
        ordered = items if request.query_params.get("order") == "asc" else items[::-1]
        after = request.query_params.get("after")
        if after is not None:
            ids = [item["id"] for item in ordered]
            ordered = ordered[ids.index(after) + 1 :] if after in ids else []
        limit = int(request.query_params.get("limit", "20"))
        return JSONResponse(_item_list(ordered[:limit], has_more=len(ordered) > limit))

    async def _delete_conversation(self, request: Request) -> Response:
        _body, error = await self._receive(request)
        if error is not None:
            return error
        if not self.behaviour.quirks.conversations:
            return JSONResponse(NOT_FOUND_BODY, 404)
        conversation_id = request.path_params["id"]
        if self.conversations.pop(conversation_id, None) is None:
            return _not_found("conversation", conversation_id)
        return JSONResponse(
            {"id": conversation_id, "object": "conversation.deleted", "deleted": True}
        )


def _not_found(kind: str, identifier: str) -> JSONResponse:
    return JSONResponse(
        _error_body(f"No {kind} found with id '{identifier}'.", "invalid_request_error"), 404
    )


def _item_list(items: list[dict[str, Any]], *, has_more: bool) -> dict[str, Any]:
    return {
        "object": "list",
        "data": items,
        "first_id": items[0]["id"] if items else "",
        "last_id": items[-1]["id"] if items else "",
        "has_more": has_more,
    }


def main(argv: list[str] | None = None) -> None:
    """Serves the fake in this process (for benchmarks, which want it on its own core)."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=8300)
    parser.add_argument("--tokens-per-second", type=float, default=None)
    parser.add_argument("--first-token-delay", type=float, default=0.0)
    parser.add_argument(
        "--story-tokens", type=int, default=None, help="Stream this many word tokens per answer."
    )
    parser.add_argument(
        "--quirks",
        choices=sorted(QUIRK_PRESETS),
        default="openai",
        help="Answer as this server type does (see Quirks).",
    )
    args = parser.parse_args(argv)
    behaviour = Behaviour(
        tokens_per_second=args.tokens_per_second,
        first_token_delay=args.first_token_delay,
        quirks=QUIRK_PRESETS[args.quirks](),
    )
    if args.story_tokens:
        words = tokenize(DEFAULT_STORY)
        behaviour.story = " ".join(words[i % len(words)].strip() for i in range(args.story_tokens))
    fake = FakeOpenAI(behaviour, keep_records=False)
    uvicorn.run(fake.app, host=args.host, port=args.port, log_level="warning", lifespan="off")


if __name__ == "__main__":
    main()
