"""Fixtures: a fake LwM2M server on aiocoap, checked for leaked simulator tasks."""

from __future__ import annotations

import asyncio
import gc
from collections.abc import AsyncIterator

import aiocoap
import pytest
from fake_lwm2m_server import FakeLwM2mServer, RecordingRoot, free_udp_port


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


@pytest.fixture
async def lwm2m_server() -> AsyncIterator[FakeLwM2mServer]:
    root = RecordingRoot()
    port = free_udp_port()
    context = await aiocoap.Context.create_server_context(
        root, bind=("127.0.0.1", port), transports=["udp6"]
    )
    server = FakeLwM2mServer(context, port)
    root.server = server
    try:
        yield server
    finally:
        await context.shutdown()
        await asyncio.sleep(0)
        gc.collect()
        assert not _simulator_tasks(), "a simulated device left a task running"


def _simulator_tasks() -> list[asyncio.Task[object]]:
    running = []
    for task in asyncio.all_tasks():
        code = getattr(task.get_coro(), "cr_code", None)
        if not task.done() and code is not None and "/simulator/" in code.co_filename:
            running.append(task)
    return running
