"""``storytool index build``: corpus → passages table → index files, on both database backends."""

from __future__ import annotations

import json
import os
import stat
import subprocess
import sys
from pathlib import Path

import pytest
from sqlalchemy import select

from storytool.config import Settings
from storytool.db.engine import create_engine
from storytool.models import Passage
from storytool.search.builder import CorpusError, read_corpus
from storytool.search.index import index_paths
from tests.search.conftest import SAMPLE_CORPUS, build


async def corpus_rows(settings: Settings) -> dict[str, Passage]:
    engine = create_engine(settings)
    try:
        async with engine.connect() as connection:
            result = await connection.execute(select(Passage))
            return {row.extra["key"]: row for row in result}
    finally:
        await engine.dispose()


def write_lines(path: Path, lines: list[dict[str, str]]) -> Path:
    path.write_text(
        "".join(json.dumps(line, ensure_ascii=False) + "\n" for line in lines), encoding="utf-8"
    )
    return path


class TestBuild:
    async def test_writes_passages_index_and_manifest(self, search_settings: Settings):
        manifest = await build(search_settings)
        rows = await corpus_rows(search_settings)
        assert len(rows) == 12
        assert rows["hodong-02"].work == "호동기담"
        assert rows["hodong-02"].scene == "보은"
        faiss_path, manifest_path = index_paths(search_settings.index_dir, "sample")
        on_disk = json.loads(manifest_path.read_text(encoding="utf-8"))
        assert on_disk["count"] == manifest.count == 12
        assert on_disk["embedder"] == "hashing-char13-4096"
        assert on_disk["dimension"] == 4096
        assert on_disk["index_type"] == "flat"
        assert on_disk["build_seconds"] >= 0
        # other replicas and users read the files
        assert stat.S_IMODE(faiss_path.stat().st_mode) & 0o044 == 0o044

    async def test_rebuilding_replaces_the_corpus_and_keeps_ids_of_kept_keys(
        self, search_settings: Settings, tmp_path: Path
    ):
        await build(search_settings)
        before = await corpus_rows(search_settings)
        lines = [json.loads(line) for line in SAMPLE_CORPUS.read_text("utf-8").splitlines()]
        lines = [line for line in lines if line["key"] != "wolha-01"]
        lines[0]["text"] = "고쳐 쓴 첫 대목이라."
        lines.append({"key": "new-01", "work": "새 책", "text": "새로 들어온 대목이라."})
        manifest = await build(search_settings, write_lines(tmp_path / "v2.jsonl", lines))
        after = await corpus_rows(search_settings)
        assert manifest.count == len(after) == 12
        assert "wolha-01" not in after
        assert after["new-01"].work == "새 책"
        assert after["cheongun-01"].text == "고쳐 쓴 첫 대목이라."
        assert after["cheongun-01"].id == before["cheongun-01"].id
        assert after["hodong-04"].id == before["hodong-04"].id

    async def test_two_corpora_live_side_by_side(self, search_settings: Settings, tmp_path: Path):
        await build(search_settings)
        other = write_lines(
            tmp_path / "other.jsonl", [{"key": "x-1", "work": "다른 책", "text": "다른 대목."}]
        )
        await build(search_settings, other, name="other")
        await build(search_settings)
        rows = await corpus_rows(search_settings)
        assert len(rows) == 13
        assert rows["x-1"].extra == {"corpus": "other", "key": "x-1"}


class TestCorpusFile:
    @pytest.mark.parametrize(
        ("line", "problem"),
        [
            ("not json", "not a passage"),
            ('{"key": "k", "work": "w"}', "text"),
            ('{"key": "", "work": "w", "text": "t"}', "key"),
        ],
    )
    def test_a_bad_line_is_named(self, tmp_path: Path, line: str, problem: str):
        path = tmp_path / "bad.jsonl"
        path.write_text('{"key": "a", "work": "w", "text": "t"}\n' + line + "\n", encoding="utf-8")
        with pytest.raises(CorpusError, match=r"bad\.jsonl:2") as raised:
            read_corpus(path)
        assert problem in str(raised.value)

    def test_a_repeated_key_is_refused(self, tmp_path: Path):
        line = '{"key": "a", "work": "w", "text": "t"}\n'
        path = tmp_path / "twice.jsonl"
        path.write_text(line + line, encoding="utf-8")
        with pytest.raises(CorpusError, match="key 'a' appears twice"):
            read_corpus(path)


def test_the_cli_builds_an_index_reporting_progress_in_plain_lines_when_piped(
    search_settings: Settings,
):
    env = {
        **os.environ,
        "STORYTOOL_DATABASE_URL": search_settings.effective_database_url,
        "STORYTOOL_INDEX_DIR": str(search_settings.index_dir),
        "STORYTOOL_EMBEDDER": "hashing",
        "STORYTOOL_EMBED_BATCH_SIZE": "4",
        "COLUMNS": "120",
    }
    result = subprocess.run(
        [sys.executable, "-m", "storytool", "index", "build", str(SAMPLE_CORPUS), "--name", "cli"],
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert result.returncode == 0, result.stderr
    assert "index 'cli': 12 passages" in result.stdout
    assert "12/12" in result.stdout
    # Not a terminal: a line per step, no bar redrawn over itself.
    assert "\r" not in result.stdout
    assert "━" not in result.stdout
    assert "embedding with hashing" in result.stdout.splitlines()[0]
    assert index_paths(search_settings.index_dir, "cli")[0].exists()


def test_the_cli_refuses_a_bad_name(tmp_path: Path):
    result = subprocess.run(
        [sys.executable, "-m", "storytool", "index", "build", str(SAMPLE_CORPUS), "--name", "../x"],
        env={**os.environ, "STORYTOOL_INDEX_DIR": str(tmp_path)},
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert result.returncode == 2
    assert "--name '../x'" in result.stderr
