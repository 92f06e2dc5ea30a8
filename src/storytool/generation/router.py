"""``POST /api/generate`` (SSE), its resume stream, and ``POST /api/cancelGeneration``."""

from __future__ import annotations

from collections.abc import AsyncGenerator, Callable
from typing import Annotated, Any

from fastapi import APIRouter, Depends, Header, Response
from sse_starlette import EventSourceResponse

from storytool.api.deps import SettingsDep, StateDep, UserDep
from storytool.api.responses import errors
from storytool.api.sse import event_stream
from storytool.config import Settings
from storytool.generation.events import LoggedEvent
from storytool.generation.schemas import CancelRequest, CancelResponse, GenerateRequest
from storytool.generation.service import StoryService
from storytool.schemas import Id

router = APIRouter(prefix="/api", tags=["generation"])


async def get_story_service(state: StateDep) -> StoryService:
    return state["stories"]


StoryServiceDep = Annotated[StoryService, Depends(get_story_service)]


def _stream(
    stories: StoryService,
    settings: Settings,
    events: AsyncGenerator[list[LoggedEvent], None],
    release: Callable[[], None] | None = None,
) -> EventSourceResponse:
    """On SIGTERM the service ends its stories at once; each stream gets the shutdown timeout to
    send the terminal event before the server cuts it."""
    return event_stream(
        events,
        send_timeout_s=settings.send_timeout_s,
        shutdown=stories.shutdown,
        shutdown_grace_s=stories.shutdown_timeout_s,
        release=release,
    )


_STREAM: dict[int | str, dict[str, Any]] = {
    200: {
        "content": {"text/event-stream": {}},
        "description": "meta, stage, delta, title, recommendations, then done|cancelled|error",
    },
}


@router.post(
    "/generate",
    response_class=EventSourceResponse,
    responses={
        **_STREAM,
        **errors(
            {
                404: "thread_id or parent_conversation_id: unknown, or another user's",
                409: "continue: the parent's story is still being written, or empty",
                429: "Too many generations running for this user, or requests; see Retry-After",
                503: "The server runs as many generations as it can, or the database is "
                "away; see Retry-After",
            }
        ),
    },
)
async def generate(
    body: GenerateRequest, user_id: UserDep, stories: StoryServiceDep, settings: SettingsDep
) -> EventSourceResponse:
    """Writes a story and streams it: for a new input, another variant of an earlier one
    (``regenerate``), or more of an earlier story (``continue``). The thread (when none is given)
    and the conversation are stored before the first byte; the story is written on even if the
    client leaves."""
    started = await stories.start(user_id=user_id, request=body)
    return _stream(stories, settings, stories.stream(started.conversation_id))


@router.get(
    "/generate/{conversation_id}/events",
    response_class=EventSourceResponse,
    responses={
        **_STREAM,
        204: {"description": "Last-Event-ID is the terminal event's, or past it: nothing follows"},
        **errors(
            {
                404: "Unknown conversation, another user's, or one whose events are no longer "
                "kept (its story is in the history)",
                429: "Too many resumed streams open for this user, or requests",
            }
        ),
    },
)
async def resume_events(
    conversation_id: Id,
    user_id: UserDep,
    stories: StoryServiceDep,
    settings: SettingsDep,
    last_event_id: Annotated[int, Header(ge=0)] = 0,
) -> Response:
    """The events after ``Last-Event-ID``, then the live ones until the end."""
    replay = await stories.resume(
        user_id=user_id, conversation_id=conversation_id, last_event_id=last_event_id
    )
    if replay is None:
        # 204, not a 200 that closes at once: a browser's EventSource reconnects after a
        # stream that ends (every few seconds, for ever, as it did after ``done``), while a
        # 204 makes it stop for good. The media type lets SSE client libraries that check
        # it (httpx-sse) read the empty answer as an empty stream.
        return Response(status_code=204, media_type="text/event-stream")
    return _stream(stories, settings, replay.events, replay.release)


@router.post(
    "/cancelGeneration",
    responses=errors(
        {
            404: "Unknown conversation, or another user's",
            409: "The generation already ended otherwise",
        }
    ),
)
async def cancel_generation(
    body: CancelRequest, user_id: UserDep, stories: StoryServiceDep
) -> CancelResponse:
    """Stops the story and answers once its text is saved: the final status and the saved
    partial story. Cancelling twice gives the same answer."""
    return await stories.cancel(user_id=user_id, conversation_id=body.conversation_id)
