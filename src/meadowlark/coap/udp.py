"""The server's UDP socket: a lean path for LwM2M's hot messages, aiocoap for the rest.

``Lwm2mUdpInterface`` is aiocoap's UDP message interface with its receive step taken
over. Each datagram is parsed once by ``coap.wire``; these are answered here, directly
on the socket:

- Register, Update and De-register (``POST /rd``, ``POST /rd/{location}``,
  ``DELETE /rd/{location}``) with only Uri-Path, Uri-Query and Content-Format options:
  the ``UplinkHandler``'s answer goes out piggybacked on the ACK of a CON request (a
  NON request gets a NON response), with the same Location-Path, Max-Age and
  diagnostic payload as the aiocoap path;
- notifications (CON or NON responses with an Observe option) to an observation the
  server holds (``route_notifications``), CON ones acknowledged (RFC 7641 §4.2, with
  the freshness rule of §3.4).

Requests are deduplicated by (source address, Message ID) for EXCHANGE_LIFETIME
(RFC 7252 §4.5): a retransmitted CON gets the answer already sent, or nothing while
the first copy is still being processed. A retransmitted notification is ACKed again and
dropped by the Observe freshness rule. Everything else (block-wise transfers, ``/dp``
Send, ``/fw`` downloads, other options, ACKs and RSTs of the server's own requests) goes
to aiocoap unchanged. Every datagram in and out is counted in ``traffic``.
"""

from __future__ import annotations

import abc
import asyncio
import secrets
import socket
from collections import deque
from collections.abc import Callable, Coroutine, Sequence
from typing import Any

import structlog
from aiocoap import Message
from aiocoap.transports.udp6 import MessageInterfaceUDP6, UDP6EndpointAddress
from aiocoap.util import socknumbers

from meadowlark.coap import wire
from meadowlark.server.transport import (
    DownlinkResponse,
    NotificationCallback,
    Peer,
    ResponseCode,
    TrafficCounter,
    UplinkHandler,
    UplinkResult,
)

_log = structlog.get_logger("meadowlark.lwm2m")

EXCHANGE_LIFETIME = 247.0
"""RFC 7252 §4.8.2: how long a Message ID is remembered for deduplication."""
_FRESHNESS_WINDOW = 128.0
"""RFC 7641 §3.4: a notification this much later than the last one is always fresh."""
_MAX_DIAGNOSTIC = 128
_READ_BATCH = 64
"""Datagrams read per readiness of the socket before other work gets the loop."""
_RECEIVE_BUFFER = 4096
_SOCKET_RECEIVE_BUFFER = 4 * 1024 * 1024
"""Bytes of datagrams the kernel may queue for the socket (SO_RCVBUF)."""
_ANCILLARY_BUFFER = 1024
_REQUEST_OPTIONS = frozenset({wire.URI_PATH, wire.URI_QUERY, wire.CONTENT_FORMAT})
_NOTIFICATION_OPTIONS = frozenset(
    {wire.OBSERVE, wire.CONTENT_FORMAT, wire.MAX_AGE, wire.ETAG}
)  # fmt: skip
_SUCCESS_CODES = {code: ResponseCode(2, code & 0x1F) for code in range(0x40, 0x60)}
"""The 2.xx codes a notification may carry (``_take_notification`` hands over others)."""
_MSG_TRUNC = int(socket.MSG_TRUNC)
"""As a plain int: ``&`` with the IntFlag runs Python code in ``enum`` per datagram."""
_ACK_FIRST_BYTE = 0x40 | (wire.ACK << 4)
"""Version 1, type ACK, no token: the first byte of an empty ACK (RFC 7252 §3)."""
_INTERNAL_SERVER_ERROR = ResponseCode(5, 0)
_BAD_REQUEST = ResponseCode(4, 0)
_REQUEST_ENTITY_TOO_LARGE = 0x8D  # 4.13
_NOT_PARSED = object()

Address = tuple[str, int]


class NotificationRoute:
    """Where the notifications of one observation go; keeps RFC 7641 §3.4's state."""

    __slots__ = ("_on_notify", "_sequence", "_received_at")

    def __init__(self, on_notify: NotificationCallback, sequence: int | None, now: float) -> None:
        self._on_notify = on_notify
        self._sequence = sequence
        self._received_at = now

    def deliver(
        self, code: int, sequence: int, content_format: int | None, payload: bytes, now: float
    ) -> None:
        """Hand over a notification (``code``: a 2.xx, as on the wire) unless it is stale."""
        last = self._sequence
        if (
            last is not None
            and now <= self._received_at + _FRESHNESS_WINDOW
            and not (last < sequence < last + (1 << 23) or sequence + (1 << 23) < last)
        ):
            return  # older than (or a duplicate of) the last one delivered
        self._sequence, self._received_at = sequence, now
        response = DownlinkResponse(
            code=_SUCCESS_CODES[code],
            payload=payload,
            content_format=content_format,
            observe=sequence,
        )
        try:
            self._on_notify(response)
        except Exception:  # the server's bug must not break the socket
            _log.exception("notification_handler_failed")


def is_registration(path: Sequence[str], post: bool, delete: bool) -> bool:
    """Whether a request is a Register (POST /rd), an Update (POST /rd/{location}) or a
    De-register (DELETE /rd/{location})."""
    if not path or path[0] != "rd" or len(path) > 2:
        return False
    return post or (delete and len(path) == 2)


def registration_call(
    handler: UplinkHandler,
    peer: Peer,
    path: Sequence[str],
    delete: bool,
    query: Sequence[str],
    payload: bytes,
    fmt: int | None,
) -> Coroutine[Any, Any, UplinkResult]:
    """The handler call of a request ``is_registration`` accepted."""
    if len(path) == 1:
        return handler.on_register(peer, tuple(query), payload, fmt)
    if delete:
        return handler.on_deregister(peer, path[1])
    return handler.on_update(peer, path[1], tuple(query), payload, fmt)


async def registration_result(call: Coroutine[Any, Any, UplinkResult]) -> UplinkResult:
    """The result of a registration call; a handler bug still gets a proper answer."""
    try:
        return await call
    except Exception:
        _log.exception("uplink_failed", path="rd")
        return UplinkResult(_INTERNAL_SERVER_ERROR)


class LeanRegistrations(abc.ABC):
    """Register, Update and De-register answered without aiocoap, deduplicated.

    Shared by the UDP socket and the DTLS sessions (``coap.dtls``, on the decrypted
    datagrams). ``address`` identifies the sender (its socket address) and keys the
    deduplication; ``via`` is what the transport needs to answer through the way the
    request came (UDP: the IPV6_PKTINFO of the local address; DTLS: the session's remote).
    A transport sets ``handler`` and ``max_payload`` and provides ``_lean_peer`` and
    ``_sendto``.
    """

    handler: UplinkHandler
    max_payload: int = 65536

    def _init_lean(self) -> None:
        self._recent: dict[tuple[str, int, int], bytes | None] = {}
        self._recent_order: deque[tuple[float, tuple[str, int, int]]] = deque()
        self._tasks: set[asyncio.Task[None]] = set()
        self._next_mid = secrets.randbelow(0x10000)

    @abc.abstractmethod
    def _lean_peer(self, address: Any, via: Any) -> Peer:
        """The ``Peer`` of a request from ``address`` (its ``handle`` answers it later)."""

    @abc.abstractmethod
    def _sendto(self, data: bytes, address: Any, via: Any) -> None:
        """Send ``data`` to ``address`` the way its request came (``via``)."""

    def _take_request(
        self, message: wire.WireMessage, address: Any, via: Any, truncated: int
    ) -> bool:
        """Answer ``message`` here if it is a Register, Update or De-register that needs
        nothing else; False hands it over. ``via``: see the class docstring."""
        if not message.option_numbers() <= _REQUEST_OPTIONS:
            return False
        path = message.strings(wire.URI_PATH)
        code = message.code
        if path is None or not is_registration(path, code == wire.POST, code == wire.DELETE):
            return False
        if self._duplicate(message, address, via):
            return True
        if truncated or message.payload_length > self.max_payload:
            size1 = (wire.SIZE1, wire.uint_bytes(self.max_payload))
            self._reply(message, address, via, _REQUEST_ENTITY_TOO_LARGE, [size1])
            return True
        query = message.strings(wire.URI_QUERY)
        if query is None:
            result = UplinkResult(_BAD_REQUEST, diagnostic="Uri-Query is not valid UTF-8")
            self._reply_result(message, address, via, result)
            return True
        peer = self._lean_peer(address, via)
        fmt = message.uint(wire.CONTENT_FORMAT)
        delete = code == wire.DELETE
        call = registration_call(self.handler, peer, path, delete, query, message.payload, fmt)
        task = asyncio.get_running_loop().create_task(
            self._answer(call, message, address, via)
        )  # fmt: skip
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)
        return True

    async def _answer(
        self,
        call: Coroutine[Any, Any, UplinkResult],
        message: wire.WireMessage,
        address: Any,
        via: Any,
    ) -> None:
        self._reply_result(message, address, via, await registration_result(call))

    # --- deduplication (RFC 7252 §4.5) ---------------------------------------------------

    def _duplicate(self, message: wire.WireMessage, address: Any, via: Any) -> bool:
        """Whether ``message`` was seen before: a CON gets the earlier answer again; a
        first sighting is remembered (no answer yet)."""
        key = (address[0], address[1], message.mid)
        if key not in self._recent:
            self._remember(address, message.mid, None)
            return False
        answer = self._recent[key]
        if message.mtype == wire.CON and answer is not None:
            self._sendto(answer, address, via)
        return True

    def _remember(self, address: Any, mid: int, answer: bytes | None) -> None:
        key = (address[0], address[1], mid)
        now = asyncio.get_running_loop().time()
        if key not in self._recent:
            self._recent_order.append((now + EXCHANGE_LIFETIME, key))
        self._recent[key] = answer
        order = self._recent_order
        while order and order[0][0] <= now:
            _, old = order.popleft()
            self._recent.pop(old, None)

    # --- answering -----------------------------------------------------------------------

    def _reply_result(
        self, message: wire.WireMessage, address: Any, via: Any, result: UplinkResult
    ) -> None:
        code = (result.code.code_class << 5) | result.code.detail
        options = [(wire.LOCATION_PATH, segment.encode()) for segment in result.location_path]
        if result.max_age is not None:
            options.append((wire.MAX_AGE, wire.uint_bytes(result.max_age)))
        payload = b""
        if result.diagnostic and result.code.code_class != 2:
            payload = result.diagnostic.encode("utf-8")[:_MAX_DIAGNOSTIC]
        self._reply(message, address, via, code, options, payload)

    def _reply(
        self,
        message: wire.WireMessage,
        address: Any,
        via: Any,
        code: int,
        options: list[tuple[int, bytes]],
        payload: bytes = b"",
    ) -> None:
        if message.mtype == wire.CON:
            reply = wire.build(wire.ACK, code, message.mid, message.token, options, payload)
        else:
            mid, self._next_mid = self._next_mid, (self._next_mid + 1) & 0xFFFF
            reply = wire.build(wire.NON, code, mid, message.token, options, payload)
        if (address[0], address[1], message.mid) in self._recent:
            self._recent[(address[0], address[1], message.mid)] = reply
        self._sendto(reply, address, via)


async def bind_udp_socket(
    loop: asyncio.AbstractEventLoop, host: str, port: int, *, reuse_port: bool
) -> socket.socket:
    """A dual-stack, non-blocking UDP socket bound to ``host:port``; ``reuse_port`` sets
    SO_REUSEPORT so that several processes can share the port."""
    family_info = await loop.getaddrinfo(
        host, port, family=socket.AF_INET6, type=socket.SOCK_DGRAM, flags=socket.AI_V4MAPPED
    )
    sock = socket.socket(socket.AF_INET6, socket.SOCK_DGRAM)
    try:
        if reuse_port:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
        sock.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 0)
        # A registration storm arrives faster than it is read: queued, not dropped
        # (a dropped Register comes back seconds later). The kernel caps it at rmem_max.
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, _SOCKET_RECEIVE_BUFFER)
        sock.bind(family_info[0][4])
        sock.setblocking(False)
    except BaseException:
        sock.close()
        raise
    return sock


# aiocoap ships no type information: its classes are Any to mypy.
class Lwm2mUdpInterface(LeanRegistrations, MessageInterfaceUDP6):  # type: ignore[misc]
    """aiocoap's UDP6 message interface with the hot path above (see module docstring).

    Set ``handler`` (and optionally ``traffic``, ``max_payload``, ``block_size_exp``)
    right after ``bind``.
    """

    _sock: socket.socket
    traffic: TrafficCounter | None = None
    block_size_exp: int = 6

    @classmethod
    async def bind(
        cls, message_manager: Any, *, log: Any, loop: asyncio.AbstractEventLoop,
        host: str, port: int, reuse_port: bool = False,
    ) -> Lwm2mUdpInterface:  # fmt: skip
        """A dual-stack socket bound to ``host:port``; ``reuse_port`` sets SO_REUSEPORT so
        that several processes can share the port (the kernel spreads senders)."""
        sock = await bind_udp_socket(loop, host, port, reuse_port=reuse_port)
        try:
            interface = await cls._create_transport_endpoint(sock, message_manager, log, loop)
        except BaseException:
            sock.close()
            raise
        assert isinstance(interface, cls)
        # aiocoap's transport reads one datagram per readiness (and polls the error queue
        # each time); read them in batches instead, same socket, same callbacks.
        interface._sock = sock
        loop.add_reader(sock.fileno(), interface._read_datagrams)
        return interface

    def __init__(self, ctx: Any, log: Any, loop: asyncio.AbstractEventLoop) -> None:
        super().__init__(ctx, log, loop)
        self._init_lean()
        self._routes: dict[tuple[bytes, str, int], NotificationRoute] = {}
        self._hosts: dict[str, str] = {}
        self._loop = loop

    # --- observations --------------------------------------------------------------------

    def route_notifications(
        self,
        token: bytes,
        sockaddr: Sequence[Any],
        on_notify: NotificationCallback,
        sequence: int | None = None,
    ) -> Callable[[], None]:
        """Hand notifications with ``token`` from ``sockaddr`` to ``on_notify``, newer
        than Observe ``sequence`` (the first response's); returns the function that stops
        it (they then go to aiocoap, which rejects them)."""
        key = (token, sockaddr[0], sockaddr[1])
        now = asyncio.get_running_loop().time()
        route = self._routes[key] = NotificationRoute(on_notify, sequence, now)

        def unroute() -> None:
            if self._routes.get(key) is route:
                del self._routes[key]

        return unroute

    # --- receiving -----------------------------------------------------------------------

    def _read_datagrams(self) -> None:
        sock = self._sock
        if socknumbers.HAS_RECVERR:  # ICMP errors (e.g. port unreachable) for aiocoap
            try:
                error = sock.recvmsg(_RECEIVE_BUFFER, _ANCILLARY_BUFFER, socknumbers.MSG_ERRQUEUE)
            except (BlockingIOError, InterruptedError):
                pass
            except OSError as exc:
                self.error_received(exc)
            else:
                self.datagram_errqueue_received(*error)
        for _ in range(_READ_BATCH):
            try:
                data, ancdata, flags, address = sock.recvmsg(_RECEIVE_BUFFER, _ANCILLARY_BUFFER)
            except (BlockingIOError, InterruptedError):
                return
            except OSError as exc:
                self.error_received(exc)
                return
            if not self._receive(data, ancdata, flags, address):
                # aiocoap expects its loop turn after each datagram (it may start a task
                # for a request and cancel it on the next one): the rest waits a turn.
                return

    def datagram_msg_received(self, data: bytes, ancdata: Any, flags: Any, address: Any) -> None:
        self._receive(data, ancdata, flags, address)

    def _receive(self, data: bytes, ancdata: Any, flags: Any, address: Any) -> bool:
        """Handle one datagram; False if it went to aiocoap."""
        if self.traffic is not None:
            self.traffic.add((self._host(address[0]), address[1]), received=len(data))
        message = wire.parse(data)
        if message is None:  # a message format error: silently ignored (RFC 7252 §4.2)
            _log.debug("datagram_dropped", reason="not a well-formed CoAP message")
            return True
        try:
            if self._take(message, ancdata, address, flags & _MSG_TRUNC):
                return True
            if not message.strings_valid():
                self._refuse_undecodable(message, ancdata, address)
                return True
        except Exception:  # never let a datagram break the socket
            _log.exception("datagram_failed", peer=str(address[:2]))
            return True
        try:
            super().datagram_msg_received(data, ancdata, flags, address)
        except (UnicodeDecodeError, ValueError) as exc:
            # aiocoap lets e.g. invalid UTF-8 in an option escape as an exception: a
            # message format error, silently ignored (RFC 7252 §4.2).
            _log.debug("datagram_dropped", reason=f"{type(exc).__name__}: {exc}")
        return False

    def send(self, message: Message) -> None:
        """aiocoap's sends (its responses, requests, ACKs, RSTs), counted."""
        data = message.encode()
        remote = message.remote
        ancdata = [] if remote.pktinfo is None else [_pktinfo_ancdata(remote.pktinfo)]
        self._remote_being_sent_to.set(remote)
        try:
            self.transport.sendmsg(data, ancdata, 0, remote.sockaddr)
        finally:
            self._remote_being_sent_to.set(None)
        if self.traffic is not None:
            sockaddr = remote.sockaddr
            self.traffic.add((self._host(sockaddr[0]), sockaddr[1]), sent=len(data))

    def _take(self, message: wire.WireMessage, ancdata: Any, address: Any, truncated: int) -> bool:
        """Answer ``message`` here if it is a hot one; False hands it to aiocoap.

        ``truncated``: the datagram was larger than the receive buffer (MSG_TRUNC)."""
        mtype = message.mtype
        if mtype > wire.NON:
            return False
        if message.is_request:
            return self._take_request(message, address, _pktinfo(ancdata), truncated)
        if truncated:
            return False
        if message.is_response:
            return self._take_notification(message, ancdata, address)
        return False

    def _take_notification(self, message: wire.WireMessage, ancdata: Any, address: Any) -> bool:
        route = self._routes.get((message.token, address[0], address[1]))
        if route is None or message.code >> 5 != 2:
            return False
        # One pass over the options: the known ones read, any other one hands over.
        sequence = content_format = None
        data = message.data
        for number, start, end in message.options:
            if number == wire.OBSERVE:
                if sequence is None:
                    sequence = int.from_bytes(data[start:end], "big")
            elif number == wire.CONTENT_FORMAT:
                if content_format is None:
                    content_format = int.from_bytes(data[start:end], "big")
            elif number not in _NOTIFICATION_OPTIONS:
                return False
        if sequence is None:
            return False
        if message.mtype == wire.CON:
            # Every copy gets the same empty ACK; a retransmission (within MAX_TRANSMIT_SPAN,
            # 45 s) carries an Observe number already delivered, so the freshness rule
            # drops it: processed once (RFC 7252 §4.5) without remembering each MID.
            self._acknowledge(message.mid, address, ancdata)
        route.deliver(message.code, sequence, content_format, message.payload, self._loop.time())
        return True

    def _acknowledge(self, mid: int, address: Any, ancdata: Any) -> None:
        """An empty ACK straight on the socket: the hot case of ``_sendto``."""
        reply = bytes((_ACK_FIRST_BYTE, wire.EMPTY, mid >> 8, mid & 0xFF))
        pktinfo = _pktinfo(ancdata)
        try:
            self._sock.sendmsg(
                (reply,), () if pktinfo is None else (_pktinfo_ancdata(pktinfo),), 0, address
            )
        except OSError as exc:  # e.g. the socket closed meanwhile, or ICMP errors
            self.error_received(exc)
            return
        if self.traffic is not None:
            self.traffic.add((self._host(address[0]), address[1]), sent=4)

    def _refuse_undecodable(self, message: wire.WireMessage, ancdata: Any, address: Any) -> None:
        """A string option that is not UTF-8 (RFC 7252 §3.2): 4.00 to a CON request,
        silence otherwise (aiocoap would fail on it half-way through)."""
        _log.debug("datagram_dropped", reason="string option not UTF-8")
        if message.is_request and message.mtype == wire.CON:
            pktinfo = _pktinfo(ancdata)
            if not self._duplicate(message, address, pktinfo):
                result = UplinkResult(_BAD_REQUEST, diagnostic="option value is not UTF-8")
                self._reply_result(message, address, pktinfo, result)

    def _lean_peer(self, address: Any, via: Any) -> Peer:
        remote = UDP6EndpointAddress(address, self, pktinfo=via)
        # Downlinks reuse this remote object (NAT), so they inherit the block size too.
        remote.maximum_block_size_exp = self.block_size_exp
        return Peer(self._host(address[0]), address[1], "udp", handle=remote, identity=None)

    def _sendto(self, data: bytes, address: Any, pktinfo: bytes | None) -> None:
        ancdata = [] if pktinfo is None else [_pktinfo_ancdata(pktinfo)]
        transport = getattr(self, "transport", None)
        if transport is None:
            return  # shut down meanwhile
        transport.sendmsg(data, ancdata, 0, address)
        if self.traffic is not None:
            self.traffic.add((self._host(address[0]), address[1]), sent=len(data))

    def _host(self, address: str) -> str:
        """The printable host of a socket address, IPv4-mapped IPv6 as IPv4 (cached)."""
        host = self._hosts.get(address)
        if host is None:
            host = address.partition("%")[0]
            if host.startswith("::ffff:") and "." in host:
                host = host[7:]
            if len(self._hosts) >= 65536:
                self._hosts.clear()
            self._hosts[address] = host
        return host


def _pktinfo(ancdata: Any) -> bytes | None:
    for level, kind, data in ancdata:
        if level == socket.IPPROTO_IPV6 and kind == socket.IPV6_PKTINFO:
            return bytes(data)
    return None


def _pktinfo_ancdata(pktinfo: bytes) -> tuple[int, int, bytes]:
    return (socket.IPPROTO_IPV6, socket.IPV6_PKTINFO, pktinfo)
