"""The task that writes one story: draft → refine (streamed) → title and recommendations.

It runs apart from any HTTP request, so it opens its own sessions from the injected sessionmaker:
a stream outlives the request that started it, and a client that leaves does not stop the story.
Each stage's result is stored as it completes and the refined text about once a second while it
streams, behind the stream (:mod:`storytool.generation.writer`); every way of ending (completed,
cancelled, failed, interrupted) saves what was written before the single terminal event goes out.
The status changes only through the conditional :meth:`ConversationRepository.finish`, so
whichever end commits first is the one that holds.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections import Counter
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import AbstractAsyncContextManager, asynccontextmanager
from dataclasses import dataclass, field, replace
from typing import Any, Protocol

from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from storytool.config import Settings
from storytool.generation.events import EventLog
from storytool.generation.repository import ConversationRepository
from storytool.generation.runs import Run
from storytool.generation.schemas import (
    Cancelled,
    Delta,
    Done,
    Error,
    EventPayload,
    Recommendations,
    Stage,
    StageName,
    StageStatus,
    Title,
)
from storytool.generation.writer import StageWriter
from storytool.llm.base import (
    LLMProvider,
    ProviderError,
    StoryExtras,
    StoryRequest,
    StreamEvent,
    StreamFinished,
    TextDelta,
    UpstreamStarted,
)
from storytool.logging import conversation_id_var
from storytool.models import ConversationStatus, StopReason
from storytool.threads.repository import ThreadRepository

logger = logging.getLogger("storytool.generation")

FLUSH_INTERVAL_S = 1.0
"""How often the streaming story is saved: a crash loses at most this much text, and the database
sees one write a second per stream instead of one per token."""

UPSTREAM_CANCEL_TIMEOUT_S = 5.0
"""Stopping the upstream run is best effort; a slow upstream must not hold a finished task."""

SAVE_RETRY_WINDOW_S = 300.0
"""How long the end of a story waits for an absent database before it is given up (and left
``in_progress`` for start-up recovery). Long enough to ride out a failover or a restart."""
SAVE_RETRY_FIRST_WAIT_S = 0.2
SAVE_RETRY_MAX_WAIT_S = 5.0

_EARLY_END_STATUS = {
    StopReason.USER_CANCEL: ConversationStatus.CANCELLED,
    StopReason.CLIENT_GONE: ConversationStatus.CANCELLED,
    StopReason.SHUTDOWN: ConversationStatus.INTERRUPTED,
}


@dataclass(frozen=True, slots=True)
class _End:
    status: ConversationStatus
    stop_reason: StopReason | None
    error: str | None
    usage: dict[str, int]


@dataclass(frozen=True, slots=True)
class Job:
    user_id: str
    thread_id: str
    conversation_id: str
    request: StoryRequest
    remote_conversation_id: str | None = None
    stored_input: str | None = None
    """The input as stored, when the model reads more than that (a continuation also reads the
    end of the story it continues); events show this one."""

    @property
    def shown_input(self) -> str:
        return self.request.user_input if self.stored_input is None else self.stored_input


@asynccontextmanager
async def _closing(stream: AsyncIterator[StreamEvent]) -> AsyncIterator[AsyncIterator[StreamEvent]]:
    """Closes a provider's stream, and with it the upstream call, however the stage ends. The
    Protocol promises an iterator; the implementations are generators, which can be closed."""
    try:
        yield stream
    finally:
        aclose = getattr(stream, "aclose", None)
        if aclose is not None:
            await aclose()


class _OutputLimit(Exception):
    """A stage wrote ``max_output_chars``; the text up to the limit was kept."""


@dataclass(slots=True)
class _Progress:
    draft: list[str] = field(default_factory=list)
    story: list[str] = field(default_factory=list)
    refining: bool = False
    usage: Counter[str] = field(default_factory=Counter)
    extras: StoryExtras | None = None
    flushed_at: float = field(default_factory=time.monotonic)
    upstream: str | None = None

    @property
    def partial_story(self) -> str:
        """What the user has seen: the refined text, or the draft when refine never began."""
        return "".join(self.story) if self.refining else "".join(self.draft)


class PassageFinder(Protocol):
    """The corpus passages nearest a prompt (the search service); none when no index is loaded."""

    async def nearest_texts(
        self, session: AsyncSession, prompt: str, *, k: int = 3
    ) -> list[str]: ...


class Pipeline:
    def __init__(
        self,
        *,
        provider: LLMProvider,
        sessionmaker: async_sessionmaker[AsyncSession],
        events: EventLog,
        settings: Settings,
        passages: PassageFinder | None = None,
        write_gate: AbstractAsyncContextManager[Any],
    ) -> None:
        """``write_gate`` is entered around the story's writes (:func:`db.engine.write_gate`)."""
        self._provider = provider
        self._sessionmaker = sessionmaker
        self._events = events
        self._settings = settings
        self._passages = passages
        self._gate = write_gate
        self._writer = StageWriter(sessionmaker, self._gate)

    async def run(self, job: Job, run: Run) -> None:
        conversation_id_var.set(job.conversation_id)  # every log line of this task names it
        progress = _Progress()
        try:
            async with asyncio.timeout(self._settings.max_generation_seconds):
                await self._stages(job, run, progress)
        except asyncio.CancelledError:
            run.ending = True
            task = asyncio.current_task()
            if task is not None:
                task.uncancel()  # handled here: the task ends normally once its text is saved
            reason = run.stop_reason or StopReason.SHUTDOWN
            await self._end_early(job, run, progress, reason, reason.value, f"stopped: {reason}")
        except TimeoutError:
            run.ending = True
            message = f"stopped after {self._settings.max_generation_seconds:g} s"
            await self._end_early(job, run, progress, StopReason.TIMEOUT, "timeout", message)
        except _OutputLimit as exc:
            run.ending = True
            await self._end_early(
                job, run, progress, StopReason.OUTPUT_LIMIT, "output_limit", str(exc)
            )
        except ProviderError as exc:
            run.ending = True
            await self._end_early(job, run, progress, exc.stop_reason, exc.code, exc.message)
        except Exception:
            run.ending = True
            logger.exception("generation %s crashed", job.conversation_id)
            await self._end_early(
                job, run, progress, StopReason.CRASH, "internal_error", "the generation failed"
            )

    async def _stages(self, job: Job, run: Run, progress: _Progress) -> None:
        request = job.request
        if self._passages is not None and not request.passages:
            # Inside the task, not before the first byte: embedding the prompt takes a moment.
            async with self._sessionmaker() as session:
                nearest = await self._passages.nearest_texts(session, request.user_input)
            request = replace(request, passages=nearest)
        if self._settings.remote_conversations:
            request = replace(request, remote_conversation_id=await self._remote_conversation(job))

        await self._stage(job, "draft", "started")
        async with _closing(self._provider.draft(request)) as stream:
            await self._consume(stream, progress, progress.draft)
        base_story = "".join(progress.draft)
        self._writer.put(job.conversation_id, base_story=base_story)
        await self._stage(job, "draft", "done")

        await self._stage(job, "refine", "started")
        progress.refining = True

        async def on_text(text: str) -> None:
            await self._events.append(job.conversation_id, Delta(text=text))
            self._maybe_flush(job, progress)

        async def on_started(response_id: str) -> None:
            run.response_id = progress.upstream = response_id
            self._writer.put(job.conversation_id, upstream=response_id)

        async with _closing(self._provider.refine(request, base_story)) as stream:
            await self._consume(
                stream, progress, progress.story, on_text=on_text, on_started=on_started
            )
        story = "".join(progress.story)
        self._writer.put(job.conversation_id, story=story)
        await self._stage(job, "refine", "done")

        await self._stage(job, "title", "started")
        await self._stage(job, "recommend", "started")
        progress.extras = await self._provider.extras(request, story)

        run.ending = True
        usage = dict(progress.usage)
        await self._conclude(
            job, ConversationStatus.COMPLETED, None, None, usage, Done(usage=usage), progress
        )

    async def _consume(
        self,
        stream: AsyncIterator[StreamEvent],
        progress: _Progress,
        parts: list[str],
        *,
        on_text: Callable[[str], Awaitable[None]] | None = None,
        on_started: Callable[[str], Awaitable[None]] | None = None,
    ) -> None:
        """Collects a stage's text into ``parts``, cut at the output limit."""
        limit = self._settings.max_output_chars
        written = 0
        async for event in stream:
            if isinstance(event, TextDelta):
                text = event.text[: limit - written]
                if text:
                    parts.append(text)
                    written += len(text)
                    if on_text is not None:
                        await on_text(text)
                if len(event.text) > len(text):
                    raise _OutputLimit(f"stopped at the output limit of {limit} characters")
            elif isinstance(event, UpstreamStarted) and on_started is not None:
                await on_started(event.response_id)
            elif isinstance(event, StreamFinished):
                progress.usage.update(event.usage)

    async def _remote_conversation(self, job: Job) -> str | None:
        if job.remote_conversation_id is not None:
            return job.remote_conversation_id
        created = await self._provider.create_conversation()
        if created is None:
            return None
        async with self._sessionmaker.begin() as session:
            conversations = ConversationRepository(session)
            if await conversations.attach_remote_conversation(
                thread_id=job.thread_id, remote_id=created
            ):
                return created
            thread = await ThreadRepository(session).get(
                user_id=job.user_id, thread_id=job.thread_id
            )
        # Another turn of this thread created one at the same moment; keep theirs.
        await self._provider.delete_conversation(created)
        return thread.remote_conversation_id if thread is not None else None

    async def _stage(self, job: Job, name: StageName, status: StageStatus) -> None:
        await self._events.append(job.conversation_id, Stage(name=name, status=status))

    def _maybe_flush(self, job: Job, progress: _Progress) -> None:
        """Saves the story so far about once per interval; behind a slow write, the next one
        carries it."""
        now = time.monotonic()
        if now - progress.flushed_at < FLUSH_INTERVAL_S:
            return
        progress.flushed_at = now
        self._writer.put(job.conversation_id, story="".join(progress.story))

    async def _end_early(
        self,
        job: Job,
        run: Run,
        progress: _Progress,
        stop_reason: StopReason,
        code: str,
        message: str,
    ) -> None:
        status = _EARLY_END_STATUS.get(stop_reason, ConversationStatus.FAILED)
        terminal: EventPayload
        if status is ConversationStatus.CANCELLED:
            terminal = Cancelled(
                user_input=job.shown_input,
                tags=job.request.tags,
                partial_story=progress.partial_story,
            )
        else:
            terminal = Error(code=code, message=message)
        error = None if status is ConversationStatus.CANCELLED else message
        await self._conclude(
            job, status, stop_reason, error, dict(progress.usage), terminal, progress
        )
        if progress.refining and run.response_id is not None:
            try:
                async with asyncio.timeout(UPSTREAM_CANCEL_TIMEOUT_S):
                    await self._provider.cancel(run.response_id)
            except Exception:
                logger.warning("could not stop upstream run %s", run.response_id, exc_info=True)

    async def _conclude(
        self,
        job: Job,
        status: ConversationStatus,
        stop_reason: StopReason | None,
        error: str | None,
        usage: dict[str, int],
        terminal: EventPayload,
        progress: _Progress,
    ) -> None:
        """Saves what was written and sets the final status if nothing else has, in one
        transaction with the title and recommendations of a completed story, then sends the
        events that match the status which holds. When the database is away, the stream ends
        with an error at once and the save is retried until the database answers again."""
        await self._writer.settle(job.conversation_id)
        end = _End(status, stop_reason, error, usage)
        try:
            lost_to = await self._save_end(job, progress, end)
        except Exception:
            logger.exception("could not save the end of generation %s", job.conversation_id)
            message = "the story could not be saved now; it will be once the database answers"
            if not isinstance(terminal, Error):
                terminal = Error(code="database_unavailable", message=message)
            await self._events.append(job.conversation_id, terminal)
            if status is ConversationStatus.COMPLETED:  # the stream said error, so must the row
                end = _End(ConversationStatus.FAILED, StopReason.CRASH, message, usage)
            await self._save_when_back(job, progress, end)
            return
        if lost_to is not None:
            terminal = self._terminal_for(job, progress, lost_to)
        if isinstance(terminal, Done) and progress.extras is not None:
            await self._events.append(job.conversation_id, Title(title=progress.extras.title))
            await self._stage(job, "title", "done")
            await self._events.append(
                job.conversation_id, Recommendations(items=progress.extras.recommendations)
            )
            await self._stage(job, "recommend", "done")
        await self._events.append(job.conversation_id, terminal)

    async def _save_end(
        self, job: Job, progress: _Progress, end: _End
    ) -> ConversationStatus | None:
        """One transaction; the status another party set first when this end lost the race."""
        values: dict[str, Any] = {"base_story": "".join(progress.draft)}
        if progress.refining:
            values["story"] = "".join(progress.story)
        async with self._gate, self._sessionmaker.begin() as session:
            conversations = ConversationRepository(session)
            won = await conversations.finish(
                conversation_id=job.conversation_id,
                status=end.status,
                stop_reason=end.stop_reason,
                error=end.error,
                usage=end.usage,
                upstream_response_id=progress.upstream,
            )
            extras = progress.extras if won and end.status is ConversationStatus.COMPLETED else None
            if extras is not None:
                values.update(title=extras.title, recommendations=extras.recommendations)
            # The text is saved whichever end holds: it is what was written.
            await conversations.save_data(conversation_id=job.conversation_id, **values)
            if extras is not None:
                await ThreadRepository(session).touch(thread_id=job.thread_id, title=extras.title)
            if not won:
                ended = await conversations.get(
                    user_id=job.user_id, conversation_id=job.conversation_id
                )
                return ended.status if ended is not None else ConversationStatus.INTERRUPTED
        return None

    async def _save_when_back(self, job: Job, progress: _Progress, end: _End) -> None:
        delay = SAVE_RETRY_FIRST_WAIT_S
        deadline = time.monotonic() + SAVE_RETRY_WINDOW_S
        while time.monotonic() < deadline:
            await asyncio.sleep(delay)
            try:
                await self._save_end(job, progress, end)
                return
            except Exception:
                delay = min(delay * 2, SAVE_RETRY_MAX_WAIT_S)
        logger.error(
            "gave up saving generation %s after %g s; start-up recovery will mark it",
            job.conversation_id,
            SAVE_RETRY_WINDOW_S,
        )

    def _terminal_for(
        self, job: Job, progress: _Progress, status: ConversationStatus
    ) -> EventPayload:
        """The terminal event for a status another party set first (a cancel beat completion)."""
        if status is ConversationStatus.CANCELLED:
            return Cancelled(
                user_input=job.shown_input,
                tags=job.request.tags,
                partial_story=progress.partial_story,
            )
        return Error(code=str(status), message="the generation ended elsewhere")
