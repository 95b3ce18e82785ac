# ruff: noqa: F811 - the fixtures imported from lwm2m_harness are test parameters here
"""Interop with an independent C client: Eclipse Wakaama's example client
(``examples/client/udp``), built by ``../shared/peers/build-wakaama.sh`` (or named by
``MEADOWLARK_TEST_WAKAAMA_CLIENT``); skipped when it cannot be built (no cmake or gcc).

The client registers over real UDP; the registration reads fill the device record from
its Device object; a task made through the Coiote API reads, writes and executes on it and
its report is checked. Execute is Reset Error Code (/3/0/12): the example's Reboot
(/3/0/4) ends the process (``system_reboot`` is ``exit(1)``).

No firmware update here: the example's Firmware Update object (``object_firmware.c``)
cannot download anything. A Package or Package URI write only answers 2.04 Changed, State
starts at 1 (Downloading) and only Execute Update moves it (to 2), so Meadowlark's updater
would rightly refuse it as busy. FOTA is tested against the simulator
(``tests/e2e/test_fota_tasks.py``).
"""

from __future__ import annotations

import os
import queue
import secrets
import shutil
import socket
import subprocess
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from functools import cache
from pathlib import Path
from typing import Any

import pytest

from lwm2m_harness import Lwm2mTestServer, coiote, eventually, server  # noqa: F401 - fixtures
from wakaama_build import run_build_script

API = "/api/coiotedm/v3"
BUILD_SCRIPT = Path(__file__).resolve().parents[3] / "shared" / "peers" / "build-wakaama.sh"
"""``../shared`` beside the checkout, as ``.ci/run`` has it."""
LIFETIME = 60


@cache
def wakaama_client() -> tuple[str | None, str]:
    """The example client's path, or None and why not."""
    given = os.environ.get("MEADOWLARK_TEST_WAKAAMA_CLIENT")
    if given:
        if os.access(given, os.X_OK):
            return given, ""
        return None, f"MEADOWLARK_TEST_WAKAAMA_CLIENT={given} is not an executable"
    if not BUILD_SCRIPT.is_file():
        return None, f"{BUILD_SCRIPT} not found"
    try:
        built = run_build_script(BUILD_SCRIPT)
    except (OSError, subprocess.TimeoutExpired) as exc:
        return None, f"building Wakaama failed: {exc}"
    lines = built.stdout.split()
    if built.returncode != 0 or not lines or not os.access(lines[0], os.X_OK):
        tail = (built.stderr or built.stdout).strip()[-300:]
        return None, f"building Wakaama failed (exit {built.returncode}; cmake/gcc?): {tail}"
    return lines[0], ""


@pytest.fixture(scope="module")
def client_binary() -> str:
    path, reason = wakaama_client()
    if path is None:
        pytest.skip(reason)
    return path


def _free_udp_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


@dataclass
class WakaamaClient:
    endpoint: str
    process: subprocess.Popen[str]
    line_buffered: bool
    output: list[str] = field(default_factory=list)

    def printed(self, text: str) -> bool:
        return any(text in line for line in list(self.output))


@pytest.fixture
def wakaama(server: Lwm2mTestServer, client_binary: str) -> Iterator[WakaamaClient]:
    """The C client registered with the server; always terminated afterwards."""
    endpoint = f"wakaama-{secrets.token_hex(4)}"
    command = [
        client_binary, "-4", "-h", "127.0.0.1", "-p", str(server.coap_port),
        "-n", endpoint, "-t", str(LIFETIME), "-l", str(_free_udp_port()),
    ]  # fmt: skip
    line_buffered = shutil.which("stdbuf") is not None
    if line_buffered:  # C stdio buffers a pipe by blocks: see its output as it happens
        command = ["stdbuf", "-oL", *command]
    process = subprocess.Popen(  # noqa: S603 - the binary we built
        command,
        stdin=subprocess.PIPE,  # kept open: the client reads commands from it
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        errors="replace",
    )
    client = WakaamaClient(endpoint, process, line_buffered)
    lines: queue.Queue[str] = queue.Queue()

    def read() -> None:
        assert process.stdout is not None
        for line in process.stdout:
            client.output.append(line)
            lines.put(line)

    reader = threading.Thread(target=read, daemon=True)
    reader.start()
    try:
        try:
            eventually(
                lambda: server.call(server.runtime.lwm2m.get_registration(endpoint)) is not None,
                timeout=20,
                interval=0.1,
            )
        except AssertionError:
            pytest.fail(
                "the Wakaama client did not register within 20 s:\n" + "".join(client.output[-30:])
            )
        yield client
    finally:
        if process.poll() is None:
            try:
                assert process.stdin is not None
                process.stdin.write("quit\n")  # de-registers
                process.stdin.flush()
                process.wait(5)
            except (OSError, subprocess.TimeoutExpired):
                process.terminate()
                try:
                    process.wait(5)
                except subprocess.TimeoutExpired:
                    process.kill()
                    process.wait(5)
        reader.join(10)
        for stream in (process.stdin, process.stdout):
            if stream is not None:
                stream.close()


def report_when_done(server: Lwm2mTestServer, task_id: str, device_id: str) -> dict[str, Any]:
    with server.admin() as http:

        def poll() -> dict[str, Any] | None:
            response = http.get(f"{API}/taskReports/{task_id}/{device_id}")
            if response.status_code == 404:
                assert response.json()["code"] in (4040, 4041), response.text
                return None
            assert response.status_code == 200, response.text
            return response.json()  # type: ignore[no-any-return]

        return eventually(poll, timeout=20, interval=0.1)


def test_registration_reads_fill_the_record_from_the_c_client(server, wakaama, coiote):
    device = eventually(
        lambda: (d := coiote.devices.get_one(wakaama.endpoint)).manufacturer and d, timeout=15
    )
    assert device.manufacturer == "Open Mobile Alliance"
    assert device.modelName == "Lightweight M2M Client"
    assert device.serialNumber == "345000123"
    cached = {entry.name for entry in coiote.data_model.get_device_datamodel(wakaama.endpoint)}
    assert {"Device.0.Manufacturer", "Device.0.Model Number"} <= cached


def test_configure_task_reads_writes_and_executes_on_the_c_client(server, wakaama):
    with server.admin() as http:
        created = http.post(
            f"{API}/tasks/configure/{wakaama.endpoint}",
            json={
                "taskDefinition": {
                    "name": "wakaama interop",
                    "operations": [
                        {"read": {"key": "Device.0.Manufacturer"}},
                        {"read": {"key": "/3/0/1"}},
                        {"write": {"key": "Device.0.UTC Offset", "value": "+02:00"}},
                        {"write": {"key": "/1/0/1", "value": "120"}},
                        {"execute": {"key": "Device.0.Reset Error Code"}},
                        {"read": {"key": "/3/0/14"}},
                        {"read": {"key": "LwM2M Server.0.Lifetime"}},
                    ],
                }
            },
        )
        assert created.status_code == 201, created.text
        task_id = created.json()
    report = report_when_done(server, task_id, wakaama.endpoint)
    assert report["status"] == "Success", report
    assert report["summary"] == "7 operations succeeded"
    assert report["properties"] == [
        {"name": "Device.0.Manufacturer", "value": "Open Mobile Alliance"},
        {"name": "Device.0.Model Number", "value": "Lightweight M2M Client"},
        {"name": "Device.0.UTC Offset", "value": "+02:00"},
        {"name": "LwM2M Server.0.Lifetime", "value": "120"},
    ]
    if wakaama.line_buffered:  # the example prints what it executed
        eventually(lambda: wakaama.printed("RESET ERROR CODE"), timeout=5)
    assert wakaama.process.poll() is None  # still running


def test_a_device_error_from_the_c_client_fails_the_report(server, wakaama):
    """Timezone (/3/0/15) is a writable resource the example refuses (5.01)."""
    with server.admin() as http:
        task_id = http.post(
            f"{API}/tasks/configure/{wakaama.endpoint}",
            json={
                "taskDefinition": {
                    "name": "refused write",
                    "operations": [
                        {"read": {"key": "/3/0/2"}},
                        {"write": {"key": "Device.0.Timezone", "value": "Europe/Warsaw"}},
                    ],
                }
            },
        ).json()
    report = report_when_done(server, task_id, wakaama.endpoint)
    assert report["status"] == "Failure"
    assert "operation 2" in report["summary"] and "5.01" in report["summary"], report
    assert report["properties"] == [{"name": "Device.0.Serial Number", "value": "345000123"}]
    # A failed run ends there; the client is fine.
    time.sleep(0.2)
    assert wakaama.process.poll() is None
