"""Opaque, signed cursors for the history list.

A cursor is ``base64url(updated_at|thread_id) "." base64url(hmac)``: the keyset position of the last
thread a page showed, signed with a server key and bound to the user it was issued to. Clients
cannot read meaning into it or edit it; a forged, corrupted or borrowed cursor is refused with a
422 naming ``cursor`` instead of silently paging from somewhere else.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
from datetime import datetime

from storytool.errors import InvalidInput
from storytool.threads.repository import ThreadKey

_SIGNATURE_BYTES = 16
"""128 bits of HMAC-SHA256: far past guessing, and keeps cursors short in URLs."""


def _encode(raw: bytes) -> str:
    return base64.urlsafe_b64encode(raw).rstrip(b"=").decode("ascii")


def _decode(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


class CursorSigner:
    def __init__(self, key: str) -> None:
        self._key = key.encode()

    def _sign(self, user_id: str, payload: bytes) -> bytes:
        message = user_id.encode() + b"\0" + payload
        return hmac.new(self._key, message, hashlib.sha256).digest()[:_SIGNATURE_BYTES]

    def dump(self, key: ThreadKey, *, user_id: str) -> str:
        updated_at, thread_id = key
        payload = f"{updated_at.isoformat()}|{thread_id}".encode()
        return f"{_encode(payload)}.{_encode(self._sign(user_id, payload))}"

    def load(self, cursor: str, *, user_id: str) -> ThreadKey:
        invalid = InvalidInput("cursor is not one this list gave out", field="cursor")
        body, _, signature = cursor.partition(".")
        try:
            payload = _decode(body)
            valid = hmac.compare_digest(_decode(signature), self._sign(user_id, payload))
        except ValueError as exc:  # bad base64, or not ASCII
            raise invalid from exc
        if not valid:
            raise invalid
        # Signed by us, so it is the payload dump() wrote.
        stamp, _, thread_id = payload.decode().partition("|")
        return datetime.fromisoformat(stamp), thread_id
