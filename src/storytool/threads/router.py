"""History endpoints: the caller's threads, one thread in full, and deleting one."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Depends, Query, Response, status

from storytool.api.deps import StateDep, UserDep
from storytool.api.responses import errors
from storytool.schemas import Id
from storytool.threads.cursor import CursorSigner
from storytool.threads.schemas import (
    HistoryPage,
    SelectedVariant,
    SelectVariantRequest,
    ThreadDetail,
)
from storytool.threads.service import ThreadService

router = APIRouter(prefix="/api", tags=["history"])

_NO_THREAD = errors({404: "No such thread of the caller's"})


async def get_thread_service(state: StateDep) -> ThreadService:
    return ThreadService(
        sessionmaker=state["sessionmaker"],
        cursors=CursorSigner(state["settings"].history_cursor_secret.get_secret_value()),
        remote=state["llm"],
        generations=state["stories"],
    )


ThreadServiceDep = Annotated[ThreadService, Depends(get_thread_service)]
ThreadIdQuery = Annotated[Id, Query(description="The thread's id.")]


@router.get(
    "/retrieveChatHistoryList",
    responses=errors({422: "limit outside 1 to 100, or a cursor this server did not sign"}),
)
async def retrieve_chat_history_list(
    user_id: UserDep,
    service: ThreadServiceDep,
    limit: Annotated[int, Query(ge=1, le=100, description="Threads per page.")] = 20,
    cursor: Annotated[
        str | None, Query(max_length=512, description="next_cursor of the previous page.")
    ] = None,
) -> HistoryPage:
    """The caller's threads, most recently active first, a page at a time."""
    return await service.history(user_id=user_id, limit=limit, cursor=cursor)


@router.get("/retrieveChatHistoryDetail", responses=_NO_THREAD)
async def retrieve_chat_history_detail(
    thread_id: ThreadIdQuery, user_id: UserDep, service: ThreadServiceDep
) -> ThreadDetail:
    """One of the caller's threads with all its conversations, oldest first."""
    return await service.detail(user_id=user_id, thread_id=thread_id)


@router.post(
    "/selectVariant",
    responses=errors({404: "No such conversation of the caller's"}),
)
async def select_variant(
    body: SelectVariantRequest, user_id: UserDep, service: ThreadServiceDep
) -> SelectedVariant:
    """Picks one of the stories written for an input; the history detail shows the pick."""
    return await service.select_variant(user_id=user_id, conversation_id=body.conversation_id)


@router.delete("/deleteThread", status_code=status.HTTP_204_NO_CONTENT, responses=_NO_THREAD)
async def delete_thread(
    thread_id: ThreadIdQuery, user_id: UserDep, service: ThreadServiceDep
) -> Response:
    """Deletes one of the caller's threads with everything in it; a second delete is a 404."""
    await service.delete(user_id=user_id, thread_id=thread_id)
    return Response(status_code=status.HTTP_204_NO_CONTENT)
