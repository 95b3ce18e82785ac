"""Request ids and request timing, for every REST request.

A request keeps the ``X-Request-Id`` it came with when that is sane (1 to 128 letters,
digits and ``._:-``), else gets a new one. The id is bound in structlog's context
variables while the request runs (every log line names it), goes back in the
``X-Request-Id`` response header, and into every error body as ``requestId``. Its
duration is observed in ``meadowlark_http_request_duration_seconds`` under its route's
template, never its path (paths carry ids: unbounded label values). With debug logging,
each request is also one ``request`` line: method, path (never query or headers), status
and milliseconds.
"""

from __future__ import annotations

import logging
import re
import time
import uuid
from contextvars import ContextVar

import structlog
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from meadowlark import metrics

HEADER = "X-Request-Id"
_HEADER_KEY = b"x-request-id"
_SANE = re.compile(rb"[A-Za-z0-9._:-]{1,128}")
_METHODS = frozenset({"GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"})
_STATUS_CLASSES = ("1xx", "1xx", "2xx", "3xx", "4xx", "5xx")

_log = structlog.get_logger("meadowlark.http")
_request_id: ContextVar[str | None] = ContextVar("request_id", default=None)


def current_request_id() -> str | None:
    """The id of the REST request being served, if any."""
    return _request_id.get()


def _incoming_id(scope: Scope) -> str | None:
    for name, value in scope["headers"]:
        if name == _HEADER_KEY:
            return value.decode("ascii") if _SANE.fullmatch(value) else None
    return None


def _status_class(status: int) -> str:
    return _STATUS_CLASSES[status // 100] if 100 <= status < 600 else "5xx"


class RequestContext:
    """The outermost middleware of the app: see the module docstring.

    Unhandled exceptions are answered outside it (by the 500 handler in
    ``api.errors``), so after one the id stays bound for that handler.
    """

    def __init__(self, app: ASGIApp) -> None:
        self.app = app
        self._log_requests = _log.is_enabled_for(logging.DEBUG)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        request_id = _incoming_id(scope) or uuid.uuid4().hex
        token = _request_id.set(request_id)
        bound = structlog.contextvars.bind_contextvars(request_id=request_id)
        header = (_HEADER_KEY, request_id.encode("ascii"))
        started = time.perf_counter()
        status = 500

        async def send_with_id(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
                message["headers"] = [*message.get("headers", ()), header]
            await send(message)

        try:
            await self.app(scope, receive, send_with_id)
        finally:
            route = scope.get("route")
            method = scope["method"]
            seconds = time.perf_counter() - started
            if self._log_requests:
                _log.debug(
                    "request",
                    method=method,
                    path=scope["path"],
                    status=status,
                    ms=round(seconds * 1000, 2),
                )
            metrics.HTTP_SECONDS.observe(
                seconds,
                "unmatched" if route is None else getattr(route, "path", "unmatched"),
                method if method in _METHODS else "other",
                _status_class(status),
            )
        _request_id.reset(token)
        structlog.contextvars.reset_contextvars(**bound)
