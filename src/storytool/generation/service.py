"""StoryService: starts generations, serves their event streams, and cancels them.

Built once in the lifespan and stored on the app state as ``stories``. Its database work commits
inside the service rather than at the request's edge: the conversation must exist before the first
byte of a stream that outlives its request, and a cancel must be durable before the task is
stopped.
"""

from __future__ import annotations

import asyncio
from collections import Counter
from collections.abc import AsyncGenerator
from dataclasses import dataclass

from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from storytool.config import Settings
from storytool.errors import Conflict, InvalidInput, NotFound
from storytool.generation.events import EventLog, LoggedEvent, MemoryEventLog
from storytool.generation.pipeline import Job, Pipeline
from storytool.generation.repository import ConversationRepository
from storytool.generation.runs import Run, RunRegistry
from storytool.generation.schemas import CancelResponse, GenerateRequest, Meta
from storytool.llm.base import LLMProvider, StoryRequest, Turn
from storytool.models import ConversationStatus, StopReason
from storytool.threads.repository import ThreadRepository

HISTORY_TURNS = 6
"""Earlier turns sent as context: enough for a story to continue its thread, few enough that the
refine prompt stays well inside the model's window and its price stays flat as a thread grows."""

CANCEL_WAIT_S = 10.0
"""How long a cancel waits for the task to save its text before answering from what is stored."""


@dataclass(frozen=True, slots=True)
class Started:
    thread_id: str
    conversation_id: str


class StoryService:
    def __init__(
        self,
        *,
        provider: LLMProvider,
        sessionmaker: async_sessionmaker[AsyncSession],
        settings: Settings,
        events: EventLog,
        runs: RunRegistry,
    ) -> None:
        self._provider = provider
        self._sessionmaker = sessionmaker
        self._settings = settings
        self._events = events
        self._runs = runs
        self._followers: Counter[str] = Counter()
        self._pipeline = Pipeline(
            provider=provider, sessionmaker=sessionmaker, events=events, settings=settings
        )

    async def start(self, *, user_id: str, request: GenerateRequest) -> Started:
        """Validates, stores the thread and conversation in one transaction, and starts the task.
        Nothing is written when this raises."""
        if len(request.user_input) > self._settings.max_input_chars:
            raise InvalidInput(
                f"user_input is longer than {self._settings.max_input_chars} characters",
                field="user_input",
            )
        run = self._runs.admit(user_id=user_id)
        try:
            async with self._sessionmaker.begin() as session:
                history: list[Turn] = []
                remote_id = None
                if request.thread_id is not None:
                    thread = await ThreadRepository(session).get(
                        user_id=user_id, thread_id=request.thread_id
                    )
                    if thread is None:
                        raise NotFound("no such thread", field="thread_id")
                    history = await ConversationRepository(session).history(
                        thread_id=thread.id, limit=HISTORY_TURNS
                    )
                    remote_id = thread.remote_conversation_id
                conversation = await ConversationRepository(session).start(
                    user_id=user_id,
                    thread_id=request.thread_id,
                    user_input=request.user_input,
                    tags=request.tags,
                    models=dict(self._provider.models),
                )
                if conversation is None:  # the thread was deleted a moment ago
                    raise NotFound("no such thread", field="thread_id")
            job = Job(
                user_id=user_id,
                thread_id=conversation.thread_id,
                conversation_id=conversation.id,
                request=StoryRequest(
                    user_input=request.user_input,
                    tags=request.tags,
                    length=request.options.length,
                    temperature=request.options.temperature,
                    history=history,
                ),
                remote_conversation_id=remote_id,
            )
            await self._events.open(conversation.id)
            await self._events.append(
                conversation.id,
                Meta(thread_id=conversation.thread_id, conversation_id=conversation.id),
            )
            task = asyncio.create_task(
                self._pipeline.run(job, run), name=f"generation-{conversation.id}"
            )
        except BaseException:
            self._runs.release(run)
            raise
        self._runs.bind(
            run, conversation_id=conversation.id, thread_id=conversation.thread_id, task=task
        )
        return Started(thread_id=conversation.thread_id, conversation_id=conversation.id)

    async def resume(
        self, *, user_id: str, conversation_id: str, last_event_id: int = 0
    ) -> AsyncGenerator[LoggedEvent, None]:
        """The events after ``last_event_id``, then live ones. 404 for another user's conversation,
        and for one whose events are no longer kept (its story is in the history)."""
        async with self._sessionmaker() as session:
            conversation = await ConversationRepository(session).get(
                user_id=user_id, conversation_id=conversation_id
            )
        if conversation is None:
            raise NotFound("no such conversation", field="conversation_id")
        if not await self._events.knows(conversation_id):
            raise NotFound(
                "this conversation's events are no longer kept; its story is in the history",
                field="conversation_id",
            )
        return self.stream(conversation_id, after=last_event_id)

    async def stream(
        self, conversation_id: str, *, after: int = 0
    ) -> AsyncGenerator[LoggedEvent, None]:
        """Follows the log. With ``cancel_on_disconnect``, the last reader leaving before the
        terminal event stops the generation (stop_reason client_gone)."""
        self._followers[conversation_id] += 1
        ended = False
        try:
            async for event in self._events.follow(conversation_id, after=after):
                ended = event.terminal
                yield event
        finally:
            self._followers[conversation_id] -= 1
            if self._followers[conversation_id] <= 0:
                del self._followers[conversation_id]
                run = self._runs.get(conversation_id)
                if not ended and run is not None and self._settings.cancel_on_disconnect:
                    run.stop(StopReason.CLIENT_GONE)

    async def cancel(self, *, user_id: str, conversation_id: str) -> CancelResponse:
        """Cancels durably, stops the task, and answers with what was saved once it has been.
        Twice gives the same answer; a conversation that ended otherwise is a 409."""
        async with self._sessionmaker.begin() as session:
            conversations = ConversationRepository(session)
            if await conversations.get(user_id=user_id, conversation_id=conversation_id) is None:
                raise NotFound("no such conversation", field="conversation_id")
            await conversations.finish(
                conversation_id=conversation_id,
                status=ConversationStatus.CANCELLED,
                stop_reason=StopReason.USER_CANCEL,
            )
        run = self._runs.get(conversation_id)
        if run is not None:
            run.stop(StopReason.USER_CANCEL)
            await self._wait(run)
        async with self._sessionmaker() as session:
            conversations = ConversationRepository(session)
            conversation = await conversations.get(user_id=user_id, conversation_id=conversation_id)
            if conversation is None:  # the thread was deleted meanwhile
                raise NotFound("no such conversation", field="conversation_id")
            data = await conversations.get_data(conversation_id=conversation_id)
        if conversation.status is not ConversationStatus.CANCELLED:
            raise Conflict(
                f"the generation already ended ({conversation.status})", field="conversation_id"
            )
        story = data.story if data.story is not None else data.base_story
        return CancelResponse(
            conversation_id=conversation_id,
            status=conversation.status,
            user_input=data.user_input,
            tags=list(data.tags),
            partial_story=story or "",
        )

    async def cancel_thread(self, *, user_id: str, thread_id: str) -> None:
        """Cancels every generation running in the thread (before the thread is deleted)."""
        for run in self._runs.in_thread(thread_id):
            if run.user_id != user_id:
                continue
            try:
                await self.cancel(user_id=user_id, conversation_id=run.conversation_id)
            except (Conflict, NotFound):
                continue  # it ended on its own meanwhile

    async def aclose(self) -> None:
        """At shutdown: running generations end ``interrupted``, their text saved, within the
        shutdown timeout."""
        runs = self._runs.running()
        for run in runs:
            run.stop(StopReason.SHUTDOWN)
        tasks = [run.task for run in runs if run.task is not None]
        if tasks:
            await asyncio.wait(tasks, timeout=self._settings.shutdown_timeout_s)
        await self._events.aclose()

    @staticmethod
    async def _wait(run: Run) -> None:
        if run.task is not None:
            await asyncio.wait([run.task], timeout=CANCEL_WAIT_S)


def build_story_service(
    settings: Settings,
    provider: LLMProvider,
    sessionmaker: async_sessionmaker[AsyncSession],
) -> StoryService:
    """The one-process service: events in memory, runs in this process."""
    return StoryService(
        provider=provider,
        sessionmaker=sessionmaker,
        settings=settings,
        events=MemoryEventLog(retention_s=settings.event_retention_s),
        runs=RunRegistry(
            max_total=settings.max_running_total, max_per_user=settings.max_running_per_user
        ),
    )
