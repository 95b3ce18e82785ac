"""DTLS handshakes and the event loop: ``meadowlark serve`` with handshakes in slices
(``MEADOWLARK_DTLS__HANDSHAKE_SLICE``, default 1 ms) against the same server running every
handshake step at once (a slice of 1000 s: the way before), in the same run.

Figures, each as sliced / at-once:

- ``GET /health`` latency (p50, p99; one keep-alive connection, one request at a time)
  while 20 X.509 (ECDHE-ECDSA) clients handshake over and over;
- full DTLS-PSK handshakes per second (8 clients handshaking over and over).

The clients run in another process (their own handshake cryptography holds its GIL).
``python -m bench dtls_handshakes``.
"""

from __future__ import annotations

import asyncio
import multiprocessing
import secrets
import socket
import statistics
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import httpx
from mbedtls import pk, tls
from mbedtls import x509 as mbedtls_x509
from mbedtls.exceptions import TLSError

from bench.common import LoadResult, free_port, http_request, python, run_load, server_process
from meadowlark.certificates import IssuedCertificate, issue_certificate

ADMIN_PASSWORD = "bench-admin-password"  # noqa: S105 - a throwaway local server
X509_CLIENTS = 20
PSK_CLIENTS = 8
PSK_IDENTITY = "bench-psk"
AT_ONCE = "1000"
"""A slice longer than any run: every pending handshake step runs at once."""
SLICED = "0.001"
"""The default slice."""


class _Client(asyncio.DatagramProtocol):
    def __init__(self, buffer: tls.TLSWrappedBuffer) -> None:
        self.buffer = buffer
        self.arrived = asyncio.Event()
        self.transport: asyncio.DatagramTransport | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]

    def datagram_received(self, data: bytes, addr: Any) -> None:
        self.buffer.receive_from_network(data)
        self.arrived.set()

    def flush(self) -> None:
        data = self.buffer.peek_outgoing(1 << 20)
        if data and self.transport is not None:
            self.buffer.consume_outgoing(len(data))
            self.transport.sendto(data)


async def _handshake(port: int, context: tls.ClientContext) -> bool:
    loop = asyncio.get_running_loop()
    client = _Client(context.wrap_buffers(None))
    await loop.create_datagram_endpoint(lambda: client, remote_addr=("127.0.0.1", port))
    try:
        async with asyncio.timeout(10):
            while client.buffer._handshake_state is not tls.HandshakeStep.HANDSHAKE_OVER:
                try:
                    client.buffer.do_handshake()
                except (tls.WantReadError, tls.WantWriteError):
                    client.flush()
                    client.arrived.clear()
                    try:
                        await asyncio.wait_for(client.arrived.wait(), 1.0)
                    except TimeoutError:
                        pass  # do_handshake retransmits when its timer ran out
            client.flush()
        return True
    except (TimeoutError, TLSError):
        return False
    finally:
        assert client.transport is not None
        client.transport.close()


def _context(credential: tuple[bytes, bytes] | tuple[str, bytes]) -> tls.ClientContext:
    if isinstance(credential[0], str):
        kind, psk, chain = "TLS-PSK-WITH-", credential, None
    else:
        certificate, key = credential
        kind, psk = "TLS-ECDHE-ECDSA-WITH-", None
        chain = ([mbedtls_x509.CRT.from_PEM(certificate.decode())], pk.ECC.from_buffer(key))
    configuration = tls.DTLSConfiguration(
        ciphers=[name for name in tls.ciphers_available() if name.startswith(kind)],
        pre_shared_key=psk,
        certificate_chain=chain,
        validate_certificates=False,
        lowest_supported_version=tls.DTLSVersion.DTLSv1_2,
    )
    return tls.ClientContext(configuration)


def _clients(port: int, credentials: list[Any], duration: float, done: Any) -> None:
    """Each credential handshakes again and again for ``duration`` seconds (a process)."""

    async def main() -> int:
        stop_at = asyncio.get_running_loop().time() + duration
        count = 0

        async def one(credential: Any) -> None:
            nonlocal count
            context = _context(credential)
            while asyncio.get_running_loop().time() < stop_at:
                finished = await _handshake(port, context)
                count += finished

        await asyncio.gather(*(one(credential) for credential in credentials))
        return count

    done.put(asyncio.run(main()))


def _handshaking(port: int, credentials: list[Any], duration: float) -> tuple[Any, Any]:
    spawn = multiprocessing.get_context("spawn")
    done = spawn.Queue()
    process = spawn.Process(target=_clients, args=(port, credentials, duration, done))
    process.start()
    return process, done


@contextmanager
def _serving(
    slice_seconds: str, ca: IssuedCertificate, psk_key: bytes
) -> Iterator[tuple[int, int]]:
    """``meadowlark serve`` with this handshake slice and one PSK device: (HTTP, DTLS) ports."""
    http_port, dtls_port = free_port(), free_port(socket.SOCK_DGRAM)
    with tempfile.TemporaryDirectory() as data_dir:
        bundle = Path(data_dir) / "devices-ca.pem"
        bundle.write_bytes(ca.certificate_pem)
        env = {
            "MEADOWLARK_HTTP": f"127.0.0.1:{http_port}",
            "MEADOWLARK_COAP": f"127.0.0.1:{free_port(socket.SOCK_DGRAM)}",
            "MEADOWLARK_COAPS": f"127.0.0.1:{dtls_port}",
            "MEADOWLARK_COAP_TCP": "off",
            "MEADOWLARK_COAP_TLS": "off",
            "MEADOWLARK_DATA_DIR": data_dir,
            "MEADOWLARK_ADMIN_PASSWORD": ADMIN_PASSWORD,
            "MEADOWLARK_LOG_LEVEL": "warning",
            "MEADOWLARK_TLS__CA_BUNDLE": str(bundle),
            "MEADOWLARK_DTLS__HANDSHAKES_PER_ADDRESS_PER_SECOND": "100000",
            "MEADOWLARK_DTLS__HANDSHAKE_SLICE": slice_seconds,
        }
        command = [python(), "-m", "meadowlark.cli.main", "serve"]
        base = f"http://127.0.0.1:{http_port}"
        with server_process(command, env=env, ready_url=f"{base}/ready"):
            form = {"grant_type": "password", "username": "admin", "password": ADMIN_PASSWORD}
            token = httpx.post(f"{base}/api/auth/oauth_password", data=form).json()
            device = {
                "properties": {"endpointName": "bench-psk-device"},
                "securityMode": "psk",
                "dtlsIdentity": PSK_IDENTITY,
                "dtlsPsk": {"HexadecimalPsk": psk_key.hex()},
            }
            created = httpx.post(
                f"{base}/api/coiotedm/v3/devices",
                json=device,
                headers={"Authorization": f"Bearer {token['access_token']}"},
            )
            created.raise_for_status()
            yield http_port, dtls_port


def _measure(
    ports: tuple[int, int], x509: list[Any], psk_key: bytes, duration: float
) -> dict[str, float]:
    http_port, dtls_port = ports
    process, done = _handshaking(dtls_port, [(PSK_IDENTITY, psk_key)] * PSK_CLIENTS, duration)
    psk_handshakes = done.get(timeout=duration + 60)
    process.join()
    health = http_request("GET", "/health")
    idle = run_load(health, port=http_port, duration=duration / 2, concurrency=1)
    process, done = _handshaking(dtls_port, x509, duration + 1)
    busy: LoadResult = run_load(health, port=http_port, duration=duration, concurrency=1)
    x509_handshakes = done.get(timeout=duration + 60)
    process.join()
    return {
        "idle p50": idle.p50_ms,
        "idle p99": idle.p99_ms,
        "p50": busy.p50_ms,
        "p99": busy.p99_ms,
        "x509/s": x509_handshakes / (duration + 1),
        "psk/s": psk_handshakes / duration,
    }


def run(duration: float = 5.0, rounds: int = 3) -> dict[str, float]:
    """Both servers run side by side; the rounds alternate between them (the machine is
    shared and noisy) and each figure is the median of its rounds."""
    ca = issue_certificate("Meadowlark bench devices CA", ca=True)
    psk_key = secrets.token_bytes(16)
    x509 = [
        (c.certificate_pem, c.key_pem)
        for c in (issue_certificate(f"bench-x509-{n}", issuer=ca) for n in range(X509_CLIENTS))
    ]
    figures: dict[str, list[dict[str, float]]] = {AT_ONCE: [], SLICED: []}
    with (
        _serving(AT_ONCE, ca, psk_key) as at_once_ports,
        _serving(SLICED, ca, psk_key) as sliced_ports,
    ):
        for _ in range(rounds):
            figures[AT_ONCE].append(_measure(at_once_ports, x509, psk_key, duration))
            figures[SLICED].append(_measure(sliced_ports, x509, psk_key, duration))
    at_once, sliced = (
        {
            key: statistics.median(round_[key] for round_ in figures[mode])
            for key in figures[mode][0]
        }
        for mode in (AT_ONCE, SLICED)
    )
    print(f"DTLS handshakes and the event loop (medians of {rounds} rounds of {duration:g} s)")
    print("  at once -> sliced:")
    rows = [
        ("GET /health idle p50 (ms)", "idle p50"),
        ("GET /health idle p99 (ms)", "idle p99"),
        (f"GET /health p50, {X509_CLIENTS} X.509 handshaking (ms)", "p50"),
        (f"GET /health p99, {X509_CLIENTS} X.509 handshaking (ms)", "p99"),
        ("X.509 handshakes/s meanwhile", "x509/s"),
        (f"DTLS-PSK handshakes/s ({PSK_CLIENTS} clients)", "psk/s"),
    ]
    ratios: dict[str, float] = {}
    for title, key in rows:
        ratio = sliced[key] / at_once[key] if at_once[key] else float("nan")
        ratios[title] = ratio
        print(f"  {title:44} {at_once[key]:8.2f} -> {sliced[key]:8.2f}   ratio {ratio:5.2f}")
    return ratios


if __name__ == "__main__":
    run()
