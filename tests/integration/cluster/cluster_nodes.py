"""What the two-node tests share: the settings of nodes on one store that signal each
other (Unix sockets on SQLite, LISTEN/NOTIFY on PostgreSQL), and starting a node's runtime
with its CoAP server, a PSK device made through one node."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from meadowlark.coap.server import CoapServer
from meadowlark.config import Settings
from meadowlark.core import devices
from meadowlark.runtime import Runtime


def cluster_settings(
    settings_for, backend: str, database_url: str | None, data_dir: Path, **overrides: Any
) -> Settings:
    """Settings for every node of the test; ``overrides`` may add to ``cluster``."""
    cluster = {"signals": "postgres" if backend == "postgres" else "local"}
    cluster.update(overrides.pop("cluster", {}))
    return settings_for(
        data_dir,
        database_url=database_url,
        coap="127.0.0.1:0",
        cluster=cluster,
        tasks={"registration_reads": "off"},
        **overrides,
    )


async def start_node(settings: Settings) -> tuple[Runtime, CoapServer]:
    """A node's runtime with its LwM2M server listening on a free CoAP port."""
    runtime = Runtime.from_settings(settings)
    await runtime.prepare_store()
    coap = CoapServer(runtime.lwm2m, "127.0.0.1", 0, traffic=runtime.lwm2m.traffic)
    await runtime.start_lwm2m()
    runtime.lwm2m.attach(await coap.start())
    return runtime, coap


async def create_psk_device(runtime: Runtime, endpoint: str, identity: str, psk_hex: str) -> None:
    """A device with a DTLS pre-shared key, created by the system through ``runtime``."""
    from meadowlark.cli.main import SYSTEM

    async with runtime.db.session() as session:
        await devices.create_device(
            session,
            SYSTEM,
            devices.NewDevice(
                endpoint_name=endpoint,
                security_mode="psk",
                dtls_identity=identity,
                dtls_psk={"HexadecimalPsk": psk_hex},
            ),
            psk_box=runtime.psk_box,
        )
        await session.commit()
