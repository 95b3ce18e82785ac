"""Dependencies shared by every router: the runtime, the caller, permission guards."""

from __future__ import annotations

import base64
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Annotated, Any

from fastapi import Depends, Request
from sqlalchemy.ext.asyncio import AsyncSession

from meadowlark.auth import permissions as catalog
from meadowlark.auth.principal import Principal
from meadowlark.core.errors import Forbidden, NotAuthenticated
from meadowlark.runtime import Runtime

MAX_AUTHORIZATION_LENGTH = 8192


async def get_runtime(request: Request) -> Runtime:
    return request.app.state.runtime  # type: ignore[no-any-return]


RuntimeDep = Annotated[Runtime, Depends(get_runtime)]


async def get_session(runtime: RuntimeDep) -> AsyncIterator[AsyncSession]:
    async with runtime.db.session() as session:
        yield session


# Routers name the request's unit of work through these two, never sqlalchemy itself.
DbSession = AsyncSession
SessionDep = Annotated[DbSession, Depends(get_session)]


def client_ip(request: Request) -> str:
    return request.client.host if request.client else "unknown"


async def authenticate(request: Request, runtime: Runtime) -> Principal:
    """The caller from ``Authorization: Bearer ...`` or ``Basic ...``; 401 otherwise."""
    header = request.headers.get("authorization")
    if not header:
        raise NotAuthenticated("authentication required")
    if len(header) > MAX_AUTHORIZATION_LENGTH:
        raise NotAuthenticated("malformed Authorization header")
    scheme, _, credentials = header.strip().partition(" ")
    credentials = credentials.strip()
    if scheme.lower() == "bearer" and credentials:
        return await runtime.identity.authenticate_bearer(credentials)
    if scheme.lower() == "basic" and credentials:
        try:
            login, sep, password = (
                base64.b64decode(credentials, validate=True).decode().partition(":")
            )
        except ValueError as exc:  # binascii.Error, UnicodeDecodeError, non-ASCII input
            raise NotAuthenticated("malformed Basic credentials") from exc
        if not sep or not login:
            raise NotAuthenticated("malformed Basic credentials")
        return await runtime.identity.authenticate_basic(login, password, client_ip(request))
    raise NotAuthenticated("unsupported Authorization scheme; use Bearer or Basic")


GuardFn = Callable[..., Awaitable[Principal | None]]


def _marked(guard: GuardFn, permission: catalog.Permission) -> Any:
    guard.permission = permission  # type: ignore[attr-defined]
    return Depends(guard)


def require(name: str, *, forbidden_code: int | None = None) -> Any:
    """Route parameter default: the authenticated caller, who must hold ``name``.

    Unknown names fail at import time, so every declared permission is in the catalog.
    ``forbidden_code``: the custom error code of the 403 (e.g. 4030 for monitoring).
    """
    permission = catalog.CATALOG[name]

    async def guard(request: Request) -> Principal:
        # The runtime straight from the app: one dependency less to solve per request.
        principal = await authenticate(request, request.app.state.runtime)
        if not principal.can(permission.name):
            raise Forbidden(f"missing permission: {permission.name}", code=forbidden_code)
        return principal

    return _marked(guard, permission)


def public(name: str) -> Any:
    """Declares an unauthenticated route; the name must be a catalog entry marked public."""
    permission = catalog.CATALOG[name]
    if not permission.public:
        raise ValueError(f"{name!r} is not a public catalog entry")

    async def guard() -> None:
        return None

    return _marked(guard, permission)
