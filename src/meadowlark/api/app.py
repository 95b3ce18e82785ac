"""The ASGI application: both REST surfaces on one runtime."""

from __future__ import annotations

import time
from collections.abc import AsyncIterator, Iterable, Iterator
from contextlib import asynccontextmanager

import structlog
from fastapi import FastAPI, Request, Response
from fastapi.routing import APIRoute
from starlette.routing import BaseRoute

from meadowlark import __version__
from meadowlark.api.errors import install_error_handlers
from meadowlark.api.limits import BodySizeLimit
from meadowlark.api.routers import admin, auth, coiote_domains, coiote_users, console, health
from meadowlark.runtime import Runtime

log = structlog.get_logger("meadowlark.http")


def iter_api_routes(routes: Iterable[BaseRoute]) -> Iterator[APIRoute]:
    """Every API route, also those inside included routers (FastAPI nests them)."""
    for route in routes:
        if isinstance(route, APIRoute):
            yield route
        nested = getattr(route, "original_router", None)
        if nested is not None:
            yield from iter_api_routes(nested.routes)


def _operation_id(route: APIRoute) -> str:
    return f"{route.tags[0] if route.tags else 'default'}-{route.name}"


def create_app(runtime: Runtime, *, manage_runtime: bool = True) -> FastAPI:
    """Build the app around ``runtime``; with ``manage_runtime`` its store is prepared
    at start-up and closed at shutdown."""

    @asynccontextmanager
    async def lifespan(_: FastAPI) -> AsyncIterator[None]:
        if manage_runtime:
            await runtime.prepare_store()
        yield
        if manage_runtime:
            await runtime.close()

    app = FastAPI(
        title="Meadowlark",
        version=__version__,
        description="LwM2M device and connectivity management: Coiote DM v3 and Monogoto "
        "console compatible REST APIs.",
        lifespan=lifespan,
        generate_unique_id_function=_operation_id,
    )
    app.state.runtime = runtime
    install_error_handlers(app)
    for module in (health, auth, console, coiote_users, coiote_domains, admin):
        app.include_router(module.router)

    @app.middleware("http")
    async def access_log(request: Request, call_next) -> Response:  # noqa: ANN001
        """One line per request: method, path (never the query or headers), status, time."""
        started = time.perf_counter()
        response = await call_next(request)
        log.debug("request", method=request.method, path=request.url.path,
                  status=response.status_code,
                  ms=round((time.perf_counter() - started) * 1000, 2))
        return response

    app.add_middleware(BodySizeLimit, max_bytes=runtime.settings.max_body_bytes)
    return app
