"""``RequestContext`` on a bare app: the id in the header, the log context and the error
body, also for an unhandled exception (answered outside the middleware)."""

from __future__ import annotations

import httpx
import pytest
import structlog
from fastapi import FastAPI

from meadowlark.api.errors import install_error_handlers
from meadowlark.api.request_context import RequestContext, current_request_id
from meadowlark.core.errors import NotFound

pytestmark = pytest.mark.anyio


def _app() -> FastAPI:
    app = FastAPI()
    install_error_handlers(app)

    @app.get("/seen")
    async def seen() -> dict[str, object]:
        return {
            "id": current_request_id(),
            "logged": structlog.contextvars.get_contextvars().get("request_id"),
        }

    @app.get("/missing")
    async def missing() -> None:
        raise NotFound("no such thing")

    @app.get("/broken")
    async def broken() -> None:
        raise RuntimeError("a bug")

    app.add_middleware(RequestContext)
    return app


def _client() -> httpx.AsyncClient:
    transport = httpx.ASGITransport(app=_app(), raise_app_exceptions=False)
    return httpx.AsyncClient(transport=transport, base_url="http://test")


async def test_the_id_is_in_the_log_context_while_the_request_runs_and_not_after():
    async with _client() as client:
        response = await client.get("/seen", headers={"X-Request-Id": "abc-123"})
    assert response.json() == {"id": "abc-123", "logged": "abc-123"}
    assert response.headers["x-request-id"] == "abc-123"
    assert current_request_id() is None
    assert "request_id" not in structlog.contextvars.get_contextvars()


async def test_a_service_error_body_names_the_request():
    async with _client() as client:
        response = await client.get("/missing", headers={"X-Request-Id": "trace.7:x"})
    assert response.status_code == 404
    assert response.json() == {
        "error": "no such thing",
        "message": "no such thing",
        "code": 404,
        "requestId": "trace.7:x",
    }


async def test_an_unhandled_error_still_has_the_id_in_header_and_body():
    async with _client() as client:
        response = await client.get("/broken", headers={"X-Request-Id": "bug-1"})
    assert response.status_code == 500
    assert response.headers["x-request-id"] == "bug-1"
    assert response.json()["requestId"] == "bug-1"
    assert "a bug" not in response.text


async def test_a_generated_id_is_32_hex_digits_and_new_each_time():
    async with _client() as client:
        first = (await client.get("/seen")).json()["id"]
        second = (await client.get("/seen", headers={"X-Request-Id": "x" * 129})).json()["id"]
    assert first != second
    for generated in (first, second):
        assert len(generated) == 32 and int(generated, 16) >= 0
