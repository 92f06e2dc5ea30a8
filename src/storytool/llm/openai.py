"""Any OpenAI-compatible server (OpenAI, vLLM, Ollama, llama.cpp, LiteLLM) through the SDK.

Servers differ, and what one does is learned per client (one client per base URL) and reported in
:class:`Capabilities`: whether ``/v1/responses`` exists (a request that costs no tokens tells),
whether a ``background`` run is confirmed as one (only then is it cancelled or resumed by id;
otherwise closing the stream is the cancel), and whether structured output is honoured — Responses
``text.format`` json_schema, then chat ``response_format`` json_schema, then json_object with the
answer validated. ``refine_api`` / ``structured_api`` set to ``responses`` or ``chat`` skip the
learning. Facts about the SDK (openai 3.x) that shape this code:

- the SDK retries 408/409/429/5xx with no idempotency key, so a retried ``POST /responses`` could
  start a second paid generation: the client runs with ``max_retries=0`` and we retry only
  *before the first token*, within ``upstream_retry_budget`` (a story is never stitched from two
  generations);
- stream events are dispatched on ``event.type`` strings: unknown types (``keepalive``) arrive as
  an unexpected class, fields a server leaves out (``sequence_number``) are simply absent, and
  ``error`` / ``response.failed`` / ``response.incomplete`` end a stream without raising;
- a dropped connection raises ``APIConnectionError``, a stall ``APITimeoutError`` (a subclass);
  over the SDK's aiohttp transport (the default, ``openai_http_client``) a refused or lost
  connection comes as ``APITimeoutError`` too, aiohttp's error kept as its cause;
- building a request walks its parameters against their TypedDicts, and a parsed stream builds a
  Pydantic model per event: together 4-5 ms of CPU for a 50-token story, three times what the
  story's own bookkeeping costs. The calls on every story's path (the draft, the refine, the
  title) therefore go through the client's low-level ``post``/``get`` with a plain JSON body and
  read the answer as JSON themselves; the client still owns the connection pool, headers,
  timeouts and status errors.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import json
import logging
import re
from collections.abc import AsyncGenerator, Awaitable, Callable
from typing import Any, Literal, TypeVar

import aiohttp
import httpx2
import openai
from openai.lib._pydantic import to_strict_json_schema  # the SDK's own, as parse() uses
from openai.types.chat import ChatCompletionMessageParam
from openai.types.responses import ResponseInputParam
from pydantic import BaseModel, ValidationError

from storytool.config import ModelApi, Settings, UpstreamHttp
from storytool.llm.base import (
    Capabilities,
    InvalidModelOutput,
    Message,
    ModelClient,
    OutputT,
    ProviderError,
    StreamEvent,
    StreamFinished,
    TextDelta,
    UpstreamStarted,
)
from storytool.models import StopReason

logger = logging.getLogger(__name__)

T = TypeVar("T")

RETRYABLE_STATUS = frozenset({408, 409, 429})
"""Besides every 5xx: statuses where the same request may well succeed a moment later."""

ABSENT_STATUS = frozenset({404, 405, 501})
"""What a server without an endpoint answers for it."""

UNSUPPORTED_CANCEL_STATUS = frozenset({400, 404, 405, 409, 500, 501})
"""What servers answer to a cancel they cannot do or that has nothing left to stop (llama.cpp
404s it, LiteLLM's bridge 500s "not supported", a finished run is 400/409): expected, quiet."""

MAX_RETRY_WAIT_S = 30.0
"""Longest wait before a retry, whatever a Retry-After header asks: a user is watching."""

DRAIN_TIMEOUT_S = 1.0
"""How long a finished refine stream may take to end its body before its connection is dropped."""

LENGTH_CUTS = frozenset({"max_output_tokens", "max_tokens", "length"})
"""Reasons a server gives for a response cut at the output-token limit."""

StructuredRoute = Literal["responses", "chat_schema", "chat_object"]

JSON_OBJECT_NOTE = "Answer with one JSON object, and nothing else, that matches this JSON schema:"

UNREAD = {"X-Stainless-Raw-Response": "stream"}
"""Asks the SDK for the HTTP response unread (what its ``with_streaming_response`` sends): the
body is streamed and parsed here."""

Payload = dict[str, Any]


class RetryableError(ProviderError):
    """An upstream failure worth one more try, if no text has been passed on yet."""

    def __init__(
        self,
        message: str,
        *,
        code: str,
        stop_reason: StopReason = StopReason.PROVIDER_ERROR,
        retry_after: float | None = None,
    ) -> None:
        super().__init__(message, code=code, stop_reason=stop_reason)
        self.retry_after = retry_after


def _timed_out(error: openai.APITimeoutError) -> bool:
    """Whether the call gave up waiting. The SDK's aiohttp transport reports a connection that
    was refused or lost as a connect timeout too, keeping aiohttp's own error as the cause."""
    causes: list[BaseException] = []
    cause: BaseException | None = error
    while cause is not None and cause not in causes:
        causes.append(cause)
        cause = cause.__cause__
    return any(isinstance(c, TimeoutError) for c in causes) or not any(
        isinstance(c, aiohttp.ClientConnectionError) for c in causes
    )


def translate(error: openai.APIError) -> ProviderError:
    """The SDK's error as the ProviderError the conversation records."""
    if isinstance(error, openai.APITimeoutError) and _timed_out(error):
        return RetryableError(
            "the model server stopped answering (timeout)",
            code="upstream_timeout",
            stop_reason=StopReason.TIMEOUT,
        )
    if isinstance(error, openai.APIConnectionError):
        return RetryableError("the connection to the model server failed", code="upstream_error")
    if isinstance(error, openai.APIStatusError):
        message = f"the model server answered {error.status_code}: {error.message}"
        if error.status_code >= 500 or error.status_code in RETRYABLE_STATUS:
            retry_after = error.response.headers.get("retry-after", "")
            seconds = float(retry_after) if retry_after.replace(".", "", 1).isdigit() else None
            return RetryableError(message, code="upstream_error", retry_after=seconds)
        return ProviderError(message, code="upstream_error")
    return ProviderError(f"the model server reported an error: {error.message}")


def _usage(values: dict[str, object]) -> dict[str, int]:
    """The top-level token counts (input/output/total, or prompt/completion/total)."""
    return {key: value for key, value in values.items() if isinstance(value, int)}


def _chat_messages(messages: list[Message]) -> list[ChatCompletionMessageParam]:
    chat: list[ChatCompletionMessageParam] = []
    for message in messages:
        if message.role == "system":
            chat.append({"role": "system", "content": message.content})
        elif message.role == "assistant":
            chat.append({"role": "assistant", "content": message.content})
        else:
            chat.append({"role": "user", "content": message.content})
    return chat


def _input_items(messages: list[Message]) -> ResponseInputParam:
    """Typed message items: llama.cpp refuses an assistant item without ``"type": "message"``
    (400 "Cannot determine type of 'item'"); OpenAI takes either."""
    items: ResponseInputParam = []
    for message in messages:
        items.append({"type": "message", "role": message.role, "content": message.content})
    return items


@functools.cache
def _schema(output: type[BaseModel]) -> dict[str, Any]:
    """``output``'s strict JSON schema, built once per type: the SDK's ``responses.parse``
    rebuilds it on every call, a few milliseconds of CPU each time."""
    return to_strict_json_schema(output)


_FENCE = re.compile(r"^\s*```(?:json)?\s*(.*?)\s*```\s*$", re.DOTALL)


def _json_text(answer: str) -> str | None:
    """The answer, unwrapped from a Markdown fence, when it is meant as JSON (it opens an object
    or an array); None when it is free text: a server that ignored the format asked for."""
    fenced = _FENCE.match(answer)
    text = fenced.group(1) if fenced else answer.strip()
    return text if text.startswith(("{", "[")) else None


def _object(value: object) -> Payload:
    """A JSON object of the answer, or an empty one where a server left it out or sent null."""
    return value if isinstance(value, dict) else {}


def _output_text(response: Payload) -> str:
    """A Responses answer's text: its messages' ``output_text`` parts, joined."""
    return "".join(
        str(part.get("text") or "")
        for item in response.get("output") or ()
        if _object(item).get("type") == "message"
        for part in map(_object, item.get("content") or ())
        if part.get("type") == "output_text"
    )


def _chat_text(completion: Payload) -> str:
    choices = completion.get("choices") or [{}]
    return str(_object(_object(choices[0]).get("message")).get("content") or "")


def _payload(text: str) -> Payload:
    """One streamed event's JSON object; a chat stream's ``{"error": ...}`` raised."""
    try:
        payload = json.loads(text)
    except ValueError:
        raise ProviderError(f"the model server sent no JSON: {text[:200]!r}") from None
    if not isinstance(payload, dict):
        raise ProviderError(f"the model server sent no JSON object: {text[:200]!r}")
    error = payload.get("error")
    if error and "type" not in payload:  # Responses events carry a type, errors included
        message = _object(error).get("message") or "no message"
        raise ProviderError(f"the model server reported an error: {message}")
    return payload


def sdk_http_client(library: UpstreamHttp) -> httpx2.AsyncClient | None:
    """The SDK's HTTP client over ``library``: its aiohttp transport, or None for its default."""
    return openai.DefaultAioHttpClient() if library is UpstreamHttp.AIOHTTP else None


class OpenAIClient(ModelClient):
    def __init__(self, settings: Settings) -> None:
        self._settings = settings
        key = settings.openai_api_key
        self._client = openai.AsyncOpenAI(
            # Self-hosted servers (vLLM, Ollama) take no key, but the SDK insists on one.
            api_key=key.get_secret_value() if key else "no-key",
            base_url=settings.openai_base_url,
            timeout=openai.Timeout(
                settings.openai_timeout_s, connect=settings.openai_connect_timeout_s
            ),
            max_retries=0,
            http_client=sdk_http_client(settings.openai_http_client),
        )
        self.capabilities = Capabilities()
        if settings.refine_api is ModelApi.CHAT:
            self.capabilities.responses = False
        self._probe_lock = asyncio.Lock()
        self._streaming: set[str] = set()
        self._cancelled: set[str] = set()

    # --- what the server has ------------------------------------------------------------------

    def _note(self, text: str) -> None:
        if text not in self.capabilities.notes:
            self.capabilities.notes.append(text)
            logger.info("model server %s: %s", self._client.base_url, text)

    async def prepare(self) -> None:
        if self.capabilities.responses is None:
            async with self._probe_lock:
                if self.capabilities.responses is None:
                    self.capabilities.responses = await self._has_responses()
                    if not self.capabilities.responses:
                        self._note(
                            "no Responses API (/v1/responses answers 'not found'): refine runs "
                            "as a streamed chat completion, cancel closes the stream, no "
                            "upstream resume (STORYTOOL_REFINE_API=chat skips this check)"
                        )
        if not self.capabilities.responses and self._settings.refine_api is ModelApi.RESPONSES:
            raise ProviderError(
                f"the model server at {self._client.base_url} has no Responses API "
                "(/v1/responses answers 'not found'): set STORYTOOL_REFINE_API=auto or chat",
                code="upstream_unsupported",
            )

    async def _has_responses(self) -> bool:
        """Asks ``/v1/responses`` with a body no server runs (a temperature that is no number):
        a server without the endpoint says 404 (405, 501), one with it refuses the body with a
        400 — no tokens spent either way. (An ``input`` of the wrong type makes LiteLLM answer
        500 whatever is behind it; this one it checks itself, as llama.cpp and OpenAI do.)"""
        try:
            await self._client.post(
                "/responses",
                body={"model": self._settings.refine_model, "input": "x", "temperature": "hot"},
                cast_to=object,
            )
        except openai.APIStatusError as error:
            return error.status_code not in ABSENT_STATUS
        except openai.APIError as error:
            raise translate(error) from error
        return True

    async def check(self) -> Capabilities:
        await self.prepare()
        if self.capabilities.responses:
            await self._check_background()
        await self._check_structured()
        return self.capabilities

    async def _check_background(self) -> None:
        if not self._settings.refine_background:
            self._note("background mode is off (STORYTOOL_REFINE_BACKGROUND=false)")
            return
        response = await self._call(
            lambda: self._client.responses.create(
                model=self._settings.refine_model,
                input="1",
                max_output_tokens=16,
                background=True,
            )
        )
        self._learn_background(response.background, response.status)
        if self.capabilities.background:
            await self.cancel(response.id)

    def _learn_background(self, confirmed: object, status: object) -> bool:
        background = confirmed is True and status in ("queued", "in_progress")
        if self.capabilities.background is None:
            self.capabilities.background = background
            if not background:
                self._note(
                    "background mode is ignored: a cancel closes the stream instead of "
                    "stopping the run by id, and a dropped or adopted story cannot be resumed "
                    "upstream (set STORYTOOL_REFINE_BACKGROUND=false to stop asking)"
                )
        return background

    async def _check_structured(self) -> None:
        class Probe(BaseModel):
            answer: str

        try:
            await self.structured(
                Probe,
                model=self._settings.mini_model,
                instructions='Reply with the word "yes" as the answer.',
                text="Ready?",
            )
        except InvalidModelOutput as error:
            self._note(f"structured output does not validate: {error.message}")

    # --- retries ---------------------------------------------------------------------------

    def _wait_before(self, retry: int, error: RetryableError) -> float:
        if error.retry_after is not None:
            return min(error.retry_after, MAX_RETRY_WAIT_S)
        return min(self._settings.upstream_retry_backoff_s * 2.0**retry, MAX_RETRY_WAIT_S)

    async def _call(self, request: Callable[[], Awaitable[T]]) -> T:
        """One non-streaming request, retried within the budget on a retryable failure."""
        retry = 0
        while True:
            try:
                try:
                    return await request()
                except openai.APIError as error:
                    raise translate(error) from error
            except RetryableError as error:
                if retry >= self._settings.upstream_retry_budget:
                    raise
                await asyncio.sleep(self._wait_before(retry, error))
                retry += 1

    async def _until_first_token(
        self, attempt: Callable[[], AsyncGenerator[StreamEvent, None]]
    ) -> AsyncGenerator[StreamEvent, None]:
        """Streams ``attempt()``, starting it over on a retryable failure until text has been
        yielded; after that a failure is final. An abandoned background run is cancelled so it
        does not keep generating."""
        retry = 0
        while True:
            started: UpstreamStarted | None = None
            text_seen = False
            stream = attempt()
            try:
                async for event in stream:
                    if isinstance(event, UpstreamStarted):
                        started = event
                    elif isinstance(event, TextDelta):
                        text_seen = True
                    yield event
                return
            except RetryableError as error:
                if text_seen or retry >= self._settings.upstream_retry_budget:
                    raise
                logger.warning("upstream failed before the first token, retrying: %s", error)
                if started is not None and started.background:
                    await self.cancel(started.response_id)
                await asyncio.sleep(self._wait_before(retry, error))
                retry += 1
            finally:
                await stream.aclose()

    async def _stream(
        self, path: str, *, body: Payload | None = None, query: dict[str, str] | None = None
    ) -> AsyncGenerator[Payload, None]:
        """A streamed answer's events as JSON objects (``body`` posted, or ``path`` read with
        ``query``), sent when first iterated, until ``[DONE]`` (after which the body is read to
        its end for at most :data:`DRAIN_TIMEOUT_S`, so the connection can be reused) or the
        end of the body. A refusal is the SDK's ``APIStatusError``, and a transport failure its
        ``APIConnectionError``/``APITimeoutError``, as for any call."""
        if body is None:
            response = await self._client.get(
                path, cast_to=httpx2.Response, options={"headers": UNREAD, "params": query or {}}
            )
        else:
            response = await self._client.post(
                path, body=body, cast_to=httpx2.Response, options={"headers": UNREAD}
            )
        lines = response.aiter_lines()
        data: list[str] = []
        try:
            async for line in lines:
                if line.startswith("data:"):
                    data.append(line[6:] if line.startswith("data: ") else line[5:])
                    continue
                if line or not data:
                    continue  # event:, id:, comments; or a blank line ending nothing
                text, data = "\n".join(data), []
                if text.startswith("[DONE]"):
                    with contextlib.suppress(TimeoutError):
                        async with asyncio.timeout(DRAIN_TIMEOUT_S):
                            async for _after in lines:
                                pass
                    return
                yield _payload(text)
        except httpx2.TimeoutException as error:
            raise openai.APITimeoutError(request=response.request) from error
        except httpx2.RequestError as error:
            raise openai.APIConnectionError(request=response.request) from error
        finally:
            await response.aclose()

    # --- chat --------------------------------------------------------------------------------

    def stream_chat(
        self,
        *,
        model: str,
        messages: list[Message],
        temperature: float | None = None,
        max_tokens: int | None = None,
    ) -> AsyncGenerator[StreamEvent, None]:
        return self._until_first_token(
            lambda: self._chat_once(model, messages, temperature, max_tokens)
        )

    async def _chat_once(
        self,
        model: str,
        messages: list[Message],
        temperature: float | None,
        max_tokens: int | None,
    ) -> AsyncGenerator[StreamEvent, None]:
        usage: dict[str, int] = {}
        cut = False
        body: Payload = {
            "model": model,
            "messages": _chat_messages(messages),
            "stream": True,
            "stream_options": {"include_usage": True},
        }
        if temperature is not None:
            body["temperature"] = temperature
        if max_tokens is not None:
            body["max_tokens"] = max_tokens
        try:
            async with contextlib.aclosing(self._stream("/chat/completions", body=body)) as chunks:
                index = 0
                async for chunk in chunks:
                    if chunk.get("usage"):
                        usage = _usage(_object(chunk["usage"]))
                    for choice in map(_object, chunk.get("choices") or ()):
                        content = _object(choice.get("delta")).get("content")
                        if content:
                            yield TextDelta(str(content), index)
                            index += 1
                        if choice.get("finish_reason") == "length":
                            cut = True
        except openai.APIError as error:
            raise translate(error) from error
        yield StreamFinished(usage, cut=cut)

    # --- responses ---------------------------------------------------------------------------

    def stream_response(
        self,
        *,
        model: str,
        instructions: str,
        messages: list[Message],
        temperature: float | None = None,
        max_tokens: int | None = None,
        conversation: str | None = None,
        resume: tuple[str, int] | None = None,
    ) -> AsyncGenerator[StreamEvent, None]:
        if resume is not None:
            return self._resumed(*resume)
        return self._response_or_chat(
            model=model,
            instructions=instructions,
            messages=messages,
            temperature=temperature,
            max_tokens=max_tokens,
            conversation=conversation,
        )

    async def _response_or_chat(
        self,
        *,
        model: str,
        instructions: str,
        messages: list[Message],
        temperature: float | None,
        max_tokens: int | None,
        conversation: str | None,
    ) -> AsyncGenerator[StreamEvent, None]:
        await self.prepare()
        stream: AsyncGenerator[StreamEvent, None]
        if self.capabilities.responses:
            background = self._settings.refine_background and self.capabilities.background in (
                None,
                True,
            )

            body: Payload = {
                "model": model,
                "instructions": instructions,
                "input": _input_items(messages),
                "background": background,
                "stream": True,
            }
            if conversation:
                body["conversation"] = conversation
            if temperature is not None:
                body["temperature"] = temperature
            if max_tokens is not None:
                body["max_output_tokens"] = max_tokens

            def create() -> AsyncGenerator[Payload, None]:
                return self._stream("/responses", body=body)

            stream = self._until_first_token(
                lambda: self._response_once(create, None, max_tokens=max_tokens)
            )
        else:
            stream = self.stream_chat(
                model=model,
                messages=[Message("system", instructions), *messages],
                temperature=temperature,
                max_tokens=max_tokens,
            )
        async with contextlib.aclosing(stream):
            async for event in stream:
                yield event

    async def _resumed(self, response_id: str, after: int) -> AsyncGenerator[StreamEvent, None]:
        """A background run picked up after event ``after``. Not retried from the start: the
        run exists upstream, and starting another would pay for the story twice."""

        def retrieve() -> AsyncGenerator[Payload, None]:
            query = {"stream": "true", "starting_after": str(after)}
            return self._stream(f"/responses/{response_id}", query=query)

        stream = self._response_once(retrieve, response_id)
        async with contextlib.aclosing(stream):
            async for event in stream:
                yield event

    async def _response_once(
        self,
        open_stream: Callable[[], AsyncGenerator[Payload, None]],
        resumed: str | None,
        *,
        max_tokens: int | None = None,
    ) -> AsyncGenerator[StreamEvent, None]:
        """One response stream. Whatever ends it early after :meth:`cancel` was asked for this
        run is reported as the user's cancel, not as an upstream failure. A run that used all
        of ``max_tokens`` was cut, whether the server says ``incomplete`` (OpenAI) or
        ``completed`` (llama.cpp says nothing else)."""
        response_id = resumed
        failure: ProviderError
        try:
            async with contextlib.aclosing(open_stream()) as stream:
                if resumed is not None:
                    self._streaming.add(resumed)
                    yield UpstreamStarted(resumed, background=True)
                async for event in stream:
                    kind = event.get("type")
                    if kind == "response.output_text.delta":
                        sequence = event.get("sequence_number")
                        yield TextDelta(
                            str(event.get("delta") or ""),
                            sequence if isinstance(sequence, int) else None,
                        )
                        continue
                    response = _object(event.get("response"))
                    if kind == "response.created":
                        response_id = str(response.get("id") or "")
                        self._streaming.add(response_id)
                        background = self._settings.refine_background and self._learn_background(
                            response.get("background"), response.get("status")
                        )
                        yield UpstreamStarted(response_id, background=background)
                    elif kind in ("response.completed", "response.incomplete"):
                        counts = _usage(_object(response.get("usage")))
                        if kind == "response.completed":
                            used = counts.get("output_tokens", 0)
                            cut = max_tokens is not None and used >= max_tokens
                        else:
                            reason = _object(response.get("incomplete_details")).get("reason")
                            if reason not in LENGTH_CUTS:
                                raise ProviderError(
                                    f"the model stopped early: {reason or 'no reason'}"
                                )
                            cut = True
                        yield StreamFinished(counts, cut=cut)
                        await self._drain(stream)
                        return
                    elif kind == "error":
                        message = event.get("message") or _object(event.get("error")).get("message")
                        raise ProviderError(f"the model server reported an error: {message}")
                    elif kind == "response.failed":
                        detail = _object(response.get("error")).get("message") or "no reason given"
                        raise ProviderError(f"the model run failed: {detail}")
            failure = ProviderError("the model server ended the stream before the story was done")
        except openai.APIStatusError as error:
            failure = translate(error)
            if resumed is not None and error.status_code in UNSUPPORTED_CANCEL_STATUS:
                failure = ProviderError(
                    f"the model server cannot resume run {resumed}: {error.status_code}",
                    code="resume_unavailable",
                )
            failure.__cause__ = error
        except openai.APIError as error:
            failure = translate(error)
            failure.__cause__ = error
        except ProviderError as error:
            failure = error
        finally:
            cancelled = self._forget(response_id)
        if cancelled:
            raise ProviderError(
                "the story was cancelled", code="cancelled", stop_reason=StopReason.USER_CANCEL
            ) from failure
        raise failure

    @staticmethod
    async def _drain(stream: AsyncGenerator[Payload, None]) -> None:
        """Reads a finished stream to the end of its body, so the connection goes back to the
        pool for the next call instead of being closed half-read; a server that keeps it open
        past the end loses the connection instead."""
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(DRAIN_TIMEOUT_S):
                async for _after in stream:
                    pass

    def _forget(self, response_id: str | None) -> bool:
        """Stops tracking a finished stream; True when it had been cancelled."""
        self._streaming.discard(response_id or "")
        if response_id in self._cancelled:
            self._cancelled.discard(response_id)
            return True
        return False

    async def cancel(self, response_id: str) -> None:
        if response_id in self._streaming:
            self._cancelled.add(response_id)
        try:
            await self._client.responses.cancel(response_id)
        except openai.APIStatusError as error:
            if error.status_code in UNSUPPORTED_CANCEL_STATUS:
                logger.debug("upstream cancel of %s: %s", response_id, error.status_code)
                return  # finished, never existed, or a server without cancel: nothing to stop
            logger.warning("could not cancel upstream response %s: %s", response_id, error)
        except openai.APIError as error:
            logger.warning("could not cancel upstream response %s: %s", response_id, error)

    # --- structured answers ----------------------------------------------------------------

    def _routes(self) -> list[StructuredRoute]:
        choice = self._settings.structured_api
        caps = self.capabilities
        routes: list[StructuredRoute] = []
        if choice is not ModelApi.CHAT and caps.responses and caps.json_schema is not False:
            routes.append("responses")
        if choice is not ModelApi.RESPONSES:
            if caps.chat_json_schema is not False:
                routes.append("chat_schema")
            routes.append("chat_object")
        return routes

    async def structured(
        self, output: type[OutputT], *, model: str, instructions: str, text: str
    ) -> OutputT:
        """The model's answer in ``output``'s JSON schema, validated: one retry when the answer
        does not match; a route whose answer is no JSON at all is taken for unsupported and the
        next one tried (``auto``)."""
        await self.prepare()
        problem = "the server has no way to ask for structured output"
        for route in self._routes():
            for _attempt in range(2):
                ask = functools.partial(self._ask, route, output, model, instructions, text)
                answer = await self._call(ask)
                payload = _json_text(answer)
                if payload is None:
                    problem = f"the answer was no JSON: {answer[:200]!r}"
                    if route != "chat_object" and self._settings.structured_api is ModelApi.AUTO:
                        self._unsupported(route)
                        break
                    continue
                self._supported(route)
                try:
                    return output.model_validate_json(payload)
                except ValidationError as error:
                    problem = str(error)
            else:
                break  # the route was honoured twice and still wrong: another will not do better
        raise InvalidModelOutput(f"the model's answer did not match {output.__name__}: {problem}")

    def _supported(self, route: StructuredRoute) -> None:
        if route == "responses":
            self.capabilities.json_schema = True
        elif route == "chat_schema":
            self.capabilities.chat_json_schema = True

    def _unsupported(self, route: StructuredRoute) -> None:
        if route == "responses":
            self.capabilities.json_schema = False
            self._note(
                "/v1/responses ignores text.format json_schema: structured output asked "
                "of chat completions instead (STORYTOOL_STRUCTURED_API=chat)"
            )
        elif route == "chat_schema":
            self.capabilities.chat_json_schema = False
            self._note(
                "chat completions ignore response_format json_schema: asked for a JSON "
                "object and validated instead"
            )

    async def _ask(
        self,
        route: StructuredRoute,
        output: type[BaseModel],
        model: str,
        instructions: str,
        text: str,
    ) -> str:
        schema = _schema(output)
        if route == "responses":
            text_format = {"type": "json_schema", "name": output.__name__, "schema": schema}
            body: Payload = {
                "model": model,
                "instructions": instructions,
                "input": text,
                "text": {"format": {**text_format, "strict": True}},
            }
            return _output_text(_object(await self._answer("/responses", body)))
        if route == "chat_schema":
            system = instructions
            response_format: Payload = {
                "type": "json_schema",
                "json_schema": {"name": output.__name__, "schema": schema, "strict": True},
            }
        else:
            system = f"{instructions}\n\n{JSON_OBJECT_NOTE}\n{json.dumps(schema)}"
            response_format = {"type": "json_object"}
        body = {
            "model": model,
            "messages": _chat_messages([Message("system", system), Message("user", text)]),
            "response_format": response_format,
        }
        return _chat_text(_object(await self._answer("/chat/completions", body)))

    async def _answer(self, path: str, body: Payload) -> object:
        """A plain JSON answer, as the server sent it (the SDK only decodes it)."""
        return await self._client.post(path, body=body, cast_to=object)

    # --- embeddings --------------------------------------------------------------------------

    async def embed(
        self, *, model: str, texts: list[str], dimensions: int | None = None
    ) -> list[list[float]]:
        response = await self._call(
            lambda: self._client.embeddings.create(
                model=model,
                input=texts,
                dimensions=dimensions if dimensions is not None else openai.omit,
            )
        )
        return [item.embedding for item in sorted(response.data, key=lambda item: item.index)]

    # --- conversations ---------------------------------------------------------------------

    async def create_conversation(self) -> str:
        conversation = await self._call(lambda: self._client.conversations.create())
        return conversation.id

    async def delete_conversation(self, conversation_id: str) -> None:
        try:
            await self._client.conversations.delete(conversation_id)
        except openai.NotFoundError:
            return  # already gone
        except openai.APIError as error:
            raise translate(error) from error

    async def aclose(self) -> None:
        await self._client.close()
