"""The offline provider: a deterministic story composer, no network, no language model.

It makes the embedded default and demos work end to end without a key. The text is assembled from
fixed classical-style phrases (화설/각설/차설 transitions, -하더라/-이로다/-하노라 endings), the
user's prompt and tags, and the nearest corpus passages when search supplies them; the same request
always gives the same story. Its ``models`` say ``offline`` so nothing records it as a model.
"""

from __future__ import annotations

import asyncio
import hashlib
import uuid
from collections.abc import AsyncIterator, Sequence

from storytool.config import Settings
from storytool.generation.story import StoryExtras, StoryLength, StoryRequest, StoryWriter
from storytool.llm.base import (
    ProviderError,
    StreamEvent,
    StreamFinished,
    TextDelta,
    UpstreamStarted,
)
from storytool.models import StopReason

PARAGRAPHS: dict[StoryLength, int] = {"short": 3, "medium": 5, "long": 8}
"""Base-story paragraphs per requested length; refine adds about half again."""

CHUNK_CHARS = 8
"""Characters per streamed delta: small enough to look live, large enough that a long story at
the default pace is not thousands of tiny events."""

OPENINGS = (
    "화설. 옛적 한 고을에 {subject}의 일이 있었으니, 사람들이 두고두고 이르더라.",
    "각설. 산 깊고 물 맑은 곳에 {subject}의 이야기가 전하니, 그 사연이 기이하도다.",
    "차설. 세상에 {subject}의 소문이 자자하니, 듣는 이마다 무릎을 치더라.",
)
MIDDLES = (
    "각설. 하루는 {tag}의 기운이 온 고을에 가득하니, 주인공이 길을 떠나며 이르기를 "
    "'내 이 일을 끝내 이루리라' 하더라.",
    "차설. 밤이 깊어 달빛이 뜰에 가득하매 {tag}의 뜻을 헤아리니, 마음이 자못 숙연하더라.",
    "이때 {tag}의 일로 온 마을이 술렁이니, 어른과 아이가 모두 모여 그 앞일을 근심하더라.",
    "각설. 한 노인이 홀연히 나타나 {tag}의 이치를 일러 주니, 그 말이 이치에 맞는지라 "
    "주인공이 크게 깨닫더라.",
    "차설. 험한 고개를 넘고 깊은 물을 건너매 {tag}의 시련이 거듭되니, 이는 하늘이 "
    "그 뜻을 시험함이로다.",
)
PASSAGE_LINE = "옛 글에 이르기를 '{passage}' 하였으니, 이 또한 오늘의 일과 다르지 아니하도다."
CLOSINGS = (
    "화설. 마침내 모든 일이 제자리를 찾으니, 이를 보고 듣는 이마다 칭송하더라.",
    "이로써 {subject}의 이야기가 끝나니, 후세 사람들이 이를 두고 길이 전하노라.",
)
REFINE_LINES = (
    "차설. 이 일을 다시 헤아려 보건대, 사람의 정성이 하늘에 닿음이 이와 같도다.",
    "각설. 세월이 흘러 그 자취가 희미해졌으나, 고을 사람들은 해마다 그날을 기리더라.",
    "이때 바람이 고요하고 물결이 잔잔하니, 천지가 함께 기뻐함이로다.",
    "화설. 뒷날 한 선비가 이 사연을 글로 적어 남기니, 그 글이 오늘에 전하노라.",
)
EXTENSION_RATIO = 2
"""Refine adds one line per this many base paragraphs (at least one)."""


def _pick(options: Sequence[str], seed: int, index: int) -> str:
    return options[(seed + index) % len(options)]


def _seed(request: StoryRequest) -> int:
    key = "\x1f".join([request.user_input, *request.tags, request.length])
    return int.from_bytes(hashlib.sha256(key.encode("utf-8")).digest()[:4], "big")


def _subject(request: StoryRequest) -> str:
    """The prompt's first clause, so the story is visibly about what was asked."""
    first = request.user_input.strip().splitlines()[0] if request.user_input.strip() else ""
    first = first.rstrip(".!?。 ")
    return first[:40] or "이름 없는 사람"


def compose_base_story(request: StoryRequest) -> str:
    seed = _seed(request)
    subject = _subject(request)
    tags = request.tags or [subject]
    paragraphs = [_pick(OPENINGS, seed, 0).format(subject=subject)]
    for index in range(PARAGRAPHS[request.length] - 2):
        tag = tags[index % len(tags)]
        paragraphs.append(_pick(MIDDLES, seed, index).format(tag=tag))
        if index < len(request.passages):
            passage = " ".join(request.passages[index].split())[:80]
            paragraphs.append(PASSAGE_LINE.format(passage=passage))
    paragraphs.append(_pick(CLOSINGS, seed, 0).format(subject=subject))
    return "\n\n".join(paragraphs)


def compose_refined_story(request: StoryRequest, base_story: str) -> str:
    """The base story, extended with a few more lines before its ending."""
    seed = _seed(request)
    paragraphs = base_story.split("\n\n")
    extra = max(1, len(paragraphs) // EXTENSION_RATIO)
    added = [_pick(REFINE_LINES, seed, index) for index in range(extra)]
    return "\n\n".join([*paragraphs[:-1], *added, paragraphs[-1]])


def _chunks(text: str) -> list[str]:
    return [text[start : start + CHUNK_CHARS] for start in range(0, len(text), CHUNK_CHARS)]


def _usage(request: StoryRequest, text: str) -> dict[str, int]:
    """Characters, not tokens: honest about what was counted, same keys as upstream usage."""
    return {"input_chars": len(request.user_input), "output_chars": len(text)}


class OfflineProvider(StoryWriter):
    name = "offline"

    def __init__(self, settings: Settings) -> None:
        self._chars_per_second = settings.offline_chars_per_second
        self.models = dict.fromkeys(("draft", "refine", "mini", "embedding"), "offline")
        self._cancelled: set[str] = set()
        self._running: set[str] = set()

    async def prepare(self) -> None:
        """Nothing to find out: the composer is always there."""

    async def draft(self, request: StoryRequest) -> AsyncIterator[StreamEvent]:
        """The whole base story at once: nobody watches the draft being written."""
        story = compose_base_story(request)
        yield TextDelta(story, 0)
        yield StreamFinished(_usage(request, story))

    async def refine(
        self,
        request: StoryRequest,
        base_story: str,
        *,
        resume: tuple[str, int] | None = None,
    ) -> AsyncIterator[StreamEvent]:
        """Streams the refined story at the configured pace. The text is deterministic, so a
        resume simply skips the chunks up to the given sequence number."""
        # Numbered from 1, as a Responses stream's text follows its event 0 (created): resuming
        # after 0 is resuming from the start.
        response_id, after = resume if resume else (f"offline_{uuid.uuid4().hex}", 0)
        story = compose_refined_story(request, base_story)
        self._running.add(response_id)
        try:
            # Like a background run: stopped by id, resumed from a sequence number.
            yield UpstreamStarted(response_id, background=True)
            for sequence_number, chunk in enumerate(_chunks(story), start=1):
                if sequence_number <= after:
                    continue
                await asyncio.sleep(len(chunk) / self._chars_per_second)
                if response_id in self._cancelled:
                    raise ProviderError(
                        "the story was cancelled",
                        code="cancelled",
                        stop_reason=StopReason.USER_CANCEL,
                    )
                yield TextDelta(chunk, sequence_number)
            yield StreamFinished(_usage(request, story))
        finally:
            self._running.discard(response_id)
            self._cancelled.discard(response_id)

    async def cancel(self, response_id: str) -> None:
        if response_id in self._running:
            self._cancelled.add(response_id)

    async def extras(self, request: StoryRequest, story: str) -> StoryExtras:
        subject = _subject(request)
        title = f"〈{subject[:30]}〉"
        topics = request.tags or [subject]
        seed = _seed(request)
        recommendations = [
            f"{_pick(topics, seed, 0)}의 뒷이야기를 이어 써 보소서.",
            f"주인공의 벗이 겪은 일을 {_pick(topics, seed, 1)}에 빗대어 써 보소서.",
            f"이야기의 끝을 달리하여 {len(story)}자 남짓으로 다시 지어 보소서.",
        ]
        return StoryExtras(title=title, recommendations=recommendations)
