"""Annotated dependency aliases, so route signatures read as what they need."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Annotated, cast

from fastapi import Depends, Request
from sqlalchemy.ext.asyncio import AsyncSession

from storytool.auth import Authenticator, Caller
from storytool.config import Settings
from storytool.lifespan import State


def get_state(request: Request) -> State:
    return cast(State, request.state._state)


StateDep = Annotated[State, Depends(get_state)]


def get_settings(state: StateDep) -> Settings:
    return state["settings"]


SettingsDep = Annotated[Settings, Depends(get_settings)]


async def get_session(state: StateDep) -> AsyncIterator[AsyncSession]:
    """A session per request that commits when the route returns and rolls back if it raises.

    Services only flush; the commit happens here, at the edge.
    """
    async with state["sessionmaker"]() as session:
        try:
            yield session
        except BaseException:
            await session.rollback()
            raise
        await session.commit()


# scope="function": the commit happens before the answer is sent, so a write that fails to
# commit is an error to the caller, never a 200 for something that was not stored.
SessionDep = Annotated[AsyncSession, Depends(get_session, scope="function")]


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
