"""Starting and stopping the CoAP side: one aiocoap context serves and sends."""

from __future__ import annotations

import contextlib
from collections.abc import Callable
from typing import Any

import structlog
from aiocoap import Context

from meadowlark.coap.convert import sockaddr_address
from meadowlark.coap.endpoint import AiocoapEndpoint
from meadowlark.coap.site import Lwm2mSite
from meadowlark.server.transport import DownloadSource, TrafficCounter, UplinkHandler

_log = structlog.get_logger("meadowlark.lwm2m")


class CoapServer:
    """Binds ``host:port`` (port 0 picks a free one) over plain UDP; ``downloads`` serves
    ``/fw/{token}`` (firmware images) on the same endpoint."""

    def __init__(
        self,
        handler: UplinkHandler,
        host: str,
        port: int,
        *,
        max_payload: int = 65536,
        block_size: int = 1024,
        traffic: TrafficCounter | None = None,
        downloads: DownloadSource | None = None,
    ) -> None:
        """``traffic`` counts every datagram received and sent, per address;
        ``downloads`` serves firmware images block-wise at ``/fw/{token}``."""
        self._site = Lwm2mSite(handler, max_payload, block_size, downloads)
        self._traffic = traffic
        self._bind = (host, port)
        self._context: Context | None = None
        self.endpoint: AiocoapEndpoint | None = None

    async def start(self) -> AiocoapEndpoint:
        self._context = await Context.create_server_context(
            self._site, bind=self._bind, transports=["udp6"]
        )
        for message_interface in self._message_interfaces():
            _drop_undecodable_datagrams(message_interface)
            if self._traffic is not None:
                _count_datagrams(message_interface, self._traffic)
        self.endpoint = AiocoapEndpoint(self._context)
        return self.endpoint

    async def stop(self) -> None:
        context, self._context = self._context, None
        self.endpoint = None
        if context is not None:
            await context.shutdown()

    @property
    def port(self) -> int:
        """The bound UDP port (useful after binding port 0)."""
        for message_interface in self._message_interfaces():
            transport = getattr(message_interface, "transport", None)
            if transport is not None:
                return int(transport.get_extra_info("socket").getsockname()[1])
        raise RuntimeError("no UDP transport in the CoAP context")

    def _message_interfaces(self) -> list[Any]:
        if self._context is None:
            raise RuntimeError("the CoAP server is not running")
        found = []
        for interface in self._context.request_interfaces:
            messages = getattr(interface, "token_interface", None)
            message_interface = getattr(messages, "message_interface", None)
            if message_interface is not None:
                found.append(message_interface)
        return found


def _drop_undecodable_datagrams(message_interface: Any) -> None:
    """Drop datagrams aiocoap fails to parse with an unexpected exception.

    aiocoap 0.4.17 catches its own ``UnparsableMessage`` but lets e.g. a
    ``UnicodeDecodeError`` from a Uri-Path option with invalid UTF-8 escape into the
    event loop. Such a datagram is a message format error, silently ignored as
    RFC 7252 §4.2 allows.
    """
    receive: Callable[..., None] | None = getattr(message_interface, "datagram_msg_received", None)
    if receive is None:
        return

    def guarded(data: bytes, *args: Any) -> None:
        try:
            receive(data, *args)
        except (UnicodeDecodeError, ValueError) as exc:
            _log.debug("datagram_dropped", reason=f"{type(exc).__name__}: {exc}")

    message_interface.datagram_msg_received = guarded


def _count_datagrams(message_interface: Any, traffic: TrafficCounter) -> None:
    """Count every datagram the socket receives and sends (ACKs, pings, retransmissions
    and blocks included) in ``traffic``: a dictionary update each, no I/O."""
    receive: Callable[..., None] | None = getattr(message_interface, "datagram_msg_received", None)
    send: Callable[[Any], None] | None = getattr(message_interface, "send", None)
    if receive is None or send is None:
        return

    def counted_receive(data: bytes, ancdata: Any, flags: Any, address: Any) -> None:
        with contextlib.suppress(ValueError, IndexError):
            traffic.add(sockaddr_address(address), received=len(data))
        receive(data, ancdata, flags, address)

    def counted_send(message: Any) -> None:
        send(message)
        sockaddr = getattr(message.remote, "sockaddr", None)
        if sockaddr is not None:
            traffic.add(sockaddr_address(sockaddr), sent=len(message.encode()))

    message_interface.datagram_msg_received = counted_receive
    message_interface.send = counted_send
