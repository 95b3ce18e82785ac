"""BodySizeLimit as ASGI middleware: declared and streamed sizes."""

from __future__ import annotations

import asyncio
import json

from meadowlark.api.limits import BodySizeLimit


async def _echo_app(scope, receive, send):
    body = b""
    while True:
        message = await receive()
        body += message.get("body", b"")
        if not message.get("more_body"):
            break
    await send({"type": "http.response.start", "status": 200, "headers": []})
    await send({"type": "http.response.body", "body": str(len(body)).encode()})


def _call(headers, chunks, max_bytes=1024):
    sent = []
    queue = [
        {"type": "http.request", "body": c, "more_body": i < len(chunks) - 1}
        for i, c in enumerate(chunks)
    ]

    async def receive():
        return queue.pop(0) if queue else {"type": "http.disconnect"}

    async def send(message):
        sent.append(message)

    scope = {"type": "http", "headers": headers}
    asyncio.run(BodySizeLimit(_echo_app, max_bytes)(scope, receive, send))
    status = sent[0]["status"]
    body = b"".join(m.get("body", b"") for m in sent[1:])
    return status, body


def test_small_body_passes():
    assert _call([(b"content-length", b"5")], [b"hello"]) == (200, b"5")


def test_declared_too_large_is_413_with_error_body():
    status, body = _call([(b"content-length", b"2048")], [b"x"])
    assert status == 413
    assert json.loads(body) == {
        "error": "request body too large",
        "message": "request body too large",
        "code": 413,
    }


def test_bad_content_length_is_400():
    for value in (b"abc", b"-1", b"1e3", b""):
        status, body = _call([(b"content-length", value)], [b"x"])
        assert status == 400 and json.loads(body)["code"] == 400


def test_streamed_too_large_is_413():
    status, body = _call([], [b"x" * 600, b"x" * 600])
    assert status == 413 and json.loads(body)["code"] == 413


def test_non_http_scopes_pass_through():
    seen = []

    async def app(scope, receive, send):
        seen.append(scope["type"])

    asyncio.run(BodySizeLimit(app, 10)({"type": "lifespan"}, None, None))
    assert seen == ["lifespan"]


def test_http1_request_without_length_or_chunks_passes_without_counting():
    """HTTP/1 carries no body without Content-Length or chunked encoding (RFC 9112 6.3)."""
    seen = []

    async def app(scope, receive, send):
        seen.append(receive)

    async def receive():
        return {"type": "http.request", "body": b"", "more_body": False}

    scope = {"type": "http", "http_version": "1.1", "headers": [(b"host", b"x")]}
    asyncio.run(BodySizeLimit(app, 10)(scope, receive, None))
    assert seen == [receive]
