"""A minimal LwM2M server on aiocoap that the simulated devices talk to in tests."""

from __future__ import annotations

import asyncio
import socket
from collections.abc import Callable
from dataclasses import dataclass, field

import aiocoap
import aiocoap.resource
from aiocoap import Message
from aiocoap.numbers.codes import Code

from meadowlark.simulator.client import DeviceTiming

FAST = DeviceTiming(ack_timeout=0.3, max_retransmit=2, reboot_delay=0.05, firmware_delay=0.05)


@dataclass
class Received:
    """A request the server got from a device."""

    code: Code
    path: tuple[str, ...]
    query: tuple[str, ...]
    payload: bytes
    content_format: int | None
    remote: object


@dataclass
class FakeLwM2mServer:
    """Records /rd and /dp traffic and sends Device Management requests to devices."""

    context: aiocoap.Context
    port: int
    received: list[Received] = field(default_factory=list)
    register_answers: list[Code] = field(default_factory=list)
    """Codes to answer the next Register requests with, in order, before 2.01."""
    arrived: asyncio.Condition = field(default_factory=asyncio.Condition)

    @property
    def uri(self) -> str:
        return f"coap://127.0.0.1:{self.port}"

    def of(self, code: Code, first_segment: str) -> list[Received]:
        return [r for r in self.received if r.code == code and r.path[:1] == (first_segment,)]

    async def wait_for(self, predicate: Callable[[], bool]) -> None:
        async with self.arrived:
            await asyncio.wait_for(self.arrived.wait_for(predicate), 5)

    async def request(
        self, device_address: tuple, method: Code, path: str, **options: object
    ) -> Message:
        host, port = device_address[:2]
        message = Message(code=method, uri=f"coap://{host}:{port}{path}", **options)
        return await asyncio.wait_for(self.context.request(message).response, 5)


class RecordingRoot(aiocoap.resource.Resource):
    def __init__(self) -> None:
        super().__init__()
        self.server: FakeLwM2mServer | None = None
        self.next_location = 0

    async def needs_blockwise_assembly(self, request: Message) -> bool:
        return True

    async def render(self, request: Message) -> Message:
        server = self.server
        assert server is not None
        path = tuple(request.opt.uri_path)
        entry = Received(
            request.code,
            path,
            tuple(request.opt.uri_query),
            request.payload,
            request.opt.content_format,
            request.remote,
        )
        async with server.arrived:
            server.received.append(entry)
            server.arrived.notify_all()
        if path == ("rd",) and request.code == Code.POST:
            if server.register_answers:
                return Message(code=server.register_answers.pop(0))
            self.next_location += 1
            return Message(code=Code.CREATED, location_path=("rd", f"r{self.next_location}"))
        if path[:1] == ("rd",) and len(path) == 2:
            return Message(code=Code.CHANGED if request.code == Code.POST else Code.DELETED)
        if path == ("dp",) and request.code == Code.POST:
            return Message(code=Code.CHANGED)
        return Message(code=Code.NOT_FOUND)


def free_udp_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]
