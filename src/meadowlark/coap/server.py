"""Starting and stopping the CoAP side: one socket serves and sends.

The socket is ``Lwm2mUdpInterface`` (``coap.udp``): LwM2M's hot messages are answered
there, everything else by an aiocoap context built around it (``Lwm2mSite``), which
also sends the server's requests to devices.
"""

from __future__ import annotations

import asyncio

from aiocoap import Context
from aiocoap.messagemanager import MessageManager
from aiocoap.resource import Resource
from aiocoap.tokenmanager import TokenManager

from meadowlark.coap.endpoint import AiocoapEndpoint
from meadowlark.coap.site import Lwm2mSite, block_size_exponent
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
        site: Resource | None = None,
    ) -> None:
        """``traffic`` counts every datagram received and sent, per address;
        ``downloads`` serves firmware images block-wise at ``/fw/{token}``;
        ``reuse_port`` binds with SO_REUSEPORT, for several processes on one port;
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
        self.endpoint = AiocoapEndpoint(context, interface)
        return self.endpoint

    async def stop(self) -> None:
        context, self._context = self._context, None
        self._interface = None
        self.endpoint = None
        if context is not None:
            await context.shutdown()

    @property
    def port(self) -> int:
        """The bound UDP port (useful after binding port 0)."""
        if self._interface is None:
            raise RuntimeError("the CoAP server is not running")
        return int(self._interface.transport.get_extra_info("socket").getsockname()[1])
