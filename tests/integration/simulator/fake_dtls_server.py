"""A small DTLS 1.2 LwM2M server on python-mbedtls, on a real loopback UDP socket.

It answers the simulated devices' Register, Update and De-register, sends them requests,
and can lose datagrams or sessions on purpose, so the tests see the simulator's DTLS
client handle a lossy link and a server that dropped its session.
"""

from __future__ import annotations

import asyncio
import os
from dataclasses import dataclass, field

from aiocoap import Message
from aiocoap.numbers.codes import Code
from aiocoap.numbers.types import Type
from mbedtls import tls
from mbedtls.exceptions import TLSError

_HANDSHAKE_RECORD = 22
_CLIENT_HELLO = 1


@dataclass
class _Session:
    buffer: tls.TLSWrappedBuffer
    established: bool = False


@dataclass
class FakeDtlsServer(asyncio.DatagramProtocol):
    configuration: tls.DTLSConfiguration
    drop_incoming: int = 0
    """Datagrams from devices to lose before any is read."""
    drop_outgoing: int = 0
    """Datagrams to devices to lose before any is sent."""
    handshakes: int = 0
    handshake_failures: list[str] = field(default_factory=list)
    client_hellos: int = 0
    """ClientHellos read (not the lost ones)."""
    received: list[Message] = field(default_factory=list)
    sessions: dict[tuple, _Session] = field(default_factory=dict)
    _context: tls.ServerContext | None = None
    _transport: asyncio.DatagramTransport | None = None
    _awaiting: dict[bytes, asyncio.Future[Message]] = field(default_factory=dict)
    _locations: int = 0

    @classmethod
    async def start(cls, configuration: tls.DTLSConfiguration) -> FakeDtlsServer:
        loop = asyncio.get_running_loop()
        server = cls(configuration)
        server._context = tls.ServerContext(configuration)
        await loop.create_datagram_endpoint(lambda: server, local_addr=("127.0.0.1", 0))
        return server

    @property
    def uri(self) -> str:
        assert self._transport is not None
        return f"coaps://127.0.0.1:{self._transport.get_extra_info('sockname')[1]}"

    def registers(self) -> list[Message]:
        return [m for m in self.received if m.code == Code.POST and m.opt.uri_path == ("rd",)]

    def updates(self) -> list[Message]:
        return [m for m in self.received if m.code == Code.POST and len(m.opt.uri_path) == 2]

    def close(self) -> None:
        if self._transport is not None:
            self._transport.close()

    def forget(self, address: tuple) -> None:
        """Lose the device's session without telling it (a restart, an eviction)."""
        del self.sessions[address[:2]]

    def close_session(self, address: tuple) -> None:
        """End the device's session with a close_notify alert."""
        session = self.sessions.pop(address[:2])
        session.buffer.shutdown()
        self._flush(session, address[:2])

    async def request(self, address: tuple, message: Message) -> Message:
        """A confirmable request to the device over its session; its response."""
        token = os.urandom(4)
        message.token, message.mtype, message.mid = token, Type.CON, int.from_bytes(token[:2])
        future: asyncio.Future[Message] = asyncio.get_running_loop().create_future()
        self._awaiting[token] = future
        self._send(address[:2], message.encode())
        try:
            return await asyncio.wait_for(future, 5)
        finally:
            del self._awaiting[token]

    # --- protocol -------------------------------------------------------------------------

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self._transport = transport  # type: ignore[assignment]

    def datagram_received(self, data: bytes, addr: tuple) -> None:
        if self.drop_incoming > 0:
            self.drop_incoming -= 1
            return
        addr = addr[:2]
        session = self.sessions.get(addr)
        starts_handshake = (
            len(data) > 13
            and data[0] == _HANDSHAKE_RECORD
            and data[3:5] == b"\0\0"  # epoch 0
            and data[13] == _CLIENT_HELLO
        )
        if starts_handshake:
            self.client_hellos += 1
        if session is None or (session.established and starts_handshake):
            session = self.sessions[addr] = self._new_session(addr)
        if not session.established:
            self._handshake(session, addr, data)
            return
        offset = 0
        while offset + 13 <= len(data):
            end = offset + 13 + int.from_bytes(data[offset + 11 : offset + 13], "big")
            session.buffer.receive_from_network(data[offset:end])
            offset = end
            try:
                plaintext = session.buffer.read(16384)
            except TLSError:
                del self.sessions[addr]
                return
            if plaintext:
                self._coap(addr, Message.decode(plaintext))

    def _new_session(self, addr: tuple) -> _Session:
        assert self._context is not None
        buffer = self._context.wrap_buffers()
        buffer.setcookieparam(repr(addr).encode())
        return _Session(buffer)

    def _handshake(self, session: _Session, addr: tuple, data: bytes) -> None:
        buffer = session.buffer
        buffer.receive_from_network(data)
        try:
            while buffer._handshake_state is not tls.HandshakeStep.HANDSHAKE_OVER:
                try:
                    buffer.do_handshake()
                except tls.WantReadError:
                    break
                except tls.WantWriteError:
                    self._flush(session, addr)
        except tls.HelloVerifyRequest:
            self._flush(session, addr)
            del self.sessions[addr]  # stateless until the client returns the cookie
            return
        except TLSError as error:
            self.handshake_failures.append(str(error))
            self._flush(session, addr)
            self.sessions.pop(addr, None)
            return
        self._flush(session, addr)
        if buffer._handshake_state is tls.HandshakeStep.HANDSHAKE_OVER:
            session.established = True
            self.handshakes += 1

    def _coap(self, addr: tuple, message: Message) -> None:
        if message.mtype in (Type.ACK, Type.NON) and message.code.is_response():
            future = self._awaiting.get(message.token)
            if future is not None and not future.done():
                future.set_result(message)
            return
        if not message.code.is_request():
            return
        self.received.append(message)
        path = tuple(message.opt.uri_path)
        if message.code == Code.POST and path == ("rd",):
            self._locations += 1
            answer = Message(code=Code.CREATED, location_path=("rd", str(self._locations)))
        elif message.code == Code.POST and path[:1] == ("rd",):
            answer = Message(code=Code.CHANGED)
        elif message.code == Code.DELETE:
            answer = Message(code=Code.DELETED)
        else:
            answer = Message(code=Code.NOT_FOUND)
        answer.mtype, answer.mid, answer.token = Type.ACK, message.mid, message.token
        self._send(addr, answer.encode())

    def _send(self, addr: tuple, plaintext: bytes) -> None:
        session = self.sessions[addr]
        session.buffer.write(plaintext)
        self._flush(session, addr)

    def _flush(self, session: _Session, addr: tuple) -> None:
        data = session.buffer.peek_outgoing(65536)
        if not data:
            return
        session.buffer.consume_outgoing(len(data))
        if self.drop_outgoing > 0:
            self.drop_outgoing -= 1
            return
        assert self._transport is not None
        self._transport.sendto(data, addr)
