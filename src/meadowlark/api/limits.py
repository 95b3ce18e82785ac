"""ASGI middleware refusing request bodies over the configured size with 413, and
``send_error``: the error answer of middleware that refuses a request before routing."""

from __future__ import annotations

import json
import re
from collections.abc import Sequence

from starlette.exceptions import HTTPException
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from meadowlark.api.errors import error_body


class BodyTooLarge(HTTPException):
    """Raised while reading; an HTTPException so that FastAPI passes it on as a 413."""

    def __init__(self) -> None:
        super().__init__(413, "request body too large")


class BodySizeLimit:
    """``max_bytes`` for every request, except those matching one of ``overrides``:
    ``(method, path pattern, limit)``, for routes that stream large bodies (firmware)."""

    def __init__(
        self,
        app: ASGIApp,
        max_bytes: int,
        overrides: Sequence[tuple[str, re.Pattern[str], int]] = (),
    ) -> None:
        self.app = app
        self.max_bytes = max_bytes
        self.overrides = tuple(overrides)

    def _limit_for(self, scope: Scope) -> int:
        for method, pattern, limit in self.overrides:
            if scope["method"] == method and pattern.fullmatch(scope["path"]):
                return limit
        return self.max_bytes

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        declared = chunked = None
        for name, value in scope["headers"]:
            if name == b"content-length":
                declared = value
            elif name == b"transfer-encoding":
                chunked = value
        if declared is None and chunked is None and scope.get("http_version") in ("1.0", "1.1"):
            await self.app(scope, receive, send)  # HTTP/1: no length, not chunked: no body
            return
        max_bytes = self._limit_for(scope)
        if declared is not None and (not declared.isdigit() or int(declared) > max_bytes):
            await self._refuse(send, 413 if declared.isdigit() else 400)
            return
        received = 0
        response_started = False

        async def counting_receive() -> Message:
            nonlocal received
            message = await receive()
            if message["type"] == "http.request":
                received += len(message.get("body", b""))
                if received > max_bytes:
                    raise BodyTooLarge
            return message

        async def tracking_send(message: Message) -> None:
            nonlocal response_started
            response_started = response_started or message["type"] == "http.response.start"
            await send(message)

        try:
            await self.app(scope, counting_receive, tracking_send)
        except BodyTooLarge:
            if not response_started:
                await self._refuse(send, 413)

    async def _refuse(self, send: Send, status: int) -> None:
        message = "request body too large" if status == 413 else "invalid Content-Length"
        await send_error(send, status, message, close=True)


async def send_error(send: Send, status: int, message: str, *, close: bool = False) -> None:
    """The error body answer (``errors.error_body``); ``close`` when the body is left
    unread."""
    body = json.dumps(error_body(status, message)).encode()
    headers = [
        (b"content-type", b"application/json"),
        (b"content-length", str(len(body)).encode()),
    ]
    if close:
        headers.append((b"connection", b"close"))
    await send({"type": "http.response.start", "status": status, "headers": headers})
    await send({"type": "http.response.body", "body": body})
