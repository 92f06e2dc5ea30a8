"""Story analysis: measured metrics plus the small model's structured reading of the story.

The model reads the text with its sentences numbered (``[n] ...``, n as in
:func:`storytool.analysis.metrics.sentence_spans`), so the plot stages it returns point at sentences
the client can highlight. A text longer than ``analysis_chunk_chars`` is read in chunks of whole
sentences (a longer sentence is cut, its pieces keeping its number), the chunks are read
concurrently (``analysis_concurrency``), and one more call merges the partial readings into one.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import Sequence
from dataclasses import dataclass

from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from storytool.analysis.metrics import Span, TextMetrics, measure, sentence_spans
from storytool.analysis.schemas import (
    AnalysisSource,
    AnalyzeResponse,
    ModelAnalysis,
    StoryAnalysis,
)
from storytool.config import Settings
from storytool.errors import Conflict, InvalidInput
from storytool.generation.service import story_text_of
from storytool.llm.base import ModelClient, ProviderError
from storytool.threads.service import conversation_of

READ_INSTRUCTIONS = (
    "You analyse a Korean story written in the style of Joseon-era classical fiction (고전 소설). "
    "Each sentence is numbered [n]. Answer in Korean. Describe only what the text says: name the "
    "characters who appear, the setting it states, its themes, tone, and the plot stages "
    "(발단, 전개, 위기, 절정, 결말) it contains with the numbers of the sentences each spans. "
    "Suggest concrete improvements to the writing."
)
CHUNK_NOTE = "This is sentences {first} to {last} of a story of {total} sentences."
MERGE_INSTRUCTIONS = (
    "You are given partial analyses, in order, of consecutive parts of one Korean classical-style "
    "story of {total} sentences; sentence numbers are those of the whole story. Merge them into "
    "one analysis of the whole story, in Korean: one summary paragraph, each character once, one "
    "setting, the themes, tone and suggestions that hold for the whole, and the plot stages "
    "(발단, 전개, 위기, 절정, 결말) of the whole story with the sentence numbers each spans."
)


@dataclass(frozen=True, slots=True)
class Chunk:
    first: int
    """Number of the chunk's first sentence (1-based)."""
    last: int
    body: str
    """The chunk's sentences, one ``[n] sentence`` per line."""


def chunk_sentences(text: str, spans: Sequence[Span], budget: int) -> list[Chunk]:
    """Whole sentences, numbered, packed into chunks of at most ``budget`` characters of body.

    A sentence longer than the budget on its own is cut into pieces that each carry its number.
    """
    chunks: list[Chunk] = []
    lines: list[str] = []
    first = 1
    size = 0

    def close(last: int) -> None:
        nonlocal lines, size
        if lines:
            chunks.append(Chunk(first=first, last=last, body="\n".join(lines)))
        lines, size = [], 0

    for number, span in enumerate(spans, start=1):
        sentence = text[span.start : span.end].replace("\n", " ")
        label = f"[{number}] "
        room = budget - len(label)
        for at in range(0, len(sentence), room):
            line = label + sentence[at : at + room]
            if lines and size + 1 + len(line) > budget:
                close(number if at else number - 1)
                first = number
            lines.append(line)
            size += len(line) + (1 if size else 0)
    close(len(spans))
    return chunks


def _measured(text: str) -> tuple[TextMetrics, list[Span]]:
    return measure(text), sentence_spans(text)


class AnalysisService:
    """Analyses a text or one of the caller's stories.

    It opens its own short session to read a stored story instead of taking the request's: the
    model calls that follow can take a minute, and a pooled connection should not wait on them.
    """

    def __init__(
        self,
        *,
        client: ModelClient | None,
        sessionmaker: async_sessionmaker[AsyncSession],
        settings: Settings,
    ) -> None:
        """``client`` is None with the offline provider: metrics only, no model reading."""
        self._client = client
        self._provider = settings.effective_llm_provider.value
        self._model = settings.mini_model
        self._sessionmaker = sessionmaker
        self._max_chars = settings.max_analysis_chars
        self._chunk_chars = settings.analysis_chunk_chars
        self._concurrency = settings.analysis_concurrency

    async def analyze(
        self, *, user_id: str, text: str | None, conversation_id: str | None
    ) -> AnalyzeResponse:
        if conversation_id is not None:
            text = await self._stored_story(user_id=user_id, conversation_id=conversation_id)
            source = AnalysisSource(kind="conversation", conversation_id=conversation_id)
        elif text is not None:
            if len(text) > self._max_chars:
                raise InvalidInput(
                    f"text is {len(text)} characters; at most {self._max_chars} are analysed",
                    field="text",
                )
            source = AnalysisSource(kind="text")
        else:
            raise InvalidInput("give text or conversation_id", field="text")
        # Measuring the longest accepted text takes tens of milliseconds: off the event loop.
        metrics, spans = await asyncio.to_thread(_measured, text)
        return AnalyzeResponse(
            source=source,
            metrics=metrics,
            sentences=spans,
            analysis=await self._model_analysis(text, spans),
        )

    async def _stored_story(self, *, user_id: str, conversation_id: str) -> str:
        async with self._sessionmaker() as session:
            conversation = await conversation_of(
                session, user_id=user_id, conversation_id=conversation_id
            )
            story = await story_text_of(session, conversation=conversation)
        if not story or not story.strip():
            raise Conflict("the conversation has no story yet", field="conversation_id")
        return story

    async def _model_analysis(self, text: str, spans: Sequence[Span]) -> ModelAnalysis:
        chunks = chunk_sentences(text, spans, self._chunk_chars)
        if self._client is None:
            return ModelAnalysis(
                available=False,
                provider=self._provider,
                model=None,
                chunks=0,
                reason="the offline provider has no language model for structured analysis",
            )
        described = ModelAnalysis(
            available=False, provider=self._provider, model=self._model, chunks=len(chunks)
        )
        try:
            partials = await self._read_chunks(self._client, chunks, total=len(spans))
            result = (
                partials[0]
                if len(partials) == 1
                else await self._merge(self._client, partials, len(spans))
            )
        except ProviderError as exc:
            # The metrics are exact without the model: they are answered, with the reason.
            return described.model_copy(
                update={"reason": f"the model's reading failed ({exc.code}): {exc.message}"}
            )
        plot = [s for s in result.plot if 1 <= s.first_sentence <= s.last_sentence <= len(spans)]
        return described.model_copy(
            update={"available": True, "result": result.model_copy(update={"plot": plot})}
        )

    async def _read_chunks(
        self, client: ModelClient, chunks: Sequence[Chunk], *, total: int
    ) -> list[StoryAnalysis]:
        limit = asyncio.Semaphore(self._concurrency)

        async def read(chunk: Chunk) -> StoryAnalysis:
            note = CHUNK_NOTE.format(first=chunk.first, last=chunk.last, total=total)
            async with limit:
                return await client.structured(
                    StoryAnalysis,
                    model=self._model,
                    instructions=f"{READ_INSTRUCTIONS} {note}",
                    text=chunk.body,
                )

        try:
            async with asyncio.TaskGroup() as group:
                tasks = [group.create_task(read(chunk)) for chunk in chunks]
        except ExceptionGroup as failed:
            # The first failure stands for the request; its siblings were cancelled.
            raise failed.exceptions[0] from None
        return [task.result() for task in tasks]

    async def _merge(
        self, client: ModelClient, partials: Sequence[StoryAnalysis], total: int
    ) -> StoryAnalysis:
        body = json.dumps([p.model_dump() for p in partials], ensure_ascii=False)
        return await client.structured(
            StoryAnalysis,
            model=self._model,
            instructions=MERGE_INSTRUCTIONS.format(total=total),
            text=body,
        )
