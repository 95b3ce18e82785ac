"""Queue mode, Observe cancel by Observe=1, Observe-Composite, and a small fleet."""

from __future__ import annotations

import asyncio
import dataclasses

import pytest
from aiocoap import Message
from aiocoap.numbers.codes import Code
from aiocoap.numbers.types import Type
from fake_lwm2m_server import FAST, FakeLwM2mServer

from meadowlark.lwm2m.codec import senml_cbor, senml_json
from meadowlark.lwm2m.codec.formats import ContentFormat
from meadowlark.lwm2m.path import LwM2mPath
from meadowlark.simulator import Fleet, FleetConfig, SimulatedDevice
from meadowlark.simulator.objects import models

pytestmark = pytest.mark.anyio

P = LwM2mPath.parse


class RawPeer(asyncio.DatagramProtocol):
    """A bare UDP peer for requests whose token and type the test chooses."""

    def __init__(self) -> None:
        self.inbox: asyncio.Queue[Message] = asyncio.Queue()

    def datagram_received(self, data: bytes, addr: object) -> None:
        self.inbox.put_nowait(Message.decode(data, addr))

    async def exchange(self, transport, device: SimulatedDevice, message: Message) -> Message:
        transport.sendto(message.encode(), device.local_address)
        return await asyncio.wait_for(self.inbox.get(), 2)


def raw_get(path: str, token: bytes, mid: int, **options: object) -> Message:
    message = Message(code=Code.GET, uri_path=tuple(path.strip("/").split("/")), **options)
    message.mtype, message.mid, message.token = Type.CON, mid, token
    return message


async def test_observe_is_cancelled_by_a_get_with_observe_1(lwm2m_server: FakeLwM2mServer) -> None:
    device = SimulatedDevice("dev-o", lwm2m_server.uri, timing=FAST)
    await device.start()
    loop = asyncio.get_running_loop()
    transport, peer = await loop.create_datagram_endpoint(RawPeer, local_addr=("127.0.0.1", 0))
    try:
        first = await peer.exchange(transport, device, raw_get("/3303/0/5700", b"t1", 1, observe=0))
        assert (first.mtype, first.code, first.opt.observe) == (Type.ACK, Code.CONTENT, 0)
        device.set_temperature(30.5)
        notification = await asyncio.wait_for(peer.inbox.get(), 2)
        assert (notification.token, notification.payload) == (b"t1", b"30.5")
        assert notification.mtype is Type.NON
        cancel = await peer.exchange(
            transport, device, raw_get("/3303/0/5700", b"t1", 2, observe=1)
        )
        assert cancel.code == Code.CONTENT and cancel.opt.observe is None
        assert device.observations == []
        device.set_temperature(31.0)
        duplicate = await peer.exchange(transport, device, raw_get("/3303/0/5700", b"t1", 2))
        assert (duplicate.mid, duplicate.payload) == (2, b"30.5")  # from the duplicate cache
    finally:
        transport.close()
        await device.stop()


async def test_observe_composite_notifies_with_all_paths(lwm2m_server: FakeLwM2mServer) -> None:
    device = SimulatedDevice("dev-oc", lwm2m_server.uri, timing=FAST)
    await device.start()
    loop = asyncio.get_running_loop()
    transport, peer = await loop.create_datagram_endpoint(RawPeer, local_addr=("127.0.0.1", 0))
    try:
        paths = [P("/3303/0/5700"), P("/3/0/0")]
        fetch = Message(
            code=Code.FETCH,
            payload=senml_json.encode_paths(paths),
            content_format=ContentFormat.SENML_JSON,
            accept=ContentFormat.SENML_CBOR,
            observe=0,
        )
        fetch.mtype, fetch.mid, fetch.token = Type.CON, 7, b"oc"
        first = await peer.exchange(transport, device, fetch)
        assert first.code == Code.CONTENT and first.opt.observe == 0
        device.set_temperature(25.0)
        notification = await asyncio.wait_for(peer.inbox.get(), 2)
        nodes = senml_cbor.decode_composite(notification.payload, models())
        assert nodes[P("/3303/0/5700")].value == 25.0
        assert nodes[P("/3/0/0")].value == "Meadowlark"
    finally:
        transport.close()
        await device.stop()


@pytest.mark.parametrize("version", ["1.0", "1.1"])
async def test_queue_mode_sleeps_after_the_listening_window(
    lwm2m_server: FakeLwM2mServer, version: str
) -> None:
    timing = dataclasses.replace(FAST, queue_window=0.3)
    device = SimulatedDevice(
        "dev-q", lwm2m_server.uri, lwm2m_version=version, queue_mode=True, timing=timing
    )
    await device.start()
    loop = asyncio.get_running_loop()
    transport, peer = await loop.create_datagram_endpoint(RawPeer, local_addr=("127.0.0.1", 0))
    try:
        query = lwm2m_server.of(Code.POST, "rd")[0].query
        assert query[3:] == (("b=UQ",) if version == "1.0" else ("b=U", "Q"))
        awake = await peer.exchange(transport, device, raw_get("/3/0/0", b"q1", 1))
        assert awake.code == Code.CONTENT
        await asyncio.sleep(0.5)
        assert device.sleeping
        with pytest.raises(TimeoutError):
            await peer.exchange(transport, device, raw_get("/3/0/1", b"q2", 2))
        await device.update()
        assert not device.sleeping
        again = await peer.exchange(transport, device, raw_get("/3/0/1", b"q3", 3))
        assert again.code == Code.CONTENT
    finally:
        transport.close()
        await device.stop()


async def test_fleet_registers_drives_values_and_stops(lwm2m_server: FakeLwM2mServer) -> None:
    config = FleetConfig(
        devices=12, server_uri=lwm2m_server.uri, prefix="fleet", rate=40.0, timing=FAST
    )
    fleet = Fleet(config)
    await fleet.start()
    try:
        assert fleet.snapshot().registered == 12
        names = sorted(r.query[0] for r in lwm2m_server.of(Code.POST, "rd"))
        assert names[0] == "ep=fleet-0000" and names[-1] == "ep=fleet-0011"
        device = fleet.devices[3]
        uri = f"coap://127.0.0.1:{device.local_address[1]}/3303/0/5700"
        request = lwm2m_server.context.request(Message(code=Code.GET, observe=0, uri=uri))
        await asyncio.wait_for(request.response, 5)
        await asyncio.sleep(1.0)
        snapshot = fleet.snapshot()
        assert 30 <= snapshot.value_changes <= 50
        assert snapshot.notifications_sent >= 1
        assert snapshot.requests_answered >= 1
        request.observation.cancel()
    finally:
        await fleet.stop()
    assert len(lwm2m_server.of(Code.DELETE, "rd")) == 12
    assert fleet.snapshot().registered == 0
