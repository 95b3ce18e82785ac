"""CoAP over TCP and TLS (RFC 8323): the LwM2M 1.1+ ``T`` binding.

aiocoap's ``TCPServer`` is the token interface of an aiocoap context: device requests
reach the same ``Lwm2mSite`` as over UDP, and the server's requests go back over the
device's own connection (its ``Peer.handle``). This module hardens its connection
for a server facing the Internet:

- a frame announcing more than ``max_message_size`` bytes, a frame that does not parse,
  too many options, or anything but a CSM first closes the connection with an Abort
  (RFC 8323 §5.6); so does silence: no CSM within ``csm_timeout``, or a frame begun
  and not whole within ``frame_timeout``. The receive buffer
  never holds more than one frame of at most ``max_message_size`` bytes;
- when the device stops reading, the server stops reading its requests (backpressure),
  so answers cannot pile up in memory;
- a closed connection fails the requests waiting on it, and later ones at once, with a
  ``NetworkError`` saying so (the REST layer answers 502);
- over TLS, a client certificate verified against the CA bundle authenticates the
  device as ``PeerIdentity("cert", <subject CN>, <subject alternative names>)``;
- the listening socket is bound here (dual-stack, SO_REUSEPORT only when asked), so
  that ``serve --workers N`` shares the port and a second server does not silently.

BERT (block sizes above 1024) is not offered: block-wise transfers use the server's
configured block size in both directions, as over UDP.
"""

from __future__ import annotations

import asyncio
import contextlib
import socket
import ssl
from collections.abc import Callable, Coroutine
from typing import Any

import structlog
from aiocoap import Message, OptionNumber, error, optiontypes
from aiocoap.numbers.codes import ABORT, CSM, PING, PONG, RELEASE, Code
from aiocoap.transports.tcp import TcpConnection, TCPServer, _decode_message, _serialize

from meadowlark.coap.convert import result_message, sockaddr_address
from meadowlark.coap.peer_certificates import certificate_identity
from meadowlark.coap.udp import is_registration, registration_call, registration_result
from meadowlark.server.transport import (
    Peer,
    PeerIdentity,
    TrafficCounter,
    TransportError,
    TransportTimeout,
    UplinkHandler,
    UplinkResult,
)

_log = structlog.get_logger("meadowlark.lwm2m")

CSM_TIMEOUT = 10.0
"""Seconds a new connection may stay silent before its first message, the CSM."""
FRAME_TIMEOUT = 60.0
"""Seconds a message may take to arrive whole from its first byte (a slow cellular link
sends 64 KiB in well under that); a truncated frame closes the connection then."""
TLS_HANDSHAKE_TIMEOUT = 10.0
MAX_OPTIONS = 64
"""Options one message may carry; a frame with more is refused before aiocoap decodes it
(its option decoder copies the rest of the frame per option)."""
_MAX_MESSAGE_SIZE_OPTION = 2
"""CSM option: the largest message this side accepts (RFC 8323 §5.3.1)."""
_HEADER_ALLOWANCE = 1024
_REGISTRATION_OPTIONS = frozenset(
    {OptionNumber.URI_PATH, OptionNumber.URI_QUERY, OptionNumber.CONTENT_FORMAT}
)
"""The only options of a Register/Update/De-register taken on the lean path."""
_UPLINK_DRAIN = 5.0
"""Seconds the shutdown waits for the registrations being answered."""
_BLOCK_OVERHEAD = 128
"""Bytes a block's message adds to its payload (token, options), for the device's limit."""
"""Bytes beyond the largest payload that a message's token and options may take."""


# aiocoap ships no type information: its classes are Any to mypy.
class ConnectionClosed(error.NetworkError):  # type: ignore[misc]
    """The device's TCP/TLS connection closed: what was sent over it gets no answer."""

    def __str__(self) -> str:
        return str(self.args[0]) if self.args else "the device's connection closed"


# aiocoap ships no type information: its classes are Any to mypy.
class Lwm2mTcpConnection(TcpConnection):  # type: ignore[misc]
    """One device connection (aiocoap's, with the limits of the module docstring)."""

    _owner: Lwm2mTcpServer

    def __init__(self, owner: Lwm2mTcpServer, log: Any, loop: asyncio.AbstractEventLoop) -> None:
        super().__init__(owner, log, loop, is_server=True)
        self._owner = owner
        self._my_max_message_size = owner.max_message_size
        self._buffer = bytearray()
        self._block_size_cap = owner.block_size_exp
        self._csm_timer: asyncio.TimerHandle | None = None
        self._frame_timer: asyncio.TimerHandle | None = None
        self._pings: dict[bytes, asyncio.Future[None]] = {}
        self._next_ping = 0
        self.closed = False
        self.lwm2m_peer: Peer | None = None
        """The ``Peer`` requests over this connection come from (``coap.convert.peer_of``)."""

    # --- the block size the site and downlinks use --------------------------------------

    @property
    def maximum_block_size_exp(self) -> int:
        """The server's block size, smaller if the device's CSM announced a
        Max-Message-Size that a block of it (with its header) would exceed."""
        exponent = min(self._block_size_cap, 6)
        limit = (self._remote_settings or {}).get("max-message-size")
        while limit is not None and exponent > 0 and (16 << exponent) + _BLOCK_OVERHEAD > limit:
            exponent -= 1
        return exponent

    @maximum_block_size_exp.setter
    def maximum_block_size_exp(self, value: int) -> None:
        self._block_size_cap = value

    @property
    def maximum_payload_size(self) -> int:
        """Larger payloads go block-wise: above one block (no BERT)."""
        return 16 << self.maximum_block_size_exp

    # --- connection life -----------------------------------------------------------------

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        host, port = sockaddr_address(transport.get_extra_info("peername"))
        ssl_object = transport.get_extra_info("ssl_object")
        identity = None if ssl_object is None else _certificate_identity(ssl_object)
        scheme = "tcp" if ssl_object is None else "tls"
        self.lwm2m_peer = Peer(host, port, scheme, handle=self, identity=identity)
        super().connection_made(transport)  # sends our CSM
        self._csm_timer = self.loop.call_later(self._owner.csm_timeout, self._csm_overdue)

    def _send_initial_csm(self) -> None:
        """Our Max-Message-Size, and no Block-Wise-Transfer option: no BERT."""
        csm = Message(code=CSM)
        size = optiontypes.UintOption(_MAX_MESSAGE_SIZE_OPTION, self._my_max_message_size)
        csm.opt.add_option(size)
        self._send_message(csm)

    def _csm_overdue(self) -> None:
        self._csm_timer = None
        if self._remote_settings is None and not self.closed:
            self.abort("No CSM received in time")

    def _frame_overdue(self) -> None:
        self._frame_timer = None
        if self._buffer and not self.closed:
            self.abort("Message incomplete in time")

    def connection_lost(self, exc: Exception | None) -> None:
        self.closed = True
        self._buffer = bytearray()
        for timer in (self._csm_timer, self._frame_timer):
            if timer is not None:
                timer.cancel()
        for waiter in self._pings.values():
            if not waiter.done():
                waiter.set_exception(TransportError("the device's connection closed"))
        if self._owner._tokenmanager is None:  # shutting down: nothing waits any more
            self._owner._evict_from_pool(self)
            return
        reason = "the device's connection closed" + (f": {exc}" if exc else "")
        self._ctx._dispatch_error(self, ConnectionClosed(reason))
        handler, peer = self._owner.handler, self.lwm2m_peer
        if handler is not None and peer is not None:
            handler.on_peer_closed(peer)

    def pause_writing(self) -> None:
        # The device does not read its answers: stop reading its requests meanwhile.
        if self._transport is not None:
            self._transport.pause_reading()

    def resume_writing(self) -> None:
        if self._transport is not None and not self.closed:
            self._transport.resume_reading()

    def abort(self, errormessage: str | None = None, bad_csm_option: int | None = None) -> None:
        """Abort (RFC 8323 §5.6) with the reason; logged at debug level only, as a bad
        datagram is on UDP (anyone can open connections to fill the log otherwise)."""
        _log.debug("tcp_connection_aborted", peer=str(self.lwm2m_peer), reason=errormessage)
        abort = Message(code=ABORT, payload=(errormessage or "").encode())
        if bad_csm_option is not None:
            abort.opt.add_option(optiontypes.UintOption(2, bad_csm_option))
        self._abort_with(abort)

    def _abort_with(self, abort_msg: Message) -> None:
        if not self.closed:
            super()._abort_with(abort_msg)  # sends the Abort, then closes
        self.closed = True

    # --- frames in and out ---------------------------------------------------------------

    def data_received(self, data: bytes) -> None:
        if self.closed:
            return
        owner = self._owner
        buffer = self._buffer
        buffer += data
        while buffer:
            size = _frame_size(buffer)
            if size is not None and size > self._my_max_message_size:
                self.abort("Overly large message announced")
                return
            if size is None or size > len(buffer):
                if self._frame_timer is None:  # a frame begun must arrive in time
                    self._frame_timer = self.loop.call_later(
                        owner.frame_timeout, self._frame_overdue
                    )
                return
            if self._frame_timer is not None:
                self._frame_timer.cancel()
                self._frame_timer = None
            frame = bytes(buffer[:size])
            del buffer[:size]
            if owner.traffic is not None and self.lwm2m_peer is not None:
                owner.traffic.add(self.lwm2m_peer.address, received=size)
            message = _parse_frame(frame)
            if message is None:
                self.abort("Failed to parse message")
                return
            message.remote = self
            code = message.code
            if code.is_signalling():
                self._signal(message)
            elif self._remote_settings is None:
                self.abort("No CSM received")
            elif code.is_request() and self._take_registration(message):
                pass
            elif code.is_request() or code.is_response():
                self._ctx._dispatch_incoming(self, message)
            # Empty messages are ignored (RFC 8323 §3.4), and so are reserved codes.
            if self.closed:
                return

    def _take_registration(self, request: Message) -> bool:
        """Answer Register, Update and De-register here, as the UDP socket does, without
        aiocoap's request machinery (pipes, a task per request, block-wise state); False
        hands the request to aiocoap (other paths, options, large payloads)."""
        owner = self._owner
        handler, peer = owner.handler, self.lwm2m_peer
        options = request.opt
        path, code = options.uri_path, request.code
        if handler is None or peer is None:
            return False
        if not is_registration(path, code == Code.POST, code == Code.DELETE):
            return False
        if len(request.payload) > owner.max_payload or any(
            option.number not in _REGISTRATION_OPTIONS for option in options.option_list()
        ):
            return False
        fmt = None if options.content_format is None else int(options.content_format)
        delete = code == Code.DELETE
        call = registration_call(
            handler, peer, path, delete, options.uri_query, request.payload, fmt
        )
        task = self.loop.create_task(self._answer(call, request.token))
        owner.uplinks.add(task)
        task.add_done_callback(owner.uplinks.discard)
        return True

    async def _answer(self, call: Coroutine[Any, Any, UplinkResult], token: bytes) -> None:
        response = result_message(await registration_result(call))
        response.token = token
        self._send_message(response)  # nothing if the connection closed meanwhile

    def _signal(self, message: Message) -> None:
        if message.code != CSM and self._remote_settings is None:
            self.abort("No CSM received")
            return
        if message.code == PONG:
            waiter = self._pings.pop(bytes(message.token), None)
            if waiter is not None and not waiter.done():
                waiter.set_result(None)
        elif message.code == PING:
            pong = Message(code=PONG)
            pong.token = message.token
            self._send_message(pong)
            return
        elif message.code in (RELEASE, ABORT):  # the device ends the connection
            _log.debug("tcp_connection_released", peer=str(self.lwm2m_peer), code=str(message.code))
            self.closed = True
            self._ctx._dispatch_error(self, ConnectionClosed("the device closed its connection"))
            if self._transport is not None:
                self._transport.close()
            return
        self._process_signaling(message)  # CSM, PONG: aborts on an unknown critical option
        if message.code == CSM and self._csm_timer is not None:
            self._csm_timer.cancel()
            self._csm_timer = None

    def _send_message(self, msg: Message) -> None:
        if self.closed or self._transport is None or self._transport.is_closing():
            return
        data = _serialize(msg)
        self._transport.write(data)
        traffic = self._owner.traffic
        if traffic is not None and self.lwm2m_peer is not None:
            traffic.add(self.lwm2m_peer.address, sent=len(data))

    async def ping(self, timeout: float) -> None:  # noqa: ASYNC109 - API deadline, mapped to 504
        """An RFC 8323 §5.4 Ping, answered by the device's Pong."""
        if self.closed:
            raise TransportError("the device's connection is closed")
        self._next_ping = (self._next_ping + 1) & 0xFFFFFFFF
        ping = Message(code=PING)
        ping.token = token = self._next_ping.to_bytes(4, "big")
        waiter = self.loop.create_future()
        self._pings[token] = waiter
        try:
            self._send_message(ping)
            await asyncio.wait_for(waiter, timeout)
        except TimeoutError:
            raise TransportTimeout(f"no Pong within {timeout:g} s") from None
        finally:
            self._pings.pop(token, None)


# aiocoap ships no type information: its classes are Any to mypy.
class Lwm2mTcpServer(TCPServer):  # type: ignore[misc]
    """aiocoap's TCP (or, with an ``ssl.SSLContext``, TLS) server on our own socket."""

    _scheme = "coap+tcp"

    def __init__(self) -> None:
        super().__init__()
        self.max_message_size = 65536 + _HEADER_ALLOWANCE
        self.block_size_exp = 6
        self.csm_timeout = CSM_TIMEOUT
        self.frame_timeout = FRAME_TIMEOUT
        self.traffic: TrafficCounter | None = None
        self.handler: UplinkHandler | None = None
        self.max_payload = 65536
        self.uplinks: set[asyncio.Task[None]] = set()
        """Registrations being answered on the lean path."""

    @classmethod
    async def listen(
        cls,
        tokens: Any,
        *,
        log: Any,
        host: str,
        port: int,
        tls: ssl.SSLContext | None = None,
        max_payload: int = 65536,
        block_size_exp: int = 6,
        traffic: TrafficCounter | None = None,
        reuse_port: bool = False,
        handler: UplinkHandler | None = None,
    ) -> Lwm2mTcpServer:
        """Listen on ``host:port`` (0: any free port) for aiocoap's token manager ``tokens``;
        with ``handler``, Register/Update/De-register are answered on the lean path."""
        self = cls()
        self.handler = handler
        if tls is not None:
            self._scheme = "coaps+tcp"
        self._tokenmanager = tokens
        self.log = log
        self.max_message_size = max_payload + _HEADER_ALLOWANCE
        self.max_payload = max_payload
        self.block_size_exp = block_size_exp
        self.traffic = traffic
        loop = asyncio.get_running_loop()
        sock = await _listening_socket(loop, host, port, reuse_port)
        try:
            self.server = await loop.create_server(
                lambda: self._accept(log, loop),
                sock=sock,
                ssl=tls,
                ssl_handshake_timeout=None if tls is None else TLS_HANDSHAKE_TIMEOUT,
            )
        except BaseException:
            sock.close()
            raise
        return self

    def _accept(self, log: Any, loop: asyncio.AbstractEventLoop) -> Lwm2mTcpConnection:
        connection = Lwm2mTcpConnection(self, log, loop)
        self._pool.add(connection)
        return connection

    @property
    def port(self) -> int:
        assert self.server is not None
        return int(self.server.sockets[0].getsockname()[1])

    async def fill_or_recognize_remote(self, message: Message) -> bool:
        remote = message.remote
        if isinstance(remote, Lwm2mTcpConnection) and remote._ctx is self:
            if remote.closed:
                raise ConnectionClosed("the device's connection is closed")
            return True
        return False

    def _dispatch_error(self, connection: Lwm2mTcpConnection, exc: Exception | None) -> None:
        """Fail the server's requests over a closed ``connection``. A device's request in
        process runs to its end: its answer has nowhere to go, but a Register cancelled
        half-way (as aiocoap would) could leave the registry and the store disagreeing."""
        self._evict_from_pool(connection)
        tokens = self._tokenmanager
        if tokens is None or tokens.outgoing_requests is None:
            return
        if not isinstance(exc, error.NetworkError):
            exc = ConnectionClosed(f"the device's connection closed: {exc}")
        for (_, remote), request in list(tokens.outgoing_requests.items()):
            if remote is connection:
                request.add_exception(exc)

    def send_message(self, message: Message, messageerror_monitor: Callable[[], None]) -> None:
        if isinstance(message.remote, Lwm2mTcpConnection) and message.remote.closed:
            return  # its requests already failed with the connection
        super().send_message(message, messageerror_monitor)

    async def shutdown(self) -> None:
        """Stop listening, then Release and close every connection (RFC 8323 §5.5)."""
        self._tokenmanager = None
        if self.server is None:
            return
        self.server.close()
        for connection in list(self._pool):
            with contextlib.suppress(Exception):
                await connection.release()
            if connection._transport is not None:
                connection._transport.close()
        self._pool.clear()
        if self.uplinks:  # a Register half-way through its commit finishes
            await asyncio.wait(self.uplinks, timeout=_UPLINK_DRAIN)
        await self.server.wait_closed()


async def _listening_socket(
    loop: asyncio.AbstractEventLoop, host: str, port: int, reuse_port: bool
) -> socket.socket:
    """A dual-stack TCP socket listening on ``host:port`` (as the UDP one binds)."""
    infos = await loop.getaddrinfo(
        host, port, family=socket.AF_INET6, type=socket.SOCK_STREAM, flags=socket.AI_V4MAPPED
    )
    sock = socket.socket(socket.AF_INET6, socket.SOCK_STREAM)
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        if reuse_port:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
        sock.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 0)
        sock.bind(infos[0][4])
        sock.listen(1024)
        sock.setblocking(False)
    except BaseException:
        sock.close()
        raise
    return sock


def _frame_size(buffer: bytearray) -> int | None:
    """The whole length of the frame starting ``buffer`` (RFC 8323 §3.2), once known."""
    first = buffer[0]
    length = first >> 4
    header = 2  # the first byte and the code
    if length >= 13:
        extension = (1, 2, 4)[length - 13]
        if len(buffer) < 1 + extension:
            return None
        offset = (13, 269, 65805)[length - 13]
        length = int.from_bytes(buffer[1 : 1 + extension], "big") + offset
        header += extension
    return header + (first & 0x0F) + length


def _parse_frame(frame: bytes) -> Message | None:
    """The message in one whole frame; ``None`` when it is not well-formed."""
    if frame[0] & 0x0F > 8 or not _options_countable(frame):
        return None
    try:
        return _decode_message(frame)
    except Exception:  # aiocoap raises several kinds for malformed options
        return None


def _options_countable(frame: bytes) -> bool:
    """Whether the frame's options are well delimited and at most ``MAX_OPTIONS``."""
    length = frame[0] >> 4
    position = 2 + _EXTENSION_BYTES[length] + (frame[0] & 0x0F)
    end = len(frame)
    count = 0
    while position < end:
        byte = frame[position]
        if byte == 0xFF:
            return position + 1 < end  # a payload marker must be followed by a payload
        count += 1
        delta, value_length = byte >> 4, byte & 0x0F
        if count > MAX_OPTIONS or delta == 15 or value_length == 15:
            return False
        position += 1 + _EXTENSION_BYTES[delta]
        extension = _EXTENSION_BYTES[value_length]
        if position + extension > end:
            return False
        if extension:
            base = 13 if extension == 1 else 269
            value_length = int.from_bytes(frame[position : position + extension], "big") + base
        position += extension + value_length
    return position == end


_EXTENSION_BYTES = (0,) * 13 + (1, 2, 4)
"""Bytes that follow a 4-bit length (or option delta) of 13, 14, 15 (RFC 8323 §3.2)."""


def _certificate_identity(ssl_object: ssl.SSLObject) -> PeerIdentity | None:
    """The ``cert`` identity (subject common name and alternative names) of the client
    certificate the TLS handshake verified against the CA bundle; None without one."""
    der = ssl_object.getpeercert(binary_form=True)
    return certificate_identity(der) if der else None


def server_tls_context(certificate: str, private_key: str, ca_bundle: str | None) -> ssl.SSLContext:
    """TLS 1.2+ with the server's certificate; with ``ca_bundle``, client certificates are
    requested (optional) and must chain to it when sent."""
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.minimum_version = ssl.TLSVersion.TLSv1_2
    context.load_cert_chain(certificate, private_key)
    context.set_alpn_protocols(["coap"])
    if ca_bundle is not None:
        context.load_verify_locations(ca_bundle)
        context.verify_mode = ssl.CERT_OPTIONAL
    return context
