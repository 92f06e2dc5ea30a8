"""The README as a new user reads it: every setting in its table, the snippets run as written
(Python against a live ``storytool serve``, the quick start's curl commands too), ``make run``
listening where it says."""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from storytool.config import ENV_PREFIX, Settings
from tests.playground.harness import DEMO_CORPUS, STORYTOOL, serve, server_env

ROOT = Path(__file__).resolve().parents[2]
README = (ROOT / "README.md").read_text(encoding="utf-8")
DEFAULT_ADDRESS = "127.0.0.1:8000"


def section(title: str) -> str:
    """The text of the README section whose heading is ``title``, to the next heading of the same
    or a higher level (a ``#`` line inside a code block is a comment, not a heading)."""
    lines = README.splitlines(keepends=True)
    level, found, fenced = 0, [], False
    for line in lines:
        fenced ^= line.startswith("```")
        heading = None if fenced else re.match(r"(#+) (.*?)\s*$", line)
        if heading and level and len(heading.group(1)) <= level:
            break
        if level:
            found.append(line)
        elif heading and heading.group(2) == title:
            level = len(heading.group(1))
    assert level, f"no section {title!r} in README.md"
    return "".join(found)


def code_blocks(text: str, language: str) -> list[str]:
    return re.findall(rf"^```{language}\n(.*?)^```", text, re.MULTILINE | re.DOTALL)


def settings_rows() -> list[tuple[list[str], str]]:
    """The rows of the settings table: the variables of the first cell, the default cell."""
    rows = []
    for line in section("Configuration").splitlines():
        if line.startswith("| `"):
            first, default = [cell.strip() for cell in line.strip("|").split(" | ")][:2]
            rows.append((re.findall(r"`([A-Z0-9_]+)`", first), default))
    return rows


def field_of(variable: str) -> str:
    return variable.removeprefix(ENV_PREFIX).lower()


class TestSettingsTable:
    """Each row's first cell names one or more variables; together they are the settings."""

    @staticmethod
    def listed() -> list[str]:
        return [name for names, _default in settings_rows() for name in names]

    def test_every_setting_has_its_variable_in_the_table_and_nothing_else_is(self):
        variables = {f"{ENV_PREFIX}{name.upper()}" for name in Settings.model_fields}
        listed = self.listed()
        assert sorted(variables - set(listed)) == [], "settings missing from README.md"
        assert sorted(set(listed) - variables) == [], "README.md lists unknown settings"

    def test_each_variable_is_listed_once(self):
        listed = self.listed()
        assert sorted({name for name in listed if listed.count(name) > 1}) == []

    def test_the_defaults_it_gives_are_the_settings_defaults(self):
        """Defaults written as values (numbers, true/false, `code`, unset) are compared; prose
        ("random per process") is left to the reader."""
        compared = 0
        for names, cell in settings_rows():
            values = [cell] * len(names) if cell == "unset" else cell.split(", ")
            if len(values) != len(names):
                continue
            for name, written in zip(names, values, strict=True):
                default = Settings.model_fields[field_of(name)].default
                if written == "unset":
                    assert default is None, name
                elif written in ("true", "false"):
                    assert default is (written == "true"), name
                elif re.fullmatch(r"[0-9.]+", written):
                    assert float(written) == default, name
                elif re.fullmatch(r"`[^`]+`", written):
                    assert written.strip("`") == str(getattr(default, "value", default)), name
                else:
                    continue
                compared += 1
        assert compared > 50


@pytest.fixture(scope="module")
def served(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[str, Path]]:
    """``storytool serve`` as ``make run`` starts it (offline stories at their default pace), on
    a free port and a temporary SQLite database, with the demo index (hashing embedder: built in a
    second); its address and folder."""
    folder = tmp_path_factory.mktemp("readme")
    env = server_env(folder, STORYTOOL_EMBEDDER="hashing")
    subprocess.run(
        [STORYTOOL, "index", "build", str(DEMO_CORPUS), "--name", "demo"],
        env=env,
        cwd=folder,
        check=True,
        capture_output=True,
        timeout=120,
    )
    with serve(folder, env) as url:
        yield url.removeprefix("http://"), folder


def run_here(address: str, snippet: str) -> str:
    """The snippet as written, pointed at the test's server instead of 127.0.0.1:8000."""
    assert DEFAULT_ADDRESS in snippet
    return snippet.replace(DEFAULT_ADDRESS, address)


def test_every_python_snippet_runs_as_a_script(served: tuple[str, Path]):
    address, folder = served
    snippets = code_blocks(README, "python")
    assert len(snippets) >= 2
    for snippet in snippets:
        script = folder / "snippet.py"
        script.write_text(run_here(address, snippet), encoding="utf-8")
        result = subprocess.run(
            [sys.executable, str(script)],
            cwd=folder,
            capture_output=True,
            text=True,
            timeout=120,
            check=False,
        )
        assert result.returncode == 0, f"{snippet}\n{result.stderr}"
        assert result.stdout.strip(), snippet
        assert result.stderr == "", result.stderr


def json_values(text: str) -> list[Any]:
    """The JSON documents printed one after another (curl adds no newline after a body)."""
    decoder, values, at = json.JSONDecoder(), [], 0
    while at < len(text.rstrip()):
        value, at = decoder.raw_decode(text, at)
        values.append(value)
        at += len(text[at:]) - len(text[at:].lstrip())
    return values


def test_the_quick_start_runs_as_written(served: tuple[str, Path]):
    """Its curl commands in one shell, block after block, as a user pastes them: a story, a
    cancelled one, its resume, a search and an analysis."""
    address, folder = served
    if shutil.which("curl") is None:
        pytest.skip("curl is not installed")
    blocks = code_blocks(section("Quick start: a story in two minutes"), "sh")
    mark = "----- end of block -----"
    script = "".join(f"{run_here(address, block)}\necho\necho '{mark}'\n" for block in blocks)
    result = subprocess.run(
        ["bash", "-eu", "-c", script],
        cwd=folder,
        capture_output=True,
        text=True,
        timeout=180,
        check=False,
    )
    assert result.returncode == 0, result.stderr
    story, cancel, resume, search_and_analysis, _ = result.stdout.split(f"\n{mark}\n")

    events = re.findall(r"^event: (\w+)$", story, re.MULTILINE)
    assert events[0] == "meta"
    assert {"title", "recommendations"} <= set(events)
    assert events[-1] == "done"
    assert 'data: {"stage":"refine"' in story

    [cancelled] = json_values(cancel)
    assert cancelled["status"] == "cancelled"
    assert cancelled["partial_draft"]

    replayed = re.findall(r"^id: (\d+)$", resume, re.MULTILINE)
    assert replayed[0] == "4"
    assert re.findall(r"^event: (\w+)$", resume, re.MULTILINE)[-1] == "cancelled"

    searched, analysed = json_values(search_and_analysis)
    assert len(searched["passages"]) == 3
    assert analysed["metrics"]["sentences"] == 1


def test_make_run_listens_where_it_is_told():
    """``make -n`` prints the commands ``make run`` would run, the server's last."""
    assert "make run PORT=" in README
    if shutil.which("make") is None:
        pytest.skip("make is not installed")

    # Under `make test` (CI) the outer make's MAKEFLAGS/MAKELEVEL would have this one print
    # "Entering/Leaving directory" lines: a make of its own, as a user runs it.
    outer = {"MAKEFLAGS", "MAKELEVEL", "MFLAGS", "MAKEOVERRIDES"}
    environment = {name: value for name, value in os.environ.items() if name not in outer}

    def serve_command(*args: str) -> str:
        printed = subprocess.run(
            ["make", "--no-print-directory", "-n", "run", *args],
            cwd=ROOT,
            capture_output=True,
            text=True,
            check=True,
            env=environment | {"HOST": "shell-host-name", "PORT": "1"},
        )
        return printed.stdout.strip().splitlines()[-1]

    assert serve_command("PORT=8123", "HOST=0.0.0.0").endswith(
        "storytool serve --host 0.0.0.0 --port 8123"
    )
    # A shell's own HOST (zsh, tcsh set one) or PORT does not move it.
    assert serve_command().endswith("storytool serve --host 127.0.0.1 --port 8000")
