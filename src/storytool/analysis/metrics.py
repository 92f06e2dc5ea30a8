"""Measured metrics of a story, computed locally, exactly and deterministically.

How each count is formed (the tests hold hand-counted values to these rules):

characters      Unicode code points; ``characters_no_spaces`` leaves out every whitespace character.
words           maximal runs of letters and digits (Korean 어절 minus punctuation; an apostrophe
                between letters joins, so "don't" is one word). Punctuation alone is no word.
paragraphs      non-blank lines. A blank line between paragraphs adds none; Korean prose and the
                stories Storytool writes put one paragraph on a line.
quotations      text inside “ ”, single curly quotes (U+2018 U+2019), 「 」, 『 』 and
                straight " ' quotes. A straight or curly ' between two letters (don't) is an
                apostrophe, and a straight ' right after a letter (the boys') opens no quote.
                Nested quotes count once; a quote left open closes at the end of its
                paragraph. ``dialogue_share`` is the share of the non-whitespace characters
                that lie inside quotes (the marks themselves excluded).
sentences       end at a run of . ! ? 。 … (and fullwidth ! ?) outside quotes followed by
                whitespace (a closing bracket or stray closing quote after the run stays with
                it), and at the end of a paragraph. Punctuation inside a quote does not
                end the sentence that quotes it (``"어디 가느냐?" 하고 물으니`` is one
                sentence); a quote that ends in such a mark does end a sentence when a new one
                follows it, unless the next word starts with 하 (the quotative 하고, 하니,
                하며) or a lower-case letter ("Go!" he said).
reading time    ``characters_no_spaces`` at :data:`READING_RATE_CHARS_PER_MINUTE`, rounded up.
lexical         type/token ratio over the words, case-folded. A Korean 어절 keeps its particles
diversity       (사람이, 사람을 are two types), so Korean ratios run higher than morpheme-based
                ones.
markers         classical endings: a word that ends in one of :data:`ENDINGS` (the longest match
                wins: 하였더라 is -하였더라, not -더라); transitions: a word that is one of the
                forms in :data:`TRANSITIONS`. Each occurrence carries the character offsets of the
                matched text, so a client can highlight it.
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass

from pydantic import BaseModel

READING_RATE_CHARS_PER_MINUTE = 500
"""Korean silent reading runs at roughly 500 syllables a minute for adult readers of prose; the
rate is applied to every non-whitespace character, so Western text reads as slower than it is."""

TERMINALS = frozenset(".!?。\uff01\uff1f…")  # with the fullwidth ! and ?
PAIRED_QUOTES = {"“": "”", "\u2018": "\u2019", "「": "」", "『": "』"}
STRAIGHT_QUOTES = frozenset("\"'")
APOSTROPHES = frozenset("'\u2019")
QUOTATIVE_START = "하"
TRAILING_CLOSERS = frozenset(PAIRED_QUOTES.values()) | frozenset(")]\"'")
"""Marks that stay with the sentence end they follow when no quote is open: a bracket closed
after its full stop, or a closing quote whose opening mark the text left out."""

ENDINGS: tuple[str, ...] = (
    "하였더라",
    "하더라",
    "이더라",
    "더라",
    "이러라",
    "하였느니라",
    "하느니라",
    "이니라",
    "하니라",
    "이로소이다",
    "하나이다",
    "나이다",
    "나이까",
    "이로다",
    "로다",
    "하도다",
    "도다",
    "하노라",
    "노라",
    "하리라",
    "이리라",
    "이라",
    "하소서",
    "하거늘",
    "하매",
    "하되",
    "오되",
    "가로되",
)
"""Archaic sentence and clause endings of 고전 소설. Bare 니라/리라 are left out on purpose:
the modern 아니라 and 우리라 would swamp them."""

TRANSITIONS: dict[str, str] = {
    "각설": "각설",
    "각설이라": "각설",
    "각설하고": "각설",
    "차설": "차설",
    "차설이라": "차설",
    "화설": "화설",
    "재설": "재설",
    "차시": "차시",
    "차시에": "차시",
    "이때": "이때",
    "이때에": "이때",
    "이적에": "이적에",
    "선시에": "선시에",
    "한편": "한편",
    "이윽고": "이윽고",
}
"""Narrative transitions, each written form mapped to the marker it counts as. Whole words only:
각설이 (the street singer) is not 각설."""

_WORD = re.compile(r"[^\W_]+(?:['\u2019][^\W_]+)*")
_LINE = re.compile(r"[^\n]+")
_ENDING_SET = frozenset(ENDINGS)
_ENDING_LENGTHS = sorted({len(ending) for ending in ENDINGS}, reverse=True)


class Span(BaseModel):
    start: int
    end: int


class MarkerOccurrence(BaseModel):
    marker: str
    """``-하더라`` for an ending, ``각설`` for a transition."""
    word: str
    start: int
    """Offset of the matched text in the analysed text (code points), end exclusive."""
    end: int


class MarkerCounts(BaseModel):
    total: int
    counts: dict[str, int]
    """Per marker, in the order of their lists; markers that never occur are left out."""
    occurrences: list[MarkerOccurrence]


class ClassicalMarkers(BaseModel):
    endings: MarkerCounts
    transitions: MarkerCounts


class TextMetrics(BaseModel):
    characters: int
    characters_no_spaces: int
    words: int
    sentences: int
    paragraphs: int
    quotations: int
    dialogue_characters: int
    dialogue_share: float
    """``dialogue_characters / characters_no_spaces``, four decimals."""
    average_sentence_characters: float
    """Non-whitespace characters per sentence, two decimals."""
    average_sentence_words: float
    reading_time_seconds: int
    reading_rate_chars_per_minute: int
    lexical_diversity: float
    """Distinct words / words (type/token ratio), four decimals."""
    distinct_words: int
    markers: ClassicalMarkers


@dataclass(slots=True)
class _Layout:
    sentences: list[Span]
    paragraphs: int
    quotations: int
    dialogue_characters: int


def sentence_spans(text: str) -> list[Span]:
    """The sentences of ``text`` by the rules above, as offsets into it."""
    return _layout(text).sentences


def measure(text: str) -> TextMetrics:
    layout = _layout(text)
    no_spaces = _non_space(text)
    words = [match.group().casefold() for match in _WORD.finditer(text)]
    sentences = len(layout.sentences)
    return TextMetrics(
        characters=len(text),
        characters_no_spaces=no_spaces,
        words=len(words),
        sentences=sentences,
        paragraphs=layout.paragraphs,
        quotations=layout.quotations,
        dialogue_characters=layout.dialogue_characters,
        dialogue_share=_ratio(layout.dialogue_characters, no_spaces, 4),
        average_sentence_characters=_ratio(
            sum(_non_space(text[span.start : span.end]) for span in layout.sentences),
            sentences,
            2,
        ),
        average_sentence_words=_ratio(
            sum(len(_WORD.findall(text, span.start, span.end)) for span in layout.sentences),
            sentences,
            2,
        ),
        reading_time_seconds=math.ceil(no_spaces * 60 / READING_RATE_CHARS_PER_MINUTE),
        reading_rate_chars_per_minute=READING_RATE_CHARS_PER_MINUTE,
        lexical_diversity=_ratio(len(set(words)), len(words), 4),
        distinct_words=len(set(words)),
        markers=_markers(text),
    )


def _ratio(part: int, whole: int, digits: int) -> float:
    return round(part / whole, digits) if whole else 0.0


def _non_space(text: str) -> int:
    return sum(map(len, text.split()))


def _layout(text: str) -> _Layout:
    layout = _Layout(sentences=[], paragraphs=0, quotations=0, dialogue_characters=0)
    for line in _LINE.finditer(text):
        if line.group().strip():
            layout.paragraphs += 1
            _scan_paragraph(text, line.start(), line.end(), layout)
    return layout


def _is_apostrophe(text: str, index: int) -> bool:
    """A straight or curly apostrophe between two letters (don't) belongs to the word."""
    return (
        text[index] in APOSTROPHES
        and 0 < index < len(text) - 1
        and text[index - 1].isalnum()
        and text[index + 1].isalnum()
    )


def _opens_quote(text: str, index: int) -> bool:
    char = text[index]
    if char == "'":
        return index == 0 or not text[index - 1].isalnum()
    return char in PAIRED_QUOTES or char in STRAIGHT_QUOTES


def _continues_quote(text: str, after: int, end: int) -> bool:
    """Whether the word after a closed quote carries its sentence on (하고, "he said")."""
    rest = text[after:end].lstrip()
    return not rest or rest.startswith(QUOTATIVE_START) or rest[0].islower()


def _scan_paragraph(text: str, start: int, end: int, layout: _Layout) -> None:
    closers: list[str] = []  # the closing mark of each open quote, innermost last
    sentence_start: int | None = None
    last_content = ""  # the last non-space character that is not a quote mark
    index = start
    while index < end:
        char = text[index]
        is_mark = True
        if closers and char == closers[-1] and not _is_apostrophe(text, index):
            closers.pop()
            if (
                not closers
                and last_content in TERMINALS
                and sentence_start is not None
                and (index + 1 == end or text[index + 1].isspace())
                and not _continues_quote(text, index + 1, end)
            ):
                layout.sentences.append(Span(start=sentence_start, end=index + 1))
                sentence_start = None
                index += 1
                continue
        elif _opens_quote(text, index):
            if not closers:
                layout.quotations += 1
            closers.append(PAIRED_QUOTES.get(char, char))
        else:
            is_mark = False
        if not is_mark and not char.isspace():
            last_content = char
            if closers:
                layout.dialogue_characters += 1
        if sentence_start is None and not char.isspace():
            sentence_start = index
        if not closers and char in TERMINALS and sentence_start is not None:
            run_end = index
            while run_end < end and text[run_end] in TERMINALS:
                run_end += 1
            closed_end = run_end
            while closed_end < end and text[closed_end] in TRAILING_CLOSERS:
                closed_end += 1
            if closed_end == end or text[closed_end].isspace():
                layout.sentences.append(Span(start=sentence_start, end=closed_end))
                sentence_start = None
                run_end = closed_end
            index = run_end
            continue
        index += 1
    if sentence_start is not None:
        stripped_end = start + len(text[start:end].rstrip())
        layout.sentences.append(Span(start=sentence_start, end=stripped_end))


def _markers(text: str) -> ClassicalMarkers:
    endings: list[MarkerOccurrence] = []
    transitions: list[MarkerOccurrence] = []
    for match in _WORD.finditer(text):
        word = match.group()
        if word in TRANSITIONS:
            transitions.append(
                MarkerOccurrence(
                    marker=TRANSITIONS[word], word=word, start=match.start(), end=match.end()
                )
            )
        ending = _longest_ending(word)
        if ending is not None:
            endings.append(
                MarkerOccurrence(
                    marker=f"-{ending}",
                    word=word,
                    start=match.end() - len(ending),
                    end=match.end(),
                )
            )
    return ClassicalMarkers(
        endings=_counted(endings, [f"-{e}" for e in ENDINGS]),
        transitions=_counted(transitions, list(dict.fromkeys(TRANSITIONS.values()))),
    )


def _longest_ending(word: str) -> str | None:
    for length in _ENDING_LENGTHS:
        if len(word) >= length and word[-length:] in _ENDING_SET:
            return word[-length:]
    return None


def _counted(occurrences: list[MarkerOccurrence], order: list[str]) -> MarkerCounts:
    found = [o.marker for o in occurrences]
    return MarkerCounts(
        total=len(occurrences),
        counts={marker: found.count(marker) for marker in order if marker in found},
        occurrences=occurrences,
    )
