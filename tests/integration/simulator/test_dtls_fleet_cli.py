"""``meadowlark simulate`` with DTLS-PSK credentials, against a DTLS server in a thread."""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Iterator

import pytest
import typer
from fake_dtls_server import FakeDtlsServer
from mbedtls import tls
from typer.testing import CliRunner

from meadowlark.cli.simulate import simulate
from meadowlark.simulator.dtls import derive_psk

MASTER = bytes.fromhex("00112233445566778899aabbccddeeff")
DEVICES = ("sim-0000", "sim-0001", "sim-0002")


@pytest.fixture
def threaded_server() -> Iterator[FakeDtlsServer]:
    keys = {f"id-{name}": derive_psk(MASTER, name) for name in DEVICES}
    loop = asyncio.new_event_loop()
    thread = threading.Thread(target=loop.run_forever, daemon=True)
    thread.start()
    configuration = tls.DTLSConfiguration(pre_shared_key_store=keys, validate_certificates=False)
    server = asyncio.run_coroutine_threadsafe(FakeDtlsServer.start(configuration), loop).result()
    try:
        yield server
    finally:
        loop.call_soon_threadsafe(server.close)
        loop.call_soon_threadsafe(loop.stop)
        thread.join(5)
        loop.close()


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
