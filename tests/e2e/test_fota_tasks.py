# ruff: noqa: F811 - the fixtures imported from lwm2m_harness are test parameters here
"""Firmware update through the task surface, with the real updater: an image uploaded over
REST, python-coiote's ``run_device_fota_task`` (unchanged, with its enum and boolean query
parameters) and the ``Lwm2mFirmwareUpdate`` template, run against simulated devices over
real UDP and HTTP on the real store; the report carries the old and new firmware versions
and the device's Update Result, for success and for a failure the device reports."""

from __future__ import annotations

import os
import secrets
from collections.abc import Callable, Iterator
from typing import Any

import pytest
from coiote.client import Coiote
from coiote.v3.model.task_reports import TaskReport
from coiote.v3.model.task_templates import TaskTemplateConfig, TaskTemplateInvocation
from coiote.v3.model.tasks import TransferMethod, TransferProtocol

from lwm2m_harness import Lwm2mTestServer, coiote, eventually, running_lwm2m_server  # noqa: F401
from meadowlark.lwm2m.path import LwM2mPath
from meadowlark.simulator import DeviceTiming, SimulatedDevice
from meadowlark.simulator.firmware import FirmwareBehaviour, build_image

COIOTE = "/api/coiotedm/v3"
OCTET_STREAM = {"Content-Type": "application/octet-stream"}
TIMING = DeviceTiming(ack_timeout=1.0, firmware_delay=0.1, reboot_delay=0.2)
REPORT_WAIT = 30.0


@pytest.fixture(scope="module")
def server(
    tmp_path_factory: pytest.TempPathFactory,
    database_url: str | None,
    settings_for: Callable[..., Any],
) -> Iterator[Lwm2mTestServer]:
    settings = settings_for(
        tmp_path_factory.mktemp("fota"),
        database_url=database_url,
        firmware={"max_bytes": 512 * 1024},
    )
    with running_lwm2m_server(settings) as running:
        yield running


@pytest.fixture
def device(server: Lwm2mTestServer) -> Iterator[Callable[..., SimulatedDevice]]:
    """``device(**options)``: a registered simulated device (with object 5), stopped after."""
    started: list[SimulatedDevice] = []

    def start(endpoint: str | None = None, **options: Any) -> SimulatedDevice:
        options.setdefault("timing", TIMING)

        async def register() -> SimulatedDevice:
            simulated = SimulatedDevice(
                endpoint or f"fota-{secrets.token_hex(4)}", server.server_uri, **options
            )
            await simulated.start()
            return simulated

        simulated = server.call(register())
        started.append(simulated)
        return simulated

    yield start
    for simulated in started:
        server.call(simulated.stop())


def given_image(server: Lwm2mTestServer, image: bytes) -> str:
    """A firmware resource holding ``image``: ``POST resources``, ``PUT resources/{id}/data``."""
    with server.admin() as http:
        created = http.post(
            f"{COIOTE}/resources",
            json={
                "name": "fota image",
                "location": {"InternalLocation": {"fileName": "fota.bin"}},
                "category": "FIRMWARE",
                "expirationTime": "ONE_DAY",
            },
        )
        assert created.status_code == 201, created.text
        resource_id: str = created.json()["id"]
        uploaded = http.put(
            f"{COIOTE}/resources/{resource_id}/data", content=image, headers=OCTET_STREAM
        )
        assert uploaded.status_code == 200, uploaded.text
    return resource_id


def report_of(coiote: Coiote, task_id: str, device_id: str) -> TaskReport:
    """python-coiote's report, polled until the run has finished (404 before that)."""

    def poll() -> TaskReport | None:
        try:
            return coiote.task_reports.get_report_for_device_task(task_id, device_id)
        except ValueError as error:  # python-coiote's error for a non-2xx answer
            assert "Code:\n404" in str(error), error
            return None

    return eventually(poll, timeout=REPORT_WAIT, interval=0.2)


def properties(report: TaskReport) -> dict[str, str]:
    return {entry["name"]: entry["value"] for entry in report.properties}


def version_of(server: Lwm2mTestServer, simulated: SimulatedDevice) -> Any:
    async def read() -> Any:
        return simulated.objects.read(LwM2mPath(3, 0, 3)).value  # type: ignore[union-attr]

    return server.call(read())


@pytest.mark.parametrize(
    ("method", "protocol"),
    [
        (TransferMethod.Pull, TransferProtocol.COAP),
        (TransferMethod.Pull, TransferProtocol.HTTP),
        (TransferMethod.Push, TransferProtocol.COAP),
    ],
    ids=["pull-coap", "pull-http", "push"],
)
def test_python_coiote_fota_task_updates_the_device(server, device, coiote, method, protocol):
    resource_id = given_image(server, build_image("2.0.0", os.urandom(64 * 1024)))
    simulated = device()
    task_id = coiote.tasks.run_device_fota_task(
        simulated.endpoint_name,
        resource_id,
        transfer_method=method,
        transfer_protocol=protocol,
        timeout="1m",
        execute_immediately=True,
    )
    assert task_id.startswith("d:")
    report = report_of(coiote, task_id, simulated.endpoint_name)
    assert report.status == "Success", report.summary
    found = properties(report)
    assert found["oldFirmwareVersion"] == "1.0.0"
    assert found["newFirmwareVersion"] == "2.0.0"
    assert found["result"] == "1"
    assert "from 1.0.0 to 2.0.0" in found["resultDetails"]
    assert version_of(server, simulated) == "2.0.0"
    assert server.runtime.lwm2m.observed_paths(simulated.endpoint_name) == []


def test_fota_task_waits_for_the_device_when_not_executed_immediately(server, device, coiote):
    """python-coiote's default (``executeImmediately=False``): the run waits for the
    device's next contact, here its Update, and then updates a device that reboots."""
    resource_id = given_image(server, build_image("2.1.0", b"next contact"))
    simulated = device(firmware=FirmwareBehaviour(reboot_after_update=True))
    task_id = coiote.tasks.run_device_fota_task(
        simulated.endpoint_name, resource_id, transfer_protocol=TransferProtocol.COAP
    )
    with server.admin() as http:
        not_yet = http.get(f"{COIOTE}/taskReports/{task_id}/{simulated.endpoint_name}")
        assert (not_yet.status_code, not_yet.json()["code"]) == (404, 4041)
    server.call(simulated.update())
    report = report_of(coiote, task_id, simulated.endpoint_name)
    assert report.status == "Success", report.summary
    assert properties(report)["newFirmwareVersion"] == "2.1.0"
    assert simulated.stats.registrations == 2  # it rebooted into the new firmware


def test_unsupported_transfer_protocol_is_a_clear_400(server, device, coiote):
    resource_id = given_image(server, b"any image")
    simulated = device()
    with pytest.raises(ValueError, match="transferProtocol is COAP or HTTP") as refused:
        coiote.tasks.run_device_fota_task(
            simulated.endpoint_name, resource_id, transfer_protocol=TransferProtocol.COAPS
        )
    assert "Code:\n400" in str(refused.value)


def test_failure_the_device_reports_fails_the_task(server, device, coiote):
    resource_id = given_image(server, build_image("6.6.6", b"doomed"))
    simulated = device(firmware=FirmwareBehaviour(download_failure=5))
    task_id = coiote.tasks.run_device_fota_task(
        simulated.endpoint_name,
        resource_id,
        transfer_method=TransferMethod.Pull,
        transfer_protocol=TransferProtocol.HTTP,
        timeout="1m",
        execute_immediately=True,
    )
    report = report_of(coiote, task_id, simulated.endpoint_name)
    assert report.status == "Failure"
    assert "Update Result 5" in report.summary
    found = properties(report)
    assert (found["oldFirmwareVersion"], found["newFirmwareVersion"]) == ("1.0.0", "")
    assert found["result"] == "5"
    assert "integrity check failure" in found["resultDetails"]
    assert version_of(server, simulated) == "1.0.0"


def test_builtin_firmware_template_updates_the_device(server, device, coiote):
    """The device's Coiote id is not its endpoint name: the task, the updater and the
    report all go by the id."""
    resource_id = given_image(server, build_image("3.0.0", os.urandom(10_000)))
    endpoint, device_id = f"fota-{secrets.token_hex(4)}", f"dev-{secrets.token_hex(4)}"
    with server.admin() as http:
        created = http.post(
            f"{COIOTE}/devices", json={"id": device_id, "properties": {"endpointName": endpoint}}
        )
        assert created.status_code == 201, created.text
    simulated = device(endpoint=endpoint)
    invocation = TaskTemplateInvocation(
        templateName="Lwm2mFirmwareUpdate",
        config=TaskTemplateConfig(
            taskName="template fota",
            parameters=[
                {"name": "resourceId", "value": resource_id},
                {"name": "transferProtocol", "value": "HTTP"},
                {"name": "timeout", "value": "1m"},
            ],
            isActive=True,
            properties={},
        ),
    )
    report = coiote.task_templates.run_on_device_and_await(
        device_id, invocation, wait_time_seconds=int(REPORT_WAIT)
    )
    assert report.status == "Success", report.summary
    found = properties(report)
    assert (found["oldFirmwareVersion"], found["newFirmwareVersion"]) == ("1.0.0", "3.0.0")
    assert found["result"] == "1"
    assert report.deviceId == device_id
    assert version_of(server, simulated) == "3.0.0"
