"""StoryService: starts generations, serves their event streams, and cancels them.

Built once in the lifespan and stored on the app state as ``stories``. Its database work commits
inside the service rather than at the request's edge: the conversation must exist before the first
byte of a stream that outlives its request, and a cancel must be durable before the task is
stopped.

With ``redis_url`` set, it is one of several replicas: events go to Redis Streams (any replica
serves a resume), each conversation records the replica that runs it (``owner_instance``), and a
cancel that lands elsewhere reaches the owner over Redis (:mod:`storytool.generation.replicas`).
Every replica periodically ends the stories of replicas whose lease has expired as
``interrupted``. Without Redis, one process does everything, and recovers at start-up only.
"""

from __future__ import annotations

import asyncio
import json
import logging
import socket
import uuid
from collections import Counter
from collections.abc import AsyncGenerator, Callable
from dataclasses import dataclass
from functools import partial
from typing import Any

import anyio
from redis.asyncio import Redis
from redis.exceptions import RedisError
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from storytool.config import Settings
from storytool.db.base import new_id
from storytool.db.engine import write_gate
from storytool.errors import Conflict, NotFound, TooManyRequests
from storytool.generation.events import EventLog, LoggedEvent, MemoryEventLog, RedisEventLog
from storytool.generation.metered import MeteredEventLog
from storytool.generation.modes import Plan, plan_generation, plan_new_thread
from storytool.generation.pipeline import Adopted, Job, PassageFinder, Pipeline
from storytool.generation.replicas import Replicas
from storytool.generation.repository import ConversationRepository, Leftover, new_conversation
from storytool.generation.runs import RETRY_AFTER_SECONDS, Run, RunRegistry
from storytool.generation.schemas import CancelResponse, Error, GenerateRequest, Meta
from storytool.generation.starts import StartWriter
from storytool.generation.story import StoryRequest, StoryWriter
from storytool.llm.base import ModelClient
from storytool.metrics import Metrics
from storytool.models import Conversation, ConversationStatus, StopReason, Thread
from storytool.threads.service import conversation_of, open_thread

logger = logging.getLogger("storytool.generation")

REDIS_SOCKET_TIMEOUT_S = 15.0
"""Past the event log's blocking reads (5 s): the client's own default (5 s) cut those that
waited their whole block, and a reader waiting on a quiet story failed."""

INTERRUPTED = Error(
    code="interrupted",
    message=(
        "the replica running this story stopped and its run could not be picked up; the text "
        "written so far is saved and can be continued (mode: continue)"
    ),
)


async def story_text_of(session: AsyncSession, *, conversation: Conversation) -> str | None:
    """The story of a conversation (:func:`storytool.models.story_text`), for other domains."""
    data = await ConversationRepository(session).get_data(conversation_id=conversation.id)
    return data.text


HISTORY_TURNS = 6
"""Earlier turns sent as context: enough for a story to continue its thread, few enough that the
refine prompt stays well inside the model's window and its price stays flat as a thread grows."""


@dataclass(frozen=True, slots=True)
class Started:
    thread_id: str
    conversation_id: str


@dataclass(frozen=True, slots=True)
class Replay:
    """A resumed stream: its events, and ``release``, which gives its place under the user's
    cap of open resume streams back. The caller releases once the response has ended, however
    it ended: a generator that never started (a client gone before the first byte) runs no
    ``finally`` of its own."""

    events: AsyncGenerator[list[LoggedEvent], None]
    release: Callable[[], None]


class StoryService:
    def __init__(
        self,
        *,
        stories: StoryWriter,
        sessionmaker: async_sessionmaker[AsyncSession],
        settings: Settings,
        events: EventLog,
        runs: RunRegistry,
        instance_id: str,
        redis: Redis | None = None,
        passages: PassageFinder | None = None,
        remote: ModelClient | None = None,
    ) -> None:
        self._stories = stories
        self._sessionmaker = sessionmaker
        self._settings = settings
        self._events = events
        self._runs = runs
        self.instance_id = instance_id
        self._redis = redis
        self._replicas = (
            None
            if redis is None
            else Replicas(
                redis,
                prefix=settings.redis_prefix,
                instance_id=instance_id,
                lease_s=settings.instance_lease_s,
                heartbeat_s=settings.instance_heartbeat_s,
                ack_timeout_s=settings.cancel_ack_timeout_s,
                on_cancel=self._stop_local,
                on_left=self._recover_now,
            )
        )
        self._keeper: asyncio.Task[None] | None = None
        self._adopting: set[asyncio.Task[None]] = set()
        self.shutdown = anyio.Event()
        """Set by the event streams when the server begins to stop (SIGTERM): the stories in
        flight end at once, so each stream can still send its terminal event before it closes."""
        self._drainer: asyncio.Task[None] | None = None
        self.shutdown_timeout_s = settings.shutdown_timeout_s
        self._followers: Counter[str] = Counter()
        self._resumes: Counter[str] = Counter()
        """Open resume streams per user, in this process."""
        self._write_gate = write_gate(sessionmaker, timeout_s=settings.db_busy_timeout_s)
        self._pipeline = Pipeline(
            stories=stories,
            sessionmaker=sessionmaker,
            events=events,
            settings=settings,
            passages=passages,
            remote=remote,
            write_gate=self._write_gate,
        )
        self._starts = StartWriter(sessionmaker, self._write_gate)

    async def open(self) -> None:
        """Joins the replicas (lease, cancel inbox) before the first request, and ends the
        stories that replicas now gone left in progress."""
        self._drainer = asyncio.create_task(self._drain_on_shutdown(), name="stories-drain")
        if self._replicas is None:
            logger.info(
                "no redis_url: this one process runs, cancels and replays every generation "
                "(instance %s)",
                self.instance_id,
            )
        else:
            await self._replicas.start()
            logger.info(
                "replica %s: cancels and event streams shared through Redis", self.instance_id
            )
        try:
            await self._recover(starting=True)
            recovered = True
        except Exception:  # the database away at start-up must not keep the app from serving
            logger.warning(
                "start-up recovery failed; trying again in the background", exc_info=True
            )
            recovered = False
        if self._replicas is not None or not recovered:
            self._keeper = asyncio.create_task(
                self._keep(until_done=self._replicas is None), name="stories-recovery"
            )

    async def start(self, *, user_id: str, request: GenerateRequest) -> Started:
        """Validates, stores the thread and conversation in one transaction, and starts the task.
        Nothing is written when this raises. The mode's rules are in
        :mod:`storytool.generation.modes`. A story that opens a new thread reads nothing first,
        and its transaction is shared with the other new threads' starts that arrive meanwhile
        (:mod:`storytool.generation.starts`)."""
        run = self._runs.admit(user_id=user_id)
        try:
            plan = plan_new_thread(request, max_input_chars=self._settings.max_input_chars)
            if plan is None:
                plan, conversation = await self._start_in_thread(user_id=user_id, request=request)
            else:  # nothing to read first: written with the other new threads' starts
                thread = Thread(id=new_id(), user_id=user_id)
                conversation = self._new_conversation(thread.id, plan, request)
                await self._starts.write(thread, conversation, conversation.data)
            job = Job(
                user_id=user_id,
                thread_id=conversation.thread_id,
                conversation_id=conversation.id,
                request=plan.story_request,
                remote_conversation_id=plan.remote_conversation_id,
                stored_input=plan.user_input,
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

    async def _start_in_thread(
        self, *, user_id: str, request: GenerateRequest
    ) -> tuple[Plan, Conversation]:
        """A start that reads what its mode starts from, in its own transaction."""
        async with self._write_gate, self._sessionmaker.begin() as session:
            plan = await plan_generation(
                session,
                user_id=user_id,
                request=request,
                history_turns=HISTORY_TURNS,
                max_input_chars=self._settings.max_input_chars,
            )
            # 404 if the thread was deleted a moment ago.
            thread = await open_thread(session, user_id=user_id, thread_id=plan.thread_id)
            conversation = await ConversationRepository(session).add(
                self._new_conversation(thread.id, plan, request)
            )
        return plan, conversation

    def _new_conversation(
        self, thread_id: str, plan: Plan, request: GenerateRequest
    ) -> Conversation:
        return new_conversation(
            thread_id=thread_id,
            user_input=plan.user_input,
            tags=plan.tags,
            owner_instance=self.instance_id,
            models=dict(self._stories.models),
            mode=plan.mode,
            parent_conversation_id=plan.parent_conversation_id,
            options=request.options.model_dump(),
        )

    async def resume(
        self, *, user_id: str, conversation_id: str, last_event_id: int = 0
    ) -> Replay | None:
        """The events after ``last_event_id``, then live ones; None when ``last_event_id`` is at
        or past the terminal event (what a browser's EventSource sends after ``done``): nothing
        will follow. 404 for another user's conversation, and for one whose events are no longer
        kept (its story is in the history); 429 when the user holds
        ``max_resume_streams_per_user`` resume streams open here already."""
        async with self._sessionmaker() as session:
            await conversation_of(session, user_id=user_id, conversation_id=conversation_id)
        last = await self._events.last(conversation_id)
        if last is None:
            raise NotFound(
                "this conversation's events are no longer kept; its story is in the history",
                field="conversation_id",
            )
        if last.terminal and last_event_id >= last.id:
            return None
        limit = self._settings.max_resume_streams_per_user
        if self._resumes[user_id] >= limit:
            raise TooManyRequests(
                f"at most {limit} resumed streams may be open at once per user",
                headers={"Retry-After": str(RETRY_AFTER_SECONDS)},
            )
        self._resumes[user_id] += 1
        return Replay(
            self.stream(conversation_id, after=last_event_id),
            release=partial(self._resume_ended, user_id),
        )

    def _resume_ended(self, user_id: str) -> None:
        self._resumes[user_id] -= 1
        if self._resumes[user_id] <= 0:
            del self._resumes[user_id]

    async def stream(
        self, conversation_id: str, *, after: int = 0
    ) -> AsyncGenerator[list[LoggedEvent], None]:
        """Follows the log, in its batches (:meth:`EventLog.follow`). With
        ``cancel_on_disconnect``, the last reader leaving before the terminal event stops the
        generation (stop_reason client_gone)."""
        self._followers[conversation_id] += 1
        ended = False
        try:
            async for batch in self._events.follow(conversation_id, after=after):
                ended = batch[-1].terminal
                yield batch
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
            found = await conversation_of(session, user_id=user_id, conversation_id=conversation_id)
            owner, before = found.owner_instance, found.status
            await ConversationRepository(session).finish(
                conversation_id=conversation_id,
                status=ConversationStatus.CANCELLED,
                stop_reason=StopReason.USER_CANCEL,
            )
        run = self._runs.get(conversation_id)
        if run is not None:
            run.stop(StopReason.USER_CANCEL)
            await self._wait(run)
        elif before in (ConversationStatus.IN_PROGRESS, ConversationStatus.CANCELLED):
            await self._stop_remote(conversation_id, owner)
        async with self._sessionmaker() as session:
            # 404 if the thread was deleted meanwhile.
            conversation = await conversation_of(
                session, user_id=user_id, conversation_id=conversation_id
            )
            data = await ConversationRepository(session).get_data(conversation_id=conversation_id)
        if conversation.status is not ConversationStatus.CANCELLED:
            raise Conflict(
                f"the generation already ended ({conversation.status})", field="conversation_id"
            )
        return CancelResponse(
            conversation_id=conversation_id,
            status=conversation.status,
            user_input=data.user_input,
            tags=list(data.tags),
            partial_story=data.story or "",
            partial_draft=data.base_story or "",
        )

    async def cancel_thread(self, *, user_id: str, thread_id: str) -> None:
        """Cancels every generation running in the thread (before the thread is deleted),
        on whichever replica runs it."""
        async with self._sessionmaker() as session:
            running = await ConversationRepository(session).running_in_thread(
                user_id=user_id, thread_id=thread_id
            )
        for conversation_id in running:
            try:
                await self.cancel(user_id=user_id, conversation_id=conversation_id)
            except (Conflict, NotFound):
                continue  # it ended on its own meanwhile

    async def aclose(self) -> None:
        """At shutdown: running generations end ``interrupted``, their text saved, within the
        shutdown timeout; then this replica leaves (its lease given up)."""
        for task in (self._keeper, self._drainer):
            if task is not None:
                task.cancel()
        await self._stop_all()
        if self._replicas is not None:
            await self._replicas.aclose()
        await self._events.aclose()
        if self._redis is not None:
            await self._redis.aclose()

    async def _drain_on_shutdown(self) -> None:
        await self.shutdown.wait()
        await self._stop_all()

    async def _stop_all(self) -> None:
        """Stops every running story. With live peers, a story whose refine can be resumed is
        handed to them (saved where it stands, the lease given up, the peers told): it goes on
        there, and this replica need not wait for it. The others end ``interrupted``, their text
        saved, within the shutdown timeout."""
        runs = self._runs.running()
        hand_off = bool(runs) and self._replicas is not None and await self._peers_alive()
        for run in runs:
            run.hand_off = hand_off
            run.stop(StopReason.SHUTDOWN)
        tasks = [run.task for run in runs if run.task is not None]
        if tasks:
            timeout = self._settings.shutdown_timeout_s
            _done, pending = await asyncio.wait(tasks, timeout=timeout)
            for task in pending:
                # What held this replica's exit: where each story's task still waits.
                logger.warning(
                    "%s did not stop within the %g s shutdown timeout; it waits at %s",
                    task.get_name(),
                    timeout,
                    " -> ".join(_frames(task)),
                )
        if hand_off and self._replicas is not None:
            await self._replicas.leave()

    async def _peers_alive(self) -> bool:
        assert self._replicas is not None
        try:
            return await self._replicas.peers_alive()
        except (RedisError, OSError):
            logger.warning("could not look for live replicas; stopping stories here")
            return False

    def _recover_now(self) -> None:
        """A replica left and handed its stories over: adopt them now, not at the next beat."""
        task = asyncio.create_task(self._recover(), name="stories-adopt")
        self._adopting.add(task)
        task.add_done_callback(self._adopting.discard)

    def _stop_local(self, conversation_id: str) -> None:
        """A cancel another replica received for a story this one runs."""
        run = self._runs.get(conversation_id)
        if run is not None:
            run.stop(StopReason.USER_CANCEL)

    async def _stop_remote(self, conversation_id: str, owner: str | None) -> None:
        """Has the owning replica stop the task, and waits (bounded) for its terminal event:
        the answer then reports the text the owner saved."""
        if self._replicas is None or owner is None or owner == self.instance_id:
            return
        if await self._replicas.dead([owner]):
            return  # nobody runs it any more; recovery ends it
        ended = asyncio.ensure_future(self._terminal(conversation_id))
        try:
            async with asyncio.timeout(self._settings.cancel_wait_s):
                await self._replicas.stop_remote(conversation_id, owner, ended)
        except TimeoutError:
            logger.warning(
                "replica %s did not stop %s within %g s; answering from what is stored",
                owner,
                conversation_id,
                self._settings.cancel_wait_s,
            )
        finally:
            ended.cancel()

    async def _terminal(self, conversation_id: str) -> None:
        """Returns once the conversation's log holds its terminal event (or is gone)."""
        last = await self._events.last(conversation_id)
        if last is None or last.terminal:
            return
        async for batch in self._events.follow(conversation_id, after=last.id):
            if batch[-1].terminal:
                return

    async def _keep(self, *, until_done: bool) -> None:
        """Ends the stories of replicas that lost their lease, every heartbeat; alone (no
        Redis), only until the start-up recovery the database was away for has run."""
        while True:
            await asyncio.sleep(self._settings.instance_heartbeat_s)
            try:
                await self._recover()
            except Exception:  # Redis or the database away: try again at the next beat
                logger.warning("recovery of stopped replicas' stories failed", exc_info=True)
                continue
            if until_done:
                return

    async def _recover(self, *, starting: bool = False) -> None:
        """Takes over the stories of replicas that are gone: each claimed by one conditional
        update (of two replicas claiming one, one wins), then carried on from where its saved
        text ends when its refine is a background run, else ended ``interrupted`` with its text.
        At start-up that includes this replica's own id: a restarted replica that keeps its id
        (a stable hostname) runs nothing yet, so what its id still holds was left by its
        previous life."""
        async with self._sessionmaker() as session:
            conversations = ConversationRepository(session)
            owners = await conversations.running_owners()
            if self._replicas is None:
                gone = set(owners)
            else:
                gone = await self._replicas.dead(owners)
            if not starting:
                gone.discard(self.instance_id)
            elif self.instance_id in owners:
                gone.add(self.instance_id)
            leftovers = await conversations.left_by(gone)
        adopted, ended = 0, 0
        for leftover in leftovers:
            async with self._write_gate, self._sessionmaker.begin() as session:
                conversations = ConversationRepository(session)
                claimed = await conversations.claim(
                    conversation_id=leftover.conversation_id,
                    owner=leftover.owner,
                    by=self.instance_id,
                )
                if claimed and not leftover.resumable:
                    ended += await conversations.finish(
                        conversation_id=leftover.conversation_id,
                        status=ConversationStatus.INTERRUPTED,
                        stop_reason=StopReason.CRASH,
                        error="the replica running this story stopped",
                    )
            if not claimed:
                continue  # another replica took it
            if leftover.resumable:
                await self._adopt(leftover)
                adopted += 1
            else:
                await self._events.end(leftover.conversation_id, INTERRUPTED)
        if adopted or ended:
            logger.warning(
                "stories of stopped replicas %s: %d carried on here, %d ended interrupted",
                ", ".join(sorted(gone)),
                adopted,
                ended,
            )

    async def _adopt(self, leftover: Leftover) -> None:
        """Carries on a claimed story in its own event log: what its readers were sent is not
        sent again, and new events take the next ids."""
        assert leftover.base_story is not None
        assert leftover.upstream_response_id is not None
        assert leftover.upstream_sequence is not None
        events = await self._events.take_over(leftover.conversation_id)
        if not events:  # the log is gone (one process, restarted): a new one
            await self._events.append(
                leftover.conversation_id,
                Meta(thread_id=leftover.thread_id, conversation_id=leftover.conversation_id),
            )
        saved = leftover.story or ""
        relayed = "".join(
            payload["text"]
            for payload in (json.loads(event.data) for event in events if event.event == "delta")
            if payload.get("stage") == "refine"
        )
        skip = len(relayed) - len(saved) if relayed.startswith(saved) else 0
        options = leftover.options
        job = Job(
            user_id=leftover.user_id,
            thread_id=leftover.thread_id,
            conversation_id=leftover.conversation_id,
            request=StoryRequest(
                user_input=leftover.user_input,
                tags=leftover.tags,
                length=options.get("length", "medium"),
                temperature=options.get("temperature"),
            ),
        )
        adopted = Adopted(
            base_story=leftover.base_story,
            story=saved,
            response_id=leftover.upstream_response_id,
            sequence=leftover.upstream_sequence,
            skip=skip,
        )
        run = self._runs.adopt(user_id=leftover.user_id)
        task = asyncio.create_task(
            self._pipeline.run(job, run, adopted=adopted),
            name=f"generation-{leftover.conversation_id}",
        )
        self._runs.bind(
            run, conversation_id=leftover.conversation_id, thread_id=leftover.thread_id, task=task
        )
        logger.info(
            "generation %s adopted from %s after upstream event %d (%d characters kept)",
            leftover.conversation_id,
            leftover.owner,
            leftover.upstream_sequence,
            len(saved) + skip,
        )

    async def _wait(self, run: Run) -> None:
        if run.task is not None:
            await asyncio.wait([run.task], timeout=self._settings.cancel_wait_s)


def _frames(task: asyncio.Task[None]) -> list[str]:
    """Where ``task`` waits, outermost first: ``function (file:line)`` of each coroutine or
    generator it awaits (``Task.get_stack`` gives only the outermost frame of a suspended one)."""
    frames: list[str] = []
    awaited: Any = task.get_coro()
    while awaited is not None:
        frame = getattr(awaited, "cr_frame", None) or getattr(awaited, "ag_frame", None)
        if frame is None:  # a future, or a generator's step: its name is all there is
            frames.append(type(awaited).__name__)
            break
        code = frame.f_code
        frames.append(f"{code.co_name} ({code.co_filename.rsplit('/', 1)[-1]}:{frame.f_lineno})")
        awaited = getattr(awaited, "cr_await", None) or getattr(awaited, "ag_await", None)
    return frames


def build_story_service(
    settings: Settings,
    stories: StoryWriter,
    sessionmaker: async_sessionmaker[AsyncSession],
    passages: PassageFinder | None = None,
    metrics: Metrics | None = None,
    remote: ModelClient | None = None,
) -> StoryService:
    """Events in memory for one process, or in Redis Streams shared by replicas; stories drawn
    from the nearest corpus passages when ``passages`` (the search service) is given; with
    ``metrics``, every generation measured as its events are written."""
    instance_id = settings.instance_id or f"{socket.gethostname()[:40]}-{uuid.uuid4().hex[:12]}"
    redis = None
    events: EventLog
    if settings.redis_url:
        redis = Redis.from_url(
            settings.redis_url, decode_responses=True, socket_timeout=REDIS_SOCKET_TIMEOUT_S
        )
        events = RedisEventLog(
            redis,
            prefix=settings.redis_prefix,
            retention_s=settings.event_retention_s,
            running_ttl_s=settings.max_generation_seconds + settings.event_retention_s,
            maxlen=settings.event_stream_maxlen,
        )
    else:
        events = MemoryEventLog(retention_s=settings.event_retention_s)
    if metrics is not None:
        events = MeteredEventLog(events, metrics)
    return StoryService(
        stories=stories,
        sessionmaker=sessionmaker,
        settings=settings,
        events=events,
        runs=RunRegistry(
            max_total=settings.max_running_total, max_per_user=settings.max_running_per_user
        ),
        instance_id=instance_id,
        redis=redis,
        passages=passages,
        remote=remote,
    )
