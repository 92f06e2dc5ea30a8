"""Who is calling: the user id every query filters by.

``local``  one user (settings.local_user_id), for the embedded default on a laptop;
``header`` a trusted gateway in front of Storytool sets ``X-User-Id``; with settings.gateway_secret
           the gateway also proves itself with a shared secret, so a client that reaches the port
           past the gateway cannot name a user;
``jwt``    ``Authorization: Bearer <token>``, HS256 with a shared secret, RS256 with a public key or
           with the keys of an identity provider's JWKS URL; the user is the token's ``sub``;
           a ``roles`` (or ``role``) claim holding ``settings.jwt_admin_role`` makes the caller
           an admin.

A header that decides who calls must appear once: a proxy that appends its value after the
client's would otherwise leave the client's first in line (400).

Only a signed token can make an admin: a header anyone on the gateway's network could set, or the
one local user, never is.
"""

from __future__ import annotations

import asyncio
import hmac
import re
from dataclasses import dataclass
from typing import Any, Protocol

import jwt

from storytool.config import AuthMode, Settings
from storytool.errors import BadRequest, ServiceUnavailable, Unauthorized

USER_ID_HEADER = "X-User-Id"
JWKS_CACHE_S = 300.0
"""How long a fetched key set is used before it is fetched again. A token signed with a key not in
it refetches at once, at most every 30 s (PyJWT's cooldown), so a rotation is picked up quickly and
made-up key ids cannot hammer the identity provider."""
JWKS_TIMEOUT_S = 5.0
_USER_ID = re.compile(r"^[A-Za-z0-9._:@|-]{1,128}$")
"""User ids are stored in a 128-character column and echoed in logs; keep them plain."""


class RequestHeaders(Protocol):
    """Every value a request carries for a header (Starlette's ``Headers``)."""

    def getlist(self, key: str) -> list[str]: ...


@dataclass(frozen=True, slots=True)
class Caller:
    user_id: str
    is_admin: bool = False


class Authenticator:
    def __init__(self, settings: Settings) -> None:
        self.mode = settings.auth_mode
        self.local_user_id = settings.local_user_id
        self.admin_role = settings.jwt_admin_role
        self._gateway_secret = (
            settings.gateway_secret.get_secret_value().encode() if settings.gateway_secret else None
        )
        self._gateway_header = settings.gateway_secret_header
        self._key: str | None = None
        self._jwks: jwt.PyJWKClient | None = None
        self._algorithms = ["RS256"]
        self._issuer = settings.jwt_issuer
        self._audience = settings.jwt_audience
        self._leeway = settings.jwt_leeway_s
        if self.mode is AuthMode.JWT:
            if settings.jwt_jwks_url:
                self._jwks = jwt.PyJWKClient(
                    settings.jwt_jwks_url, lifespan=JWKS_CACHE_S, timeout=JWKS_TIMEOUT_S
                )
            elif settings.jwt_public_key:
                self._key = settings.jwt_public_key
            elif settings.jwt_secret is not None:
                self._key, self._algorithms = settings.jwt_secret.get_secret_value(), ["HS256"]

    async def caller(self, headers: RequestHeaders) -> Caller:
        if self.mode is AuthMode.LOCAL:
            return Caller(self.local_user_id)
        if self.mode is AuthMode.HEADER:
            self._check_gateway(headers)
            user_id = _one(headers, USER_ID_HEADER)
            if not user_id:
                raise Unauthorized(f"missing {USER_ID_HEADER} header")
            return Caller(_checked(user_id, USER_ID_HEADER))
        claims = await self._claims(_one(headers, "Authorization"))
        return Caller(
            _checked(str(claims["sub"]), "sub"), is_admin=self.admin_role in _roles(claims)
        )

    def _check_gateway(self, headers: RequestHeaders) -> None:
        if self._gateway_secret is None:
            return
        sent = _one(headers, self._gateway_header)
        # Header values arrive decoded as latin-1; encoding them back gives the bytes as sent.
        if sent is None or not hmac.compare_digest(sent.encode("latin-1"), self._gateway_secret):
            raise Unauthorized(
                f"{self._gateway_header} is missing or wrong: only the gateway may call",
                field=self._gateway_header,
            )

    async def _claims(self, authorization: str | None) -> dict[str, Any]:
        token = bearer_token(authorization)
        try:
            key: jwt.PyJWK | str
            if self._jwks is None:
                assert self._key is not None
                key = self._key
            else:  # the key set is fetched with blocking urllib, so off the event loop
                key = await asyncio.to_thread(self._jwks.get_signing_key_from_jwt, token)
            claims: dict[str, Any] = jwt.decode(
                token,
                key,
                algorithms=self._algorithms,
                issuer=self._issuer,
                audience=self._audience,
                leeway=self._leeway,
                options={"require": ["sub", "exp"], "verify_aud": self._audience is not None},
            )
        except (jwt.PyJWKClientConnectionError, jwt.PyJWKSetError) as exc:
            raise ServiceUnavailable(
                "the identity provider's key set cannot be read; try again",
                headers={"Retry-After": "5"},
            ) from exc
        except jwt.PyJWKClientError as exc:
            raise Unauthorized("token is signed with a key the identity provider lacks") from exc
        except jwt.ExpiredSignatureError as exc:
            raise Unauthorized("token expired") from exc
        except jwt.InvalidSignatureError as exc:
            raise Unauthorized("token signature is invalid") from exc
        except jwt.MissingRequiredClaimError as exc:
            raise Unauthorized(f"token lacks the {exc.claim!r} claim") from exc
        except (jwt.InvalidIssuerError, jwt.InvalidAudienceError) as exc:
            raise Unauthorized(f"token is not for this service: {exc}") from exc
        except jwt.InvalidTokenError as exc:
            raise Unauthorized(f"token is invalid: {exc}") from exc
        return claims


def bearer_token(authorization: str | None) -> str:
    """The token of ``Authorization: Bearer <token>``; 401 when there is none."""
    if not authorization:
        raise Unauthorized("missing Authorization: Bearer token")
    scheme, _, token = authorization.partition(" ")
    token = token.strip()
    if scheme.lower() != "bearer" or not token:
        raise Unauthorized("Authorization must be 'Bearer <token>'")
    return token


def _one(headers: RequestHeaders, name: str) -> str | None:
    values = headers.getlist(name)
    if len(values) > 1:
        raise BadRequest(f"{name} appears more than once", field=name)
    return values[0] if values else None


def _roles(claims: dict[str, Any]) -> list[str]:
    roles = claims.get("roles", claims.get("role", []))
    if isinstance(roles, str):
        return [roles]
    return [str(role) for role in roles] if isinstance(roles, list) else []


def _checked(user_id: str, source: str) -> str:
    if not _USER_ID.match(user_id):
        raise Unauthorized(f"{source} is not a valid user id")
    return user_id
