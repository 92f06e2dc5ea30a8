"""The demo corpus and its held-out queries, as shipped in ``indexes/``.

The search tests and the embedder comparison read these files; a broken line, a query pointing at
a passage that was renamed, or a "paraphrase" that is really a pasted copy would make their
numbers meaningless without failing anywhere else.
"""

from __future__ import annotations

import json
import re
from collections import Counter
from difflib import SequenceMatcher
from pathlib import Path
from typing import Any

import pytest

INDEXES = Path(__file__).resolve().parents[2] / "indexes"
CORPUS = INDEXES / "demo.corpus.jsonl"
QUERIES = INDEXES / "demo.queries.jsonl"

PASSAGE_FIELDS = ("key", "work", "chapter", "scene", "text")
WORKS = 12
MIN_PASSAGES = 300
MIN_QUERIES = 40
TEST_QUERIES = 10
LONGEST_SHARED_RUN = 15
"""Characters a query may share verbatim with its passage. A paraphrase keeps names and short
phrases ("흰 여우", "옥피리"); a run longer than this is copied text, which any embedder finds and
which therefore measures nothing."""


def read_lines(path: Path) -> list[dict[str, Any]]:
    rows = []
    for number, line in enumerate(path.read_text(encoding="utf-8").splitlines(), start=1):
        assert line.strip(), f"{path.name}:{number} is blank"
        row = json.loads(line)
        assert isinstance(row, dict), f"{path.name}:{number} is not a JSON object"
        rows.append(row)
    return rows


@pytest.fixture(scope="module")
def passages() -> list[dict[str, Any]]:
    return read_lines(CORPUS)


@pytest.fixture(scope="module")
def queries() -> list[dict[str, Any]]:
    return read_lines(QUERIES)


@pytest.fixture(scope="module")
def by_key(passages: list[dict[str, Any]]) -> dict[str, dict[str, Any]]:
    return {passage["key"]: passage for passage in passages}


class TestCorpus:
    def test_every_line_has_every_field_as_non_empty_text(self, passages: list[dict[str, Any]]):
        for passage in passages:
            assert set(passage) == set(PASSAGE_FIELDS), passage.get("key")
            for field in PASSAGE_FIELDS:
                value = passage[field]
                assert isinstance(value, str), (passage["key"], field)
                assert value.strip(), (passage["key"], field)

    def test_keys_are_unique(self, passages: list[dict[str, Any]]):
        repeated = [key for key, n in Counter(p["key"] for p in passages).items() if n > 1]
        assert repeated == []

    def test_no_two_passages_share_a_text(self, passages: list[dict[str, Any]]):
        repeated = [text for text, n in Counter(p["text"] for p in passages).items() if n > 1]
        assert repeated == []

    def test_size_and_spread_over_the_works(self, passages: list[dict[str, Any]]):
        per_work = Counter(p["work"] for p in passages)
        assert len(passages) >= MIN_PASSAGES
        assert len(per_work) == WORKS
        # No work is a token entry: each has a real share of the corpus to be found in.
        assert min(per_work.values()) >= MIN_PASSAGES // WORKS - 5

    def test_keys_name_the_work_chapter_and_scene(self, passages: list[dict[str, Any]]):
        slugs: dict[str, set[str]] = {}
        for passage in passages:
            key = re.fullmatch(r"([a-z]+)-(\d+)-(\d+)", passage["key"])
            assert key, passage["key"]
            slugs.setdefault(key[1], set()).add(passage["work"])
        assert all(len(works) == 1 for works in slugs.values()), slugs
        assert len(slugs) == WORKS

    def test_file_is_utf8_hangul_not_ascii_escapes(self):
        raw = CORPUS.read_text(encoding="utf-8")
        assert "\\u" not in raw
        assert "화설" in raw


class TestQueries:
    def test_fields_and_splits(self, queries: list[dict[str, Any]]):
        assert len(queries) >= MIN_QUERIES
        for query in queries:
            assert set(query) == {"query", "key", "split"}
            assert query["query"].strip()
            assert query["split"] in {"test", "dev"}
        splits = [query["split"] for query in queries]
        assert splits[:TEST_QUERIES] == ["test"] * TEST_QUERIES
        assert "test" not in splits[TEST_QUERIES:]

    def test_every_query_points_at_a_passage(
        self, queries: list[dict[str, Any]], by_key: dict[str, dict[str, Any]]
    ):
        missing = [query["key"] for query in queries if query["key"] not in by_key]
        assert missing == []

    def test_queries_cover_all_works(
        self, queries: list[dict[str, Any]], by_key: dict[str, dict[str, Any]]
    ):
        assert len({by_key[query["key"]]["work"] for query in queries}) == WORKS

    def test_test_queries_target_different_works(
        self, queries: list[dict[str, Any]], by_key: dict[str, dict[str, Any]]
    ):
        test_works = [by_key[q["key"]]["work"] for q in queries if q["split"] == "test"]
        assert len(set(test_works)) == len(test_works)

    def test_queries_paraphrase_rather_than_copy(
        self, queries: list[dict[str, Any]], by_key: dict[str, dict[str, Any]]
    ):
        for query in queries:
            text, passage = query["query"], by_key[query["key"]]["text"]
            assert text not in passage, query["key"]
            run = SequenceMatcher(None, text, passage, autojunk=False).find_longest_match()
            assert run.size <= LONGEST_SHARED_RUN, (query["key"], text[run.a : run.a + run.size])
