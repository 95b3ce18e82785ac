"""``meadowlark simulate`` with DTLS-PSK credentials, against a DTLS server in a thread."""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest
import typer
from fake_dtls_server import FakeDtlsServer
from mbedtls import pk, tls, x509
from typer.testing import CliRunner

from meadowlark.certificates import issue_certificate
from meadowlark.cli.simulate import simulate
from meadowlark.simulator.dtls import derive_psk

MASTER = bytes.fromhex("00112233445566778899aabbccddeeff")
DEVICES = ("sim-0000", "sim-0001", "sim-0002")


@contextmanager
def threaded(configuration: tls.DTLSConfiguration) -> Iterator[FakeDtlsServer]:
    """A ``FakeDtlsServer`` on an event loop of its own, in a thread."""
    loop = asyncio.new_event_loop()
    thread = threading.Thread(target=loop.run_forever, daemon=True)
    thread.start()
    server = asyncio.run_coroutine_threadsafe(FakeDtlsServer.start(configuration), loop).result()
    try:
        yield server
    finally:
        loop.call_soon_threadsafe(server.close)
        loop.call_soon_threadsafe(loop.stop)
        thread.join(5)
        loop.close()


@pytest.fixture
def threaded_server() -> Iterator[FakeDtlsServer]:
    keys = {f"id-{name}": derive_psk(MASTER, name) for name in DEVICES}
    configuration = tls.DTLSConfiguration(pre_shared_key_store=keys, validate_certificates=False)
    with threaded(configuration) as server:
        yield server


def run_simulate(*options: str) -> str:
    app = typer.Typer()
    app.command()(simulate)
    result = CliRunner().invoke(app, list(options))
    assert result.exit_code == 0, result.output
    return result.output


def test_a_fleet_registers_with_per_device_keys(threaded_server: FakeDtlsServer) -> None:
    output = run_simulate(
        "--server", threaded_server.uri, "--devices", "3", "--duration", "1.6", "--interval", "1",
        "--psk-identity", "id-{endpoint}", "--psk-key", MASTER.hex(), "--psk-per-device",
    )  # fmt: skip
    assert "registered=3 failed=0" in output
    assert threaded_server.handshakes == 3
    names = sorted(
        query[3:]
        for message in threaded_server.registers()
        for query in message.opt.uri_query
        if query.startswith("ep=")
    )
    assert names == list(DEVICES)


def test_a_fleet_with_the_master_key_itself_is_refused(threaded_server: FakeDtlsServer) -> None:
    output = run_simulate(
        "--server", threaded_server.uri, "--devices", "1", "--duration", "1.5",
        "--psk-identity", "id-{endpoint}", "--psk-key", MASTER.hex(), "--handshake-timeout", "1",
    )  # fmt: skip
    assert "registered=0" in output
    assert "last failure: sim-0000: register: DTLS handshake with" in output
    assert threaded_server.registers() == []


@pytest.fixture
def threaded_certificate_server(tmp_path: Path) -> Iterator[tuple[FakeDtlsServer, Path]]:
    """A DTLS server that wants client certificates of a test CA; yields it and the CA."""
    authority = issue_certificate("Fleet CA", ca=True)
    served = issue_certificate(
        "meadowlark", issuer=authority, dns_names=("meadowlark",), server=True
    )
    ca_file = tmp_path / "ca.pem"
    ca_file.write_bytes(authority.certificate_pem)
    for name in DEVICES[:2]:
        issued = issue_certificate(name, issuer=authority)
        (tmp_path / f"{name}.pem").write_bytes(issued.certificate_pem)
        (tmp_path / f"{name}.key").write_bytes(issued.key_pem)
    configuration = tls.DTLSConfiguration(
        certificate_chain=(
            [x509.CRT.from_PEM(served.certificate_pem.decode())],
            pk.ECC.from_buffer(served.key_pem),
        ),
        trust_store=tls.TrustStore([x509.CRT.from_PEM(authority.certificate_pem.decode())]),
        validate_certificates=True,
    )
    with threaded(configuration) as server:
        yield server, ca_file


def test_an_x509_fleet_presents_one_certificate_per_device(
    threaded_certificate_server: tuple[FakeDtlsServer, Path], tmp_path: Path
) -> None:
    server, ca_file = threaded_certificate_server
    output = run_simulate(
        "--server", server.uri, "--devices", "2", "--duration", "1.6", "--interval", "1",
        "--certificate", str(tmp_path / "{endpoint}.pem"),
        "--private-key", str(tmp_path / "{endpoint}.key"), "--ca", str(ca_file),
    )  # fmt: skip
    assert "registered=2 failed=0" in output
    assert server.handshakes == 2
