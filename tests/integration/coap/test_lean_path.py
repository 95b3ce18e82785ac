"""The socket's lean path for Register/Update/De-register and notifications, driven with
raw datagrams: piggybacked answers, RFC 7252 deduplication, notification ACKs and
freshness, traffic counting, size limit and SO_REUSEPORT."""

from __future__ import annotations

import asyncio
import socket

import pytest

from meadowlark.coap import wire
from meadowlark.coap.server import CoapServer
from meadowlark.lwm2m.path import LwM2mPath
from meadowlark.server.service import LwM2mServer, ServerListener

pytestmark = pytest.mark.anyio

LINKS = b"</1/0>,</3/0>,</3303/0>"
TEXT = 0


class Events(ServerListener):
    def __init__(self) -> None:
        self.registered: list[str] = []
        self.deregistered: list[str] = []
        self.notified: list[object] = []

    def on_registered(self, registration, replaced) -> None:
        self.registered.append(registration.endpoint)

    def on_deregistered(self, registration, *, expired: bool) -> None:
        self.deregistered.append(registration.endpoint)

    def on_notification(self, registration, paths, nodes) -> None:
        self.notified.append(nodes[paths[0]].value)


class RawDevice:
    """A UDP socket speaking hand-made CoAP to the server."""

    def __init__(self, port: int) -> None:
        self.server = ("127.0.0.1", port)
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        self.sock.setblocking(False)
        self.sock.bind(("127.0.0.1", 0))

    @property
    def address(self) -> tuple[str, int]:
        return self.sock.getsockname()

    def send(self, data: bytes) -> None:
        self.sock.sendto(data, self.server)

    async def receive(self, within: float = 3.0) -> wire.WireMessage:
        loop = asyncio.get_running_loop()
        data = await asyncio.wait_for(loop.sock_recv(self.sock, 4096), within)
        message = wire.parse(data)
        assert message is not None, data
        return message

    async def nothing(self, seconds: float = 0.3) -> None:
        with pytest.raises(TimeoutError):
            await self.receive(seconds)

    def close(self) -> None:
        self.sock.close()


def register(mid: int, endpoint: str, mtype: int = wire.CON, payload: bytes = LINKS) -> bytes:
    options = [
        (wire.URI_PATH, b"rd"),
        (wire.CONTENT_FORMAT, wire.uint_bytes(40)),
        (wire.URI_QUERY, f"ep={endpoint}".encode()),
        (wire.URI_QUERY, b"lt=300"),
        (wire.URI_QUERY, b"lwm2m=1.1"),
    ]
    return wire.build(mtype, wire.POST, mid, b"\x0a\x0b", options, payload)


@pytest.fixture
async def served(lwm2m):
    events = Events()
    lwm2m.server.add_listener(events)
    device = RawDevice(lwm2m.port)
    try:
        yield lwm2m, events, device
    finally:
        device.close()


async def test_register_is_answered_piggybacked_and_a_retransmission_gets_the_same_bytes(served):
    lwm2m, events, device = served
    device.send(register(0x1001, "lean-1"))
    answer = await device.receive()
    assert (answer.mtype, answer.code, answer.mid, answer.token) == (
        wire.ACK, 0x41, 0x1001, b"\x0a\x0b"
    )  # fmt: skip
    location = answer.values(wire.LOCATION_PATH)
    registration = await lwm2m.server.get_registration("lean-1")
    assert registration is not None
    assert location == [b"rd", registration.registration_id.encode()]

    device.send(register(0x1001, "lean-1"))  # the same CON again: the ACK was "lost"
    again = await device.receive()
    assert again.data == answer.data
    assert events.registered == ["lean-1"]


async def test_non_register_gets_a_non_response_and_a_duplicate_nothing(served):
    _, events, device = served
    device.send(register(0x2001, "lean-non", mtype=wire.NON))
    answer = await device.receive()
    assert (answer.mtype, answer.code, answer.token) == (wire.NON, 0x41, b"\x0a\x0b")
    device.send(register(0x2001, "lean-non", mtype=wire.NON))
    await device.nothing()
    assert events.registered == ["lean-non"]


async def test_update_and_deregister_take_the_lean_path(served):
    lwm2m, events, device = served
    device.send(register(0x3001, "lean-upd"))
    location = (await device.receive()).values(wire.LOCATION_PATH)
    path = [(wire.URI_PATH, segment) for segment in location]
    device.send(
        wire.build(wire.CON, wire.POST, 0x3002, b"\x01", [*path, (wire.URI_QUERY, b"lt=99")])
    )
    updated = await device.receive()
    assert (updated.mtype, updated.code, updated.mid) == (wire.ACK, 0x44, 0x3002)
    registration = await lwm2m.server.get_registration("lean-upd")
    assert registration is not None and registration.lifetime == 99
    device.send(wire.build(wire.CON, wire.DELETE, 0x3003, b"\x02", path))
    deleted = await device.receive()
    assert (deleted.code, deleted.mid) == (0x42, 0x3003)
    assert events.deregistered == ["lean-upd"]
    device.send(wire.build(wire.CON, wire.DELETE, 0x3004, b"\x03", path))
    missing = await device.receive()
    assert missing.code == 0x84
    assert missing.payload == b"unknown registration"


async def test_a_refused_register_carries_its_diagnostic(served):
    _, events, device = served
    options = [(wire.URI_PATH, b"rd"), (wire.URI_QUERY, b"lt=300")]
    device.send(wire.build(wire.CON, wire.POST, 0x4001, b"\x09", options, LINKS))
    answer = await device.receive()
    assert (answer.mtype, answer.code) == (wire.ACK, 0x80)
    assert b"endpoint name" in answer.payload
    assert events.registered == []


async def test_a_payload_over_the_limit_gets_4_13_with_size1(served):
    _, _, device = served
    device.send(register(0x5001, "too-big", payload=b"</3/0>," * 700))
    answer = await device.receive()
    assert answer.code == 0x8D
    assert answer.uint(wire.SIZE1) == 4096


async def test_datagrams_both_ways_are_counted_per_address(tmp_path):
    server = LwM2mServer()
    coap = CoapServer(server, "127.0.0.1", 0, traffic=server.traffic)
    await server.start()
    server.attach(await coap.start())
    device = RawDevice(coap.port)
    try:
        request = register(0x6001, "counted")
        device.send(request)
        answer = await device.receive()
        counts = server.traffic.drain()[device.address]
        assert counts == (len(request), len(answer.data), 1, 1)
    finally:
        device.close()
        await coap.stop()
        await server.stop()


async def test_garbage_is_dropped_and_the_socket_keeps_answering(served):
    _, events, device = served
    for garbage in (b"", b"\x40", b"\x4f\x01\x00\x00", b"\x40\x02\x00\x01\xdf", b"\xff" * 30):
        device.send(garbage)
    device.send(b"\x40\x02\x00\x05\xb1\xff")  # Uri-Path with invalid UTF-8
    device.send(register(0x7001, "after-garbage"))
    while (answer := await device.receive()).mid != 0x7001:
        assert answer.code >= 0x80  # aiocoap's answer to some garbage: an error, never 2.xx
    assert answer.code == 0x41
    assert events.registered == ["after-garbage"]


async def test_notifications_are_acked_deduplicated_and_ordered(served):
    lwm2m, events, device = served
    device.send(register(0x8001, "observed"))
    await device.receive()
    loop = asyncio.get_running_loop()
    observing = loop.create_task(
        lwm2m.server.observe("observed", LwM2mPath(3303, 0, 5700), format=TEXT)
    )  # fmt: skip
    request = await device.receive()
    assert request.uint(wire.OBSERVE) == 0
    token = request.token
    content = (wire.CONTENT_FORMAT, wire.uint_bytes(TEXT))
    device.send(
        wire.build(wire.ACK, 0x45, request.mid, token, [(wire.OBSERVE, b"\x02"), content], b"20.5")
    )  # fmt: skip
    assert (await observing).value == 20.5

    def notification(mid: int, sequence: int, value: bytes) -> bytes:
        options = [(wire.OBSERVE, wire.uint_bytes(sequence)), content]
        return wire.build(wire.CON, 0x45, mid, token, options, value)

    device.send(notification(0x9001, 3, b"21.5"))
    ack = await device.receive()
    assert (ack.mtype, ack.code, ack.mid) == (wire.ACK, 0, 0x9001)
    device.send(notification(0x9001, 3, b"21.5"))  # retransmitted: ACKed again, not counted
    assert (await device.receive()).mid == 0x9001
    device.send(notification(0x9002, 2, b"19.0"))  # older than the last one: dropped
    assert (await device.receive()).mid == 0x9002
    device.send(notification(0x9003, 4, b"22.5"))
    assert (await device.receive()).mid == 0x9003
    await asyncio.sleep(0.05)
    assert events.notified == [21.5, 22.5]

    assert await lwm2m.server.cancel_observation(
        "observed", LwM2mPath(3303, 0, 5700), active=False
    )  # fmt: skip
    device.send(notification(0x9004, 5, b"23.5"))
    answer = await device.receive()  # no longer routed: aiocoap's message layer answers
    assert (answer.code, answer.mid) == (0, 0x9004)
    await asyncio.sleep(0.05)
    assert events.notified == [21.5, 22.5]


async def test_reuse_port_lets_two_servers_share_a_port():
    first = CoapServer(LwM2mServer(), "127.0.0.1", 0, reuse_port=True)
    await first.start()
    try:
        second = CoapServer(LwM2mServer(), "127.0.0.1", first.port, reuse_port=True)
        await second.start()
        await second.stop()
        exclusive = CoapServer(LwM2mServer(), "127.0.0.1", first.port)
        with pytest.raises(OSError):
            await exclusive.start()
    finally:
        await first.stop()


async def test_a_string_option_that_is_not_utf8_gets_4_00_and_a_format_error_nothing(served):
    _, _, device = served
    device.send(b"\x49\x01\x00\x09" + b"t" * 9)  # token length 9: a message format error
    await device.nothing()
    device.send(wire.build(wire.CON, wire.POST, 0x7101, b"\x05", [(wire.URI_PATH, b"\xff")]))
    answer = await device.receive()
    assert (answer.mtype, answer.code, answer.mid) == (wire.ACK, 0x80, 0x7101)
    assert answer.payload == b"option value is not UTF-8"
