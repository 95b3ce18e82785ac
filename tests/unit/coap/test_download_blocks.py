"""``/fw/{token}`` on the CoAP site: each Block2 request is answered from the source by
offset (RFC 7959 §2.4), with Size2 on the first block and the content's ETag on each."""

from __future__ import annotations

import asyncio
import hashlib

import pytest
from aiocoap import Context, Message
from aiocoap.numbers.codes import Code
from aiocoap.optiontypes import BlockOption

from meadowlark.coap.server import CoapServer
from meadowlark.coap.site import Lwm2mSite
from meadowlark.server.transport import DownloadBlock, UplinkResult

IMAGE = bytes(range(256)) * 10 + b"tail"  # 2564 bytes: 2 full KiB blocks and a short one
ETAG = hashlib.sha256(IMAGE).digest()[:8]


class Source:
    """One valid token; records every read so tests see that only blocks are read."""

    def __init__(self) -> None:
        self.reads: list[tuple[int, int]] = []

    async def read_block(self, token: str, offset: int, size: int) -> DownloadBlock | None:
        if token != "good":
            return None
        self.reads.append((offset, size))
        return DownloadBlock(IMAGE[offset : offset + size], len(IMAGE), ETAG)


class NoUplinks:
    async def on_register(self, *args: object) -> UplinkResult:
        raise AssertionError("not a registration test")

    on_update = on_deregister = on_send = on_register


def _get(name: str = "good", block: tuple[int, int] | None = None, code: Code = Code.GET):
    request = Message(code=code, uri_path=("fw", name))
    if block is not None:
        number, size_exponent = block
        request.opt.block2 = BlockOption.BlockwiseTuple(number, False, size_exponent)
    return request


def _render(site: Lwm2mSite, request: Message) -> Message:
    return asyncio.run(site.render(request))


@pytest.fixture
def source() -> Source:
    return Source()


@pytest.fixture
def site(source: Source) -> Lwm2mSite:
    return Lwm2mSite(NoUplinks(), max_payload=4096, block_size=1024, downloads=source)


def test_first_block_carries_size_etag_and_more(site, source):
    response = _render(site, _get())
    assert response.code == Code.CONTENT
    assert response.payload == IMAGE[:1024]
    assert response.opt.size2 == len(IMAGE)
    assert response.opt.etag == ETAG
    assert response.opt.content_format == 42
    assert (response.opt.block2.block_number, response.opt.block2.more) == (0, True)
    assert source.reads == [(0, 1024)]


def test_last_block_is_short_and_has_no_more(site):
    response = _render(site, _get(block=(2, 6)))
    assert response.payload == IMAGE[2048:]
    assert (response.opt.block2.block_number, response.opt.block2.more) == (2, False)
    assert response.opt.size2 is None
    assert response.opt.etag == ETAG


def test_smaller_blocks_are_honoured(site, source):
    response = _render(site, _get(block=(5, 2)))  # 64-byte blocks
    assert response.payload == IMAGE[320:384]
    assert response.opt.block2.size_exponent == 2
    assert source.reads == [(320, 64)]


def test_larger_blocks_than_ours_are_renumbered_to_ours():
    source = Source()
    site = Lwm2mSite(NoUplinks(), max_payload=4096, block_size=256, downloads=source)
    response = _render(site, _get(block=(1, 6)))  # asks for bytes 1024.. in 1 KiB blocks
    assert response.opt.block2.size_exponent == 4
    assert response.opt.block2.block_number == 4
    assert response.payload == IMAGE[1024:1280]


def test_block_beyond_the_end_is_a_bad_option(site):
    assert _render(site, _get(block=(3, 6))).code == Code.BAD_OPTION


def test_unknown_token_other_methods_and_no_source_are_refused(site):
    assert _render(site, _get("forged")).code == Code.NOT_FOUND
    assert _render(site, _get(code=Code.PUT)).code == Code.METHOD_NOT_ALLOWED
    bare = Lwm2mSite(NoUplinks(), max_payload=4096)
    assert _render(bare, _get()).code == Code.NOT_FOUND


def test_an_aiocoap_client_downloads_the_whole_image_over_udp(source):
    async def main() -> tuple[Message, int]:
        server = CoapServer(NoUplinks(), "127.0.0.1", 0, downloads=source)
        await server.start()
        client = await Context.create_client_context()
        try:
            request = Message(code=Code.GET, uri=f"coap://127.0.0.1:{server.port}/fw/good")
            return await client.request(request).response, server.port
        finally:
            await client.shutdown()
            await server.stop()

    response, _ = asyncio.run(main())
    assert response.code == Code.CONTENT
    assert response.payload == IMAGE
    assert source.reads == [(0, 1024), (1024, 1024), (2048, 1024)]
