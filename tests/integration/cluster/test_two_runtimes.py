"""Two nodes' runtimes (each with its CoAP server) on one store, in one event loop: what
node B asks of a device that node A holds goes through A, ping included, and an Update
that reaches B moves the device to B. On SQLite the nodes talk through Unix sockets (as
``serve --workers`` does), on PostgreSQL through LISTEN/NOTIFY."""

from __future__ import annotations

import asyncio

import pytest
from cluster_nodes import cluster_settings, start_node

from meadowlark.lwm2m.path import LwM2mPath
from meadowlark.server.errors import DeviceErrorResponse
from meadowlark.simulator import DeviceTiming, SimulatedDevice
from meadowlark.simulator.client import resolve_server


def test_node_b_reaches_node_a_s_device_until_it_moves(
    backend, database_url, settings_for, tmp_path
):
    settings = cluster_settings(settings_for, backend, database_url, tmp_path / "data")

    async def main() -> None:
        a, coap_a = await start_node(settings)
        b, coap_b = await start_node(settings)
        assert a.cluster is not None and b.cluster is not None
        device = SimulatedDevice(
            "two-runtimes",
            f"coap://127.0.0.1:{coap_a.port}",
            "1.1",
            timing=DeviceTiming(ack_timeout=1.0),
        )
        try:
            await device.start()
            ep = device.endpoint_name
            seen_by_b = await b.lwm2m.get_registration(ep)
            assert seen_by_b is not None
            assert not await b.cluster.registrations.holds(seen_by_b)

            assert await b.lwm2m.ping(ep, timeout=5) > 0
            node = await b.lwm2m.read(ep, LwM2mPath(3, 0, 0), timeout=5)
            assert node.value == "Meadowlark"  # type: ignore[union-attr]
            await b.lwm2m.write(ep, LwM2mPath(3, 0, 15), _text(15, "Europe/B"), timeout=5)
            assert device.objects.read(LwM2mPath(3, 0, 15)).value == "Europe/B"  # type: ignore[union-attr]
            with pytest.raises(DeviceErrorResponse) as missing:
                await b.lwm2m.read(ep, LwM2mPath(3, 0, 99), timeout=5)
            assert str(missing.value.code) == "4.04"
            # A cached the answer; its batched write reaches the store within ~100 ms.
            for _ in range(100):
                cached = await b.lwm2m.cached_values(ep, LwM2mPath(3, 0, 0))
                if LwM2mPath(3, 0, 0) in cached:
                    break
                await asyncio.sleep(0.02)
            assert cached[LwM2mPath(3, 0, 0)].value == "Meadowlark"

            # The device's next Update reaches B (a NAT rebinding, a balancer's move).
            device._server = await resolve_server(f"coap://127.0.0.1:{coap_b.port}")
            await device.update()
            for _ in range(100):
                held_by_a = await a.cluster.registrations.holds(seen_by_b)
                if not held_by_a:
                    break
                await asyncio.sleep(0.02)
            assert not held_by_a
            moved = await b.lwm2m.get_registration(ep)
            assert moved is not None and await b.cluster.registrations.holds(moved)
            assert (await a.lwm2m.read(ep, LwM2mPath(3, 0, 0), timeout=5)).value == "Meadowlark"  # type: ignore[union-attr]

            # A's expiry timer of the registration it handed over ends nothing.
            assert await a.cluster.registrations.remove(moved.registration_id) is None
            assert await b.cluster.registrations.holds(moved)

            # The device deleted (or barred) through A: B, its holder, forgets it too,
            # and its next Update gets 4.04, so it registers anew.
            assert await a.lwm2m.forget(ep)
            for _ in range(100):
                if not await b.cluster.registrations.holds(moved):
                    break
                await asyncio.sleep(0.02)
            assert not await b.cluster.registrations.holds(moved)
            assert await a.lwm2m.get_registration(ep) is None
            assert await b.lwm2m.get_registration(ep) is None
            registrations = device.stats.registrations
            await device.update()
            assert device.stats.registrations == registrations + 1
        finally:
            await device.stop(deregister=False)
            for runtime, coap in ((a, coap_a), (b, coap_b)):
                await coap.stop()
                await runtime.close()

    asyncio.run(main())


def _text(resource_id: int, value: str):
    from meadowlark.lwm2m.node import ResourceType, SingleResource

    return SingleResource(resource_id, ResourceType.STRING, value)
