"""Judged stories as fine-tuning data for the draft model (``GET /api/evaluations/export``).

One JSON line per judged, completed story, in the OpenAI chat fine-tuning format::

    {"messages": [{"role": "system", "content": <settings.system_prompt>},
                  {"role": "user", "content": <the draft prompt: input, tags, length>},
                  {"role": "assistant", "content": <the story>}]}

The user turn is built by :func:`storytool.generation.prompts.draft_prompt`, the words the draft
model reads when it writes, so it learns from what it is later asked; a continuation's user turn
also carries the end of the story it continued, as at generation time. Cancelled, failed and
interrupted stories are left out: their cut-off text would teach the model to stop mid-sentence.

Rows are read :data:`EXPORT_BATCH_ROWS` at a time, each batch in its own short transaction
(a keyset over the verdicts' ``(user_id, rating, updated_at)`` index:
:meth:`EvaluationRepository.judged_stories`), and the lines of a batch are sent before the next
is read. So memory stays flat whatever the number of rows, and no pooled connection waits on a
client that reads slowly or not at all: a long-lived cursor held one for as long as the socket
stayed full, and two such clients starved a small pool. The export covers the verdicts given up
to its start, each once: a verdict changed while it runs moves past that point and is left to the
next export (``since``).
"""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from datetime import datetime
from typing import Any

from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from storytool.db.base import utcnow
from storytool.evaluations.repository import EvaluationRepository, ExportKey
from storytool.generation.modes import continuation_prompt
from storytool.generation.prompts import draft_prompt
from storytool.generation.story import StoryLength, StoryRequest
from storytool.models import Rating

EXPORT_BATCH_ROWS = 100
"""Rows read per transaction: enough that the export is not bound by round trips, few enough that
a batch of the longest stories (``max_output_chars``, with the story a continuation continued:
about 120 KB a row) stays about 12 MB."""


class FeedbackExport:
    def __init__(
        self, sessionmaker: async_sessionmaker[AsyncSession], *, system_prompt: str
    ) -> None:
        self._sessionmaker = sessionmaker
        self._system_prompt = system_prompt

    async def lines(
        self, *, user_id: str | None, rating: Rating, since: datetime | None
    ) -> AsyncIterator[str]:
        """JSON lines for the verdicts of ``user_id`` (of everyone when None, user by user) with
        ``rating``, given or changed at or after ``since``, oldest verdict first.

        Opens its own sessions, one per batch: the response streams after the request's handler
        has returned, and between batches it holds no connection.
        """
        until = utcnow()
        after: ExportKey | None = None
        while True:
            async with self._sessionmaker() as session:
                batch = await EvaluationRepository(session).judged_stories(
                    user_id=user_id,
                    rating=rating,
                    since=since,
                    until=until,
                    after=after,
                    limit=EXPORT_BATCH_ROWS,
                )
            for judged in batch:
                if judged.story:
                    yield self._line(
                        judged.user_input,
                        judged.tags or [],
                        judged.story,
                        judged.options or {},
                        judged.continued,
                    )
            if len(batch) < EXPORT_BATCH_ROWS:
                return
            after = batch[-1].key

    def _line(
        self,
        user_input: str,
        tags: list[str],
        story: str,
        options: dict[str, Any],
        continued: str | None,
    ) -> str:
        length = options.get("length")
        request = StoryRequest(
            user_input=user_input
            if continued is None
            else continuation_prompt(user_input, continued),
            tags=list(tags),
            length=_story_length(length),
        )
        example = {
            "messages": [
                {"role": "system", "content": self._system_prompt},
                {"role": "user", "content": draft_prompt(request)},
                {"role": "assistant", "content": story},
            ]
        }
        return json.dumps(example, ensure_ascii=False) + "\n"


def _story_length(value: object) -> StoryLength:
    """The stored option, or the default for stories written before options were stored."""
    if value == "short":
        return "short"
    if value == "long":
        return "long"
    return "medium"
