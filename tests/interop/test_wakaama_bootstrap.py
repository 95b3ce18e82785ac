# ruff: noqa: F811 - the fixtures imported from the harnesses are test parameters here
"""Interop with an independent C client's bootstrap: Eclipse Wakaama's example client
(``examples/client/udp``, built with client-initiated bootstrap, LwM2M 1.1, SenML JSON),
built by ``../shared/peers/build-wakaama.sh`` (or named by
``MEADOWLARK_TEST_WAKAAMA_CLIENT``); skipped when it cannot be built.

Started with ``-b``, the client holds only a bootstrap account pointing at our bootstrap
server. It sends Bootstrap-Request (``pct=110``), answers Discover, Delete, Write (SenML
JSON), Read and Finish, then registers with the management server the bootstrap wrote,
which then manages it like any other device.
"""

from __future__ import annotations

import os
import queue
import secrets
import shutil
import socket
import subprocess
import threading
from collections.abc import Iterator
from dataclasses import dataclass, field
from functools import cache
from pathlib import Path

import pytest

from bootstrap_harness import audit_events, bootstrap_port
from lwm2m_harness import Lwm2mTestServer, eventually, server  # noqa: F401 - fixture
from wakaama_build import run_build_script

API = "/api/coiotedm/v3"
BUILD_SCRIPT = Path(__file__).resolve().parents[3] / "shared" / "peers" / "build-wakaama.sh"
assert bootstrap_port  # a fixture, used by name


@cache
def wakaama_client() -> tuple[str | None, str]:
    """The example client's path, or None and why not."""
    given = os.environ.get("MEADOWLARK_TEST_WAKAAMA_CLIENT")
    if given:
        return (given, "") if os.access(given, os.X_OK) else (None, f"{given} not executable")
    if not BUILD_SCRIPT.is_file():
        return None, f"{BUILD_SCRIPT} not found"
    try:
        built = run_build_script(BUILD_SCRIPT)
    except (OSError, subprocess.TimeoutExpired) as exc:
        return None, f"building Wakaama failed: {exc}"
    lines = built.stdout.split()
    if built.returncode != 0 or not lines or not os.access(lines[0], os.X_OK):
        return None, f"building Wakaama failed (exit {built.returncode}; cmake/gcc?)"
    return lines[0], ""


@dataclass
class Client:
    endpoint: str
    process: subprocess.Popen[str]
    output: list[str] = field(default_factory=list)


def _free_udp_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


@pytest.fixture
def bootstrapped(server: Lwm2mTestServer, bootstrap_port: int) -> Iterator[Client]:
    """A Wakaama client told only of our bootstrap server (``-b``), configured for."""
    binary, reason = wakaama_client()
    if binary is None:
        pytest.skip(reason)
    endpoint = f"wakaama-bs-{secrets.token_hex(4)}"
    with server.admin() as http:
        body = {"properties": {"endpointName": endpoint}, "connectorType": "bootstrap"}
        account = http.post(f"{API}/devices", json=body)
        assert account.status_code == 201, account.text
        configured = http.put(
            f"{API}/bootstrap/configuration/device/{account.json()['id']}",
            json={"lifetime": 60, "shortServerId": 77},
        )
        assert configured.status_code == 200, configured.text
    command = [
        binary, "-4", "-b", "-h", "127.0.0.1", "-p", str(bootstrap_port),
        "-n", endpoint, "-t", "60", "-l", str(_free_udp_port()),
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
    client = Client(endpoint, process)
    lines: queue.Queue[str] = queue.Queue()

    def read() -> None:
        assert process.stdout is not None
        for line in process.stdout:
            client.output.append(line)
            lines.put(line)

    reader = threading.Thread(target=read, daemon=True)
    reader.start()
    try:
        yield client
    finally:
        if process.poll() is None:
            try:
                assert process.stdin is not None
                process.stdin.write("quit\n")
                process.stdin.flush()
                process.wait(5)
            except (OSError, subprocess.TimeoutExpired):
                process.kill()
                process.wait(5)
        reader.join(10)
        for stream in (process.stdin, process.stdout):
            if stream is not None:
                stream.close()


def test_wakaama_bootstraps_then_registers_with_the_management_server(server, bootstrapped):
    endpoint = bootstrapped.endpoint
    try:
        registration = eventually(
            lambda: server.call(server.runtime.lwm2m.get_registration(endpoint)),
            timeout=30,
            interval=0.1,
        )
    except AssertionError:
        pytest.fail(
            "the Wakaama client did not bootstrap and register within 30 s:\n"
            + "".join(bootstrapped.output[-40:])
            + repr([(r["event"], r["details"]) for r in audit_events(server, endpoint)])
        )
    assert registration.lifetime == 60
    steps = [
        (row["details"]["step"], row["details"]["path"], row["details"]["code"])
        for row in audit_events(server, endpoint)
        if row["event"] in ("bootstrap.requested", "bootstrap.step", "bootstrap.finished")
    ]
    assert steps[0] == ("request", "", "2.04")
    assert ("discover", "/", "2.05") in steps
    assert [s for s in steps if s[0] in ("delete", "write", "finish")] == [
        ("delete", "/0", "2.02"),
        ("delete", "/1", "2.02"),
        ("write", "/0/1", "2.04"),
        ("write", "/1/0", "2.04"),
        ("finish", "/bs", "2.04"),
    ]
    # Managed like any device: the Server instance the bootstrap wrote reads back.
    with server.admin() as http:
        server_object = http.get(f"/api/lwm2m/v1/clients/{endpoint}/1/0")
    assert server_object.status_code == 200, server_object.text
    assert "77" in server_object.text
