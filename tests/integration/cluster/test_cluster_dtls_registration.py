"""Two nodes' runtimes on one store: a device registered over DTLS-PSK at node A is
reported by node B with the transport and identity A authenticated (the device row
records them, migration 0016), and B's requests reach it through A's session. Its
De-register clears them. SQLite: Unix sockets; PostgreSQL: NOTIFY."""

from __future__ import annotations

import asyncio
import secrets

from cluster_nodes import cluster_settings, create_psk_device, start_node
from sqlalchemy import select

from meadowlark.cli.dtls_serving import start_dtls
from meadowlark.lwm2m.path import LwM2mPath
from meadowlark.server.transport import PeerIdentity
from meadowlark.simulator import DeviceTiming, SimulatedDevice
from meadowlark.simulator.dtls import PskCredentials
from meadowlark.store.device_models import Device


def test_node_b_reports_the_dtls_transport_and_identity_of_node_a_s_device(
    backend, database_url, settings_for, tmp_path
):
    settings = cluster_settings(
        settings_for, backend, database_url, tmp_path / "data", coaps="127.0.0.1:0"
    )
    endpoint = f"cluster-dtls-{secrets.token_hex(4)}"
    identity, key = f"id-{endpoint}", secrets.token_bytes(16)

    async def main() -> None:

        a, coap_a = await start_node(settings)
        b, coap_b = await start_node(settings)
        dtls_a = await start_dtls(settings, a, coap_a)
        assert a.cluster is not None and b.cluster is not None and dtls_a is not None
        await create_psk_device(a, endpoint, identity, key.hex())
        device = SimulatedDevice(
            endpoint,
            f"coaps://127.0.0.1:{dtls_a.port}",
            "1.1",
            security=PskCredentials(identity, key),
            timing=DeviceTiming(ack_timeout=1.0, handshake_timeout=10.0),
        )
        try:
            await device.start()
            held = await a.lwm2m.get_registration(endpoint)
            assert held is not None and held.peer.transport == "dtls"

            seen_by_b = await b.lwm2m.get_registration(endpoint)
            assert seen_by_b is not None
            assert not await b.cluster.registrations.holds(seen_by_b)
            assert seen_by_b.peer.transport == "dtls"
            assert seen_by_b.peer.identity == PeerIdentity("psk", identity)
            assert seen_by_b.peer.address == held.peer.address
            [listed] = [r for r in await b.lwm2m.all_registrations() if r.endpoint == endpoint]
            assert listed.peer.transport == "dtls"
            assert listed.peer.identity == PeerIdentity("psk", identity)
            # B's request goes through A, over the device's DTLS session.
            node = await b.lwm2m.read(endpoint, LwM2mPath(3, 0, 0), timeout=5)
            assert node.value == "Meadowlark"  # type: ignore[union-attr]

            await device.stop()
            async with a.db.session() as session:
                row = (
                    await session.execute(
                        select(
                            Device.registration_id,
                            Device.registration_transport,
                            Device.registration_identity_mode,
                            Device.registration_identity_name,
                        ).where(Device.endpoint_name == endpoint)
                    )
                ).one()
            assert tuple(row) == (None, None, None, None)
            assert await b.cluster.registrations.locate(endpoint, fresh=True) is None
        finally:
            await device.stop(deregister=False)
            await dtls_a.stop()
            for runtime, coap in ((a, coap_a), (b, coap_b)):
                await coap.stop()
                await runtime.close()

    asyncio.run(main())
