"""Hostile bytes on the CoAP-over-TCP port (RFC 8323): garbage, bad and huge length
prefixes, truncated frames, anything but a CSM first. The server closes such a
connection (with an Abort where it can), never buffers more than one frame of at most
its Max-Message-Size, stays healthy, and then serves a real client.
"""

from __future__ import annotations

import asyncio
import socket
import threading
import time
from collections.abc import Coroutine, Iterator
from dataclasses import dataclass
from typing import Any, TypeVar

import pytest
from aiocoap import Code, Message
from aiocoap.numbers.codes import ABORT, CSM
from aiocoap.transports.tcp import _decode_message, _extract_message_size, _serialize
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from meadowlark.coap.server import CoapServer
from meadowlark.coap.tcp import Lwm2mTcpServer
from meadowlark.server.service import LwM2mServer

T = TypeVar("T")
MAX_PAYLOAD = 4096
REGISTER = "rd?ep=tcp-fuzz&lt=60&lwm2m=1.1&b=T"


@dataclass
class TcpLab:
    server: LwM2mServer
    coap: CoapServer
    port: int
    loop: asyncio.AbstractEventLoop

    def call(self, work: Coroutine[Any, Any, T], timeout: float = 10) -> T:
        return asyncio.run_coroutine_threadsafe(work, self.loop).result(timeout)

    @property
    def listener(self) -> Lwm2mTcpServer:
        return self.coap._stream_servers["tcp"]


@pytest.fixture(scope="module")
def lab() -> Iterator[TcpLab]:
    """An LwM2M server (in memory) with CoAP over TCP on loopback, on a thread's loop."""
    started: dict[str, Any] = {}
    ready, stop = threading.Event(), threading.Event()

    async def main() -> None:
        server = LwM2mServer()
        coap = CoapServer(server, "127.0.0.1", 0, max_payload=MAX_PAYLOAD, tcp=("127.0.0.1", 0))
        await server.start()
        server.attach(await coap.start())
        coap._stream_servers["tcp"].csm_timeout = 0.5
        coap._stream_servers["tcp"].frame_timeout = 1.0
        started["lab"] = TcpLab(server, coap, coap.stream_port("tcp"), asyncio.get_running_loop())
        ready.set()
        while not stop.is_set():  # noqa: ASYNC110 - a plain thread flag
            await asyncio.sleep(0.05)
        await coap.stop()
        await server.stop()

    thread = threading.Thread(target=asyncio.run, args=(main(),), daemon=True)
    thread.start()
    assert ready.wait(10)
    yield started["lab"]
    stop.set()
    thread.join(10)


def frame(code: int, token: bytes = b"", payload: bytes = b"", **options: Any) -> bytes:
    message = Message(code=code, payload=payload, **options)
    message.token = token
    return _serialize(message)


CSM_FRAME = frame(CSM)
REGISTER_FRAME = frame(
    Code.POST, b"\x01", b"</1/0>,</3/0>", uri_path=("rd",), uri_query=tuple(REGISTER[3:].split("&"))
)


def exchange(port: int, data: bytes, wait: float = 1.5) -> tuple[bytes, bool]:
    """Connect, send ``data``, read until the server closes or ``wait`` passes: what it
    sent and whether it closed the connection."""
    received = bytearray()
    with socket.create_connection(("127.0.0.1", port), timeout=5) as sock:
        try:
            sock.sendall(data)
        except (BrokenPipeError, ConnectionResetError):
            pass  # closed while sending: what it answered is still readable below
        sock.settimeout(wait)
        try:
            while chunk := sock.recv(65536):
                received += chunk
        except TimeoutError:
            return bytes(received), False
        except ConnectionResetError:
            pass
    return bytes(received), True


def frames(data: bytes) -> list[Message]:
    """The frames the server sent; fails on anything that is not whole RFC 8323 frames."""
    messages = []
    while data:
        sizes = _extract_message_size(data)
        assert sizes is not None, data
        size = sum(sizes)
        assert size <= len(data), "a truncated frame from the server"
        messages.append(_decode_message(data[:size]))
        data = data[size:]
    return messages


def assert_aborted(data: bytes, closed: bool) -> None:
    assert closed, "the server kept the connection open"
    sent = frames(data)
    assert sent[0].code == CSM  # the server's own CSM comes first
    assert sent[-1].code == ABORT, [str(message.code) for message in sent]


def assert_healthy(lab: TcpLab) -> None:
    data, _ = exchange(lab.port, CSM_FRAME + REGISTER_FRAME, wait=0.5)
    answers = [message for message in frames(data) if message.code == Code.CREATED]
    assert answers and answers[0].opt.location_path[0] == "rd"


def length_prefixed(length_nibble: int, extension: bytes, tkl: int = 0) -> bytes:
    return bytes(((length_nibble << 4) | tkl,)) + extension


hostile = st.one_of(
    st.binary(min_size=1, max_size=300),
    st.binary(min_size=1, max_size=300).map(lambda garbage: CSM_FRAME + garbage),
    st.integers(9, 15).map(lambda tkl: CSM_FRAME + bytes(((1 << 4) | tkl, 0x01)) + b"x" * 20),
    st.integers(MAX_PAYLOAD + 2048, 2**32 - 1).map(
        lambda size: (
            CSM_FRAME + length_prefixed(15, (size - 65805).to_bytes(4, "big"))
            if size >= 65805
            else CSM_FRAME + length_prefixed(14, (size - 269).to_bytes(2, "big"))
        )
    ),
    st.integers(1, len(REGISTER_FRAME) - 1).map(lambda cut: CSM_FRAME + REGISTER_FRAME[:cut]),
    st.just(REGISTER_FRAME),
    st.binary(min_size=0, max_size=40).map(lambda extra: frame(0xE2) + extra),  # Ping first
)


@settings(
    max_examples=100,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(data=hostile)
def test_hostile_streams_never_hurt_the_server(lab, data):
    received, closed = exchange(lab.port, data, wait=0.3)
    sent = frames(received)  # whatever the server sent is well-formed
    if sent:
        assert sent[0].code == CSM
    if closed:
        assert sent, "closed without the server's CSM"


def test_the_server_serves_a_real_client_after_the_fuzzing(lab):
    assert_healthy(lab)


@pytest.mark.parametrize(
    "data",
    [
        pytest.param(REGISTER_FRAME, id="request before CSM"),
        pytest.param(frame(0xE2), id="ping before CSM"),
        pytest.param(CSM_FRAME + bytes((0x1C, 0x01)) + b"x" * 20, id="token length 12"),
        pytest.param(CSM_FRAME + length_prefixed(15, b"\xff\xff\xff\xff"), id="4 GB announced"),
        pytest.param(
            CSM_FRAME + length_prefixed(14, (MAX_PAYLOAD + 2048 - 269).to_bytes(2, "big")),
            id="above Max-Message-Size",
        ),
        pytest.param(
            CSM_FRAME + bytes((0xD0, 200, 0x01)) + bytes((0x01,) * 100) + bytes(113),
            id="too many options",
        ),
        pytest.param(CSM_FRAME + bytes((0x10, 0x01, 0xFF)), id="payload marker alone"),
        pytest.param(CSM_FRAME + REGISTER_FRAME[:12], id="truncated frame"),
        pytest.param(CSM_FRAME + bytes((0xE0, 0x01)), id="truncated length"),
    ],
)
def test_malformed_streams_are_aborted(lab, data):
    assert_aborted(*exchange(lab.port, data))
    assert_healthy(lab)


def test_a_silent_connection_is_closed_after_the_csm_timeout(lab):
    started = time.monotonic()
    received, closed = exchange(lab.port, b"", wait=5)
    assert closed and time.monotonic() - started < 4
    assert [message.code for message in frames(received)] == [CSM, ABORT]


def test_a_huge_announced_message_is_refused_before_it_is_buffered(lab):
    """4 GB announced, then bytes keep coming: the server aborts after the prefix and
    holds nothing of what follows."""
    with socket.create_connection(("127.0.0.1", lab.port), timeout=5) as sock:
        sock.sendall(CSM_FRAME + length_prefixed(15, b"\xff\xff\xff\xf0"))
        sent = 0
        try:
            for _ in range(200):
                sock.sendall(bytes(65536))
                sent += 65536
        except (BrokenPipeError, ConnectionResetError):
            pass
    assert sent < 200 * 65536, "the server kept reading a message it cannot take"
    assert_healthy(lab)


def test_a_large_frame_in_progress_is_bounded_by_max_message_size(lab):
    """A frame of the largest allowed size, sent in part: the connection holds at most that
    frame; completed, it is processed (here: a Register of that size is answered)."""
    listener = lab.listener
    size = listener.max_message_size - 16
    with socket.create_connection(("127.0.0.1", lab.port), timeout=5) as sock:
        body = bytes((0xB2,)) + b"rd" + bytes((0xFF,)) + b"x" * (size - 3 - 1 - 5)
        head = length_prefixed(14, (len(body) - 269).to_bytes(2, "big")) + bytes((Code.POST,))
        sock.sendall(CSM_FRAME + head + body[: len(body) // 2])
        time.sleep(0.3)
        buffers = lab.call(_buffer_sizes(listener))
        assert buffers and max(buffers) <= listener.max_message_size
        sock.sendall(body[len(body) // 2 :])
        sock.settimeout(3)
        answer = b""
        while len(frames_or_none(answer)) < 2 and (chunk := sock.recv(65536)):
            answer += chunk
    code = frames(answer)[1].code
    assert code in (Code.BAD_REQUEST, Code.REQUEST_ENTITY_TOO_LARGE), code


def frames_or_none(data: bytes) -> list[Message]:
    try:
        return frames(data)
    except AssertionError:
        return []


async def _buffer_sizes(listener: Lwm2mTcpServer) -> list[int]:
    return [len(connection._buffer) for connection in listener._pool]


def test_registration_requests_answer_alike_on_both_paths(lab):
    """The lean path (Uri-Path, Uri-Query, Content-Format only) and aiocoap's (any other
    option) give the same answers."""

    def ask(*requests: bytes) -> list[Message]:
        with socket.create_connection(("127.0.0.1", lab.port), timeout=5) as sock:
            sock.sendall(CSM_FRAME)
            answers: list[Message] = []
            buffered = b""
            for request in requests:
                sock.sendall(request)
                while len(frames_or_none(buffered)) < len(answers) + 2:
                    buffered += sock.recv(65536)
                answers = frames(buffered)[1:]
        return answers

    query = ("ep=tcp-paths", "lt=60", "lwm2m=1.1", "b=T")
    lean = frame(Code.POST, b"\x01", b"</3/0>", uri_path=("rd",), uri_query=query)
    generic = frame(Code.POST, b"\x02", b"</3/0>", uri_path=("rd",), uri_query=query, accept=40)
    for register in (lean, generic):
        (created,) = ask(register)
        assert created.code == Code.CREATED
        location = tuple(created.opt.location_path)
        updated, unknown, deleted = ask(
            frame(Code.POST, b"\x03", uri_path=location),
            frame(Code.POST, b"\x04", uri_path=("rd", "no-such-location")),
            frame(Code.DELETE, b"\x05", uri_path=location),
        )
        assert (updated.code, unknown.code, deleted.code) == (
            Code.CHANGED,
            Code.NOT_FOUND,
            Code.DELETED,
        )
        assert bytes(updated.token) == b"\x03" and bytes(deleted.token) == b"\x05"
