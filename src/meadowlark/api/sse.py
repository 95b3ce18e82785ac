"""Server-Sent Events responses over an event-bus subscription."""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator, Callable, Iterable
from typing import Any

from fastapi import Request
from fastapi.responses import StreamingResponse

from meadowlark.core.events import DeviceEvent, Subscription

KEEPALIVE_SECONDS = 15.0
"""A comment line is sent after this long without events; a gone client is noticed then."""

Render = Callable[[DeviceEvent], Iterable[tuple[str, dict[str, Any]]]]
"""Turns one device event into SSE events: (event name, JSON data) pairs."""


def event_stream(request: Request, subscription: Subscription, render: Render) -> StreamingResponse:
    """Stream ``subscription`` until the client goes away; the subscription ends with it."""

    async def stream() -> AsyncIterator[str]:
        with subscription:
            yield ": connected\n\n"
            while True:
                try:
                    event = await asyncio.wait_for(anext(subscription), KEEPALIVE_SECONDS)
                except TimeoutError:
                    if await request.is_disconnected():
                        return
                    yield ": keep-alive\n\n"
                    continue
                for name, data in render(event):
                    yield f"event: {name}\ndata: {json.dumps(data, allow_nan=False)}\n\n"

    return StreamingResponse(
        stream(),
        media_type="text/event-stream",
        headers={"Cache-Control": "no-cache", "X-Accel-Buffering": "no"},
    )
