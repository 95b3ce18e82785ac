"""Starting and stopping the CoAP side: one socket serves and sends.

The socket is ``Lwm2mUdpInterface`` (``coap.udp``): LwM2M's hot messages are answered
there, everything else by an aiocoap context built around it (``Lwm2mSite``), which
also sends the server's requests to devices.
"""

from __future__ import annotations

import asyncio
import ssl

from aiocoap import Context
from aiocoap.messagemanager import MessageManager
from aiocoap.resource import Resource
from aiocoap.tokenmanager import TokenManager

from meadowlark.coap.endpoint import AiocoapEndpoint
from meadowlark.coap.site import Lwm2mSite, block_size_exponent
from meadowlark.coap.tcp import Lwm2mTcpServer
from meadowlark.coap.udp import Lwm2mUdpInterface
from meadowlark.server.transport import DownloadSource, TrafficCounter, UplinkHandler


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
        reuse_port: bool = False,
        tcp: tuple[str, int] | None = None,
        tls: tuple[str, int] | None = None,
        tls_context: ssl.SSLContext | None = None,
        site: Resource | None = None,
    ) -> None:
        """``traffic`` counts every datagram received and sent, per address;
        ``downloads`` serves firmware images block-wise at ``/fw/{token}``;
        ``reuse_port`` binds with SO_REUSEPORT, for several processes on one port.
        ``tcp`` and ``tls`` (with ``tls_context``) also serve CoAP over TCP and TLS
        (RFC 8323, ``coap.tcp``) at those addresses, on the same site and context;
        ``site`` replaces the ``Lwm2mSite`` (the bootstrap server serves ``/bs``)."""
        self._handler = handler
        self._max_payload = max_payload
        self._block_size_exp = block_size_exponent(block_size)
        self._site = site or Lwm2mSite(handler, max_payload, block_size, downloads)
        self._traffic = traffic
        self._bind = (host, port)
        self._reuse_port = reuse_port
        self._context: Context | None = None
        self._interface: Lwm2mUdpInterface | None = None
        self._streams = {"tcp": tcp, "tls": tls}
        self._tls_context = tls_context
        self._stream_servers: dict[str, Lwm2mTcpServer] = {}
        self.endpoint: AiocoapEndpoint | None = None

    async def start(self) -> AiocoapEndpoint:
        loop = asyncio.get_running_loop()
        context = Context(loop=loop, serversite=self._site, loggername="coap-server")
        # What aiocoap's Context.create_server_context does for its udp6 transport, with
        # our socket in its place.
        tokens = TokenManager(context)
        messages = MessageManager(tokens)
        host, port = self._bind
        interface = await Lwm2mUdpInterface.bind(
            messages, log=context.log, loop=loop, host=host, port=port,
            reuse_port=self._reuse_port,
        )  # fmt: skip
        interface.handler = self._handler
        interface.traffic = self._traffic
        interface.max_payload = self._max_payload
        interface.block_size_exp = self._block_size_exp
        messages.message_interface = interface
        tokens.token_interface = messages
        context.request_interfaces.append(tokens)
        self._context, self._interface = context, interface
        try:
            for kind, address in self._streams.items():
                if address is not None:
                    await self._listen_stream(context, kind, *address)
        except BaseException:
            await self.stop()
            raise
        self.endpoint = AiocoapEndpoint(context, interface)
        return self.endpoint

    async def _listen_stream(self, context: Context, kind: str, host: str, port: int) -> None:
        if kind == "tls" and self._tls_context is None:
            raise ValueError("CoAP over TLS needs a tls_context")
        stream_tokens = TokenManager(context)
        server = await Lwm2mTcpServer.listen(
            stream_tokens, log=context.log, host=host, port=port,
            tls=self._tls_context if kind == "tls" else None,
            max_payload=self._max_payload, block_size_exp=self._block_size_exp,
            traffic=self._traffic, reuse_port=self._reuse_port, handler=self._handler,
        )  # fmt: skip
        stream_tokens.token_interface = server
        context.request_interfaces.append(stream_tokens)
        self._stream_servers[kind] = server

    def stream_port(self, kind: str) -> int:
        """The bound port of the ``tcp`` or ``tls`` listener (useful after binding 0)."""
        server = self._stream_servers.get(kind)
        if server is None:
            raise RuntimeError(f"CoAP over {kind.upper()} is not listening")
        return server.port

    async def stop(self) -> None:
        self._stream_servers = {}
        context, self._context = self._context, None
        self._interface = None
        self.endpoint = None
        if context is not None:
            await context.shutdown()

    @property
    def context(self) -> Context:
        """The running aiocoap context (more transports join it: ``coap.dtls``)."""
        if self._context is None:
            raise RuntimeError("the CoAP server is not running")
        return self._context

    @property
    def port(self) -> int:
        """The bound UDP port (useful after binding port 0)."""
        if self._interface is None:
            raise RuntimeError("the CoAP server is not running")
        return int(self._interface.transport.get_extra_info("socket").getsockname()[1])
