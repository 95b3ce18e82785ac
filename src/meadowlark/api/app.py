"""The ASGI application: both REST surfaces on one runtime."""

from __future__ import annotations

import re
from collections.abc import AsyncIterator, Iterable, Iterator
from contextlib import asynccontextmanager

from fastapi import FastAPI
from fastapi.routing import APIRoute
from starlette.routing import BaseRoute

from meadowlark import __version__
from meadowlark.api.errors import install_error_handlers
from meadowlark.api.limits import BodySizeLimit
from meadowlark.api.request_context import RequestContext
from meadowlark.api.routers import (
    admin,
    auth,
    coiote_alerts,
    coiote_bootstrap,
    coiote_data_model,
    coiote_devices,
    coiote_dialects,
    coiote_domains,
    coiote_event_handlers,
    coiote_events,
    coiote_groups,
    coiote_monitoring,
    coiote_observations,
    coiote_resources,
    coiote_sessions,
    coiote_settings,
    coiote_tasks,
    coiote_users,
    console,
    console_things,
    console_ui,
    firmware_download,
    health,
    lwm2m,
    metrics,
)
from meadowlark.api.text_guard import TextGuard
from meadowlark.runtime import Runtime


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
    # A request is matched against the routes in this order, one by one: the hottest
    # reads come first (their path prefixes, /api/coiotedm/v3/devices and
    # /api/lwm2m/v1, belong to no other router, so the order changes no match).
    for module in (
        health,
        coiote_devices,
        lwm2m,
        auth,
        console,
        console_things,
        coiote_users,
        coiote_domains,
        coiote_groups,
        coiote_sessions,
        admin,
        coiote_data_model,
        coiote_dialects,
        coiote_observations,
        coiote_events,
        coiote_resources,
        firmware_download,
        coiote_tasks,
        coiote_settings,
        coiote_bootstrap,
        coiote_alerts,
        coiote_event_handlers,
        coiote_monitoring,
    ):
        app.include_router(module.router)
    if runtime.settings.metrics.listen is None:  # else served on that address only
        app.include_router(metrics.router)
    app.router.routes.extend(console_ui.routes())  # the web console's static files, last

    app.add_middleware(TextGuard)  # inside BodySizeLimit, which bounds what it reads
    app.add_middleware(
        BodySizeLimit,
        max_bytes=runtime.settings.max_body_bytes,
        overrides=[
            (
                "PUT",
                re.compile(coiote_resources.UPLOAD_PATH),
                runtime.settings.firmware.max_bytes,
            )
        ],
    )
    app.add_middleware(RequestContext)  # outermost: its id is in every line and error
    return app
