"""Just enough Korean grammar for the offline composer to join what it is given.

Particles (조사) take the form the word before them asks for: 이/가, 을/를, 은/는, 과/와, 아/야
and the copula's 이라/라 by whether its last syllable has a final consonant (받침), 으로/로 also
taking ㄹ as a vowel. Digits and Latin letters are read as spoken (3 → 삼, 10 → 십, L → 엘), and a
trailing parenthesis (``심청(沈淸)``) or closing punctuation is skipped.

A prompt is read as a clause that can lead a sentence (``…길을 떠나니``, turned from ``…떠나다``,
``…떠났다``, ``…간다`` or ``…갑니다``), a noun phrase (``호랑이와 곶감``, ``…이별하는 어머니``), or,
where it is neither (a question, a request), a quotation: never glued before a particle.
"""

from __future__ import annotations

import re
import string
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Literal

_FIRST, _LAST = 0xAC00, 0xD7A3
_FINALS = 28
"""Final consonants per initial-and-vowel block; index 0 is none."""
NONE, GIYEOK, NIEUN, DIGEUT, RIEUL, MIEUM, BIEUP, SIOS, SSANGSIOS, IEUNG, HIEUH = (
    0,
    1,
    4,
    7,
    8,
    16,
    17,
    19,
    20,
    21,
    27,
)

_DIGIT_FINALS = {
    "0": IEUNG,
    "1": RIEUL,
    "2": NONE,
    "3": MIEUM,
    "4": NONE,
    "5": NONE,
    "6": GIYEOK,
    "7": RIEUL,
    "8": RIEUL,
    "9": NONE,
}
"""영 일 이 삼 사 오 육 칠 팔 구."""
_ROUND_FINALS = {1: BIEUP, 2: GIYEOK, 3: NIEUN}
"""십, 백, 천; 만 and up end in ㄴ as well."""
_LETTER_FINALS = {"l": RIEUL, "m": MIEUM, "n": NIEUN, "r": RIEUL}
"""Letter names that end in a consonant: 엘, 엠, 엔, 알."""
_WORD_FINALS = {"b": BIEUP, "c": GIYEOK, "d": SIOS, "g": GIYEOK, "k": GIYEOK, "l": RIEUL}
_WORD_FINALS |= {"m": MIEUM, "n": NIEUN, "p": BIEUP, "t": SIOS}
"""How a Latin word's last letter is usually carried into Korean (book → 북, cat → 캣)."""
_TRAILING = " \t\n.,!?~…·'\"\u2019\u201d」』》〉)]}"

PARTICLES: Mapping[str, tuple[str, str]] = {
    "이": ("이", "가"),
    "을": ("을", "를"),
    "은": ("은", "는"),
    "과": ("과", "와"),
    "아": ("아", "야"),
    "으로": ("으로", "로"),
    "이라": ("이라", "라"),
    "이니": ("이니", "니"),
    "이요": ("이요", "요"),
    "이로다": ("이로다", "로다"),
}
"""Each particle by its form after a consonant, then after a vowel."""


def is_syllable(char: str) -> bool:
    return _FIRST <= ord(char) <= _LAST


def final_of(syllable: str) -> int:
    """The final consonant's index in a Hangul syllable (0: none, 8: ㄹ, ...)."""
    return (ord(syllable) - _FIRST) % _FINALS


def with_final(syllable: str, final: int) -> str:
    return chr(ord(syllable) - final_of(syllable) + final)


def spoken_final(word: str) -> int:
    """The final consonant the word ends on when read aloud; a consonant when it cannot tell
    (the 이/을 forms read acceptably after anything)."""
    text = word.rstrip(_TRAILING)
    if word.rstrip(" .,!?").endswith(")") and "(" in text:
        text = text[: text.rindex("(")].rstrip(_TRAILING)
    if not text:
        return GIYEOK
    last = text[-1]
    if is_syllable(last):
        return final_of(last)
    if last.isdigit():
        digits = re.search(r"\d+$", text)
        number = digits.group() if digits else last
        zeros = len(number) - len(number.rstrip("0"))
        if zeros and number.strip("0"):
            return _ROUND_FINALS.get(zeros, NIEUN)
        return _DIGIT_FINALS[last]
    if last.isascii() and last.isalpha():
        run = re.search(r"[A-Za-z]+$", text)
        letters = run.group() if run else last
        if letters.isupper():
            return _LETTER_FINALS.get(last.lower(), NONE)
        if letters.endswith("ng"):
            return IEUNG
        return _WORD_FINALS.get(last, NONE)
    return GIYEOK


def attach(word: str, particle: str) -> str:
    """``word`` with ``particle`` in the form its ending asks for: attach("선비", "이") is
    선비가, attach("서울", "으로") is 서울로."""
    after_consonant, after_vowel = PARTICLES[particle]
    final = spoken_final(word)
    vowel_like = final == NONE or (particle == "으로" and final == RIEUL)
    return word + (after_vowel if vowel_like else after_consonant)


class ParticleFormatter(string.Formatter):
    """``str.format`` where a field's format spec names a particle: ``"{hero:이} 웃더라"``
    gives 선비가 웃더라 or 노인이 웃더라."""

    def format_field(self, value: Any, format_spec: str) -> str:
        if format_spec in PARTICLES:
            return attach(str(value), format_spec)
        return str(super().format_field(value, format_spec))


_FORMATTER = ParticleFormatter()


def fill(template: str, values: Mapping[str, str]) -> str:
    return _FORMATTER.vformat(template, (), values)


# --- prompts as clauses ----------------------------------------------------------------------

PremiseKind = Literal["clause", "noun", "quote", "question"]


@dataclass(frozen=True, slots=True)
class Premise:
    """One sentence of a prompt, in the form a story can use it.

    ``clause`` ends in a connective (``…떠나니``, ``…만나매``) and leads a sentence; ``noun`` is a
    noun phrase; ``quote`` and ``question`` are the sentence as written, to be quoted.
    """

    kind: PremiseKind
    text: str
    subject: str | None = None
    """The noun marked as its subject (``선비`` in ``가난한 선비가 과거를 보러 가다``)."""


_SENTENCE_END = re.compile(r"(?<=[.!?。])\s+|\n+")
_REQUEST_TAIL = re.compile(
    r"(?<=[가-힣])\s*(?:을|를)?\s*(?:써|지어|만들어|들려)\s*"
    r"(?:줘|주세요|주십시오|주시오|다오|주라|봐|보세요|보시오|라)[.!~\s]*$"
)
"""A request tacked on the end (``…이야기를 써 주세요``): what is asked for is the rest."""
_STORY_NOUNS = ("이야기", "얘기", "사연", "전설", "일")
_SCENE_NOUNS = ("장면", "대목", "부분", "내용", "줄거리")
_META_NOUNS = _STORY_NOUNS + _SCENE_NOUNS
"""Words that name a story or a part of one, not something in it: ``…약을 사 온 장면``."""
_PLACE_NOUNS = frozenset(
    "바다 산 강 하늘 땅 마을 집 길 밤 달 별 꽃 나무 물 숲 들 고개 나라 세상 궁궐 절 섬 고을 "
    "우물 연못".split()
)
"""Where a story happens, not who it is about."""
_PEOPLE = tuple(
    "선비 도령 낭자 소저 부인 어머니 아버지 아들 딸 아이 노인 할머니 할아버지 장수 왕 공주 "
    "왕자 나무꾼 선녀 여우 호랑이 도깨비 구미호 용 스님 중 종 머슴 사또 원님 어부 농부 상인 "
    "기생 과부 총각 처녀 소년 소녀 형 아우 동생 효녀 효자 충신 사람 백성 도적 산적 임금 신선 "
    "거지 의원 서생 부자 사냥꾼 사공 노파 영감 대감 마님 하인 장군 동자 처자".split()
)
"""Who a story is about when a noun phrase ends in one of these (``용왕의 딸``); a name given
alone is taken too."""
_NOUNS_IN_NI = ("머니", "버니", "언니", "고니", "지니", "아니")
_NOUNS_IN_MAE = ("소매", "할매", "열매", "자매", "남매")
_NOUNS_IN_DA = ("바다",)
_NOUNS_IN_I = ("호랑이", "고양이", "원숭이", "구렁이", "지렁이", "늙은이", "젊은이", "어린이")
_ADVERBS_IN_I = tuple(
    "일찍이 곰곰이 깨끗이 틈틈이 깊숙이 끔찍이 꼼꼼이 고이 같이 깊이 높이 많이 굳이 없이 길이 "
    "넓이 곧이".split()
)
_CONNECTIVES_AS_WRITTEN = ("더니", "는데", "은데", "거늘", "으나", "다가")
_CONNECTIVES_AFTER_ARGUMENT = ("고", "며", "면서", "어서", "아서", "여서", "해서")
"""Connectives that also end common nouns (창고, 사과): read as one only after a word with a
case particle, which a noun phrase does not have."""

# Stems whose final consonant changes before 으니 unless listed here (잡다 → 잡으니, but
# 돕다 → 도우니, 듣다 → 들으니, 짓다 → 지으니, 그렇다 → 그러니).
_REGULAR_BIEUP = frozenset("잡입업씹뽑좁접집수")
_REGULAR_DIGEUT = frozenset("받닫믿얻쏟뜯굳돋")
_REGULAR_SIOS = frozenset("웃씻벗앗솟빗")
_REGULAR_HIEUH = frozenset("좋놓넣낳쌓닿찧땋")


def connective(stem: str) -> str:
    """A verb or adjective stem with -(으)니: 가 → 가니, 먹 → 먹으니, 살 → 사니, 돕 → 도우니."""
    last = stem[-1]
    if not is_syllable(last):
        return stem + "이니"
    final, head = final_of(last), stem[:-1]
    bare = with_final(last, NONE)
    if final == NONE:
        return stem + "니"
    if final == RIEUL:
        return head + bare + "니"
    if final == BIEUP and last not in _REGULAR_BIEUP:
        return head + bare + "우니"
    if final == DIGEUT and last not in _REGULAR_DIGEUT:
        return head + with_final(last, RIEUL) + "으니"
    if final == SIOS and last not in _REGULAR_SIOS:
        return head + bare + "으니"
    if final == HIEUH and last not in _REGULAR_HIEUH:
        return head + bare + "니"
    return stem + "으니"


def _has_case_particle(word: str) -> bool:
    """The word ends in a case particle that only follows a noun (가, 를, 을, 에, 에서, 로)."""
    if len(word) < 2 or not is_syllable(word[-2]):
        return False
    before = final_of(word[-2])
    if word.endswith(("에", "에서", "에게", "께서", "께", "로")):
        return True
    if word.endswith(("가", "를")):
        return before == NONE
    if word.endswith(("을", "이")):
        return before != NONE and not word.endswith(_NOUNS_IN_I)
    return False


_PRONOUNS = frozenset(
    ("내", "나", "저", "제", "네", "너", "누", "우리", "그", "이", "무엇", "누구")
)


def subject_of(words: Sequence[str]) -> str | None:
    """The first noun marked with the subject particle 이/가 or 께서 (not a pronoun)."""
    for word in words:
        if len(word) < 2 or not all(is_syllable(char) for char in word):
            continue
        if word[:-1] in _PRONOUNS:
            continue
        if word.endswith("께서") and len(word) > 2:
            noun = word[:-2]
        elif word.endswith("가") and final_of(word[-2]) == NONE:
            noun = word[:-1]
        elif word.endswith("이") and final_of(word[-2]) != NONE:
            noun = "" if word.endswith(_NOUNS_IN_I + _ADVERBS_IN_I) else word[:-1]
        else:
            continue
        if noun and noun not in _PLACE_NOUNS:
            return noun
    return None


def _is_someone(noun: str) -> bool:
    return noun.endswith(_PEOPLE) and noun not in _PLACE_NOUNS


def head_noun(words: Sequence[str]) -> str | None:
    """Who a noun phrase is about: a name alone (``심청``), the first of two people joined by
    와/과 (``선녀와 나무꾼``), the person at its end (``…이별하는 어머니``), or the subject of a
    phrase that names the story itself (``여우가 … 멈추는 이야기``). None when it names no one
    (``달밤의 이별``, ``푸른 바다``)."""
    last = words[-1]
    if not all(is_syllable(char) for char in last):
        return None
    if len(words) == 1:
        return None if last in _PLACE_NOUNS or last in _META_NOUNS else last
    if len(words[-2]) > 1 and words[-2].endswith(("와", "과")) and _is_someone(words[-2][:-1]):
        return words[-2][:-1]
    if last in _META_NOUNS:
        return subject_of(words)
    return last if _is_someone(last) else None


def _predicate(word: str) -> str | None:
    """The final word of a statement as a connective, or None when it is not a verb form."""
    if word.endswith("더라"):
        return word[:-2] + "더니"
    if word.endswith("이라") and len(word) > 2:
        return word[:-2] + "이니"
    if word.endswith("어요") and len(word) > 2 and final_of(word[-3]) == SSANGSIOS:
        return word[:-2] + "으니"
    if not word.endswith("다") or len(word) < 2 or word.endswith(_NOUNS_IN_DA):
        return None
    if word.endswith("습니다") and len(word) > 3:
        return connective(word[:-3])
    stem = word[:-1]
    last = stem[-1]
    if not is_syllable(last):
        return None
    if word.endswith("니다") and len(word) > 2 and final_of(word[-3]) == BIEUP:
        return connective(word[:-3] + with_final(word[-3], NONE))
    if word.endswith("는다") and len(word) > 2:
        return connective(word[:-2])
    if final_of(last) == NIEUN:
        # 간다, 떠난다, 산다: the present ㄴ다 on a vowel (or ㄹ) stem.
        return connective(stem[:-1] + with_final(last, NONE))
    return connective(stem)


def read_sentence(sentence: str) -> Premise:
    """One sentence of a prompt as a :class:`Premise`."""
    text = " ".join(sentence.split())
    question = text.endswith("?")
    text = text.rstrip(" .!?。~…")
    requested = _REQUEST_TAIL.sub("", text)
    if requested and requested != text:
        text = requested
    words = text.split()
    subject = subject_of(words)
    if question or not words:
        return Premise("question" if question else "quote", text, subject)
    last = words[-1]
    if not all(is_syllable(char) for char in last):
        return Premise("noun", text, head_noun(words))
    leads = len(words) > 1 and _has_case_particle(words[-2])
    chained = len(words) > 1 and words[-2].endswith(_CONNECTIVES_AFTER_ARGUMENT)
    if last.endswith("니") and not last.endswith(_NOUNS_IN_NI):
        return Premise("clause", text, subject)
    if last.endswith("매") and len(last) > 1 and not last.endswith(_NOUNS_IN_MAE):
        return Premise("clause", text, subject)
    if last.endswith(_CONNECTIVES_AS_WRITTEN) and len(last) > 2:
        return Premise("clause", text, subject)
    if last.endswith(_CONNECTIVES_AFTER_ARGUMENT) and (leads or chained):
        return Premise("clause", text, subject)
    predicate = _predicate(last)
    if predicate is not None:
        return Premise("clause", " ".join([*words[:-1], predicate]), subject)
    spoken = last.endswith(("요", "까", "냐", "죠")) and len(words) > 1
    if spoken or (last.endswith(("라", "오", "지", "네", "군")) and leads):
        return Premise("quote", text, subject)
    return Premise("noun", text, head_noun(words))


_OUTLINE_MARK = re.compile(
    r"^(?:[-*•·]|\d+[.)]|[^\s:\uff1a]{1,8}(?:\s[^\s:\uff1a]{1,8})?\s*[:\uff1a])\s*"
)
"""What marks a line of an outline rather than telling it: ``- ``, ``1) ``, ``첫째 줄거리: ``."""


def read_prompt(prompt: str) -> list[Premise]:
    """Each sentence of ``prompt`` (split at sentence marks and line breaks, outline marks
    dropped), read."""
    sentences = (_OUTLINE_MARK.sub("", part.strip()) for part in _SENTENCE_END.split(prompt))
    return [
        read_sentence(sentence)
        for sentence in sentences
        if sentence.strip(" .!?。~…") and not sentence.strip(" .)").isdigit()
    ]


def sentences_of(text: str) -> list[str]:
    """``text`` split at sentence marks, each sentence whole with its mark."""
    return [part.strip() for part in re.split(r"(?<=[.!?。])\s+", text.strip()) if part.strip()]


def as_happening(noun_phrase: str) -> str | None:
    """A noun phrase that names a story or a part of one as something that happened
    (``…약을 사 온 장면`` → ``…약을 사 온 일``); None for one that names something else."""
    *before, last = noun_phrase.split()
    if last in _STORY_NOUNS:
        return noun_phrase
    if last in _SCENE_NOUNS and before:
        return " ".join([*before, "일"])
    return None
