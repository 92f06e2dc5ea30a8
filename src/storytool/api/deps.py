"""Annotated dependency aliases, so route signatures read as what they need."""

from __future__ import annotations

from typing import Annotated, cast

from fastapi import Depends, Request

from storytool.auth import Authenticator, Caller
from storytool.config import Settings
from storytool.lifespan import State


async def get_state(request: Request) -> State:
    return cast(State, request.state._state)


StateDep = Annotated[State, Depends(get_state)]


async def get_settings(state: StateDep) -> Settings:
    return state["settings"]


SettingsDep = Annotated[Settings, Depends(get_settings)]


async def get_caller(state: StateDep, request: Request) -> Caller:
    """Who calls, and whether a signed token made them an admin. Each call counts against the
    user's request rate (429 past it), so every route that knows its user is limited."""
    authenticator: Authenticator = state["authenticator"]
    caller = await authenticator.caller(request.headers)
    await state["rate_limiter"].hit(caller.user_id)
    return caller


CallerDep = Annotated[Caller, Depends(get_caller)]


async def get_user_id(caller: CallerDep) -> str:
    """The caller's user id; every query a route makes filters by it."""
    return caller.user_id


UserDep = Annotated[str, Depends(get_user_id)]
