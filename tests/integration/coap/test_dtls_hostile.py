"""The DTLS port under hostile traffic, over real loopback sockets.

Garbage, records for sessions that do not exist, truncated and mutated ClientHellos
(Hypothesis), replayed handshakes, handshake floods and more sessions than allowed: the
server creates no session for any of them, does no cryptography for throttled hellos,
keeps running, and a real client still handshakes and gets CoAP answers afterwards.
"""

from __future__ import annotations

import asyncio
import socket
import threading
from collections.abc import Coroutine, Iterator
from dataclasses import dataclass, field
from typing import Any, TypeVar

import pytest
from aiocoap import Code
from dtls_device import DtlsDevice
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from mbedtls import tls

from meadowlark.coap.dtls import DtlsCredentials, DtlsServer, HandshakeFailure
from meadowlark.coap.server import CoapServer
from meadowlark.server.service import LwM2mServer

T = TypeVar("T")
KEY = b"0123456789abcdef"
IDENTITY = "fuzz-device"


@dataclass
class Running:
    loop: asyncio.AbstractEventLoop
    dtls: DtlsServer
    failures: list[HandshakeFailure] = field(default_factory=list)

    def call(self, work: Coroutine[Any, Any, T], timeout: float = 30) -> T:
        return asyncio.run_coroutine_threadsafe(work, self.loop).result(timeout)

    @property
    def port(self) -> int:
        return self.dtls.port

    @property
    def sessions(self) -> int:
        assert self.dtls.interface is not None
        return len(self.dtls.interface.table)

    def established(self) -> int:
        assert self.dtls.interface is not None
        return sum(1 for _, s in self.dtls.interface.table if s.remote is not None)


def serve(**limits: Any) -> Iterator[Running]:
    """An in-memory LwM2M server with CoAP and DTLS on loopback, its loop in a thread."""
    started: dict[str, Any] = {}
    ready, stop = threading.Event(), threading.Event()
    failures: list[HandshakeFailure] = []

    async def main() -> None:
        server = LwM2mServer()
        coap = CoapServer(server, "127.0.0.1", 0)
        await server.start()
        server.attach(await coap.start())
        dtls = DtlsServer(
            server,
            DtlsCredentials({IDENTITY: KEY}),
            "127.0.0.1",
            0,
            on_handshake_failure=failures.append,
            **limits,
        )
        await dtls.start(coap.context)
        started.update(loop=asyncio.get_running_loop(), dtls=dtls)
        ready.set()
        while not stop.is_set():  # noqa: ASYNC110 - stopped from the test thread
            await asyncio.sleep(0.05)
        await dtls.stop()
        await coap.stop()
        await server.stop()

    thread = threading.Thread(target=lambda: asyncio.run(main()), daemon=True)
    thread.start()
    assert ready.wait(30)
    try:
        yield Running(started["loop"], started["dtls"], failures)
    finally:
        stop.set()
        thread.join(30)


@pytest.fixture(scope="module")
def running() -> Iterator[Running]:
    yield from serve(handshakes_per_second=10_000.0)


def real_client_is_answered(running: Running) -> None:
    async def exchange() -> Code:
        device = DtlsDevice(("127.0.0.1", running.port), psk=(IDENTITY, KEY))
        try:
            await device.connect()
            # No device record in memory: an authenticated session registering an
            # unknown endpoint is refused (4.03), which proves the session works.
            return (await device.register("fuzz-endpoint")).code
        finally:
            device.close()

    assert running.call(exchange()) == Code.FORBIDDEN


def client_hello() -> bytes:
    """A real first ClientHello (no cookie) of an Mbed TLS PSK client."""
    configuration = tls.DTLSConfiguration(pre_shared_key=(IDENTITY, KEY))
    buffer = tls.ClientContext(configuration).wrap_buffers(None)
    try:
        while True:
            buffer.do_handshake()
    except (tls.WantReadError, tls.WantWriteError):
        pass
    return bytes(buffer.peek_outgoing(65536))


HELLO = client_hello()


def records() -> st.SearchStrategy[bytes]:
    """DTLS-looking records: any content type, epoch and sequence, lying lengths."""
    return st.builds(
        lambda kind, epoch, sequence, length, body: (
            bytes([kind, 0xFE, 0xFD])
            + epoch.to_bytes(2, "big")
            + sequence.to_bytes(6, "big")
            + length.to_bytes(2, "big")
            + body
        ),
        st.sampled_from([20, 21, 22, 23, 24, 25]),
        st.integers(0, 3),
        st.integers(0, 2**48 - 1),
        st.integers(0, 2**16 - 1),
        st.binary(max_size=200),
    )


def mutated_hellos() -> st.SearchStrategy[bytes]:
    truncated = st.integers(0, len(HELLO) - 1).map(lambda end: HELLO[:end])
    flipped = st.lists(
        st.tuples(st.integers(0, len(HELLO) - 1), st.integers(0, 255)), min_size=1, max_size=8
    ).map(lambda changes: _apply(HELLO, changes))
    return st.one_of(truncated, flipped)


def _apply(data: bytes, changes: list[tuple[int, int]]) -> bytes:
    mutable = bytearray(data)
    for index, value in changes:
        mutable[index] = value
    return bytes(mutable)


@settings(max_examples=300, deadline=None, suppress_health_check=list(HealthCheck))
@given(st.lists(st.one_of(st.binary(max_size=300), records(), mutated_hellos()), max_size=6))
def test_garbage_creates_no_session(running, datagrams):
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
        sock.bind(("127.0.0.1", 0))
        for datagram in datagrams:
            sock.sendto(datagram, ("127.0.0.1", running.port))
        sock.settimeout(0.02)
        try:
            while True:
                reply, _ = sock.recvfrom(65536)
                # Only a HelloVerifyRequest (stateless) may come back to a stranger.
                assert reply[0] in (21, 22), reply[:16].hex()
        except TimeoutError:
            pass
    assert running.established() == 0


def test_after_the_garbage_a_real_client_is_answered(running):
    real_client_is_answered(running)


def test_a_replayed_handshake_gets_no_session(running):
    device = DtlsDevice(("127.0.0.1", running.port), psk=(IDENTITY, KEY))
    running.call(device.connect())
    port = device.local_port
    handshake = list(device.sent)
    device.close()
    failures = len(running.failures)
    for source in (0, port):  # from another port, then from the device's own
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
            sock.bind(("127.0.0.1", source))
            for datagram in handshake:
                sock.sendto(datagram, ("127.0.0.1", running.port))
            sock.settimeout(0.3)
            try:
                while True:
                    sock.recvfrom(65536)
            except TimeoutError:
                pass
        assert running.established() == 0
    # From the device's own address, its ClientHellos (the one with the still valid
    # cookie too) are recognised as replays: refused before any session, and reported.
    reasons = {failure.reason for failure in running.failures[failures:]}
    assert reasons == {"replayed_hello"}
    assert running.failures[-1].port == port
    real_client_is_answered(running)


def test_a_handshake_flood_from_one_host_is_throttled_before_any_crypto():
    for running in serve(handshakes_per_second=2.0):
        assert running.dtls.interface is not None
        dropped = running.dtls.interface.dropped
        answers = 0
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
            sock.bind(("127.0.0.1", 0))
            for _ in range(50):
                sock.sendto(HELLO, ("127.0.0.1", running.port))
            sock.settimeout(0.3)
            try:
                while True:
                    sock.recvfrom(65536)
                    answers += 1
            except TimeoutError:
                pass
        assert answers <= 5  # the budget (4) and perhaps one refill
        assert running.dtls.interface.dropped - dropped == 50 - answers


def test_the_session_cap_evicts_the_least_recently_used_session():
    for running in serve(max_sessions=2, handshakes_per_second=100.0):

        async def scenario(running: Running) -> list[Code]:
            devices = [DtlsDevice(("127.0.0.1", running.port), psk=(IDENTITY, KEY)) for _ in "abc"]
            try:
                for device in devices:
                    await device.connect()
                codes = []
                for device in devices[1:]:
                    codes.append((await device.register("cap")).code)
                assert running.sessions == 2
                # The first one was evicted: it handshakes again and is answered.
                await asyncio.sleep(0.1)
                again = DtlsDevice(("127.0.0.1", running.port), psk=(IDENTITY, KEY))
                await again.connect()
                codes.append((await again.register("cap")).code)
                again.close()
                return codes
            finally:
                for device in devices:
                    device.close()

        assert running.call(scenario(running)) == [Code.FORBIDDEN] * 3
        assert running.sessions <= 2


def test_closing_an_identitys_sessions_makes_its_device_handshake_again(running):
    async def scenario() -> tuple[int, int, Code]:
        device = DtlsDevice(("127.0.0.1", running.port), psk=(IDENTITY, KEY))
        await device.connect()
        await device.register("closing")
        closed = running.dtls.close_sessions(IDENTITY)
        left = running.established()
        device.close(notify=False)
        again = DtlsDevice(("127.0.0.1", running.port), psk=(IDENTITY, KEY))
        try:
            await again.connect()
            return closed, left, (await again.register("closing")).code
        finally:
            again.close()

    assert running.call(scenario()) == (1, 0, Code.FORBIDDEN)
    assert running.dtls.close_sessions("someone-else") == 0
