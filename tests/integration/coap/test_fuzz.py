"""Thousands of random and mutated datagrams: the server stays up and answers only CoAP."""

from __future__ import annotations

import asyncio
import random
import socket

import pytest
from aiocoap import Code, Message
from aiocoap.numbers.types import Type

pytestmark = pytest.mark.anyio
DATAGRAMS = 4000


def seed_messages() -> list[bytes]:
    def encoded(code: Code, path: tuple[str, ...], query=(), payload=b"", **options) -> bytes:
        message = Message(code=code, uri_path=path, uri_query=query, payload=payload)
        message.mtype = Type.CON
        message.mid = 0x1234
        message.token = b"\x01\x02"
        for name, value in options.items():
            setattr(message.opt, name, value)
        return message.encode()

    return [
        encoded(Code.POST, ("rd",), ("ep=fuzz", "lt=60"), b"</1/0>,</3/0>", content_format=40),
        encoded(Code.POST, ("rd", "abc"), ("lt=60",)),
        encoded(Code.DELETE, ("rd", "abc")),
        encoded(Code.POST, ("dp",), payload=b'[{"n":"/3/0/0","vs":"x"}]', content_format=110),
        encoded(Code.GET, ("rd",), observe=0),
    ]


def mutated(rng: random.Random, seeds: list[bytes]) -> bytes:
    choice = rng.random()
    if choice < 0.25:
        return rng.randbytes(rng.randrange(0, 120))
    data = bytearray(rng.choice(seeds))
    if choice < 0.6:
        for _ in range(rng.randrange(1, 6)):
            data[rng.randrange(len(data))] = rng.randrange(256)
    elif choice < 0.8:
        del data[rng.randrange(len(data)) :]
    else:
        data += rng.randbytes(rng.randrange(1, 40))
    if rng.random() < 0.7 and data:
        data[0] = 0x40 | (data[0] & 0x3F)  # keep version 1 so deeper layers get exercised
    return bytes(data)


async def test_server_survives_garbage_and_answers_with_valid_coap(lwm2m):
    loop = asyncio.get_running_loop()
    rng = random.Random(7252)
    seeds = seed_messages()
    replies: list[bytes] = []
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
        sock.setblocking(False)
        sock.bind(("127.0.0.1", 0))

        async def receive() -> None:
            while True:
                data, _ = await loop.sock_recvfrom(sock, 70000)
                replies.append(data)

        receiver = loop.create_task(receive())
        try:
            for index in range(DATAGRAMS):
                await loop.sock_sendto(sock, mutated(rng, seeds), ("127.0.0.1", lwm2m.port))
                if index % 50 == 0:
                    await asyncio.sleep(0.005)
            await asyncio.sleep(1.0)
        finally:
            receiver.cancel()
            await asyncio.gather(receiver, return_exceptions=True)
    assert replies, "the server should answer at least the well-formed requests"
    for reply in replies:
        Message.decode(reply)  # raises on anything that is not a CoAP message

    from aiocoap import Context

    client = await Context.create_client_context()
    try:
        message = Message(code=Code.POST, uri=f"{lwm2m.rd}?ep=after-fuzz&lt=60", payload=b"</3/0>")
        response = await client.request(message).response
        assert response.code == Code.CREATED
    finally:
        await client.shutdown()
