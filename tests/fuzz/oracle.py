"""What every answer of the fuzzed server must be, beyond what its schema says.

Schemathesis' own checks hold each answer to the schema (no 5xx; a documented status, content
type and body). :class:`Oracle` adds what the schema cannot say, remembering who owns each id the
server handed out:

- errors are ``{"error": {"code", "message"}}`` JSON, and 429/503 say when to retry
  (``Retry-After``, whole seconds);
- an event stream's ids count up by one from where the reader stood, its first event on a new
  story is ``meta``, and one read to its end ends with exactly one terminal event, never an
  ``internal_error``;
- no user reaches another's data: a request carrying another user's id is a 404 (or refused
  before any id is looked at: 4xx for its input, 429/503), never a success nor a 409 that would
  tell the story's state; no answer holds another user's id; a deleted thread and its
  conversations stay gone.
"""

from __future__ import annotations

import json
import time
from collections import Counter, defaultdict
from collections.abc import Iterator
from typing import Any

from schemathesis import Case, Response
from schemathesis.checks import CheckFunction, not_a_server_error
from schemathesis.specs.openapi.checks import (
    content_type_conformance,
    response_schema_conformance,
    status_code_conformance,
)

from tests.fuzz.schema import SURROGATES

TERMINAL = frozenset({"done", "cancelled", "error"})
REFUSED_BEFORE_LOOKUP = frozenset({400, 401, 408, 413, 422, 429, 503})
"""Answers a request gets before its ids are looked up, whoever owns them."""
STRANGE_CHARACTERS = "\x00" + "".join(SURROGATES.values())
ID_KEYS = frozenset({"id", "variants", "selected", "continues"})
"""Keys of answers that hold ids, besides every ``*_id``."""


class Oracle:
    def __init__(self) -> None:
        self.owners: dict[str, str] = {}
        """Every thread and conversation id the server handed out → the user it belongs to."""
        self.threads: dict[str, str] = {}
        """Conversation id → its thread's id."""
        self.deleted: set[str] = set()
        """Ids of deleted threads and of their conversations."""
        self.seen: Counter[str] = Counter()
        """What the checks met: statuses, intrusions, strange strings sent, stories' ends."""
        self.sent: defaultdict[str | None, list[float]] = defaultdict(list)
        """When each user's requests were answered."""

    def checks(self) -> list[CheckFunction]:
        return [
            self.tally,
            not_a_server_error,
            status_code_conformance,
            content_type_conformance,
            response_schema_conformance,
            self.errors_are_well_formed,
            self.streams_are_well_formed,
            self.nobody_sees_another_users_data,
        ]

    def busiest_second(self) -> int:
        """The most requests one user had answered within one second."""
        most = 0
        for times in self.sent.values():
            start = 0
            for end, answered in enumerate(times):
                while answered - times[start] > 1:
                    start += 1
                most = max(most, end - start + 1)
        return most

    def tally(self, _ctx: object, response: Response, case: Case) -> None:
        self.sent[_header(case, "x-user-id")].append(time.monotonic())
        self.seen[str(response.status_code)] += 1
        self.seen[f"{case.operation.label} {response.status_code}"] += 1
        if _strange(case.body):
            self.seen["strange strings sent"] += 1

    def errors_are_well_formed(self, _ctx: object, response: Response, _case: Case) -> None:
        if response.status_code < 400:
            return
        assert response.headers.get("content-type") == ["application/json"], response.headers
        error = response.json()["error"]
        assert isinstance(error["code"], str), error
        assert isinstance(error["message"], str), error
        if response.status_code in (429, 503):
            (retry_after,) = response.headers["retry-after"]
            assert retry_after.isdigit(), retry_after
            assert int(retry_after) >= 1, retry_after

    def streams_are_well_formed(self, _ctx: object, response: Response, case: Case) -> None:
        if response.status_code != 200 or not _is_event_stream(response):
            return
        events = list(parse_events(response.content))
        if case.operation.path == "/api/generate":
            assert events, "a new story's stream with no event"
            assert events[0]["event"] == "meta", events[0]
            first = 1
        else:
            # Empty when the reader claimed more than the story had written when it ended.
            first = int(_header(case, "last-event-id") or 0) + 1
        assert [int(event["id"]) for event in events] == list(range(first, first + len(events)))
        ends = [event for event in events if event["event"] in TERMINAL]
        if events and not response.stream_cut_short:
            assert len(ends) == 1, [event["event"] for event in ends]
            assert ends[0] is events[-1], events[-1]
        for end in ends:
            data = json.loads(end["data"])
            assert data.get("code") != "internal_error", data
            self.seen[f"stories {end['event']}"] += 1

    def nobody_sees_another_users_data(self, _ctx: object, response: Response, case: Case) -> None:
        caller = _header(case, "x-user-id")
        if response.status_code == 200 and case.operation.path == "/api/generate":
            self._record(caller, json.loads(next(parse_events(response.content))["data"]))
        sent = set(_ids(case.path_parameters)) | set(_ids(case.query)) | set(_ids(case.body))
        foreign = {value for value in sent if self.owners.get(value, caller) != caller}
        if foreign:
            self.seen["intrusions"] += 1
            assert response.status_code == 404 or response.status_code in REFUSED_BEFORE_LOOKUP, (
                f"{caller} used {sorted(foreign)} of {self.owners[min(foreign)]}: "
                f"{response.status_code}"
            )
            self.seen[f"intrusions {response.status_code}"] += 1
        gone = sent & self.deleted
        if gone and response.status_code < 300:
            raise AssertionError(f"{sorted(gone)} were deleted, yet {response.status_code}")
        if response.status_code == 204 and case.operation.path == "/api/deleteThread":
            self._deleted(str(case.query["thread_id"]))
        if response.status_code == 200 and _is_json(response):
            shown = set(_ids(response.json()))
            theirs = {value for value in shown if self.owners.get(value, caller) != caller}
            assert not theirs, f"{caller} was shown {sorted(theirs)}"

    def _record(self, caller: str | None, meta: dict[str, str]) -> None:
        thread, conversation = meta["thread_id"], meta["conversation_id"]
        assert self.owners.get(thread, caller) == caller, f"{caller} wrote into {thread}"
        assert thread not in self.deleted, f"a story was written into deleted {thread}"
        assert caller is not None
        self.owners[thread] = self.owners[conversation] = caller
        self.threads[conversation] = thread

    def _deleted(self, thread: str) -> None:
        self.deleted.add(thread)
        self.deleted.update(
            conversation for conversation, of in self.threads.items() if of == thread
        )


def parse_events(content: bytes) -> Iterator[dict[str, str]]:
    """``{id, event, data}`` per event of an event stream; comments (pings) are skipped."""
    for block in content.decode().replace("\r\n", "\n").split("\n\n"):
        fields: dict[str, str] = {}
        for line in block.splitlines():
            if line and not line.startswith(":"):
                name, _, value = line.partition(":")
                fields[name] = value.removeprefix(" ")
        if "data" in fields:
            yield fields


def _ids(value: Any, key: str = "") -> Iterator[str]:
    """Every string under an id-holding key of a request's or an answer's JSON."""
    if isinstance(value, dict):
        for name, item in value.items():
            yield from _ids(item, str(name))
    elif isinstance(value, list):
        for item in value:
            yield from _ids(item, key)
    elif isinstance(value, str) and (key.endswith("_id") or key in ID_KEYS):
        yield value


def _strange(value: Any) -> bool:
    if isinstance(value, dict):
        return any(_strange(item) for item in value.values())
    if isinstance(value, list):
        return any(_strange(item) for item in value)
    return isinstance(value, str) and any(character in value for character in STRANGE_CHARACTERS)


def _header(case: Case, name: str) -> str | None:
    for key, value in (case.headers or {}).items():
        if key.lower() == name:
            return str(value)
    return None


def _media_type(response: Response) -> str:
    return (response.headers.get("content-type") or [""])[0].split(";")[0]


def _is_event_stream(response: Response) -> bool:
    return _media_type(response) == "text/event-stream"


def _is_json(response: Response) -> bool:
    return _media_type(response) == "application/json"
