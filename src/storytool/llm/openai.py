"""The OpenAI provider: any OpenAI-compatible server (OpenAI, vLLM, Ollama, LiteLLM) via the SDK.

Draft = Chat Completions (the fine-tuned model), refine = Responses (streamed, ``background`` by
setting so it can be cancelled and resumed upstream), title/recommendations and analysis = the mini
model with a JSON-schema structured output. Facts about the SDK (openai 3.x) that shape this code:

- the SDK retries 408/409/429/5xx with no idempotency key, so a retried ``POST /responses`` could
  start a second paid generation: the client runs with ``max_retries=0`` and we retry only
  *before the first token*, within ``upstream_retry_budget`` (a story is never stitched from two
  generations);
- stream events are dispatched on ``event.type`` strings: unknown types (``keepalive``) arrive as
  an unexpected class, and ``error`` / ``response.failed`` / ``response.incomplete`` end a
  stream without raising;
- a dropped connection raises ``APIConnectionError``, a stall ``APITimeoutError`` (a subclass).
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import logging
from collections.abc import AsyncGenerator, Awaitable, Callable
from typing import TypeVar

import openai
from openai.lib._pydantic import to_strict_json_schema  # the SDK's own, as parse() uses
from openai.types.chat import ChatCompletionMessageParam
from openai.types.responses import (
    ResponseFormatTextJSONSchemaConfigParam,
    ResponseInputParam,
    ResponseStreamEvent,
)
from pydantic import BaseModel, ValidationError

from storytool.config import Settings
from storytool.llm.base import (
    InvalidModelOutput,
    LLMProvider,
    OutputT,
    ProviderError,
    StoryExtras,
    StoryLength,
    StoryRequest,
    StreamEvent,
    StreamFinished,
    TextDelta,
    Turn,
    UpstreamStarted,
)
from storytool.models import StopReason

logger = logging.getLogger(__name__)

T = TypeVar("T")

RETRYABLE_STATUS = frozenset({408, 409, 429})
"""Besides every 5xx: statuses where the same request may well succeed a moment later."""

MAX_RETRY_WAIT_S = 30.0
"""Longest wait before a retry, whatever a Retry-After header asks: a user is watching."""

DRAIN_TIMEOUT_S = 1.0
"""How long a finished refine stream may take to end its body before its connection is dropped."""

LENGTH_HINTS: dict[StoryLength, str] = {
    "short": "짧게, 800자 안팎으로",
    "medium": "1,500자 안팎으로",
    "long": "길게, 3,000자 안팎으로",
}

REFINE_INSTRUCTIONS = (
    "당신은 조선 시대 고전 소설의 문체를 다듬는 작가입니다. 사용자의 줄거리와 초고를 받아, "
    "'화설', '각설', '차설' 같은 전환어와 '-하더라', '-이로다', '-하노라' 같은 옛 어미를 살려 "
    "이야기를 더 풍성하게 늘이고 다듬어 한 편의 완성된 이야기로 씁니다. 앞선 이야기가 있으면 "
    "그 인물과 사건을 이어 갑니다. 이야기 본문만 씁니다."
)

EXTRAS_INSTRUCTIONS = (
    "다음 고전 소설 문체의 이야기에 어울리는 짧은 제목 하나와, 사용자가 이어서 써 볼 만한 "
    "다음 이야기의 방향 세 가지를 한국어로 제안하세요."
)


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


def translate(error: openai.APIError) -> ProviderError:
    """The SDK's error as the ProviderError the conversation records."""
    if isinstance(error, openai.APITimeoutError):
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


def _prompt(user_input: str, tags: list[str]) -> str:
    tag_line = f"\n태그: {', '.join(tags)}" if tags else ""
    return f"줄거리: {user_input}{tag_line}"


def draft_prompt(request: StoryRequest) -> str:
    """The user turn the fine-tuned draft model reads. The feedback export writes its training
    examples with the same words, so the model learns from what it is later asked."""
    user = f"{_prompt(request.user_input, request.tags)}\n분량: {LENGTH_HINTS[request.length]}"
    if request.passages:
        user += "\n참고할 옛 글:\n" + "\n".join(f"- {text}" for text in request.passages)
    return user


def _usage(values: dict[str, object]) -> dict[str, int]:
    """The top-level token counts (input/output/total, or prompt/completion/total)."""
    return {key: value for key, value in values.items() if isinstance(value, int)}


@functools.cache
def _text_format(output: type[BaseModel]) -> ResponseFormatTextJSONSchemaConfigParam:
    """``output``'s strict JSON schema as a Responses text format. Built once per type: the
    SDK's ``responses.parse`` rebuilds it on every call, a few milliseconds of CPU each time."""
    return {
        "type": "json_schema",
        "name": output.__name__,
        "schema": to_strict_json_schema(output),
        "strict": True,
    }


class OpenAIProvider(LLMProvider):
    name = "openai"

    def __init__(self, settings: Settings) -> None:
        self._settings = settings
        self.models = {
            "draft": settings.fine_tuned_model,
            "refine": settings.refine_model,
            "mini": settings.mini_model,
            "embedding": settings.embedding_model,
        }
        key = settings.openai_api_key
        self._client = openai.AsyncOpenAI(
            # Self-hosted servers (vLLM, Ollama) take no key, but the SDK insists on one.
            api_key=key.get_secret_value() if key else "no-key",
            base_url=settings.openai_base_url,
            timeout=openai.Timeout(
                settings.openai_timeout_s, connect=settings.openai_connect_timeout_s
            ),
            max_retries=0,
        )
        self._streaming: set[str] = set()
        self._cancelled: set[str] = set()

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
        self, attempt: Callable[[], AsyncGenerator[StreamEvent, None]], *, owns_runs: bool
    ) -> AsyncGenerator[StreamEvent, None]:
        """Streams ``attempt()``, starting it over on a retryable failure until text has been
        yielded; after that a failure is final. An abandoned upstream run is cancelled when it
        was ours to start (``owns_runs``) so it does not keep generating."""
        retry = 0
        while True:
            started: str | None = None
            text_seen = False
            stream = attempt()
            try:
                async for event in stream:
                    if isinstance(event, UpstreamStarted):
                        started = event.response_id
                    elif isinstance(event, TextDelta):
                        text_seen = True
                    yield event
                return
            except RetryableError as error:
                if text_seen or retry >= self._settings.upstream_retry_budget:
                    raise
                logger.warning("upstream failed before the first token, retrying: %s", error)
                if started is not None and owns_runs:
                    await self.cancel(started)
                await asyncio.sleep(self._wait_before(retry, error))
                retry += 1
            finally:
                await stream.aclose()

    # --- draft -----------------------------------------------------------------------------

    def draft(self, request: StoryRequest) -> AsyncGenerator[StreamEvent, None]:
        return self._until_first_token(lambda: self._draft_once(request), owns_runs=False)

    def _draft_messages(self, request: StoryRequest) -> list[ChatCompletionMessageParam]:
        return [
            {"role": "system", "content": self._settings.system_prompt},
            {"role": "user", "content": draft_prompt(request)},
        ]

    async def _draft_once(self, request: StoryRequest) -> AsyncGenerator[StreamEvent, None]:
        usage: dict[str, int] = {}
        try:
            stream = await self._client.chat.completions.create(
                model=self._settings.fine_tuned_model,
                messages=self._draft_messages(request),
                temperature=request.temperature if request.temperature is not None else openai.omit,
                stream=True,
                stream_options={"include_usage": True},
            )
            async with stream:
                index = 0
                async for chunk in stream:
                    if chunk.usage is not None:
                        usage = _usage(chunk.usage.model_dump())
                    for choice in chunk.choices:
                        if choice.delta.content:
                            yield TextDelta(choice.delta.content, index)
                            index += 1
        except openai.APIError as error:
            raise translate(error) from error
        yield StreamFinished(usage)

    # --- refine ----------------------------------------------------------------------------

    def refine(
        self,
        request: StoryRequest,
        base_story: str,
        *,
        resume: tuple[str, int] | None = None,
    ) -> AsyncGenerator[StreamEvent, None]:
        return self._until_first_token(
            lambda: self._refine_once(request, base_story, resume), owns_runs=resume is None
        )

    def _refine_input(
        self, request: StoryRequest, base_story: str, *, history: list[Turn]
    ) -> ResponseInputParam:
        items: ResponseInputParam = []
        for turn in history:
            items.append({"role": "user", "content": _prompt(turn.user_input, turn.tags)})
            items.append({"role": "assistant", "content": turn.story})
        new_turn = f"{_prompt(request.user_input, request.tags)}\n\n초고:\n{base_story}"
        items.append({"role": "user", "content": new_turn})
        return items

    async def _open_refine(
        self, request: StoryRequest, base_story: str, resume: tuple[str, int] | None
    ) -> openai.AsyncStream[ResponseStreamEvent]:
        if resume is not None:
            response_id, after = resume
            return await self._client.responses.retrieve(
                response_id, stream=True, starting_after=after
            )
        # Context kept upstream: the conversation already holds the earlier turns.
        conversation = (
            request.remote_conversation_id if self._settings.remote_conversations else None
        )
        history = [] if conversation else request.history
        return await self._client.responses.create(
            model=self._settings.refine_model,
            instructions=REFINE_INSTRUCTIONS,
            input=self._refine_input(request, base_story, history=history),
            conversation=conversation or openai.omit,
            temperature=request.temperature if request.temperature is not None else openai.omit,
            background=self._settings.refine_background,
            stream=True,
        )

    async def _refine_once(
        self, request: StoryRequest, base_story: str, resume: tuple[str, int] | None
    ) -> AsyncGenerator[StreamEvent, None]:
        """One refine stream. Whatever ends it early after :meth:`cancel` was asked for this run
        is reported as the user's cancel, not as an upstream failure."""
        response_id = resume[0] if resume else None
        failure: ProviderError
        try:
            stream = await self._open_refine(request, base_story, resume)
            async with stream:
                if response_id is not None:
                    self._streaming.add(response_id)
                    yield UpstreamStarted(response_id)
                async for event in stream:
                    if event.type == "response.created":
                        response_id = event.response.id
                        self._streaming.add(response_id)
                        yield UpstreamStarted(response_id)
                    elif event.type == "response.output_text.delta":
                        yield TextDelta(event.delta, event.sequence_number)
                    elif event.type == "response.completed":
                        usage = event.response.usage
                        yield StreamFinished(_usage(usage.model_dump()) if usage else {})
                        # Read to the end of the body, so the connection goes back to the pool
                        # for the next call instead of being closed half-read; a server that
                        # keeps it open past the end loses the connection instead.
                        with contextlib.suppress(TimeoutError):
                            async with asyncio.timeout(DRAIN_TIMEOUT_S):
                                async for _after in stream:
                                    pass
                        return
                    elif event.type == "error":
                        raise ProviderError(f"the model server reported an error: {event.message}")
                    elif event.type == "response.failed":
                        problem = event.response.error
                        detail = problem.message if problem else "no reason given"
                        raise ProviderError(f"the model run failed: {detail}")
                    elif event.type == "response.incomplete":
                        details = event.response.incomplete_details
                        reason = details.reason if details else "no reason given"
                        raise ProviderError(f"the model stopped early: {reason}")
            failure = ProviderError("the model server ended the stream before the story was done")
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
        except (openai.NotFoundError, openai.BadRequestError):
            return  # already finished, never existed, or not a background run: nothing to stop
        except openai.APIError as error:
            logger.warning("could not cancel upstream response %s: %s", response_id, error)

    # --- structured answers ----------------------------------------------------------------

    async def extras(self, request: StoryRequest, story: str) -> StoryExtras:
        text = f"{_prompt(request.user_input, request.tags)}\n\n이야기:\n{story}"
        return await self.structured(StoryExtras, instructions=EXTRAS_INSTRUCTIONS, text=text)

    async def structured(self, output: type[OutputT], *, instructions: str, text: str) -> OutputT:
        """The mini model's answer in ``output``'s JSON schema, validated; one retry when it
        does not match."""
        problem = ""
        for _attempt in range(2):
            response = await self._call(
                lambda: self._client.responses.create(
                    model=self._settings.mini_model,
                    instructions=instructions,
                    input=text,
                    text={"format": _text_format(output)},
                )
            )
            if not response.output_text:
                problem = "no structured answer (a refusal or an empty output)"
                continue
            try:
                return output.model_validate_json(response.output_text)
            except ValidationError as error:
                problem = str(error)
        raise InvalidModelOutput(f"the model's answer did not match {output.__name__}: {problem}")

    # --- conversations ---------------------------------------------------------------------

    async def create_conversation(self) -> str | None:
        if not self._settings.remote_conversations:
            return None
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
