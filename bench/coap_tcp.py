"""Register + Update round trips per second over CoAP over TCP and TLS (RFC 8323) against
plain UDP, on one ``meadowlark serve`` process (SQLite, temporary data folder), same run.

Each simulated device is lean (a socket and a few frames, no object tree): over UDP its
own socket, a CON Register (``POST /rd``) answered 2.01, then an Update (``POST
/rd/{location}``) answered 2.04; over TCP and TLS, it opens its own connection and
exchanges CSMs first (counted in its time: the cost a TCP device pays to register),
then the same two requests. ``window`` devices are in flight at a time. The ratio is
TCP (or TLS) round trips per second over UDP's. As the machine may be shared, the
server's own CPU time per Register+Update (its processes' user+system time during the
phase) is printed too: less noisy than the rates.
"""

from __future__ import annotations

import asyncio
import os
import secrets
import socket
import ssl
import subprocess
import tempfile
import time
from collections.abc import Awaitable, Callable, Iterator
from contextlib import contextmanager
from pathlib import Path

from aiocoap import Code, Message
from aiocoap.numbers.codes import CSM
from aiocoap.numbers.types import Type
from aiocoap.transports.tcp import _decode_message, _extract_message_size, _serialize

from bench.common import free_port, python, repo_root
from bench.registrations import _stop, _wait_ready
from bench.storm import _process_tree

ADMIN_PASSWORD = "bench-admin-password"  # noqa: S105 - a throwaway local server
LINKS = b"</1/0>,</3/0>,</3303/0>"
REQUEST_TIMEOUT = 30.0


@contextmanager
def serve_with_streams(tmp: Path) -> Iterator[tuple[int, int, int, Path, int]]:
    """``meadowlark serve`` with UDP, TCP and TLS; yields the three ports, the data dir and
    the process id."""
    http_port, udp_port = free_port(), free_port(socket.SOCK_DGRAM)
    tcp_port, tls_port = free_port(), free_port()
    data_dir = tmp / "meadowlark-data"
    env = {
        **os.environ,
        "PYTHONPATH": str(repo_root() / "src"),
        "MEADOWLARK_HTTP": f"127.0.0.1:{http_port}",
        "MEADOWLARK_COAP": f"127.0.0.1:{udp_port}",
        "MEADOWLARK_COAP_TCP": f"127.0.0.1:{tcp_port}",
        "MEADOWLARK_COAP_TLS": f"127.0.0.1:{tls_port}",
        "MEADOWLARK_BOOTSTRAP_DTLS": "off",
        "MEADOWLARK_DATA_DIR": str(data_dir),
        "MEADOWLARK_ADMIN_PASSWORD": ADMIN_PASSWORD,
    }
    with (tmp / "serve.log").open("wb") as log:
        process = subprocess.Popen(  # noqa: S603 - our own interpreter and CLI
            [python(), "-m", "meadowlark.cli.main", "serve"], env=env, stdout=log, stderr=log
        )
        try:
            _wait_ready(process, f"http://127.0.0.1:{http_port}/ready", tmp / "serve.log")
            yield udp_port, tcp_port, tls_port, data_dir, process.pid
        finally:
            _stop(process)


def _register(endpoint: str, binding: str) -> Message:
    query = (f"ep={endpoint}", "lt=300", "lwm2m=1.1", f"b={binding}")
    return Message(
        code=Code.POST, uri_path=("rd",), uri_query=query, payload=LINKS, content_format=40
    )


class _UdpDevice(asyncio.DatagramProtocol):
    def __init__(self) -> None:
        self.transport: asyncio.DatagramTransport | None = None
        self.waiter: asyncio.Future[Message] | None = None
        self.mid = secrets.randbelow(0x10000)

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]

    def datagram_received(self, data: bytes, addr: object) -> None:
        message = Message.decode(data)
        if message.code.is_request():  # the server reading the new device: not found
            answer = Message(code=Code.NOT_FOUND)
            answer.mtype, answer.mid, answer.token = Type.ACK, message.mid, message.token
            assert self.transport is not None
            self.transport.sendto(answer.encode())
        elif message.token == self.mid.to_bytes(2, "big") and message.code.is_response():
            if self.waiter is not None and not self.waiter.done():
                self.waiter.set_result(message)

    async def request(self, message: Message) -> Message:
        assert self.transport is not None
        self.mid = (self.mid + 1) & 0xFFFF
        message.mtype, message.mid, message.token = Type.CON, self.mid, self.mid.to_bytes(2, "big")
        self.waiter = asyncio.get_running_loop().create_future()
        self.transport.sendto(message.encode())
        return await asyncio.wait_for(self.waiter, REQUEST_TIMEOUT)


async def _udp_device(port: int, endpoint: str) -> None:
    loop = asyncio.get_running_loop()
    transport, device = await loop.create_datagram_endpoint(
        _UdpDevice, remote_addr=("127.0.0.1", port)
    )
    try:
        await _register_and_update(device.request, endpoint, "U")
    finally:
        transport.close()


async def _stream_device(port: int, endpoint: str, tls: ssl.SSLContext | None) -> None:
    reader, writer = await asyncio.open_connection(
        "127.0.0.1", port, ssl=tls, server_hostname="meadowlark" if tls else None
    )

    async def read_frame() -> Message:
        head = await reader.readexactly(1)
        extension = {13: 1, 14: 2, 15: 4}.get(head[0] >> 4, 0)
        head += await reader.readexactly(extension)
        sizes = _extract_message_size(head)
        assert sizes is not None
        return _decode_message(head + await reader.readexactly(sum(sizes) - len(head)))

    async def request(message: Message) -> Message:
        message.token = token = secrets.token_bytes(4)
        writer.write(_serialize(message))
        while True:
            answer = await asyncio.wait_for(read_frame(), REQUEST_TIMEOUT)
            if answer.code.is_request():  # the server reading the new device: not found
                not_found = Message(code=Code.NOT_FOUND)
                not_found.token = answer.token
                writer.write(_serialize(not_found))
            elif answer.code.is_response() and answer.token == token:
                return answer

    try:
        writer.write(_serialize(Message(code=CSM)))
        while not (await read_frame()).code == CSM:
            pass
        await _register_and_update(request, endpoint, "T")
    finally:
        writer.close()


async def _register_and_update(
    request: Callable[[Message], Awaitable[Message]], endpoint: str, binding: str
) -> None:
    created = await request(_register(endpoint, binding))
    if created.code != Code.CREATED:
        raise RuntimeError(f"Register answered {created.code}")
    update = Message(code=Code.POST, uri_path=tuple(created.opt.location_path))
    changed = await request(update)
    if changed.code != Code.CHANGED:
        raise RuntimeError(f"Update answered {changed.code}")


async def _round_trips(
    device: Callable[[str], Awaitable[None]], prefix: str, devices: int, window: int
) -> tuple[float, int]:
    """(Register + Update round trips per second, failed devices)."""
    gate = asyncio.Semaphore(window)
    failures = 0

    async def one(index: int) -> None:
        nonlocal failures
        async with gate:
            try:
                await device(f"{prefix}-{index:05d}")
            except (OSError, RuntimeError, TimeoutError, asyncio.IncompleteReadError):
                failures += 1

    started = time.perf_counter()
    await asyncio.gather(*(one(index) for index in range(devices)))
    elapsed = time.perf_counter() - started
    return 2 * (devices - failures) / elapsed, failures


def _cpu_seconds(pid: int) -> float:
    """User + system CPU time of ``pid`` and its descendants (serve's workers)."""
    ticks = os.sysconf("SC_CLK_TCK")
    total = 0
    for member in _process_tree(pid):
        fields = Path(f"/proc/{member}/stat").read_text().rpartition(")")[2].split()
        total += int(fields[11]) + int(fields[12])
    return total / ticks


async def _measure(
    ports: tuple[int, int, int], tls: ssl.SSLContext, devices: int, window: int, pid: int
) -> dict[str, tuple[float, int, float]]:
    """Per transport: (round trips per second, failed devices, server CPU ms per device)."""
    udp_port, tcp_port, tls_port = ports
    transports: dict[str, Callable[[str], Awaitable[None]]] = {
        "udp": lambda name: _udp_device(udp_port, name),
        "tcp": lambda name: _stream_device(tcp_port, name, None),
        "tls": lambda name: _stream_device(tls_port, name, tls),
    }
    tag = secrets.token_hex(3)
    for name, device in transports.items():  # warm-up: imports, caches, first commits
        await _round_trips(device, f"warm-{name}-{tag}", 100, window)
    results = {}
    for name, device in transports.items():
        cpu = _cpu_seconds(pid)
        per_second, failed = await _round_trips(device, f"{name}-{tag}", devices, window)
        await asyncio.sleep(0.5)  # the work that follows the last answers (commits)
        cpu_ms = 1000 * (_cpu_seconds(pid) - cpu) / max(1, devices - failed)
        results[name] = (per_second, failed, cpu_ms)
    return results


def run(duration: float = 5.0, devices: int = 1000, window: int = 32) -> dict[str, float]:
    """``duration`` is unused (the figure is a fixed number of devices)."""
    del duration
    with tempfile.TemporaryDirectory(prefix="bench-coap-tcp-") as folder:
        with serve_with_streams(Path(folder)) as (udp_port, tcp_port, tls_port, data_dir, pid):
            tls = ssl.create_default_context(cafile=str(data_dir / "tls" / "server.pem"))
            ports = (udp_port, tcp_port, tls_port)
            results = asyncio.run(_measure(ports, tls, devices, window, pid))
    udp, udp_cpu = results["udp"][0], results["udp"][2]
    print(
        f"coap_tcp: Register+Update round trips/s, meadowlark serve (SQLite), {devices} devices "
        f"per transport (own socket/connection each), {window} in flight"
    )
    for name, label in (("udp", "UDP (baseline)"), ("tcp", "TCP (+connect, CSM)"),
                        ("tls", "TLS (+connect, handshake, CSM)")):  # fmt: skip
        per_second, failed, cpu_ms = results[name]
        print(
            f"  {label:32} {per_second:8.1f} rt/s  server CPU {cpu_ms:5.2f} ms/device"
            + (
                f"  ratio {per_second / udp:.3f}, CPU x{cpu_ms / udp_cpu:.2f}"
                if name != "udp" and udp
                else ""
            )
            + (f"  FAILED {failed}" if failed else "")
        )
    return {
        "tcp_round_trips_per_second": results["tcp"][0],
        "tcp_ratio": results["tcp"][0] / udp if udp else 0.0,
        "tls_ratio": results["tls"][0] / udp if udp else 0.0,
    }


if __name__ == "__main__":
    run()
