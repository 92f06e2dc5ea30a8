"""``GET /api/threads/{thread_id}/export``: one of the caller's threads as a file to keep.

Markdown reads well on its own (title, then each turn's prompt, tags and story); JSON is the
history detail as it is, for tools. The data is the history detail's, read by ThreadService.
"""

from __future__ import annotations

from typing import Annotated, Literal
from urllib.parse import quote

from fastapi import APIRouter, Query, Response

from storytool.api.deps import UserDep
from storytool.api.responses import errors
from storytool.models import ConversationStatus, story_text
from storytool.schemas import Id
from storytool.threads.router import ThreadServiceDep
from storytool.threads.schemas import ThreadDetail

router = APIRouter(prefix="/api", tags=["history"])

ExportFormat = Literal["md", "json"]
_MEDIA_TYPES: dict[ExportFormat, str] = {
    "md": "text/markdown; charset=utf-8",
    "json": "application/json",
}
UNTITLED = "제목 없는 이야기"


@router.get(
    "/threads/{thread_id}/export",
    response_class=Response,
    responses={
        200: {
            "content": {media: {} for media in _MEDIA_TYPES.values()},
            "description": "The thread as an attachment",
        },
        **errors(
            {
                404: "No such thread of the caller's",
                422: "thread_id is not a thread id, or format is not md or json",
            }
        ),
    },
)
async def export_thread(
    thread_id: Id,
    user_id: UserDep,
    service: ThreadServiceDep,
    format: Annotated[ExportFormat, Query(description="md (Markdown) or json.")] = "md",
) -> Response:
    """Downloads a thread with all its conversations, oldest first."""
    detail = await service.detail(user_id=user_id, thread_id=thread_id)
    body = to_markdown(detail) if format == "md" else detail.model_dump_json(indent=2)
    return Response(
        body,
        media_type=_MEDIA_TYPES[format],
        headers={"Content-Disposition": _attachment(detail, format)},
    )


def to_markdown(thread: ThreadDetail) -> str:
    lines = [f"# {thread.title or UNTITLED}", ""]
    for number, turn in enumerate(thread.conversations, start=1):
        lines += [f"## {number}. {turn.title or UNTITLED}", ""]
        lines += [f"> {line}" for line in turn.user_input.splitlines()]
        lines.append("")
        if turn.tags:
            lines += ["태그: " + ", ".join(turn.tags), ""]
        lines += [story_text(turn.story, turn.base_story) or "", ""]
        if turn.status is not ConversationStatus.COMPLETED:
            lines += [f"*({turn.status.value})*", ""]
        if turn.recommendations:
            lines += ["다음 이야기:", *(f"- {item}" for item in turn.recommendations), ""]
    return "\n".join(lines)


def _attachment(thread: ThreadDetail, format: ExportFormat) -> str:
    """An ASCII file name every browser accepts, and the title as the UTF-8 name those that
    read RFC 6266 ``filename*`` prefer."""
    fallback = f"storytool-{thread.id}.{format}"
    if thread.title is None:
        return f'attachment; filename="{fallback}"'
    return f"attachment; filename=\"{fallback}\"; filename*=UTF-8''{quote(thread.title)}.{format}"
