"""X.509 handshakes share the event loop: their public-key steps run one slice at a time,
so other work (REST requests, established sessions) gets a turn between them.

Real python-mbedtls clients with ECDHE-ECDSA certificates handshake concurrently with
the server on one loop; every public-key step of the server is timed, and a ticker
counts the loop's turns.
"""

from __future__ import annotations

import asyncio
import time
from pathlib import Path

import pytest
from dtls_device import DtlsDevice, write_pem
from mbedtls import tls

from meadowlark.certificates import issue_certificate
from meadowlark.coap.dtls import DtlsCredentials, DtlsServer
from meadowlark.coap.server import CoapServer
from meadowlark.server.service import LwM2mServer

pytestmark = pytest.mark.anyio
CLIENTS = 4
EXPENSIVE = 0.0005
"""A step longer than this did public-key cryptography (PSK and record steps: ~10 µs)."""
PUBLIC_KEY_STEPS = frozenset(
    {"SERVER_KEY_EXCHANGE", "CLIENT_CERTIFICATE", "CLIENT_KEY_EXCHANGE", "CERTIFICATE_VERIFY"}
)
"""The server's steps that sign, verify or do ECDH (waiting for data, they are cheap)."""


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


async def test_concurrent_x509_handshakes_let_the_loop_turn_between_their_crypto_steps(
    tmp_path: Path,
):
    ca = issue_certificate("Meadowlark test devices CA", ca=True)
    server_certificate = issue_certificate("meadowlark", issuer=ca, server=True)
    key = tmp_path / "server.key"
    key.write_bytes(server_certificate.key_pem)
    credentials = DtlsCredentials(
        {},
        certificate=write_pem(tmp_path / "server.pem", server_certificate),
        private_key=key,
        ca_bundle=write_pem(tmp_path / "ca.pem", ca),
    )
    lwm2m = LwM2mServer()
    coap = CoapServer(lwm2m, "127.0.0.1", 0)
    await lwm2m.start()
    lwm2m.attach(await coap.start())
    dtls = DtlsServer(lwm2m, credentials, "127.0.0.1", 0, handshakes_per_second=1000.0)
    await dtls.start(coap.context)
    interface = dtls.interface
    assert interface is not None
    log: list[tuple[str, float]] = []
    """("tick", 0) per loop turn, (step name, seconds) per server handshake step."""
    scheduler = interface.handshakes
    step = scheduler._work

    def timed(session: object) -> bool:
        name = session.buffer._handshake_state.name  # type: ignore[attr-defined]
        started = time.perf_counter()
        try:
            return step(session)
        finally:
            log.append((name, time.perf_counter() - started))

    scheduler._work = timed
    running = True

    def tick() -> None:
        log.append(("tick", 0.0))
        if running:
            asyncio.get_running_loop().call_soon(tick)

    devices = [
        DtlsDevice(
            ("127.0.0.1", dtls.port), certificate=issue_certificate(f"device-{n}", issuer=ca)
        )
        for n in range(CLIENTS)
    ]
    try:
        tick()
        await asyncio.gather(*(device.connect() for device in devices))
    finally:
        running = False
        for device in devices:
            device.close()
        await dtls.stop()
        await coap.stop()
        await lwm2m.stop()

    public_key_steps = [name for name, cost in log if name in PUBLIC_KEY_STEPS and cost > EXPENSIVE]
    assert "SERVER_KEY_EXCHANGE" in public_key_steps  # ECDHE + ECDSA signature
    assert len(public_key_steps) >= 3 * CLIENTS  # + client certificate, its signature...
    # Between two turns of the loop: at most the slice of one datagram's callback and
    # one scheduled slice, each ending after its first public-key step.
    run = 0
    for name, cost in log:
        if name == "tick":
            run = 0
        elif name in PUBLIC_KEY_STEPS and cost > EXPENSIVE:
            run += 1
            assert run <= 2, "public-key steps of several handshakes without a loop turn"
    assert all(
        device._buffer._handshake_state is tls.HandshakeStep.HANDSHAKE_OVER for device in devices
    )
