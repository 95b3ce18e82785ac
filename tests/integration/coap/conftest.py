"""A real CoAP server on 127.0.0.1 (ephemeral port) over a real SQLite file."""

from __future__ import annotations

from collections.abc import AsyncIterator
from dataclasses import dataclass

import pytest

from meadowlark.coap.server import CoapServer
from meadowlark.server.service import LwM2mServer, ServerOptions
from meadowlark.store.db import Database
from meadowlark.store.devices import SqlDeviceStores
from meadowlark.store.migrate import upgrade_to_head
from meadowlark.store.models import Domain


@dataclass
class Harness:
    server: LwM2mServer
    port: int
    db: Database
    stores: SqlDeviceStores

    @property
    def rd(self) -> str:
        return f"coap://127.0.0.1:{self.port}/rd"


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


@pytest.fixture
def options() -> ServerOptions:
    return ServerOptions(request_timeout=3.0, awake_window=0.5)


@pytest.fixture
async def lwm2m(tmp_path, options) -> AsyncIterator[Harness]:
    db = Database(f"sqlite+aiosqlite:///{tmp_path / 'meadowlark.db'}")
    await upgrade_to_head(db.engine)
    async with db.transaction() as session:
        session.add(Domain(id="/root/", description="", customer_id="c", organization_id="o"))
    stores = SqlDeviceStores(db, "/root/", flush_interval=0.02)
    server = LwM2mServer(options, devices=stores.devices, values=stores.values, queue=stores.queue)
    coap = CoapServer(server, "127.0.0.1", 0, max_payload=4096)
    stores.start()
    await server.start()
    server.attach(await coap.start())
    try:
        yield Harness(server, coap.port, db, stores)
    finally:
        await coap.stop()
        await server.stop()
        await stores.stop()
        await db.dispose()
