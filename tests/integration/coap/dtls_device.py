"""A minimal LwM2M device over DTLS 1.2 (python-mbedtls as the client), for tests.

It handshakes with PSK or an X.509 client certificate, sends Register/Update/
De-register, answers the server's Read (GET), Write (PUT), Execute (POST) and Observe,
and sends notifications. Text/plain values only; just enough to drive the server's DTLS
transport from a test over real loopback sockets.
"""

from __future__ import annotations

import asyncio
import secrets
from pathlib import Path
from typing import Any

from aiocoap import CON, NON, Message
from aiocoap.numbers.codes import Code
from aiocoap.numbers.types import ACK, RST
from mbedtls import pk, tls
from mbedtls import x509 as mbedtls_x509
from mbedtls.exceptions import TLSError

from meadowlark.certificates import IssuedCertificate

TEXT = 0


class HandshakeFailed(Exception):
    pass


class DtlsDevice(asyncio.DatagramProtocol):
    """``await connect()``, then ``request``/``register``; the server's requests are
    answered from ``resources`` (path -> bytes)."""

    def __init__(
        self,
        server: tuple[str, int],
        *,
        psk: tuple[str, bytes] | None = None,
        certificate: IssuedCertificate | None = None,
    ) -> None:
        self.server = server
        chain: Any = None
        if certificate is not None:
            crt = mbedtls_x509.CRT.from_PEM(certificate.certificate_pem.decode())
            chain = ([crt], pk.ECC.from_buffer(certificate.key_pem))
        kind = "TLS-PSK-WITH-" if psk is not None else "TLS-ECDHE-ECDSA-WITH-"
        configuration = tls.DTLSConfiguration(
            ciphers=[name for name in tls.ciphers_available() if name.startswith(kind)],
            pre_shared_key=psk,
            certificate_chain=chain,
            validate_certificates=False,
            lowest_supported_version=tls.DTLSVersion.DTLSv1_2,
        )
        self._buffer = tls.ClientContext(configuration).wrap_buffers(None)
        self._transport: asyncio.DatagramTransport | None = None
        self._arrived = asyncio.Event()
        self._established = False
        self._pending: dict[bytes, asyncio.Future[Message]] = {}
        self._mid = secrets.randbelow(0x10000)
        self.resources: dict[str, bytes] = {
            "3/0/0": b"Meadowlark",
            "3/0/1": b"DTLS device",
            "3/0/15": b"UTC",
        }
        self.executed: list[str] = []
        self.observations: dict[str, bytes] = {}
        """Observed path -> the token of the observation."""
        self._sequence = 2
        self.location: str | None = None
        self.sent: list[bytes] = []
        """Every datagram sent, as on the wire (for replays)."""

    # --- connection ----------------------------------------------------------------------

    async def connect(self, timeout: float = 10.0) -> None:  # noqa: ASYNC109
        loop = asyncio.get_running_loop()
        await loop.create_datagram_endpoint(lambda: self, remote_addr=self.server)
        async with asyncio.timeout(timeout):
            while True:
                try:
                    while self._buffer._handshake_state is not tls.HandshakeStep.HANDSHAKE_OVER:
                        self._buffer.do_handshake()
                except (tls.WantReadError, tls.WantWriteError):
                    self._flush()
                    self._arrived.clear()
                    try:
                        await asyncio.wait_for(self._arrived.wait(), 1.0)
                    except TimeoutError:
                        pass  # do_handshake retransmits when its timer ran out
                    continue
                except TLSError as exc:
                    self._flush()
                    raise HandshakeFailed(str(exc)) from exc
                self._flush()
                break
        self._established = True

    def close(self, *, notify: bool = True) -> None:
        """End the session (with close_notify unless ``notify`` is False: a lost session)."""
        if notify and self._established:
            try:
                self._buffer.shutdown()
                self._flush()
            except TLSError:
                pass
        if self._transport is not None:
            self._transport.close()
            self._transport = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self._transport = transport

    @property
    def local_port(self) -> int:
        assert self._transport is not None
        return int(self._transport.get_extra_info("sockname")[1])

    def datagram_received(self, data: bytes, addr: Any) -> None:
        self._buffer.receive_from_network(data)
        self._arrived.set()
        if not self._established:
            return
        while True:
            try:
                plaintext = self._buffer.read(65536)
            except (tls.WantReadError, tls.WantWriteError):
                return
            except TLSError:
                return
            if not plaintext:
                return
            self._handle(Message.decode(plaintext))

    def send_raw(self, data: bytes) -> None:
        """Send ``data`` on the socket as it is (no DTLS)."""
        assert self._transport is not None
        self._transport.sendto(data)

    def _flush(self) -> None:
        data = self._buffer.peek_outgoing(1 << 20)
        if data and self._transport is not None:
            self._buffer.consume_outgoing(len(data))
            self._transport.sendto(data)
            self.sent.append(data)

    def _send(self, message: Message) -> None:
        self._buffer.write(message.encode())
        self._flush()

    def _next_mid(self) -> int:
        self._mid = (self._mid + 1) & 0xFFFF
        return self._mid

    # --- requests ------------------------------------------------------------------------

    async def request(
        self,
        code: Code,
        path: str,
        query: tuple[str, ...] = (),
        payload: bytes = b"",
        timeout: float = 10.0,  # noqa: ASYNC109
    ) -> Message:
        token = secrets.token_bytes(4)
        message = Message(
            _mtype=CON, code=code, _mid=self._next_mid(), _token=token, payload=payload
        )
        message.opt.uri_path = tuple(segment for segment in path.split("/") if segment)
        message.opt.uri_query = query
        future: asyncio.Future[Message] = asyncio.get_running_loop().create_future()
        self._pending[token] = future
        try:
            async with asyncio.timeout(timeout):
                while True:
                    self._send(message)
                    try:
                        return await asyncio.wait_for(asyncio.shield(future), 2.0)
                    except TimeoutError:
                        continue
        finally:
            self._pending.pop(token, None)

    async def register(self, endpoint: str, lifetime: int = 300) -> Message:
        response = await self.request(
            Code.POST,
            "rd",
            (f"ep={endpoint}", f"lt={lifetime}", "lwm2m=1.1", "b=U"),
            b"</1/0>,</3/0>",
        )
        if response.code == Code.CREATED:
            self.location = "/".join(response.opt.location_path)
        return response

    async def update(self) -> Message:
        assert self.location is not None
        return await self.request(Code.POST, self.location)

    async def deregister(self) -> Message:
        assert self.location is not None
        return await self.request(Code.DELETE, self.location)

    def notify(self, path: str, value: bytes) -> None:
        """Change ``path`` and send a NON notification to its observation."""
        self.resources[path] = value
        token = self.observations[path]
        self._sequence += 1
        message = Message(
            _mtype=NON, code=Code.CONTENT, _mid=self._next_mid(), _token=token, payload=value
        )
        message.opt.observe = self._sequence
        message.opt.content_format = TEXT
        self._send(message)

    # --- the server's requests -----------------------------------------------------------

    def _handle(self, message: Message) -> None:
        if message.code == Code.EMPTY and message.mtype == CON:  # a CoAP ping
            self._send(Message(_mtype=RST, code=Code.EMPTY, _mid=message.mid))
            return
        if message.code.is_response() or message.code == Code.EMPTY:
            future = self._pending.get(message.token)
            if message.code.is_response() and future is not None and not future.done():
                future.set_result(message)
            if message.mtype == CON:
                self._send(Message(_mtype=ACK, code=Code.EMPTY, _mid=message.mid))
            return
        path = "/".join(message.opt.uri_path)
        answer = Message(_mtype=ACK, _mid=message.mid, _token=message.token)
        if message.code == Code.GET and path in self.resources:
            answer.code = Code.CONTENT
            answer.payload = self.resources[path]
            answer.opt.content_format = TEXT
            if message.opt.observe == 0:
                self.observations[path] = message.token
                answer.opt.observe = self._sequence
        elif message.code == Code.PUT and path in self.resources:
            self.resources[path] = message.payload
            answer.code = Code.CHANGED
        elif message.code == Code.POST:
            self.executed.append(path)
            answer.code = Code.CHANGED
        else:
            answer.code = Code.NOT_FOUND
        if message.mtype != CON:
            answer.mtype, answer.mid = NON, self._next_mid()
        self._send(answer)


def write_pem(path: Path, *certificates: IssuedCertificate) -> Path:
    path.write_bytes(b"".join(certificate.certificate_pem for certificate in certificates))
    return path
