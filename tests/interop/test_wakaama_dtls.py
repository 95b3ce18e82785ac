"""Interop over DTLS-PSK with an independent stack: Eclipse Wakaama's example client
built with tinydtls (``lwm2mclient_tinydtls``), by ``../shared/peers/build-wakaama.sh``
(or named by ``MEADOWLARK_TEST_WAKAAMA_DTLS_CLIENT``); skipped when it cannot be built.

The client handshakes with the server's ``coaps://`` port with its PSK identity and key,
registers, and is read, written, executed and observed through the REST API, over its
session. With a wrong key it gets no session, no registration, and the failed handshake
is audited.
"""

from __future__ import annotations

import asyncio
import os
import queue
import secrets
import shutil
import socket
import subprocess
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from functools import cache
from pathlib import Path
from typing import Any

import pytest

from lwm2m_harness import Lwm2mTestServer, eventually, running_lwm2m_server
from meadowlark.cli.dtls_serving import HANDSHAKE_FAILED_EVENT, start_dtls
from meadowlark.core.events import EventFilter, EventKind
from wakaama_build import run_build_script

API = "/api/coiotedm/v3"
BUILD_SCRIPT = Path(__file__).resolve().parents[3] / "shared" / "peers" / "build-wakaama.sh"
"""``../shared`` beside the checkout, as ``.ci/run`` has it."""
LIFETIME = 60


@cache
def tinydtls_client() -> tuple[str | None, str]:
    """The tinydtls example client's path, or None and why not."""
    given = os.environ.get("MEADOWLARK_TEST_WAKAAMA_DTLS_CLIENT")
    if given:
        if os.access(given, os.X_OK):
            return given, ""
        return None, f"MEADOWLARK_TEST_WAKAAMA_DTLS_CLIENT={given} is not an executable"
    if not BUILD_SCRIPT.is_file():
        return None, f"{BUILD_SCRIPT} not found"
    try:
        built = run_build_script(BUILD_SCRIPT)
    except (OSError, subprocess.TimeoutExpired) as exc:
        return None, f"building Wakaama failed: {exc}"
    paths = [line for line in built.stdout.split() if line.endswith("lwm2mclient_tinydtls")]
    if built.returncode != 0 or not paths or not os.access(paths[0], os.X_OK):
        tail = (built.stderr or built.stdout).strip()[-300:]
        return None, f"building Wakaama failed (exit {built.returncode}; cmake/gcc?): {tail}"
    return paths[0], ""


@pytest.fixture(scope="module")
def client_binary() -> str:
    path, reason = tinydtls_client()
    if path is None:
        pytest.skip(reason)
    return path


class Keys(dict[str, bytes]):
    """The PSK store of the test server: identity -> key."""


@pytest.fixture(scope="module")
def keys() -> Keys:
    return Keys()


@pytest.fixture(scope="module")
def server(
    tmp_path_factory: pytest.TempPathFactory,
    database_url: str | None,
    settings_for: Any,
    keys: Keys,
) -> Iterator[Lwm2mTestServer]:
    """CoAP and DTLS (an ephemeral port each) beside the REST API, on one loop."""
    data = tmp_path_factory.mktemp("data")
    settings = settings_for(data, database_url=database_url, coaps="127.0.0.1:0")
    with running_lwm2m_server(settings) as running:
        running.dtls = running.call(start_dtls(settings, running.runtime, running.coap, keys))
        try:
            yield running
        finally:
            running.call(running.dtls.stop())


def _free_udp_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


@dataclass
class WakaamaClient:
    endpoint: str
    identity: str
    process: subprocess.Popen[str]
    output: list[str] = field(default_factory=list)

    def command(self, line: str) -> None:
        assert self.process.stdin is not None
        self.process.stdin.write(line + "\n")
        self.process.stdin.flush()

    def tail(self) -> str:
        return "".join(self.output[-30:])


def provision(server: Lwm2mTestServer, keys: Keys) -> tuple[str, str, bytes]:
    endpoint, identity = f"wakaama-dtls-{secrets.token_hex(4)}", secrets.token_hex(6)
    key = secrets.token_bytes(16)
    body = {
        "properties": {"endpointName": endpoint},
        "securityMode": "psk",
        "dtlsIdentity": identity,
        "dtlsPsk": {"HexadecimalPsk": key.hex()},
    }
    with server.admin() as http:
        response = http.post(f"{API}/devices", json=body)
    assert response.status_code == 201, response.text
    keys[identity] = key
    return endpoint, identity, key


@pytest.fixture
def start_client(server: Lwm2mTestServer, client_binary: str) -> Iterator[Callable[..., Any]]:
    """``start_client(endpoint, identity, key)``: the C client, always ended afterwards."""
    started: list[WakaamaClient] = []

    def start(endpoint: str, identity: str, key: bytes) -> WakaamaClient:
        command = [
            client_binary, "-4", "-h", "127.0.0.1", "-p", str(server.dtls.port),
            "-n", endpoint, "-t", str(LIFETIME), "-l", str(_free_udp_port()),
            "-i", identity, "-s", key.hex(),
        ]  # fmt: skip
        if shutil.which("stdbuf") is not None:  # see its output as it happens
            command = ["stdbuf", "-oL", *command]
        process = subprocess.Popen(  # noqa: S603 - the binary we built
            command,
            stdin=subprocess.PIPE,  # kept open: the client reads commands from it
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
            errors="replace",
        )
        client = WakaamaClient(endpoint, identity, process)
        lines: queue.Queue[str] = queue.Queue()

        def read() -> None:
            assert process.stdout is not None
            for line in process.stdout:
                client.output.append(line)
                lines.put(line)

        threading.Thread(target=read, daemon=True).start()
        started.append(client)
        return client

    yield start
    for client in started:
        process = client.process
        if process.poll() is None:
            try:
                client.command("quit")  # de-registers
                process.wait(5)
            except (OSError, subprocess.TimeoutExpired):
                process.kill()
                process.wait(5)
        for stream in (process.stdin, process.stdout):
            if stream is not None:
                stream.close()


def registered(server: Lwm2mTestServer, endpoint: str) -> Any:
    return server.call(server.runtime.lwm2m.get_registration(endpoint))


def test_the_tinydtls_client_registers_over_psk_and_is_managed(server, keys, start_client):
    endpoint, identity, key = provision(server, keys)
    client = start_client(endpoint, identity, key)
    try:
        registration = eventually(lambda: registered(server, endpoint), timeout=20)
    except AssertionError:
        pytest.fail("no registration over DTLS within 20 s:\n" + client.tail())
    assert registration.peer.transport == "dtls"
    assert registration.peer.identity.mode == "psk"
    assert registration.peer.identity.name == identity

    base = f"/api/lwm2m/v1/clients/{endpoint}"
    with server.admin() as http:
        read = http.get(f"{base}/3/0/0", params={"format": "text"})
        assert read.status_code == 200, read.text
        assert read.json()["content"]["value"] == "Open Mobile Alliance"

        body = {"kind": "singleResource", "value": "+02:00"}
        written = http.put(f"{base}/3/0/14", params={"format": "text"}, json=body)
        assert written.status_code == 200, written.text
        read = http.get(f"{base}/3/0/14", params={"format": "text"})
        assert read.json()["content"]["value"] == "+02:00"

        executed = http.post(f"{base}/3/0/12")  # Reset Error Code
        assert executed.status_code == 200, executed.text

        async def subscribe() -> Any:
            return server.runtime.events.subscribe(EventFilter("/root/", endpoint))

        with server.call(subscribe()) as events:
            observed = http.post(f"{base}/3/0/14/observe", params={"format": "text"})
            assert observed.status_code == 200, observed.text
            client.command("change /3/0/14 +05:00")

            async def notified() -> Any:
                async with asyncio.timeout(15):
                    async for event in events:
                        if event.kind is EventKind.NOTIFICATION and "+05:00" in repr(event):
                            return event
                return None

            assert server.call(notified(), timeout=20) is not None, client.tail()
    assert client.process.poll() is None


def test_the_tinydtls_client_with_a_wrong_key_gets_nothing(server, keys, start_client):
    endpoint, identity, _ = provision(server, keys)
    client = start_client(endpoint, identity, secrets.token_bytes(16))

    def audited() -> list[dict[str, Any]]:
        with server.admin() as http:
            response = http.get("/api/admin/audit", params={"event": HANDSHAKE_FAILED_EVENT})
        return [e for e in response.json() if e["details"]["identity"] == identity]

    entries = eventually(audited, timeout=20)
    assert entries[0]["details"]["reason"] == "wrong_key"
    time.sleep(2)
    assert registered(server, endpoint) is None, client.tail()
