"""The bootstrap server's CoAP resources: ``/bs`` (Bootstrap-Request) and ``/bspack``
(Bootstrap-Pack-Request, LwM2M 1.2), for a ``CoapServer`` of its own port.

The socket's fast path answers Registration-interface messages itself; on this port it
gets ``NoRegistrations``, so a Register sent here is told 4.04 like anything else.
"""

from __future__ import annotations

from collections.abc import Sequence

import structlog
from aiocoap import Message
from aiocoap.numbers.codes import Code

from meadowlark.coap.convert import peer_of, result_message
from meadowlark.coap.site import RoutingSite
from meadowlark.server.bootstrap.service import BootstrapService
from meadowlark.server.transport import NOT_FOUND, Peer, UplinkResult


class BootstrapSite(RoutingSite):
    """Routes Bootstrap-Request and Pack-Request to a ``BootstrapService``."""

    failure_log = structlog.get_logger("meadowlark.bootstrap")
    failure_event = "bootstrap_uplink_failed"

    def __init__(self, service: BootstrapService, max_payload: int = 1024) -> None:
        super().__init__(max_payload)
        self._service = service

    async def _route(self, request: Message) -> Message:
        path = tuple(request.opt.uri_path)
        query = tuple(request.opt.uri_query)
        if path == ("bs",):
            if request.code != Code.POST:
                return Message(code=Code.METHOD_NOT_ALLOWED)
            result = await self._service.on_bootstrap_request(peer_of(request.remote), query)
            return result_message(result)
        if path == ("bspack",):
            if request.code != Code.GET:
                return Message(code=Code.METHOD_NOT_ALLOWED)
            accept = request.opt.accept
            pack = await self._service.on_pack_request(
                peer_of(request.remote), query, None if accept is None else int(accept)
            )
            response = Message(code=Code((pack.code.code_class << 5) | pack.code.detail))
            if pack.content_format is not None:
                response.payload = pack.payload
                response.opt.content_format = pack.content_format
            elif pack.diagnostic:
                response.payload = pack.diagnostic.encode("utf-8")[:128]
            return response
        return Message(code=Code.NOT_FOUND)


class NoRegistrations:
    """The ``UplinkHandler`` of the bootstrap port: Registration and Send are not here."""

    async def on_register(
        self, peer: Peer, query: Sequence[str], payload: bytes, content_format: int | None
    ) -> UplinkResult:
        return UplinkResult(NOT_FOUND)

    async def on_update(
        self,
        peer: Peer,
        location: str,
        query: Sequence[str],
        payload: bytes,
        content_format: int | None,
    ) -> UplinkResult:
        return UplinkResult(NOT_FOUND)

    async def on_deregister(self, peer: Peer, location: str) -> UplinkResult:
        return UplinkResult(NOT_FOUND)

    async def on_send(self, peer: Peer, payload: bytes, content_format: int | None) -> UplinkResult:
        return UplinkResult(NOT_FOUND)

    def on_peer_closed(self, peer: Peer) -> None:
        """No device registers here, so none becomes unreachable."""
