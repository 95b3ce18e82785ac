"""A lean CoAP-over-UDP endpoint for simulated devices (RFC 7252 message layer).

aiocoap's ``Message`` does the wire encoding; this module does the rest with a handful
of objects per device instead of a full aiocoap ``Context`` (about 37 KB each):
confirmable requests with retransmission, piggybacked and separate responses, duplicate
detection for incoming confirmable requests, confirmable and non-confirmable
notifications with RST detection (RFC 7641 §3.6), Block2 slicing of large
responses and Block1 reassembly of large requests (RFC 7959), and block-wise downloads
(``fetch``). Requests are answered synchronously by a handler, which keeps the
answering path free of per-request tasks. One endpoint is one UDP socket: requests to the
server and answers to it share it, as LwM2M needs behind NAT.
"""

from __future__ import annotations

import asyncio
import os
import random
from collections.abc import Callable
from typing import Any, Protocol

from aiocoap import Message
from aiocoap.error import UnparsableMessage
from aiocoap.numbers.codes import Code
from aiocoap.numbers.types import Type
from aiocoap.optiontypes import BlockOption

Address = Any
"""A socket address as asyncio reports it: ``(host, port)`` or ``(host, port, flow, scope)``."""

RequestHandler = Callable[[Message], Message | None]
"""Answers an incoming request with a response message, or ``None`` to ignore it."""

DeliveryCallback = Callable[[bool], None]
"""Told ``True`` when a confirmable message was acknowledged, ``False`` on RST or timeout."""

ACK_TIMEOUT = 2.0
ACK_RANDOM_FACTOR = 1.5
MAX_RETRANSMIT = 4
MAX_BLOCK_SIZE_EXPONENT = 6
"""Responses above 1024 bytes go block-wise."""
_RECENT_LIMIT = 8
_NON_TRACKED_LIMIT = 16
MAX_REQUEST_BODY = 64 * 1024 * 1024
"""Largest Block1-reassembled request body accepted (else 4.13)."""


class CoapError(Exception):
    """A request to the server that got no usable answer."""


class CoapErrorResponse(CoapError):
    """The server answered a ``fetch`` with an error code."""

    def __init__(self, code: Code) -> None:
        super().__init__(f"answered {code}")
        self.code = code


class CoapTimeout(CoapError):
    """No acknowledgement or response in time."""


class CoapReset(CoapError):
    """The peer answered with RST."""


class _Outgoing:
    """A confirmable message waiting for its ACK or RST."""

    __slots__ = ("data", "remote", "attempts", "timeout", "timer", "on_ack", "on_fail")

    def __init__(
        self,
        data: bytes,
        remote: Address,
        timeout: float,
        on_ack: Callable[[Message], None],
        on_fail: Callable[[CoapError], None],
    ) -> None:
        self.data = data
        self.remote = remote
        self.attempts = 0
        self.timeout = timeout
        self.timer: asyncio.TimerHandle | None = None
        self.on_ack = on_ack
        self.on_fail = on_fail


class _Requester(Protocol):
    """An endpoint that sends requests, whatever its transport."""

    async def request(
        self, message: Message, remote: Address, *, response_timeout: float = ...
    ) -> Message: ...


class BlockwiseTransfers:
    """Block-wise transfers (RFC 7959), the same over UDP and over TCP/TLS: Block1
    reassembly of incoming requests, Block2 slicing of large answers and block-wise
    downloads (``fetch``)."""

    handler: RequestHandler
    _uploads: dict[tuple[Address, tuple[str, ...]], bytearray] | None
    """Request bodies being reassembled, by sender and Uri-Path."""

    def _serve(self, request: Message, addr: Address) -> Message | None:
        """The handler's answer to ``request`` from ``addr``: a Block1 request body is
        reassembled first, a large answer is cut to the Block2 block asked for."""
        if request.opt.block1 is not None:
            response = self._receive_block1(request, addr)
        else:
            response = self.handler(request)
        if response is not None:
            _slice_block2(request, response)
        return response

    def _receive_block1(self, request: Message, addr: Address) -> Message | None:
        """One block of a request body (RFC 7959 §2.3): 2.31 Continue until the last,
        which hands the whole request to the handler."""
        block1 = request.opt.block1
        assert block1 is not None
        key = (addr, tuple(request.opt.uri_path))
        if self._uploads is None:
            self._uploads = {}
        if block1.block_number == 0:
            self._uploads[key] = bytearray()
        body = self._uploads.get(key)
        if body is None or block1.start != len(body):
            self._uploads.pop(key, None)
            return Message(code=Code.REQUEST_ENTITY_INCOMPLETE)
        if len(body) + len(request.payload) > MAX_REQUEST_BODY:
            self._uploads.pop(key, None)
            return Message(code=Code.REQUEST_ENTITY_TOO_LARGE)
        body += request.payload
        if block1.more:
            response = Message(code=Code.CONTINUE)
            response.opt.block1 = block1
            return response
        del self._uploads[key]
        request.payload = bytes(body)
        request.opt.block1 = None
        response = self.handler(request)
        if response is not None:
            response.opt.block1 = block1
        return response

    async def fetch(
        self: _Requester,
        remote: Address,
        uri_path: tuple[str, ...],
        on_block: Callable[[bytes], None],
        *,
        response_timeout: float = 93.0,
    ) -> int | None:
        """GET a resource block by block (RFC 7959 §2.4), handing each block's payload to
        ``on_block``; returns the Size2 the server announced, if any.

        Raises ``CoapError`` on an error answer or if the ETag changes midway.
        """
        size_exponent = MAX_BLOCK_SIZE_EXPONENT
        number = 0
        etag: bytes | None = None
        total: int | None = None
        while True:
            request = Message(code=Code.GET, uri_path=uri_path)
            request.opt.block2 = BlockOption.BlockwiseTuple(number, False, size_exponent)
            response = await self.request(request, remote, response_timeout=response_timeout)
            if not response.code.is_successful():
                raise CoapErrorResponse(response.code)
            if number == 0:
                etag, total = response.opt.etag, response.opt.size2
            elif response.opt.etag != etag:
                raise CoapError("the content changed during the download")
            on_block(response.payload)
            block2 = response.opt.block2
            if block2 is None or not block2.more:
                return total
            size_exponent = block2.size_exponent
            number = (block2.start + len(response.payload)) // (1 << (size_exponent + 4))


class CoapEndpoint(asyncio.DatagramProtocol, BlockwiseTransfers):
    """One UDP socket speaking CoAP for one simulated device."""

    def __init__(
        self,
        handler: RequestHandler,
        *,
        ack_timeout: float = ACK_TIMEOUT,
        max_retransmit: int = MAX_RETRANSMIT,
    ) -> None:
        self.handler = handler
        self.accepting = True
        """False while a queue-mode device sleeps: incoming requests are dropped."""
        self.on_unreachable: Callable[[OSError], None] | None = None
        self.ack_timeout = ack_timeout
        self.max_retransmit = max_retransmit
        self._transport: asyncio.DatagramTransport | None = None
        self._next_mid = random.randrange(0x10000)  # noqa: S311 - not security relevant
        self._next_token = int.from_bytes(os.urandom(4), "big")
        self._outgoing: dict[int, _Outgoing] = {}
        self._awaiting: dict[bytes, asyncio.Future[Message]] = {}
        self._recent: dict[tuple[Address, int], bytes] | None = None
        self._non_tracked: dict[int, DeliveryCallback] | None = None
        self._uploads: dict[tuple[Address, tuple[str, ...]], bytearray] | None = None

    @classmethod
    async def open(
        cls, handler: RequestHandler, local_address: tuple[str, int], **options: Any
    ) -> CoapEndpoint:
        loop = asyncio.get_running_loop()
        _, endpoint = await loop.create_datagram_endpoint(
            lambda: cls(handler, **options), local_addr=local_address
        )
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
        """Nothing sent is waiting for an acknowledgement or a response."""
        return not self._outgoing and not self._awaiting

    def close(self) -> None:
        for outgoing in self._outgoing.values():
            if outgoing.timer is not None:
                outgoing.timer.cancel()
        self._outgoing.clear()
        for future in self._awaiting.values():
            if not future.done():
                future.set_exception(CoapError("endpoint closed"))
                future.exception()
        self._awaiting.clear()
        if self._transport is not None:
            self._transport.close()

    # --- asyncio protocol ----------------------------------------------------------------

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self._transport = transport  # type: ignore[assignment]

    def connection_lost(self, exc: Exception | None) -> None:
        self._transport = None

    def error_received(self, exc: Exception) -> None:
        if isinstance(exc, OSError) and self.on_unreachable is not None:
            self.on_unreachable(exc)

    def datagram_received(self, data: bytes, addr: Address) -> None:
        try:
            message = Message.decode(data, addr)
        except UnparsableMessage:
            return
        code = message.code
        if message.mtype in (Type.ACK, Type.RST):
            self._acknowledged(message)
        elif code == Code.EMPTY:
            if message.mtype is Type.CON:
                self._send_empty(Type.RST, message.mid, addr)
        elif code.is_request():
            if self.accepting:
                self._answer(message, addr)
        else:
            self._response(message, addr)

    # --- outgoing ------------------------------------------------------------------------

    async def request(
        self, message: Message, remote: Address, *, response_timeout: float = 93.0
    ) -> Message:
        """Send ``message`` as a confirmable request and return the response."""
        loop = asyncio.get_running_loop()
        token = self._new_token()
        message.token = token
        future: asyncio.Future[Message] = loop.create_future()
        self._awaiting[token] = future

        def on_ack(ack: Message) -> None:
            if ack.code != Code.EMPTY and not future.done():
                future.set_result(ack)

        def on_fail(error: CoapError) -> None:
            if not future.done():
                future.set_exception(error)

        try:
            self._send_confirmable(message, remote, on_ack, on_fail)
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
        """Send a notification; ``on_delivery`` hears of RST (and ACK/timeout when CON)."""
        if confirmable:

            def on_ack(_: Message) -> None:
                if on_delivery is not None:
                    on_delivery(True)

            def on_fail(_: CoapError) -> None:
                if on_delivery is not None:
                    on_delivery(False)

            self._send_confirmable(message, remote, on_ack, on_fail)
            return
        message.mtype = Type.NON
        message.mid = self._new_mid()
        if on_delivery is not None:
            if self._non_tracked is None:
                self._non_tracked = {}
            self._non_tracked[message.mid] = on_delivery
            if len(self._non_tracked) > _NON_TRACKED_LIMIT:
                del self._non_tracked[next(iter(self._non_tracked))]
        self._sendto(message.encode(), remote)

    def _send_confirmable(
        self,
        message: Message,
        remote: Address,
        on_ack: Callable[[Message], None],
        on_fail: Callable[[CoapError], None],
    ) -> None:
        message.mtype = Type.CON
        message.mid = self._new_mid()
        timeout = self.ack_timeout * random.uniform(1, ACK_RANDOM_FACTOR)  # noqa: S311
        outgoing = _Outgoing(message.encode(), remote, timeout, on_ack, on_fail)
        self._outgoing[message.mid] = outgoing
        self._transmit(message.mid)

    def _transmit(self, mid: int) -> None:
        outgoing = self._outgoing.get(mid)
        if outgoing is None:
            return
        if outgoing.attempts > self.max_retransmit:
            del self._outgoing[mid]
            outgoing.on_fail(CoapTimeout("no acknowledgement"))
            return
        self._sendto(outgoing.data, outgoing.remote)
        delay = outgoing.timeout * (2**outgoing.attempts)
        outgoing.attempts += 1
        loop = asyncio.get_running_loop()
        outgoing.timer = loop.call_later(delay, self._transmit, mid)

    def _acknowledged(self, message: Message) -> None:
        outgoing = self._outgoing.pop(message.mid, None)
        if outgoing is None:
            if message.mtype is Type.RST and self._non_tracked:
                callback = self._non_tracked.pop(message.mid, None)
                if callback is not None:
                    callback(False)
            return
        if outgoing.timer is not None:
            outgoing.timer.cancel()
        if message.mtype is Type.RST:
            outgoing.on_fail(CoapReset("reset by peer"))
        else:
            outgoing.on_ack(message)

    def _response(self, message: Message, addr: Address) -> None:
        future = self._awaiting.get(message.token)
        if message.mtype is Type.CON:
            kind = Type.ACK if future is not None else Type.RST
            self._send_empty(kind, message.mid, addr)
        if future is not None and not future.done():
            future.set_result(message)

    # --- incoming requests ---------------------------------------------------------------

    def _answer(self, request: Message, addr: Address) -> None:
        key = (addr, request.mid)
        if request.mtype is Type.CON and self._recent is not None and key in self._recent:
            self._sendto(self._recent[key], addr)
            return
        response = self._serve(request, addr)
        if response is None:
            return
        response.token = request.token
        if request.mtype is Type.CON:
            response.mtype = Type.ACK
            response.mid = request.mid
        else:
            response.mtype = Type.NON
            response.mid = self._new_mid()
        data = response.encode()
        if request.mtype is Type.CON:
            if self._recent is None:
                self._recent = {}
            self._recent[key] = data
            if len(self._recent) > _RECENT_LIMIT:
                del self._recent[next(iter(self._recent))]
        self._sendto(data, addr)

    # --- helpers -------------------------------------------------------------------------

    def _send_empty(self, kind: Type, mid: int, addr: Address) -> None:
        empty = Message(code=Code.EMPTY)
        empty.mtype = kind
        empty.mid = mid
        self._sendto(empty.encode(), addr)

    def _sendto(self, data: bytes, addr: Address) -> None:
        if self._transport is not None and not self._transport.is_closing():
            self._transport.sendto(data, addr)

    def _new_mid(self) -> int:
        self._next_mid = (self._next_mid + 1) & 0xFFFF
        return self._next_mid

    def _new_token(self) -> bytes:
        self._next_token = (self._next_token + 1) & 0xFFFFFFFF
        return self._next_token.to_bytes(4, "big")


def _slice_block2(request: Message, response: Message) -> None:
    """Cut ``response`` to the block the request asked for, or the first block if large."""
    requested = request.opt.block2
    exponent = MAX_BLOCK_SIZE_EXPONENT
    number = 0
    if requested is not None:
        exponent = min(requested.size_exponent, MAX_BLOCK_SIZE_EXPONENT)
        number = requested.start // (2 ** (exponent + 4))
    size = 2 ** (exponent + 4)
    if requested is None and len(response.payload) <= size:
        return
    payload = response.payload
    start = number * size
    if start >= len(payload) and start > 0:
        response.code = Code.BAD_OPTION
        response.payload = b""
        return
    more = start + size < len(payload)
    response.payload = payload[start : start + size]
    response.opt.block2 = BlockOption.BlockwiseTuple(number, more, exponent)
    if number == 0:
        response.opt.size2 = len(payload)
