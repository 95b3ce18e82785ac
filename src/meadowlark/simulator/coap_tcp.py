"""A CoAP-over-TCP/TLS endpoint for simulated devices (RFC 8323, LwM2M binding ``T``).

The same surface as the UDP ``CoapEndpoint`` (``request``, ``send_notification``,
``fetch``, a synchronous request handler, ``accepting`` for queue mode) over one
connection to the server. The transport is reliable, so there are no message types,
IDs, acknowledgements or retransmissions: a request is matched to its response by
token alone. After connecting, both sides send a CSM (Capabilities and Settings
Message); Ping is answered by Pong, Release and Abort close the connection. Framing uses
aiocoap's RFC 8323 encoding helpers. Large answers go block-wise (Block2) and large
requests are reassembled (Block1) as over UDP, in blocks of at most 1024 bytes (no BERT).
"""

from __future__ import annotations

import asyncio
import os
import ssl

from aiocoap import Message, optiontypes
from aiocoap.numbers.codes import ABORT, CSM, PING, PONG, RELEASE
from aiocoap.transports.tcp import _decode_message, _extract_message_size, _serialize

from meadowlark.simulator.coap import (
    Address,
    BlockwiseTransfers,
    CoapError,
    CoapTimeout,
    DeliveryCallback,
    RequestHandler,
)

MAX_MESSAGE_SIZE = 8 * 1024 * 1024
"""Largest message accepted from the server (announced in our CSM)."""
CSM_WAIT = 10.0
"""Seconds to wait for the server's CSM after connecting."""


class StreamCoapEndpoint(asyncio.Protocol, BlockwiseTransfers):
    """One TCP (or TLS) connection speaking CoAP for one simulated device."""

    def __init__(self, handler: RequestHandler, server: Address) -> None:
        self.handler = handler
        self.accepting = True
        """False while a queue-mode device sleeps: incoming requests are dropped."""
        self.server = server
        self._transport: asyncio.Transport | None = None
        self._buffer = bytearray()
        self._next_token = int.from_bytes(os.urandom(4), "big")
        self._awaiting: dict[bytes, asyncio.Future[Message]] = {}
        self._uploads: dict[tuple[Address, tuple[str, ...]], bytearray] | None = None
        self._server_settings = asyncio.get_running_loop().create_future()
        self.server_max_message_size = 1152
        """The server's Max-Message-Size (RFC 8323 §5.3.1; 1152 until its CSM says)."""

    @classmethod
    async def connect(
        cls,
        handler: RequestHandler,
        server: Address,
        *,
        local_host: str | None = None,
        tls: ssl.SSLContext | None = None,
        server_hostname: str | None = None,
        timeout: float = CSM_WAIT,  # noqa: ASYNC109 - connect + CSM deadline
    ) -> StreamCoapEndpoint:
        """Connect (and, with ``tls``, handshake) to ``server``, exchange CSMs."""
        loop = asyncio.get_running_loop()
        try:
            _, endpoint = await asyncio.wait_for(
                loop.create_connection(
                    lambda: cls(handler, server),
                    server[0],
                    server[1],
                    ssl=tls,
                    server_hostname=None if tls is None else (server_hostname or server[0]),
                    local_addr=None if local_host is None else (local_host, 0),
                ),
                timeout,
            )
            await asyncio.wait_for(asyncio.shield(endpoint._server_settings), timeout)
        except (OSError, ssl.SSLError, TimeoutError) as error:
            raise CoapError(f"cannot connect to {server[0]}:{server[1]}: {error}") from error
        return endpoint

    @property
    def local_address(self) -> Address:
        assert self._transport is not None
        return self._transport.get_extra_info("sockname")

    @property
    def is_open(self) -> bool:
        return self._transport is not None and not self._transport.is_closing()

    @property
    def idle(self) -> bool:
        """No request is waiting for its response."""
        return not self._awaiting

    def close(self) -> None:
        """Release the connection (RFC 8323 §5.5) and close it."""
        if self.is_open:
            self._send(Message(code=RELEASE))
        self._fail_all(CoapError("endpoint closed"))
        if self._transport is not None:
            self._transport.close()

    # --- asyncio protocol ----------------------------------------------------------------

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self._transport = transport  # type: ignore[assignment]
        csm = Message(code=CSM)
        csm.opt.add_option(optiontypes.UintOption(2, MAX_MESSAGE_SIZE))
        self._send(csm)

    def connection_lost(self, exc: Exception | None) -> None:
        self._transport = None
        self._fail_all(CoapError(f"connection lost: {exc}" if exc else "connection closed"))
        if not self._server_settings.done():
            self._server_settings.set_exception(ConnectionError("closed before its CSM"))
            self._server_settings.exception()

    def data_received(self, data: bytes) -> None:
        buffer = self._buffer
        buffer += data
        while buffer:
            sizes = _extract_message_size(bytes(buffer[:5]))
            if sizes is None:
                return
            size = sum(sizes)
            if size > MAX_MESSAGE_SIZE:
                self._abort("message too large")
                return
            if size > len(buffer):
                return
            frame = bytes(buffer[:size])
            del buffer[:size]
            try:
                message = _decode_message(frame)
            except Exception:  # a malformed frame ends the connection (RFC 8323 §5.6)
                self._abort("malformed message")
                return
            message.remote = self.server
            self._receive(message)

    def _receive(self, message: Message) -> None:
        code = message.code
        if code.is_signalling():
            self._signal(message)
        elif code.is_request():
            if self.accepting:
                self._answer(message)
        elif code.is_response():
            future = self._awaiting.get(bytes(message.token))
            if future is not None and not future.done():
                future.set_result(message)

    def _signal(self, message: Message) -> None:
        code = message.code
        if code == CSM:
            for option in message.opt.option_list():
                if option.number == 2:
                    self.server_max_message_size = int.from_bytes(option.value, "big")
            if not self._server_settings.done():
                self._server_settings.set_result(None)
        elif code == PING:
            pong = Message(code=PONG)
            pong.token = message.token
            self._send(pong)
        elif code in (RELEASE, ABORT) and self._transport is not None:
            self._transport.close()

    # --- outgoing ------------------------------------------------------------------------

    async def request(
        self, message: Message, remote: Address, *, response_timeout: float = 93.0
    ) -> Message:
        """Send ``message`` and return the response (``remote`` is this connection's)."""
        if not self.is_open:
            raise CoapError("connection closed")
        token = self._new_token()
        message.token = token
        future: asyncio.Future[Message] = asyncio.get_running_loop().create_future()
        self._awaiting[token] = future
        try:
            self._send(message)
            return await asyncio.wait_for(future, response_timeout)
        except TimeoutError as error:
            raise CoapTimeout("no response") from error
        finally:
            self._awaiting.pop(token, None)

    def send_notification(
        self,
        message: Message,
        remote: Address,
        *,
        confirmable: bool,
        on_delivery: DeliveryCallback | None = None,
    ) -> None:
        """Send a notification; a reliable transport confirms every one it could send."""
        sent = self.is_open
        self._send(message)
        if on_delivery is not None and (confirmable or not sent):
            on_delivery(sent)

    # --- incoming requests ---------------------------------------------------------------

    def _answer(self, request: Message) -> None:
        response = self._serve(request, self.server)
        if response is None:
            return
        response.token = request.token
        self._send(response)

    # --- helpers -------------------------------------------------------------------------

    def _send(self, message: Message) -> None:
        if self._transport is not None and not self._transport.is_closing():
            self._transport.write(_serialize(message))

    def _abort(self, reason: str) -> None:
        self._send(Message(code=ABORT, payload=reason.encode()))
        if self._transport is not None:
            self._transport.close()

    def _fail_all(self, error: CoapError) -> None:
        for future in self._awaiting.values():
            if not future.done():
                future.set_exception(error)
                future.exception()
        self._awaiting.clear()

    def _new_token(self) -> bytes:
        self._next_token = (self._next_token + 1) & 0xFFFFFFFF
        return self._next_token.to_bytes(4, "big")


def is_stream_uri(server_uri: str) -> bool:
    """Whether ``server_uri`` names CoAP over TCP or TLS (``coap+tcp://``, ``coaps+tcp://``)."""
    return server_uri.startswith(("coap+tcp://", "coaps+tcp://"))


def client_tls_context(
    ca: str | None = None,
    certificate: str | None = None,
    private_key: str | None = None,
    *,
    check_hostname: bool = True,
) -> ssl.SSLContext:
    """A TLS client context trusting ``ca`` (else the system's CAs), presenting the client
    certificate ``certificate``/``private_key`` when given."""
    context = ssl.create_default_context(cafile=ca)
    context.check_hostname = check_hostname
    context.set_alpn_protocols(["coap"])
    if certificate is not None:
        context.load_cert_chain(certificate, private_key)
    return context
