"""Every word the models read to write a story: the draft, the refine, the title and
recommendations. The feedback export writes its training examples with :func:`draft_prompt`, so
the fine-tuned model learns from what it is later asked."""

from __future__ import annotations

from storytool.generation.story import StoryLength, StoryRequest, Turn
from storytool.llm.base import Message

LENGTH_HINTS: dict[StoryLength, str] = {
    "short": "짧게, 800자 안팎으로",
    "medium": "1,500자 안팎으로",
    "long": "길게, 3,000자 안팎으로",
}

MAX_TOKENS: dict[StoryLength, int] = {"short": 1500, "medium": 3000, "long": 6000}
"""Output tokens a stage may write per length: about twice the asked length in Korean (a Hangul
syllable is one to two tokens), so only a model that runs on is cut. A cut story is kept and
ends ``completed`` with ``stop_reason: length``."""

REFINE_INSTRUCTIONS = (
    "당신은 조선 시대 고전 소설의 문체를 다듬는 작가입니다. 사용자의 줄거리와 초고를 받아, "
    "'화설', '각설', '차설' 같은 전환어와 '-하더라', '-이로다', '-하노라' 같은 옛 어미를 살려 "
    "이야기를 더 풍성하게 늘이고 다듬어 한 편의 완성된 이야기로 씁니다. 앞선 이야기가 있으면 "
    "그 인물과 사건을 이어 갑니다. 이야기 본문만 씁니다."
)

EXTRAS_INSTRUCTIONS = (
    "다음 고전 소설 문체의 이야기에 어울리는 짧은 제목 하나와, 사용자가 이어서 써 볼 만한 "
    "다음 이야기의 방향 세 가지를 한국어로 제안하세요."
)


def _prompt(user_input: str, tags: list[str]) -> str:
    tag_line = f"\n태그: {', '.join(tags)}" if tags else ""
    return f"줄거리: {user_input}{tag_line}"


def draft_prompt(request: StoryRequest) -> str:
    """The user turn the fine-tuned draft model reads."""
    user = f"{_prompt(request.user_input, request.tags)}\n분량: {LENGTH_HINTS[request.length]}"
    if request.passages:
        user += "\n참고할 옛 글:\n" + "\n".join(f"- {text}" for text in request.passages)
    return user


def draft_messages(system_prompt: str, request: StoryRequest) -> list[Message]:
    return [Message("system", system_prompt), Message("user", draft_prompt(request))]


def refine_messages(
    request: StoryRequest, base_story: str, *, history: list[Turn]
) -> list[Message]:
    """The thread's earlier turns, then the new input with its draft."""
    messages: list[Message] = []
    for turn in history:
        messages.append(Message("user", _prompt(turn.user_input, turn.tags)))
        messages.append(Message("assistant", turn.story))
    new_turn = f"{_prompt(request.user_input, request.tags)}\n\n초고:\n{base_story}"
    messages.append(Message("user", new_turn))
    return messages


def extras_text(request: StoryRequest, story: str) -> str:
    return f"{_prompt(request.user_input, request.tags)}\n\n이야기:\n{story}"
