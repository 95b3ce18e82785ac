"""Every error leaves as ``{"error", "message", "code", "requestId"}`` with a 4xx/5xx
status (``requestId``: the ``X-Request-Id`` of the request, see ``request_context``;
clients of both surfaces read the first three and ignore fields they do not know)."""

from __future__ import annotations

from typing import Any

import structlog
from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from sqlalchemy.exc import DataError
from starlette.exceptions import HTTPException as StarletteHTTPException

from meadowlark.api.request_context import HEADER, current_request_id
from meadowlark.core.errors import ServiceError, Throttled

log = structlog.get_logger("meadowlark.api")


def error_body(status: int, message: str, code: int | None = None) -> dict[str, Any]:
    body: dict[str, Any] = {"error": message, "message": message, "code": code or status}
    request_id = current_request_id()
    if request_id is not None:
        body["requestId"] = request_id
    return body


def error_response(
    status: int, message: str, code: int | None = None, headers: dict[str, str] | None = None
) -> JSONResponse:
    return JSONResponse(error_body(status, message, code), status_code=status, headers=headers)


def _describe_validation(exc: RequestValidationError) -> str:
    parts = []
    for error in exc.errors()[:5]:
        where = ".".join(str(p) for p in error.get("loc", ()) if p != "body") or "body"
        parts.append(f"{where}: {error.get('msg', 'invalid')}")
    return "invalid request: " + "; ".join(parts)


def install_error_handlers(app: FastAPI) -> None:
    @app.exception_handler(ServiceError)
    async def service_error(_: Request, exc: ServiceError) -> JSONResponse:
        headers = {"Retry-After": str(exc.retry_after)} if isinstance(exc, Throttled) else None
        if exc.status == 401:
            headers = {"WWW-Authenticate": 'Bearer realm="meadowlark"'}
        return error_response(exc.status, exc.message, exc.code, headers)

    @app.exception_handler(RequestValidationError)
    async def validation_error(_: Request, exc: RequestValidationError) -> JSONResponse:
        return error_response(400, _describe_validation(exc))

    @app.exception_handler(StarletteHTTPException)
    async def http_error(_: Request, exc: StarletteHTTPException) -> JSONResponse:
        return error_response(exc.status_code, str(exc.detail), None, getattr(exc, "headers", None))

    @app.exception_handler(DataError)
    async def data_error(_: Request, exc: DataError) -> JSONResponse:
        # The database refused a value (PostgreSQL: NUL in text, out-of-range numbers).
        return error_response(400, "invalid input: a value is not accepted by the database")

    @app.exception_handler(OverflowError)
    async def overflow_error(request: Request, exc: OverflowError) -> JSONResponse:
        # SQLite's driver cannot bind integers beyond 64 bits (PostgreSQL raises DataError);
        # other conversions of client numbers (to floats, dates) fail the same way.
        log.info("number out of range", method=request.method, path=request.url.path)
        return error_response(400, "invalid input: a number is out of range")

    @app.exception_handler(Exception)
    async def unexpected_error(request: Request, exc: Exception) -> JSONResponse:
        log.exception("unhandled error", method=request.method, path=request.url.path)
        # Answered outside RequestContext (Starlette's outermost middleware): the id
        # header is set here.
        request_id = current_request_id()
        headers = None if request_id is None else {HEADER: request_id}
        return error_response(500, "internal server error", headers=headers)
