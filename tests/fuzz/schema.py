"""The schema the fuzzer walks: the app's own ``/openapi.json`` in header auth, with what a fuzzer
needs and the schema does not say.

- OpenAPI links from a new story to everything that takes its ids. ``POST /api/generate``
  answers an event stream whose first event, ``meta``, carries them: Schemathesis reads an event
  stream as a list of ``{event, data, id}``, and a link takes each id out of the ``meta`` event's
  JSON with a regular expression (its ``#regex:`` extension of a runtime expression). History
  answers and a cancel's link on to the same operations, and a deleted thread links back to its
  detail, its export and a new story in it, which must all be gone.
- Request bodies get, one time in four, one string ending in a lone UTF-16 surrogate or a NUL
  (:func:`with_strange_strings`, then :func:`reveal_surrogates` before sending): Schemathesis
  never draws surrogates itself (they cannot be encoded), but a JSON body can escape them
  (``"\\ud800"``).
- ``POST /api/generate``'s body as one schema per mode (new, regenerate, continue), which the
  app's schema says only in prose.

``X-User-Id`` is not in the schema (a gateway sets it, clients never see it): the tests set it,
alternating between two users.
"""

from __future__ import annotations

import copy
from typing import Any

import schemathesis
from hypothesis import strategies as st
from schemathesis.specs.openapi.schemas import OpenApiSchema

from storytool.config import AuthMode, Settings
from storytool.main import create_app

SURROGATES = {"\uf8f0": "\ud800", "\uf8f1": "\udfff"}
"""Private-use stand-ins for a lone high and a lone low surrogate. Bodies are drawn with the
stand-ins and sent with the surrogates (:func:`reveal_surrogates`): Schemathesis validates a
body again after a link puts ids into it, with a validator that cannot encode surrogates."""
STRANGE = ("\uf8f0", "\uf8f1", "\x00", "\x00\uf8f0")
"""What a strange string ends in: a lone surrogate, a NUL, or both."""


def _meta(name: str) -> str:
    """The value of ``name`` in the first event (``meta``) of a generation's stream."""
    return f'$response.body#/0/data#regex:"{name}": ?"([^"]+)"'


_THREAD = _meta("thread_id")
_CONVERSATION = _meta("conversation_id")


def _thread_links(thread: str) -> dict[str, dict[str, Any]]:
    """Links to every operation that takes a thread's id."""
    return {
        "Detail": {"target": ("GET", "/api/retrieveChatHistoryDetail"), "query.thread_id": thread},
        "Delete": {"target": ("DELETE", "/api/deleteThread"), "query.thread_id": thread},
        "Export": {"target": ("GET", "/api/threads/{thread_id}/export"), "path.thread_id": thread},
        "NewInThread": {"target": ("POST", "/api/generate"), "body": {"thread_id": thread}},
    }


def _conversation_links(conversation: str) -> dict[str, dict[str, Any]]:
    """Links to every operation that takes a conversation's id."""
    links: dict[str, dict[str, Any]] = {
        name: {"target": target, "body": {"conversation_id": conversation}}
        for name, target in {
            "Cancel": ("POST", "/api/cancelGeneration"),
            "Evaluate": ("POST", "/api/updateEvaluation"),
            "Select": ("POST", "/api/selectVariant"),
            "Analyze": ("POST", "/api/analyze"),
        }.items()
    }
    links["Resume"] = {
        "target": ("GET", "/api/generate/{conversation_id}/events"),
        "path.conversation_id": conversation,
    }
    links["Continue"] = {
        "target": ("POST", "/api/generate"),
        "body": {"mode": "continue", "parent_conversation_id": conversation},
    }
    # Another take on the parent's input, which takes no input of its own.
    links["Regenerate"] = {
        "target": ("POST", "/api/generate"),
        "body": {
            "mode": "regenerate",
            "parent_conversation_id": conversation,
            "user_input": None,
            "tags": [],
        },
    }
    return links


LINKS: dict[tuple[str, str, str], dict[str, dict[str, Any]]] = {
    ("POST", "/api/generate", "200"): {
        **_thread_links(_THREAD),
        **_conversation_links(_CONVERSATION),
        "History": {"target": ("GET", "/api/retrieveChatHistoryList")},
    },
    ("GET", "/api/retrieveChatHistoryList", "200"): _thread_links("$response.body#/items/0/id"),
    ("GET", "/api/retrieveChatHistoryDetail", "200"): {
        **_thread_links("$response.body#/id"),
        **_conversation_links("$response.body#/conversations/0/id"),
    },
    ("POST", "/api/cancelGeneration", "200"): _conversation_links(
        "$response.body#/conversation_id"
    ),
    ("DELETE", "/api/deleteThread", "204"): _thread_links("$request.query.thread_id"),
}
"""(method, path, status) of a source answer → link name → its target and what it takes from the
answer. A deleted thread's links check that it is gone for good."""


def raw_schema() -> dict[str, Any]:
    """The app's schema in header auth, with the links added."""
    app = create_app(Settings(_env_file=None, auth_mode=AuthMode.HEADER))  # type: ignore[call-arg]
    raw = copy.deepcopy(app.openapi())
    components = raw["components"]["schemas"]
    components["GenerateRequest"] = _generate_request(components["GenerateRequest"])
    for (method, path, status), links in LINKS.items():
        response = raw["paths"][path][method.lower()]["responses"][status]
        response["links"] = {name: _link(raw, **link) for name, link in links.items()}
    return raw


def _generate_request(loose: dict[str, Any]) -> dict[str, Any]:
    """The generation request as one schema per mode. The app's schema says only in prose which
    fields each mode takes, so most bodies drawn from it are refused (422) and few start a
    story."""
    fields = loose["properties"]
    parent = {"type": "string", "format": "uuid"}

    def mode(name: str, required: list[str], **properties: Any) -> dict[str, Any]:
        return {
            "type": "object",
            "additionalProperties": False,
            "required": required,
            "properties": {"mode": {"const": name}, **properties},
        }

    common = {name: fields[name] for name in ("thread_id", "options")}
    prompt = {"type": "string", "minLength": 1, "pattern": r"\S"}
    return {
        "description": loose["description"],
        "anyOf": [
            mode("new", ["user_input"], user_input=prompt, tags=fields["tags"], **common),
            mode(
                "regenerate",
                ["mode", "parent_conversation_id"],
                parent_conversation_id=parent,
                **common,
            ),
            mode(
                "continue",
                ["mode", "parent_conversation_id"],
                parent_conversation_id=parent,
                user_input={"anyOf": [prompt, {"type": "null"}]},
                tags=fields["tags"],
                **common,
            ),
        ],
    }


def _link(
    raw: dict[str, Any], target: tuple[str, str], body: Any = None, **parameters: str
) -> dict[str, Any]:
    method, path = target
    link: dict[str, Any] = {
        "operationId": raw["paths"][path][method.lower()]["operationId"],
        "parameters": parameters,
    }
    if body is not None:
        link["requestBody"] = body
    return link


def load(*, max_stream_events: int) -> OpenApiSchema:
    """The fuzzed schema, reading at most ``max_stream_events`` events of an event stream."""
    schema = schemathesis.openapi.from_dict(raw_schema())
    schema.config.max_stream_events = max_stream_events
    schema.hook("flatmap_body")(with_strange_strings)
    return schema


def with_strange_strings(_context: object, body: Any) -> st.SearchStrategy[Any]:
    """The body as drawn, or (one time in four) with one of its strings made strange: a lone
    surrogate's stand-in or a NUL put at its end."""
    places = _string_places(body)
    if not places:
        return st.just(body)
    strange = st.tuples(st.sampled_from(places), st.sampled_from(STRANGE)).map(
        lambda choice: _with_end(copy.deepcopy(body), *choice)
    )
    return st.integers(0, 3).flatmap(lambda draw: strange if draw == 0 else st.just(body))


def reveal_surrogates(case: schemathesis.Case) -> None:
    """Puts the lone surrogates in place of their stand-ins, just before the case is sent."""
    case.meta  # noqa: B018 (settles Schemathesis' validation of the body as it stands)
    for place in _string_places(case.body):
        node = case.body
        for step in place[:-1]:
            node = node[step]
        for stand_in, surrogate in SURROGATES.items():
            node[place[-1]] = node[place[-1]].replace(stand_in, surrogate)


Place = tuple[str | int, ...]


def _string_places(value: Any, place: Place = ()) -> list[Place]:
    """Where a JSON object or array holds strings (a body that is a bare string has none)."""
    if isinstance(value, dict):
        items: Any = value.items()
    elif isinstance(value, list):
        items = enumerate(value)
    else:
        return [place] if isinstance(value, str) and place else []
    return [found for key, item in items for found in _string_places(item, (*place, key))]


def _with_end(body: Any, place: Place, end: str) -> Any:
    node = body
    for step in place[:-1]:
        node = node[step]
    node[place[-1]] += end
    return body
