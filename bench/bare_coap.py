"""Baseline CoAP processes for the LwM2M benchmark, on bare aiocoap, plus the line protocol
every benchmark server subprocess speaks.

``python -m bench.bare_coap rd PORT``: a server whose only resource, ``rd``, answers a
POST with 2.01 Created and Location-Path ``rd/<n>`` and does nothing else.

``python -m bench.bare_coap observer PORT``: a CoAP endpoint that, when told, observes
``/3303/0/5700`` on a list of devices and only counts the notifications.

Both bind 127.0.0.1:PORT over aiocoap's ``udp6`` transport on the default asyncio loop,
as ``CoapServer`` does. A subprocess prints ``{"event": "ready", ...}`` once it serves,
then answers one JSON line per JSON command line on stdin; it exits when stdin closes,
so it never outlives the benchmark.
"""

from __future__ import annotations

import asyncio
import json
import sys
import time
from collections.abc import Awaitable, Callable
from typing import Any

Handler = Callable[[dict[str, Any]], Awaitable[dict[str, Any]]]


def emit(**fields: object) -> None:
    sys.stdout.write(json.dumps(fields) + "\n")
    sys.stdout.flush()


async def control_loop(handlers: dict[str, Handler], **ready: object) -> None:
    """Announce readiness, then run commands from stdin until it closes or says quit."""
    loop = asyncio.get_running_loop()
    reader = asyncio.StreamReader(limit=1 << 24)
    await loop.connect_read_pipe(lambda: asyncio.StreamReaderProtocol(reader), sys.stdin)
    emit(event="ready", **ready)
    while line := await reader.readline():
        command = json.loads(line)
        name = command.pop("cmd")
        if name == "quit":
            break
        try:
            emit(**await handlers[name](command))
        except Exception as exc:  # report to the driver instead of hanging it
            emit(error=f"{type(exc).__name__}: {exc}")


async def serve_rd(port: int) -> None:
    from aiocoap import Context, Message, resource
    from aiocoap.numbers.codes import Code

    class Rd(resource.Resource):
        def __init__(self) -> None:
            super().__init__()
            self.count = 0

        async def render_post(self, request: Message) -> Message:
            self.count += 1
            return Message(code=Code.CREATED, location_path=("rd", str(self.count)))

    rd = Rd()
    site = resource.Site()
    site.add_resource(("rd",), rd)
    context = await Context.create_server_context(
        site, bind=("127.0.0.1", port), transports=["udp6"]
    )

    async def stats(_: dict[str, Any]) -> dict[str, Any]:
        return {"t": time.monotonic(), "registered": rd.count}

    try:
        await control_loop({"stats": stats}, port=port)
    finally:
        await context.shutdown()


async def serve_observer(port: int) -> None:
    from aiocoap import Context, Message, resource
    from aiocoap.numbers.codes import Code

    context = await Context.create_server_context(
        resource.Site(), bind=("127.0.0.1", port), transports=["udp6"]
    )
    notifications = 0
    readers: set[asyncio.Task[None]] = set()

    async def observe_one(host: str, device_port: int, accept: int) -> bool:
        nonlocal notifications
        request = context.request(
            Message(
                code=Code.GET,
                uri=f"coap://{host}:{device_port}/3303/0/5700",
                observe=0,
                accept=accept,
            )
        )
        first = await asyncio.wait_for(request.response, 10)
        if not first.code.is_successful() or first.opt.observe is None:
            return False

        async def read() -> None:
            nonlocal notifications
            async for _ in request.observation:
                notifications += 1

        task = asyncio.get_running_loop().create_task(read())
        readers.add(task)
        return True

    async def observe(command: dict[str, Any]) -> dict[str, Any]:
        limit = asyncio.Semaphore(64)

        async def bounded(host: str, device_port: int) -> bool:
            async with limit:
                try:
                    return await observe_one(host, device_port, command["accept"])
                except Exception:  # counted as not observed
                    return False

        results = await asyncio.gather(*(bounded(h, p) for h, p in command["addresses"]))
        return {"observed": sum(results), "failed": len(results) - sum(results)}

    async def stats(_: dict[str, Any]) -> dict[str, Any]:
        return {"t": time.monotonic(), "notifications": notifications}

    try:
        await control_loop({"observe": observe, "stats": stats}, port=port)
    finally:
        for task in readers:
            task.cancel()
        await asyncio.gather(*readers, return_exceptions=True)
        await context.shutdown()


def main() -> None:
    mode, port = sys.argv[1], int(sys.argv[2])
    serve = {"rd": serve_rd, "observer": serve_observer}[mode]
    asyncio.run(serve(port))


if __name__ == "__main__":
    main()
