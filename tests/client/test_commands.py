"""``storytool generate | history | evaluate | export`` against a live server, as a writer would use
them one after another: the ids each command prints are what the next one takes."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest
from typer.testing import CliRunner, Result

from storytool.cli import app
from tests.fakes.server_thread import ServerThread

PROMPT = "한 선비가 과거 길에 올라 산적을 만나니"


def storytool(server: ServerThread, *args: str, user: str = "alice") -> Result:
    return CliRunner().invoke(app, [*args, "--url", server.url, "--user", user])


def generate(server: ServerThread, prompt: str = PROMPT) -> tuple[str, str, str]:
    """Thread id, conversation id and the story as the command printed them."""
    result = storytool(server, "generate", prompt, "--tag", "모험", "--length", "short")
    assert result.exit_code == 0, result.output
    ids = re.search(r"thread (\S+) conversation (\S+)", result.stderr)
    assert ids is not None, result.stderr
    return ids.group(1), ids.group(2), result.stdout


def test_history_lists_the_threads_newest_first(server: ServerThread):
    first, _, _ = generate(server, f"{PROMPT} 하나")
    second, _, story = generate(server, f"{PROMPT} 둘")
    title = re.search(r"《(.+)》", story)
    assert title is not None

    result = storytool(server, "history")

    assert result.exit_code == 0, result.output
    lines = result.stdout.splitlines()
    assert [line.split()[0] for line in lines] == [second, first]
    assert lines[0].split("  ")[2:] == ["completed", "1", title.group(1)]
    assert storytool(server, "history", user="bob").stdout == ""


def test_evaluate_with_reasons_and_a_comment(server: ServerThread):
    thread_id, conversation_id, _ = generate(server)

    result = storytool(
        server,
        "evaluate",
        conversation_id,
        "like",
        "--reason",
        "style",
        "--reason",
        "plot",
        "--comment",
        "문체가 좋도다",
    )

    assert result.exit_code == 0, result.output
    assert result.stdout == f"{conversation_id}: like (style, plot)\n"
    exported = json.loads(storytool(server, "export", thread_id, "--format", "json").stdout)
    evaluation = exported["conversations"][0]["evaluation"]
    assert (evaluation["rating"], evaluation["reasons"], evaluation["comment"]) == (
        "like",
        ["style", "plot"],
        "문체가 좋도다",
    )


def test_evaluate_refuses_an_unknown_rating_or_reason_before_calling(server: ServerThread):
    assert storytool(server, "evaluate", "x", "love").exit_code == 2
    assert storytool(server, "evaluate", "x", "like", "--reason", "pretty").exit_code == 2


def test_export_to_stdout_and_to_a_file(server: ServerThread, tmp_path: Path):
    thread_id, _, printed = generate(server)
    story = printed.split("\n\n《")[0]

    to_stdout = storytool(server, "export", thread_id)
    out = tmp_path / "exports" / "story.md"
    to_file = storytool(server, "export", thread_id, "--out", str(out))

    assert to_stdout.exit_code == 0, to_stdout.output
    assert to_stdout.stdout.startswith("# ")
    assert story.strip() in to_stdout.stdout
    assert to_file.exit_code == 0, to_file.output
    assert to_file.stdout == ""
    assert out.read_text(encoding="utf-8") == to_stdout.stdout
    assert f"exported {out}" in to_file.stderr


@pytest.mark.parametrize(
    "command",
    [
        ["evaluate", "{conversation}", "dislike"],
        ["export", "{thread}"],
    ],
)
def test_another_users_story_is_refused_with_the_servers_message(
    server: ServerThread, command: list[str]
):
    thread_id, conversation_id, _ = generate(server)
    args = [arg.format(thread=thread_id, conversation=conversation_id) for arg in command]

    result = storytool(server, *args, user="bob")

    assert result.exit_code == 1
    assert result.stderr.startswith("refused: 404 not_found")


def test_a_server_that_does_not_answer_is_named():
    result = CliRunner().invoke(app, ["history", "--url", "http://127.0.0.1:9"])
    assert result.exit_code == 1
    assert "cannot reach http://127.0.0.1:9" in result.stderr
