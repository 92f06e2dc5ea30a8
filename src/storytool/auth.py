"""Who is calling: the user id every query filters by.

``local``  one user (settings.local_user_id), for the embedded default on a laptop;
``header`` a trusted gateway in front of Storytool sets ``X-User-Id``;
``jwt``    ``Authorization: Bearer <token>``, HS256 with a shared secret or RS256 with a public key;
           the user is the token's ``sub``; a ``roles`` (or ``role``) claim holding
           ``settings.jwt_admin_role`` makes the caller an admin.

Only a signed token can make an admin: a header anyone on the gateway's network could set, or the
one local user, never is.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any

import jwt

from storytool.config import AuthMode, Settings
from storytool.errors import Unauthorized

USER_ID_HEADER = "x-user-id"
_USER_ID = re.compile(r"^[A-Za-z0-9._:@|-]{1,128}$")
"""User ids are stored in a 128-character column and echoed in logs; keep them plain."""


@dataclass(frozen=True, slots=True)
class Caller:
    user_id: str
    is_admin: bool = False


class Authenticator:
    def __init__(self, settings: Settings) -> None:
        self.mode = settings.auth_mode
        self.local_user_id = settings.local_user_id
        self.admin_role = settings.jwt_admin_role
        self._key: str | None = None
        self._algorithms: list[str] = []
        if self.mode is AuthMode.JWT:
            if settings.jwt_public_key:
                self._key, self._algorithms = settings.jwt_public_key, ["RS256"]
            elif settings.jwt_secret is not None:
                self._key, self._algorithms = settings.jwt_secret.get_secret_value(), ["HS256"]

    def user_id(self, *, user_header: str | None, authorization: str | None) -> str:
        return self.caller(user_header=user_header, authorization=authorization).user_id

    def caller(self, *, user_header: str | None, authorization: str | None) -> Caller:
        if self.mode is AuthMode.LOCAL:
            return Caller(self.local_user_id)
        if self.mode is AuthMode.HEADER:
            if not user_header:
                raise Unauthorized("missing X-User-Id header")
            return Caller(_checked(user_header, "X-User-Id"))
        claims = self._claims(authorization)
        return Caller(
            _checked(str(claims["sub"]), "sub"), is_admin=self.admin_role in _roles(claims)
        )

    def _claims(self, authorization: str | None) -> dict[str, Any]:
        if not authorization:
            raise Unauthorized("missing Authorization: Bearer token")
        scheme, _, token = authorization.partition(" ")
        if scheme.lower() != "bearer" or not token.strip():
            raise Unauthorized("Authorization must be 'Bearer <token>'")
        assert self._key is not None
        try:
            claims = jwt.decode(
                token.strip(),
                self._key,
                algorithms=self._algorithms,
                options={"require": ["sub", "exp"]},
            )
        except jwt.ExpiredSignatureError as exc:
            raise Unauthorized("token expired") from exc
        except jwt.InvalidSignatureError as exc:
            raise Unauthorized("token signature is invalid") from exc
        except jwt.MissingRequiredClaimError as exc:
            raise Unauthorized(f"token lacks the {exc.claim!r} claim") from exc
        except jwt.InvalidTokenError as exc:
            raise Unauthorized(f"token is invalid: {exc}") from exc
        return claims


def _roles(claims: dict[str, Any]) -> list[str]:
    roles = claims.get("roles", claims.get("role", []))
    if isinstance(roles, str):
        return [roles]
    return [str(role) for role in roles] if isinstance(roles, list) else []


def _checked(user_id: str, source: str) -> str:
    if not _USER_ID.match(user_id):
        raise Unauthorized(f"{source} is not a valid user id")
    return user_id
