"""Metrics against texts written for these tests; every expected value was counted by hand
(character by character for the offsets), not computed by the code under test."""

from __future__ import annotations

import pytest

from storytool.analysis.metrics import Span, measure, sentence_spans
from storytool.analysis.service import chunk_sentences

# A classical opening: a blank line between paragraphs, an embedded quote carried on by 하더라.
CLASSICAL = (
    "화설 옛날에 한 선비가 있으니 이름은 김생이라.\n"
    "\n"
    '이때 김생이 가로되 "내 한양에 가노라." 하더라.\n'
    "각설 차시에 김생이 나타나니 슬프도다!"
)

# Western quotes: an apostrophe inside a quote, a quote that ends a sentence, one carried on by
# a lower-case word, an ellipsis, and a last paragraph without a full stop.
WESTERN = "\"Don't go,\" she said. \"It's dark!\" He left anyway... 'Why?' he asked.\nThe End"

# Nested corner brackets, curly quotes, a quote left open at the end of its paragraph, a quote
# that ends a sentence before a new one, and words that must NOT count as markers
# (각설이 the street singer, the modern 아니라).
NESTED = (
    "『춘향이 「이 도령」을 부르니』 대답이 없더라.\n"
    "“가자.” 그가 일어섰다. “어디로\n"
    "각설이 노래하였더라. 꿈이 아니라 참이로다."
)


def texts(text: str, spans: list[Span]) -> list[str]:
    return [text[span.start : span.end] for span in spans]


# Counted by hand, per text; the comments say how.
COUNTS = {
    "classical": (
        CLASSICAL,
        {
            "characters": 78,
            "characters_no_spaces": 59,
            "words": 19,
            "paragraphs": 3,  # the blank line adds none
            "sentences": 3,
            "quotations": 1,
            "dialogue_characters": 8,  # 내 한양에 가노라.
            "dialogue_share": 0.1356,  # 8 / 59
            "average_sentence_characters": 19.67,  # 59 / 3
            "average_sentence_words": 6.33,  # 19 / 3
            "reading_time_seconds": 8,  # 59 characters at 500 a minute = 7.08 s
            "reading_rate_chars_per_minute": 500,
            "distinct_words": 18,  # 김생이 twice
            "lexical_diversity": 0.9474,  # 18 / 19
        },
    ),
    "western": (
        WESTERN,
        {
            "characters": 77,
            "characters_no_spaces": 64,
            "words": 14,  # Don't is one word
            "paragraphs": 2,
            "sentences": 5,
            "quotations": 3,
            "dialogue_characters": 21,  # Don't go, / It's dark! / Why?
            "dialogue_share": 0.3281,  # 21 / 64
            "average_sentence_characters": 12.8,  # 64 / 5
            "average_sentence_words": 2.8,  # 14 / 5
            "reading_time_seconds": 8,  # 7.68 s
            "distinct_words": 13,  # He and he are one type
            "lexical_diversity": 0.9286,  # 13 / 14
        },
    ),
    "nested": (
        NESTED,
        {
            "characters": 71,
            "characters_no_spaces": 57,
            "words": 16,
            "paragraphs": 3,
            "sentences": 6,
            "quotations": 3,  # the nested 「이 도령」 is part of the 『』 quote
            "dialogue_characters": 16,  # 10 in 『』, 가자. and the open 어디로
            "dialogue_share": 0.2807,  # 16 / 57
            "average_sentence_characters": 9.5,  # 57 / 6
            "average_sentence_words": 2.67,  # 16 / 6
            "reading_time_seconds": 7,  # 6.84 s
            "distinct_words": 16,
            "lexical_diversity": 1.0,
        },
    ),
}


class TestCounts:
    @pytest.mark.parametrize(("text", "expected"), COUNTS.values(), ids=COUNTS.keys())
    def test_hand_counted(self, text: str, expected: dict[str, float]):
        assert measure(text).model_dump(include=set(expected)) == expected

    def test_a_plural_possessive_opens_no_quote(self):
        text = "The boys' horses ran. 'Go,' he said."
        metrics = measure(text)
        assert (metrics.quotations, metrics.dialogue_characters, metrics.sentences) == (1, 3, 2)

    def test_blank_text_has_no_division_by_zero(self):
        metrics = measure(" \n\n ")
        assert (metrics.words, metrics.sentences, metrics.paragraphs) == (0, 0, 0)
        assert metrics.dialogue_share == 0.0
        assert metrics.average_sentence_characters == 0.0
        assert metrics.lexical_diversity == 0.0


class TestSentences:
    def test_a_quote_carried_on_by_hada_stays_in_its_sentence(self):
        assert texts(CLASSICAL, sentence_spans(CLASSICAL)) == [
            "화설 옛날에 한 선비가 있으니 이름은 김생이라.",
            '이때 김생이 가로되 "내 한양에 가노라." 하더라.',
            "각설 차시에 김생이 나타나니 슬프도다!",
        ]
        assert sentence_spans(CLASSICAL) == [
            Span(start=0, end=26),
            Span(start=28, end=56),
            Span(start=57, end=78),
        ]

    def test_western_quotes_ellipsis_and_lower_case_continuation(self):
        assert texts(WESTERN, sentence_spans(WESTERN)) == [
            '"Don\'t go," she said.',
            '"It\'s dark!"',
            "He left anyway...",
            "'Why?' he asked.",
            "The End",
        ]

    def test_nested_quotes_and_a_quote_left_open(self):
        assert sentence_spans(NESTED) == [
            Span(start=0, end=26),
            Span(start=27, end=32),
            Span(start=33, end=41),
            Span(start=42, end=46),
            Span(start=47, end=58),
            Span(start=59, end=71),
        ]
        assert texts(NESTED, sentence_spans(NESTED))[1:4] == [
            "“가자.”",
            "그가 일어섰다.",
            "“어디로",
        ]

    @pytest.mark.parametrize(
        ("text", "expected"),
        [
            ("값은 3.14이다. 끝", ["값은 3.14이다.", "끝"]),
            ("무엇이냐?! 모른다", ["무엇이냐?!", "모른다"]),
            ("가자\uff01 가자。 가자", ["가자\uff01", "가자。", "가자"]),
            ("(크게 웃었다.) 그가 갔다.", ["(크게 웃었다.)", "그가 갔다."]),
            ("가자.” 그가 갔다.", ["가자.”", "그가 갔다."]),
            ('말했다."가자." 하니 갔다.', ['말했다."가자." 하니 갔다.']),
        ],
    )
    def test_sentence_ends(self, text: str, expected: list[str]):
        assert texts(text, sentence_spans(text)) == expected


class TestMarkers:
    def test_endings_and_transitions_with_offsets(self):
        markers = measure(CLASSICAL).markers
        assert markers.endings.total == 5
        assert markers.endings.counts == {
            "-이라": 1,
            "-가로되": 1,
            "-노라": 1,
            "-하더라": 1,
            "-도다": 1,
        }
        assert [(o.marker, o.word, o.start, o.end) for o in markers.endings.occurrences] == [
            ("-이라", "김생이라", 23, 25),
            ("-가로되", "가로되", 35, 38),
            ("-노라", "가노라", 47, 49),
            ("-하더라", "하더라", 52, 55),
            ("-도다", "슬프도다", 75, 77),
        ]
        assert markers.transitions.counts == {"화설": 1, "이때": 1, "각설": 1, "차시": 1}
        assert [(o.word, o.start, o.end) for o in markers.transitions.occurrences] == [
            ("화설", 0, 2),
            ("이때", 28, 30),
            ("각설", 57, 59),
            ("차시에", 60, 63),
        ]

    def test_longest_ending_wins_and_look_alikes_do_not_count(self):
        markers = measure(NESTED).markers
        assert [(o.marker, o.start, o.end) for o in markers.endings.occurrences] == [
            ("-더라", 23, 25),
            ("-하였더라", 53, 57),  # not -더라
            ("-이로다", 67, 70),  # not -로다; 아니라 is no marker
        ]
        assert markers.transitions.total == 0  # 각설이 is not 각설
        assert markers.transitions.counts == {}

    def test_offsets_point_at_the_marker_text(self):
        for occurrence in measure(CLASSICAL).markers.endings.occurrences:
            assert CLASSICAL[occurrence.start : occurrence.end] == occurrence.marker[1:]


class TestChunks:
    TEXT = "가나다. 라마바. 사아자."

    def test_whole_sentences_fill_each_chunk_up_to_the_budget(self):
        spans = sentence_spans(self.TEXT)
        # Each numbered line is 8 characters: "[1] 가나다."; two and a newline make 17.
        chunks = chunk_sentences(self.TEXT, spans, budget=17)
        assert [(c.first, c.last, c.body) for c in chunks] == [
            (1, 2, "[1] 가나다.\n[2] 라마바."),
            (3, 3, "[3] 사아자."),
        ]
        assert len(chunk_sentences(self.TEXT, spans, budget=16)) == 3
        assert len(chunk_sentences(self.TEXT, spans, budget=100)) == 1

    def test_a_sentence_longer_than_the_budget_is_cut_and_keeps_its_number(self):
        text = "가" * 20 + ". 끝."
        chunks = chunk_sentences(text, sentence_spans(text), budget=12)
        assert [(c.first, c.last, c.body) for c in chunks] == [
            (1, 1, "[1] " + "가" * 8),
            (1, 1, "[1] " + "가" * 8),
            (1, 1, "[1] 가가가가."),  # with "\n[2] 끝." it would be 16 > 12
            (2, 2, "[2] 끝."),
        ]
