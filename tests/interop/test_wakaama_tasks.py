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

import secrets
import time
from collections.abc import Iterator
from typing import Any

import pytest

from lwm2m_harness import Lwm2mTestServer, coiote, eventually, server  # noqa: F401 - fixtures
from wakaama_harness import UDP_CLIENT, WakaamaClient, running_wakaama, wakaama_client_or_skip

API = "/api/coiotedm/v3"
LIFETIME = 60


@pytest.fixture(scope="module")
def client_binary() -> str:
    return wakaama_client_or_skip(UDP_CLIENT)


@pytest.fixture
def wakaama(server: Lwm2mTestServer, client_binary: str) -> Iterator[WakaamaClient]:
    """The C client registered with the server; always terminated afterwards."""
    endpoint = f"wakaama-{secrets.token_hex(4)}"
    with running_wakaama(client_binary, endpoint, server.coap_port, lifetime=LIFETIME) as client:
        try:
            eventually(
                lambda: server.call(server.runtime.lwm2m.get_registration(endpoint)) is not None,
                timeout=20,
                interval=0.1,
            )
        except AssertionError:
            pytest.fail("the Wakaama client did not register within 20 s:\n" + client.tail())
        yield client


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
