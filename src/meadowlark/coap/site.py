"""The server's CoAP resources: ``/rd`` and ``/rd/{location}`` (Registration interface),
``/dp`` (Send, LwM2M 1.1) and ``/fw/{token}`` (firmware images for devices to pull).

One path-capable root resource dispatches on the Uri-Path itself instead of going through
aiocoap's ``Site`` (which copies each request per routing step, and whose ``("rd",)``
resource would not see ``/rd/{location}``). A leaner transport can reuse the same
``UplinkHandler`` and replace this module alone.
"""

from __future__ import annotations

from abc import abstractmethod

import structlog
from aiocoap import Message
from aiocoap.numbers.codes import Code
from aiocoap.optiontypes import BlockOption
from aiocoap.pipe import Pipe
from aiocoap.resource import PathCapable, Resource

from meadowlark.coap.convert import peer_of, result_message
from meadowlark.server.transport import DownloadSource, UplinkHandler

_log = structlog.get_logger("meadowlark.lwm2m")
OCTET_STREAM = 42
"""Content-Format of firmware images (application/octet-stream)."""


# aiocoap ships no type information: its classes are Any to mypy.
class RoutingSite(Resource, PathCapable):  # type: ignore[misc]
    """A root resource that routes on the Uri-Path itself (``_route``). A payload over
    ``max_payload`` is 4.13; a handler bug is logged (``failure_event`` to ``failure_log``)
    and still gets a proper CoAP answer (5.00): no error escapes."""

    failure_log = _log
    failure_event = "uplink_failed"

    def __init__(self, max_payload: int) -> None:
        super().__init__()
        self._max_payload = max_payload

    async def render(self, request: Message) -> Message:
        if len(request.payload) > self._max_payload:
            return Message(code=Code.REQUEST_ENTITY_TOO_LARGE)
        try:
            return await self._route(request)
        except Exception:  # a handler bug must still produce a proper CoAP answer
            self.failure_log.exception(self.failure_event, path="/".join(request.opt.uri_path))
            return Message(code=Code.INTERNAL_SERVER_ERROR)

    @abstractmethod
    async def _route(self, request: Message) -> Message:
        """The answer to ``request``."""


class Lwm2mSite(RoutingSite):
    """Routes device requests to an ``UplinkHandler``."""

    def __init__(
        self,
        handler: UplinkHandler,
        max_payload: int,
        block_size: int = 1024,
        downloads: DownloadSource | None = None,
    ) -> None:
        super().__init__(max_payload)
        self._handler = handler
        self._block_size_exp = block_size_exponent(block_size)
        self._downloads = downloads

    async def needs_blockwise_assembly(self, request: Message) -> bool:
        # Downloads answer each Block2 request from the file itself, never assembling it.
        return not _is_download(request)

    async def render_to_pipe(self, pipe: Pipe) -> None:
        request = pipe.request
        # Downlinks reuse this remote object (NAT), so they inherit the block size too.
        request.remote.maximum_block_size_exp = self._block_size_exp
        block1 = request.opt.block1
        if block1 is not None and block1.start + len(request.payload) > self._max_payload:
            too_large = Message(code=Code.REQUEST_ENTITY_TOO_LARGE)
            too_large.opt.size1 = self._max_payload
            pipe.add_response(too_large, is_last=True)
            return
        try:
            await super().render_to_pipe(pipe)
        except ValueError:
            # aiocoap's Block1 spool raises a bare ValueError for a block out of sequence.
            pipe.add_response(Message(code=Code.REQUEST_ENTITY_INCOMPLETE), is_last=True)

    async def _route(self, request: Message) -> Message:
        path = tuple(request.opt.uri_path)
        code = request.code
        content_format = request.opt.content_format
        fmt = None if content_format is None else int(content_format)
        query = tuple(request.opt.uri_query)
        if path == ("rd",):
            if code != Code.POST:
                return Message(code=Code.METHOD_NOT_ALLOWED)
            peer = peer_of(request.remote)
            result = await self._handler.on_register(peer, query, request.payload, fmt)
        elif len(path) == 2 and path[0] == "rd":
            if code == Code.POST:
                peer = peer_of(request.remote)
                result = await self._handler.on_update(peer, path[1], query, request.payload, fmt)
            elif code == Code.DELETE:
                result = await self._handler.on_deregister(peer_of(request.remote), path[1])
            else:
                return Message(code=Code.METHOD_NOT_ALLOWED)
        elif _is_download(request):
            return await self._download(request)
        elif path == ("dp",):
            if code != Code.POST:
                return Message(code=Code.METHOD_NOT_ALLOWED)
            result = await self._handler.on_send(peer_of(request.remote), request.payload, fmt)
        else:
            return Message(code=Code.NOT_FOUND)
        return result_message(result)

    async def _download(self, request: Message) -> Message:
        """``GET /fw/{token}``: the block the request asks for (RFC 7959 §2.4), read from
        the file; the first answer carries Size2 and every one the content's ETag."""
        if request.code != Code.GET:
            return Message(code=Code.METHOD_NOT_ALLOWED)
        if self._downloads is None:
            return Message(code=Code.NOT_FOUND)
        requested = request.opt.block2
        size_exp = self._block_size_exp
        number = 0
        if requested is not None:
            size_exp = min(requested.size_exponent, size_exp)
            # A smaller block size than asked for renumbers the blocks (RFC 7959 §2.4).
            number = requested.start // (1 << (size_exp + 4))
        size = 1 << (size_exp + 4)
        block = await self._downloads.read_block(request.opt.uri_path[1], number * size, size)
        if block is None:
            return Message(code=Code.NOT_FOUND)
        if number * size >= block.total_size and number > 0:
            return Message(code=Code.BAD_OPTION, payload=b"block out of range")
        more = number * size + len(block.data) < block.total_size
        response = Message(
            code=Code.CONTENT, payload=block.data, etag=block.etag, content_format=OCTET_STREAM
        )
        if requested is not None or more:
            response.opt.block2 = BlockOption.BlockwiseTuple(number, more, size_exp)
        if number == 0:
            response.opt.size2 = block.total_size
        return response


def _is_download(request: Message) -> bool:
    path = request.opt.uri_path
    return len(path) == 2 and path[0] == "fw"


def block_size_exponent(block_size: int) -> int:
    """RFC 7959 §2.2 SZX for a block size of 16..1024 bytes (a power of two)."""
    if block_size not in (16, 32, 64, 128, 256, 512, 1024):
        raise ValueError(f"block size must be a power of two from 16 to 1024, got {block_size}")
    return block_size.bit_length() - 5
