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
from typing import Any, Literal, Protocol

from sqlalchemy.exc import DataError
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from storytool.config import Settings
from storytool.generation.ends import EndWriter, StoryEnd
from storytool.generation.events import EventLog
from storytool.generation.repository import ConversationRepository, finish_values
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
from storytool.generation.story import StoryExtras, StoryRequest, StoryWriter
from storytool.generation.writer import StageWriter
from storytool.llm.base import (
    ModelClient,
    ProviderError,
    StreamEvent,
    StreamFinished,
    TextDelta,
    UpstreamStarted,
)
from storytool.logging import conversation_id_var
from storytool.models import ConversationData, ConversationStatus, StopReason
from storytool.threads.service import thread_of

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

TITLE_CHARS: int = ConversationData.__table__.c.title.type.length  # type: ignore[attr-defined]
"""A model's title is cut to its column: a long one must not fail the save of a written story."""
FALLBACK_TITLE_CHARS = 40
"""A title made from the input when the model gives none: its first line, this long at most."""
RECOMMENDATION_CHARS = 300
MAX_RECOMMENDATIONS = 5

UPSTREAM_CANCELS = frozenset(
    {
        StopReason.USER_CANCEL,
        StopReason.CLIENT_GONE,
        StopReason.TIMEOUT,
        StopReason.OUTPUT_LIMIT,
        StopReason.SHUTDOWN,
    }
)
"""Ends that stop a run we started; after an upstream failure there is nothing of ours to stop."""

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


def _failed(end: _End, message: str) -> _End:
    return _End(ConversationStatus.FAILED, StopReason.CRASH, message, end.usage)


@dataclass(frozen=True, slots=True)
class Adopted:
    """Where a story taken over from a replica that is gone stands."""

    base_story: str
    story: str
    """The refined text as saved: it ends at upstream event ``sequence``."""
    response_id: str
    sequence: int
    """The run is resumed after this event."""
    skip: int = 0
    """Characters after the saved text that its readers were already sent before the owner
    died: kept, not sent again."""


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
    extras_fallback: bool = False
    flushed_at: float = field(default_factory=time.monotonic)
    upstream: str | None = None
    background: bool = False
    """The refine runs as a background run the server confirmed: ours to cancel by id."""
    cut: bool = False
    """The refine stopped at the output-token limit."""
    sequence: int | None = None
    """The upstream event the refined text so far ends at (background runs)."""

    def cancelled(self, job: Job) -> Cancelled:
        return Cancelled(
            user_input=job.shown_input,
            tags=job.request.tags,
            partial_story="".join(self.story),
            partial_draft="".join(self.draft),
        )


def _clamped(extras: StoryExtras) -> StoryExtras:
    """The model's strings cut to what their columns and screens hold."""
    items = [item.strip()[:RECOMMENDATION_CHARS] for item in extras.recommendations]
    return StoryExtras(
        title=extras.title.strip()[:TITLE_CHARS],
        recommendations=[item for item in items if item][:MAX_RECOMMENDATIONS],
    )


def fallback_title(user_input: str) -> str:
    """The input's first line, short: what the writer asked for names the story well enough."""
    lines = [line.strip() for line in user_input.splitlines() if line.strip()]
    first = lines[0] if lines else "이야기"
    if len(first) > FALLBACK_TITLE_CHARS:
        first = first[: FALLBACK_TITLE_CHARS - 1].rstrip() + "…"
    return first


class PassageFinder(Protocol):
    """The corpus passages nearest a prompt (the search service); none when no index is loaded."""

    async def nearest_texts(
        self, sessionmaker: async_sessionmaker[AsyncSession], prompt: str, *, k: int = 3
    ) -> list[str]: ...


class Pipeline:
    def __init__(
        self,
        *,
        stories: StoryWriter,
        sessionmaker: async_sessionmaker[AsyncSession],
        events: EventLog,
        settings: Settings,
        passages: PassageFinder | None = None,
        remote: ModelClient | None = None,
        write_gate: AbstractAsyncContextManager[Any],
    ) -> None:
        """``remote`` keeps threads' context upstream (``remote_conversations``); ``write_gate``
        is entered around the story's writes (:func:`db.engine.write_gate`)."""
        self._stories = stories
        self._remote = remote
        self._sessionmaker = sessionmaker
        self._events = events
        self._settings = settings
        self._passages = passages
        self._gate = write_gate
        self._writer = StageWriter(sessionmaker, self._gate)
        self._ends = EndWriter(sessionmaker, self._gate)

    async def run(self, job: Job, run: Run, *, adopted: Adopted | None = None) -> None:
        conversation_id_var.set(job.conversation_id)  # every log line of this task names it
        progress = _Progress()
        try:
            async with asyncio.timeout(self._settings.max_generation_seconds):
                if adopted is None:
                    await self._stages(job, run, progress)
                else:
                    await self._carry_on(job, run, progress, adopted)
        except asyncio.CancelledError:
            run.ending = True
            task = asyncio.current_task()
            while task is not None and task.cancelling():
                # Handled here, every cancel of the stop (Run.stop may have sent more than
                # one): the task ends normally once its text is saved.
                task.uncancel()
            if run.hand_off and progress.sequence is not None and progress.background:
                await self._hand_off(job, progress)
                return
            reason = run.stop_reason or StopReason.SHUTDOWN
            await self._end_early(job, progress, reason, reason.value, f"stopped: {reason}")
        except TimeoutError:
            run.ending = True
            message = f"stopped after {self._settings.max_generation_seconds:g} s"
            await self._end_early(job, progress, StopReason.TIMEOUT, "timeout", message)
        except _OutputLimit as exc:
            run.ending = True
            await self._end_early(job, progress, StopReason.OUTPUT_LIMIT, "output_limit", str(exc))
        except ProviderError as exc:
            run.ending = True
            await self._end_early(job, progress, exc.stop_reason, exc.code, exc.message)
        except Exception:
            run.ending = True
            logger.exception("generation %s crashed", job.conversation_id)
            await self._end_early(
                job, progress, StopReason.CRASH, "internal_error", "the generation failed"
            )

    async def _stages(self, job: Job, run: Run, progress: _Progress) -> None:
        request = replace(job.request, seed=job.conversation_id)
        # Before anything is spent: a server that cannot refine says so now, not after a draft.
        await self._stories.prepare()
        if self._passages is not None and not request.passages:
            # Inside the task, not before the first byte: embedding the prompt takes a moment.
            nearest = await self._passages.nearest_texts(self._sessionmaker, request.user_input)
            request = replace(request, passages=nearest)
        if self._settings.remote_conversations:
            request = replace(request, remote_conversation_id=await self._remote_conversation(job))

        await self._stage(job, "draft", "started")
        async with _closing(self._stories.draft(request)) as stream:
            draft_cut = await self._consume(job, stream, progress)
        base_story = "".join(progress.draft)
        self._writer.put(job.conversation_id, base_story=base_story)
        await self._stage(job, "draft", "done", cut=draft_cut)

        await self._stage(job, "refine", "started")
        progress.refining = True
        await self._refine(job, run, progress, request, self._stories.refine(request, base_story))

    async def _carry_on(self, job: Job, run: Run, progress: _Progress, adopted: Adopted) -> None:
        """An adopted story: its background run picked up where the saved text ends, the part
        its readers already have skipped, then the same ending as any story."""
        request = replace(job.request, seed=job.conversation_id)
        progress.draft = [adopted.base_story]
        progress.story = [adopted.story] if adopted.story else []
        progress.refining = progress.background = True
        progress.upstream, progress.sequence = adopted.response_id, adopted.sequence
        resume = (adopted.response_id, adopted.sequence)
        stream = self._stories.refine(request, adopted.base_story, resume=resume)
        await self._refine(job, run, progress, request, stream, skip=adopted.skip)

    async def _refine(
        self,
        job: Job,
        run: Run,
        progress: _Progress,
        request: StoryRequest,
        stream: AsyncIterator[StreamEvent],
        *,
        skip: int = 0,
    ) -> None:
        """The refine streamed to its end, then title, recommendations and the end."""

        async def on_started(event: UpstreamStarted) -> None:
            progress.upstream = event.response_id
            progress.background = event.background
            if event.background and progress.sequence is None:
                # Resumable from its start until the first flush says how far it got.
                progress.sequence = 0
                self._writer.put(
                    job.conversation_id, story="", upstream=event.response_id, sequence=0
                )
            else:
                self._writer.put(job.conversation_id, upstream=event.response_id)

        async with _closing(stream) as events:
            progress.cut = await self._consume(
                job, events, progress, on_started=on_started, skip=skip
            )
        story = "".join(progress.story)
        self._writer.put(job.conversation_id, story=story)
        await self._stage(job, "refine", "done", cut=progress.cut)

        await self._stage(job, "title", "started")
        await self._stage(job, "recommend", "started")
        try:
            progress.extras = _clamped(await self._stories.extras(request, story))
        except ProviderError as exc:
            # Optional: the story is written. Its title comes from the input instead.
            logger.info("title and recommendations fell back (%s): %s", exc.code, exc.message)
            progress.extras = StoryExtras(title=fallback_title(job.shown_input), recommendations=[])
            progress.extras_fallback = True

        run.ending = True
        usage = dict(progress.usage)
        stop = "length" if progress.cut else None
        await self._conclude(
            job,
            ConversationStatus.COMPLETED,
            StopReason.LENGTH if progress.cut else None,
            None,
            usage,
            Done(usage=usage, stop_reason=stop),
            progress,
        )

    async def _consume(
        self,
        job: Job,
        stream: AsyncIterator[StreamEvent],
        progress: _Progress,
        *,
        on_started: Callable[[UpstreamStarted], Awaitable[None]] | None = None,
        skip: int = 0,
    ) -> bool:
        """Relays a stage's text (the draft, or the refine once ``progress.refining``) as it
        comes, cut at the output limit, saving it about once a second. The first ``skip``
        characters are kept but not sent again: an adopted story's readers have them. True when
        the model stopped at its output-token limit."""
        stage: Literal["draft", "refine"] = "refine" if progress.refining else "draft"
        parts = progress.story if progress.refining else progress.draft
        limit = self._settings.max_output_chars
        written = sum(map(len, parts))
        cut = False
        async for event in stream:
            if isinstance(event, TextDelta):
                text = event.text[: limit - written]
                if text:
                    parts.append(text)
                    written += len(text)
                    shown, skip = text[skip:], max(0, skip - len(text))
                    if progress.refining and event.sequence_number is not None:
                        progress.sequence = event.sequence_number
                    if shown:
                        await self._events.append(
                            job.conversation_id, Delta(stage=stage, text=shown)
                        )
                    self._maybe_flush(job, progress)
                if len(event.text) > len(text):
                    raise _OutputLimit(f"stopped at the output limit of {limit} characters")
            elif isinstance(event, UpstreamStarted) and on_started is not None:
                await on_started(event)
            elif isinstance(event, StreamFinished):
                progress.usage.update(event.usage)
                cut = event.cut
        return cut

    async def _hand_off(self, job: Job, progress: _Progress) -> None:
        """Leaves a running story for a live replica to adopt: its text and the upstream
        position it ends at saved together, no end, no terminal event, the run left running."""
        await self._writer.settle(job.conversation_id)
        async with self._gate, self._sessionmaker.begin() as session:
            await ConversationRepository(session).save_position(
                conversation_id=job.conversation_id,
                story="".join(progress.story),
                upstream_response_id=progress.upstream,
                upstream_sequence=progress.sequence,
            )
        logger.info("generation %s handed off at event %s", job.conversation_id, progress.sequence)

    async def _remote_conversation(self, job: Job) -> str | None:
        if job.remote_conversation_id is not None:
            return job.remote_conversation_id
        if self._remote is None:
            return None
        created = await self._remote.create_conversation()
        async with self._sessionmaker.begin() as session:
            conversations = ConversationRepository(session)
            if await conversations.attach_remote_conversation(
                thread_id=job.thread_id, remote_id=created
            ):
                return created
            thread = await thread_of(session, user_id=job.user_id, thread_id=job.thread_id)
        # Another turn of this thread created one at the same moment; keep theirs.
        await self._remote.delete_conversation(created)
        return thread.remote_conversation_id if thread is not None else None

    async def _stage(
        self, job: Job, name: StageName, status: StageStatus, *, cut: bool = False
    ) -> None:
        stage = Stage(name=name, status=status, stop_reason="length" if cut else None)
        await self._events.append(job.conversation_id, stage)

    def _maybe_flush(self, job: Job, progress: _Progress) -> None:
        """Saves the text so far (the draft, then the refined story) about once per interval;
        behind a slow write, the next one carries it."""
        now = time.monotonic()
        if now - progress.flushed_at < FLUSH_INTERVAL_S:
            return
        progress.flushed_at = now
        if progress.refining:
            self._writer.put(
                job.conversation_id,
                story="".join(progress.story),
                sequence=progress.sequence if progress.background else None,
            )
        else:
            self._writer.put(job.conversation_id, base_story="".join(progress.draft))

    async def _end_early(
        self,
        job: Job,
        progress: _Progress,
        stop_reason: StopReason,
        code: str,
        message: str,
    ) -> None:
        status = _EARLY_END_STATUS.get(stop_reason, ConversationStatus.FAILED)
        terminal: EventPayload
        if status is ConversationStatus.CANCELLED:
            terminal = progress.cancelled(job)
        else:
            terminal = Error(code=code, message=message)
        error = None if status is ConversationStatus.CANCELLED else message
        await self._conclude(
            job, status, stop_reason, error, dict(progress.usage), terminal, progress
        )
        if progress.background and progress.upstream and stop_reason in UPSTREAM_CANCELS:
            try:
                async with asyncio.timeout(UPSTREAM_CANCEL_TIMEOUT_S):
                    await self._stories.cancel(progress.upstream)
            except Exception:
                logger.warning("could not stop upstream run %s", progress.upstream, exc_info=True)

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
        except DataError:
            # Not an outage: a value that does not fit is a bug, and retrying cannot help. The
            # row still leaves in_progress, with what of it fits.
            logger.error(
                "generation %s: a value did not fit its column (data_error); saved without it",
                job.conversation_id,
            )
            failed = _failed(end, "the story could not be saved whole (data_error); this is a bug")
            await self._save_failed(job, progress, failed)
            assert failed.error is not None
            await self._events.append(
                job.conversation_id, Error(code="data_error", message=failed.error)
            )
            return
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
            title = Title(title=progress.extras.title, fallback=progress.extras_fallback)
            await self._events.append(job.conversation_id, title)
            await self._stage(job, "title", "done")
            await self._events.append(
                job.conversation_id, Recommendations(items=progress.extras.recommendations)
            )
            await self._stage(job, "recommend", "done")
        await self._events.append(job.conversation_id, terminal)

    async def _save_end(
        self, job: Job, progress: _Progress, end: _End, *, text: bool = True
    ) -> ConversationStatus | None:
        """One transaction, shared with other stories' ends (:mod:`storytool.generation.ends`);
        the status another party set first when this end lost the race. ``text=False`` saves
        the status alone."""
        values: dict[str, Any] = {"base_story": "".join(progress.draft)} if text else {}
        if text and progress.refining:
            values["story"] = "".join(progress.story)
        extras = progress.extras if end.status is ConversationStatus.COMPLETED else None
        finish = finish_values(
            end.status,
            stop_reason=end.stop_reason,
            error=end.error,
            usage=end.usage,
            upstream_response_id=progress.upstream if text else None,
        )
        return await self._ends.write(
            StoryEnd(
                conversation_id=job.conversation_id,
                thread_id=job.thread_id,
                finish=finish,
                text=values,
                title=None if extras is None else extras.title,
                recommendations=None if extras is None else extras.recommendations,
            )
        )

    async def _save_failed(self, job: Job, progress: _Progress, end: _End) -> None:
        """A ``failed`` end after a value did not fit: the text if it fits, else the status."""
        progress.extras = None
        try:
            await self._save_end(job, progress, end)
        except DataError:
            await self._save_end(job, progress, end, text=False)

    async def _save_when_back(self, job: Job, progress: _Progress, end: _End) -> None:
        delay = SAVE_RETRY_FIRST_WAIT_S
        deadline = time.monotonic() + SAVE_RETRY_WINDOW_S
        while time.monotonic() < deadline:
            await asyncio.sleep(delay)
            try:
                await self._save_end(job, progress, end)
                return
            except DataError:
                await self._save_failed(job, progress, _failed(end, "data_error"))
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
            return progress.cancelled(job)
        return Error(code=str(status), message="the generation ended elsewhere")
