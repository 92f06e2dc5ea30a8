"""Where a generation starts from, by its ``mode``:

``new``         the request's input and tags, in the request's thread (or a new one), with the
                thread's latest turns as context.
``regenerate``  another variant of an input: the input, tags and context of the parent's variant
                group (the group's first conversation, which every variant points to), stored as
                a sibling in the same thread. Regenerating a continuation continues the same
                story again.
``continue``    the parent's story goes on from where it ends: the model reads the end of that
                story (and the turns up to it as context); the new conversation stores only the
                new text, with the writer's direction as its input (empty when none was given:
                the standing instruction the model then reads is never stored), and points to
                its parent. A parent still being written, or one with no text at all, is a 409.

Another user's parent answers 404, exactly like a missing one.
"""

from __future__ import annotations

from dataclasses import dataclass

from sqlalchemy.ext.asyncio import AsyncSession

from storytool.errors import Conflict, InvalidInput, NotFound
from storytool.generation.repository import ConversationRepository
from storytool.generation.schemas import GenerateRequest
from storytool.generation.story import StoryRequest, Turn
from storytool.models import Conversation, ConversationStatus, GenerationMode, group_first_id
from storytool.threads.service import conversation_of, thread_of

CONTINUE_TAIL_CHARS = 2000
"""How much of the parent story's end the model reads to continue it: enough for the scene, its
people and its voice, while the prompt stays small. Earlier turns come as context anyway."""

CONTINUE_INPUT = "앞의 이야기에 이어서 쓰시오."
"""What the model is asked when the writer gave no direction. Never stored or shown: the
continuation's stored input is then empty."""

STORY_SO_FAR = "앞 이야기의 끝:"


def continuation_prompt(direction: str, story: str) -> str:
    """What the model reads to continue ``story``: the writer's direction (or the standing one),
    then the story's end."""
    return f"{direction or CONTINUE_INPUT}\n\n{STORY_SO_FAR}\n{story[-CONTINUE_TAIL_CHARS:]}"


def continued_direction(prompt: str) -> str | None:
    """The writer's direction in a :func:`continuation_prompt` ("" when none was given), or None
    when ``prompt`` is not one: for a writer that composes rather than reads the prompt."""
    direction, marker, _story_end = prompt.partition(f"\n\n{STORY_SO_FAR}\n")
    if not marker:
        return None
    return "" if direction == CONTINUE_INPUT else direction


@dataclass(frozen=True, slots=True)
class Plan:
    """What one generation stores and what it asks the model."""

    thread_id: str | None
    mode: GenerationMode
    parent_conversation_id: str | None
    user_input: str
    tags: list[str]
    story_request: StoryRequest
    remote_conversation_id: str | None = None


def _check_length(request: GenerateRequest, max_input_chars: int) -> None:
    if request.user_input is not None and len(request.user_input) > max_input_chars:
        raise InvalidInput(
            f"user_input is longer than {max_input_chars} characters", field="user_input"
        )


def plan_new_thread(request: GenerateRequest, *, max_input_chars: int) -> Plan | None:
    """The plan of a story that opens a new thread, which has nothing to read first; None for
    every other request (:func:`plan_generation` plans those in the start's transaction)."""
    if request.mode is not GenerationMode.NEW or request.thread_id is not None:
        return None
    _check_length(request, max_input_chars)
    return _new_plan(request, history=[], remote_id=None)


def _new_plan(request: GenerateRequest, *, history: list[Turn], remote_id: str | None) -> Plan:
    user_input, tags = request.user_input, request.tags
    assert user_input is not None  # the schema requires it for this mode
    return Plan(
        thread_id=request.thread_id,
        mode=GenerationMode.NEW,
        parent_conversation_id=None,
        user_input=user_input,
        tags=tags,
        story_request=_story_request(request, user_input, tags, history),
        remote_conversation_id=remote_id,
    )


def _story_request(
    request: GenerateRequest, user_input: str, tags: list[str], history: list[Turn]
) -> StoryRequest:
    return StoryRequest(
        user_input=user_input,
        tags=tags,
        length=request.options.length,
        temperature=request.options.temperature,
        history=history,
    )


async def plan_generation(
    session: AsyncSession,
    *,
    user_id: str,
    request: GenerateRequest,
    history_turns: int,
    max_input_chars: int,
) -> Plan:
    """Reads what the mode starts from, in the caller's transaction. Raises 404 (the thread or
    parent is not the user's), 409 (nothing to continue yet) or 422 before anything is written."""
    _check_length(request, max_input_chars)
    planner = _Planner(session, user_id=user_id, request=request, history_turns=history_turns)
    if request.mode is GenerationMode.NEW:
        return await planner.new()
    assert request.parent_conversation_id is not None  # the schema requires it for this mode
    parent = await conversation_of(
        session,
        user_id=user_id,
        conversation_id=request.parent_conversation_id,
        field="parent_conversation_id",
    )
    if request.thread_id is not None and request.thread_id != parent.thread_id:
        raise InvalidInput("the parent conversation is in another thread", field="thread_id")
    if request.mode is GenerationMode.REGENERATE:
        return await planner.regenerate(parent)
    return await planner.continuation(
        parent,
        user_input=request.user_input or "",
        tags=request.tags,
        mode=GenerationMode.CONTINUE,
        parent_conversation_id=parent.id,
    )


class _Planner:
    def __init__(
        self,
        session: AsyncSession,
        *,
        user_id: str,
        request: GenerateRequest,
        history_turns: int,
    ) -> None:
        self.conversations = ConversationRepository(session)
        self._session = session
        self._user_id = user_id
        self._request = request
        self._history_turns = history_turns

    def _story_request(self, user_input: str, tags: list[str], history: list[Turn]) -> StoryRequest:
        return _story_request(self._request, user_input, tags, history)

    async def _remote_id(self, thread_id: str) -> str | None:
        thread = await thread_of(self._session, user_id=self._user_id, thread_id=thread_id)
        return None if thread is None else thread.remote_conversation_id

    async def new(self) -> Plan:
        history: list[Turn] = []
        remote_id = None
        if self._request.thread_id is not None:
            thread = await thread_of(
                self._session, user_id=self._user_id, thread_id=self._request.thread_id
            )
            if thread is None:
                raise NotFound("no such thread", field="thread_id")
            history = await self.conversations.history(
                thread_id=thread.id, limit=self._history_turns
            )
            remote_id = thread.remote_conversation_id
        return _new_plan(self._request, history=history, remote_id=remote_id)

    async def regenerate(self, parent: Conversation) -> Plan:
        first = await self._group_first(parent)
        data = await self.conversations.get_data(conversation_id=first.id)
        tags = list(data.tags)
        if first.mode is GenerationMode.CONTINUE and first.parent_conversation_id is not None:
            continued = await self._own(first.parent_conversation_id)
            if continued is not None:
                return await self.continuation(
                    continued,
                    user_input=data.user_input,
                    tags=tags,
                    mode=GenerationMode.REGENERATE,
                    parent_conversation_id=first.id,
                )
        history = await self.conversations.history(
            thread_id=first.thread_id, limit=self._history_turns, before=first
        )
        return Plan(
            thread_id=first.thread_id,
            mode=GenerationMode.REGENERATE,
            parent_conversation_id=first.id,
            user_input=data.user_input,
            tags=tags,
            story_request=self._story_request(data.user_input, tags, history),
            remote_conversation_id=await self._remote_id(first.thread_id),
        )

    async def continuation(
        self,
        continued: Conversation,
        *,
        user_input: str,
        tags: list[str],
        mode: GenerationMode,
        parent_conversation_id: str,
    ) -> Plan:
        """Text that follows ``continued``'s story; the model is shown that story's end."""
        if continued.status is ConversationStatus.IN_PROGRESS:
            raise Conflict(
                "that story is still being written; continue it once it ends",
                field="parent_conversation_id",
            )
        data = await self.conversations.get_data(conversation_id=continued.id)
        story = data.text
        if not story:
            raise Conflict(
                "that conversation has no story to continue", field="parent_conversation_id"
            )
        tags = tags or list(data.tags)
        history = await self.conversations.history(
            thread_id=continued.thread_id, limit=self._history_turns - 1, before=continued
        )
        history.append(Turn(user_input=data.user_input, tags=list(data.tags), story=story))
        prompt = continuation_prompt(user_input, story)
        return Plan(
            thread_id=continued.thread_id,
            mode=mode,
            parent_conversation_id=parent_conversation_id,
            user_input=user_input,
            tags=tags,
            story_request=self._story_request(prompt, tags, history),
            remote_conversation_id=await self._remote_id(continued.thread_id),
        )

    async def _group_first(self, conversation: Conversation) -> Conversation:
        """The first conversation of ``conversation``'s variant group: every variant points to
        it, so a regenerate of a variant is one more sibling, not a chain."""
        first_id = group_first_id(
            conversation_id=conversation.id,
            mode=conversation.mode,
            parent_id=conversation.parent_conversation_id,
        )
        if first_id == conversation.id:
            return conversation
        first = await self._own(first_id)
        return conversation if first is None else first

    async def _own(self, conversation_id: str) -> Conversation | None:
        try:
            return await conversation_of(
                self._session, user_id=self._user_id, conversation_id=conversation_id
            )
        except NotFound:
            return None
