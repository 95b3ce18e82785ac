# ruff: noqa: F811 - the fixtures imported from lwm2m_harness are test parameters here
"""Tasks, reports and settings against a real server (HTTP + UDP + store) with simulated
devices: python-coiote's task families, the vendor sample flow, ``${sv.name}`` in writes,
registration reads, templates and bad input."""

from __future__ import annotations

import secrets
import time
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
import pytest
from coiote.v3.model.setting_values import SettingValue
from coiote.v3.model.task_templates import TaskTemplateConfig, TaskTemplateInvocation
from coiote.v3.model.tasks import (
    ConfigurationTaskDefinition,
    ExecuteArg,
    ExecuteOperation,
    ReadOperation,
    TaskConfig,
    WriteOperation,
)

from lwm2m_harness import Lwm2mTestServer, coiote, devices, eventually, running_lwm2m_server  # noqa: F401
from meadowlark.lwm2m.path import LwM2mPath

API = "/api/coiotedm/v3"


@pytest.fixture(scope="module")
def server(tmp_path_factory, database_url, settings_for) -> Iterator[Lwm2mTestServer]:
    settings = settings_for(
        tmp_path_factory.mktemp("tasks"),
        database_url=database_url,
        lwm2m={"request_timeout": 3},
    )
    with running_lwm2m_server(settings) as running:
        yield running


def name(prefix: str = "tf") -> str:
    return f"{prefix}-{secrets.token_hex(4)}"


def report_when_done(http: httpx.Client, task_id: str, device_id: str) -> dict[str, Any]:
    """The vendor sample's loop: poll the report until it is not 404."""

    def poll() -> dict[str, Any] | None:
        response = http.get(f"{API}/taskReports/{task_id}/{device_id}")
        if response.status_code == 404:
            assert response.json()["code"] in (4040, 4041), response.text
            return None
        assert response.status_code == 200, response.text
        return response.json()  # type: ignore[no-any-return]

    return eventually(poll, timeout=15)


def test_registration_reads_fill_the_device_record(server, devices, coiote):
    endpoint = name("reg")
    devices(endpoint)
    device = eventually(lambda: (d := coiote.devices.get_one(endpoint)).manufacturer and d)
    assert device.manufacturer == "Meadowlark"
    assert device.modelName and device.serialNumber and device.softwareVersion
    cached = {entry.name for entry in coiote.data_model.get_device_datamodel(endpoint)}
    assert {"Device.0.Manufacturer", "Device.0.Serial Number"} <= cached
    assert any(entry.startswith("Firmware Update.0.") for entry in cached)


def test_registration_reads_can_be_switched_off(server, devices, coiote):
    endpoint = name("quiet")
    with server.admin() as http:
        created = http.post(f"{API}/devices", json={"properties": {"endpointName": endpoint}})
        assert created.status_code == 201, created.text
        put = http.put(
            f"{API}/settingValues",
            json={"name": "registrationRead", "value": "off", "deviceId": endpoint},
        )
        assert put.status_code == 204, put.text
    device = devices(endpoint)
    time.sleep(0.5)
    assert device.stats.requests_answered == 0
    assert coiote.devices.get_one(endpoint).manufacturer is None


def test_python_coiote_configure_task_flow(server, devices, coiote):
    endpoint = name("pc")
    device = devices(endpoint)
    definition = ConfigurationTaskDefinition(
        name="configure",
        operations=[
            ReadOperation.create("Device.0.Manufacturer"),
            WriteOperation.create("Device.0.UTC Offset", "+02:00"),
            ExecuteOperation.create("/3/0/12", [ExecuteArg(0, "a")]),
        ],
    )
    task_id = coiote.tasks.run_device_config_task(endpoint, definition)
    assert task_id.startswith("d:")
    assert task_id in coiote.tasks.get_all()
    report = eventually(lambda: _report_or_none(coiote, task_id, endpoint), timeout=15)
    assert report.status == "Success", report.summary
    assert {"name": "Device.0.Manufacturer", "value": "Meadowlark"} in report.properties
    assert report.finishTime >= report.startTime
    assert device.objects.read(LwM2mPath(3, 0, 14)).value == "+02:00"

    task = coiote.tasks.get_one(task_id)
    assert task.config.taskName == "configure" and task.config.isActive
    assert (
        coiote.tasks.update_one(task_id, TaskConfig("renamed", [], {"note": "x"}, True)).status_code
        == 204
    )
    assert coiote.tasks.get_one(task_id).config.taskName == "renamed"
    assert coiote.task_reports.get_reports(f"taskId eq '{task_id}'")[0].deviceId == endpoint
    summary = coiote.task_reports.get_task_summary(task_id)
    assert (summary.totalScheduled, summary.successes, summary.successRate) == (1, 1, 100)
    since = coiote.task_reports.find_reports_since(
        datetime.now(UTC) - timedelta(minutes=1), taskId=task_id
    )
    assert [r.deviceId for r in since] == [endpoint]
    cursor = coiote.task_reports.get_reports_cursor(f"taskId eq '{task_id}'")
    batch = coiote.task_reports.get_next_reports_batch(cursor, 10)
    assert [r.taskId for r in batch.batch] == [task_id]
    assert coiote.task_reports.get_next_reports_batch(cursor, 10).batch == []
    assert coiote.tasks.delete_one(task_id).status_code == 204
    assert task_id not in coiote.tasks.get_all()


def _report_or_none(coiote, task_id: str, device_id: str):
    try:
        return coiote.task_reports.get_report_for_device_task(task_id, device_id)
    except ValueError:
        return None


def test_vendor_sample_flow_with_a_sleeping_device(server, devices):
    endpoint = name("vs")
    device = devices(endpoint, queue_mode=True)
    with server.admin() as http:
        server.call(_sleep(server, endpoint))
        created = http.post(
            f"{API}/tasks/configure/{endpoint}",
            json={
                "taskDefinition": {
                    "name": "read serial",
                    "operations": [{"read": {"key": "Device.0.Serial Number"}}],
                }
            },
        )
        assert created.status_code == 201, created.text
        task_id = created.json()
        not_yet = http.get(f"{API}/taskReports/{task_id}/{endpoint}")
        assert (not_yet.status_code, not_yet.json()["code"]) == (404, 4041)
        server.call(device.update())  # the device wakes up: its moment
        report = report_when_done(http, task_id, endpoint)
        assert report["status"] == "Success"
        assert report["properties"] == [
            {
                "name": "Device.0.Serial Number",
                "value": device.objects.read(LwM2mPath(3, 0, 2)).value,
            }
        ]
        assert http.delete(f"{API}/tasks/{task_id}").status_code == 204
        gone = http.get(f"{API}/taskReports/{task_id}/{endpoint}")
        assert (gone.status_code, gone.json()["code"]) == (404, 4040)


async def _sleep(server, endpoint: str) -> None:
    """Let the server deem a queue-mode device asleep (its awake window ends now)."""
    lwm2m = server.runtime.lwm2m
    lwm2m.queue_mode._on_awake_over(endpoint)


def test_failing_operation_fails_the_report_with_the_device_code(server, devices):
    endpoint = name("fail")
    devices(endpoint)
    with server.admin() as http:
        task_id = http.post(
            f"{API}/tasks/configure/{endpoint}",
            json={
                "taskDefinition": {
                    "name": "bad update",
                    "operations": [
                        {"read": {"key": "/3/0/0"}},
                        {"execute": {"key": "Firmware Update.0.Update"}},
                        {"read": {"key": "/3/0/1"}},
                    ],
                }
            },
        ).json()
        report = report_when_done(http, task_id, endpoint)
    assert report["status"] == "Failure"
    assert "operation 2" in report["summary"] and "4.05" in report["summary"]
    assert [p["name"] for p in report["properties"]] == ["Device.0.Manufacturer"]


def test_a_setting_substituted_into_a_write_reaches_the_device(server, devices, coiote):
    endpoint = name("sv")
    group = f"sv{secrets.token_hex(3)}"
    with server.admin() as http:
        assert http.post(f"{API}/groups", json={"id": group}).status_code == 201
        created = http.post(
            f"{API}/devices",
            json={"properties": {"endpointName": endpoint}, "directGroups": [group]},
        )
        assert created.status_code == 201, created.text
    device = devices(endpoint)
    setting = f"offset{secrets.token_hex(2)}"
    assert coiote.setting_values.upsert_one(SettingValue(setting, "+01:00")).status_code == 204
    assert (
        coiote.setting_values.upsert_one(SettingValue(setting, "+05:00", groupId=group)).status_code
        == 204
    )
    secret = f"secret{secrets.token_hex(2)}"
    coiote.setting_values.upsert_one(SettingValue(secret, "Europe/Hidden", isSecret=True))
    profile = {v.name: v for v in coiote.setting_values.get_device_profile(endpoint)}
    assert profile[setting].value == "+05:00" and profile[setting].groupId == group
    assert profile[secret].value == "******" and profile[secret].isSecret
    group_profile = {v.name: v.value for v in coiote.setting_values.get_group_profile(group)}
    assert group_profile[setting] == "+05:00"
    listed = coiote.setting_values.get_all(f"name eq '{secret}'")
    assert [(v.value, v.isSecret) for v in listed] == [("******", True)]

    with server.admin() as http:
        task_id = http.post(
            f"{API}/tasks/configure/{endpoint}",
            json={
                "taskDefinition": {
                    "name": "settings",
                    "operations": [
                        {"write": {"key": "Device.0.UTC Offset", "value": f"${{sv.{setting}}}"}},
                        {"write": {"key": "Device.0.Timezone", "value": f"${{sv.{secret}}}"}},
                    ],
                }
            },
        ).json()
        report = report_when_done(http, task_id, endpoint)
        assert report["status"] == "Success", report
        assert "Europe/Hidden" not in str(report)
    assert device.objects.read(LwM2mPath(3, 0, 14)).value == "+05:00"
    assert device.objects.read(LwM2mPath(3, 0, 15)).value == "Europe/Hidden"


def test_templates_are_listed_and_a_domain_adds_its_own(server, devices, coiote):
    endpoint = name("tp")
    devices(endpoint)
    with server.admin() as http:
        listed = http.get(f"{API}/tasksFromTemplates/templates").json()
        names = {t["name"] for t in listed}
        assert {
            "reboot",
            "factoryReset",
            "readResource",
            "writeResource",
            "Lwm2mFirmwareUpdate",
        } <= names
        own = http.put(
            f"{API}/tasksFromTemplates/templates/readTwo",
            json={
                "description": "two reads",
                "parameters": [{"name": "second", "default": "/3/0/1"}],
                "operations": [{"read": {"key": "/3/0/0"}}, {"read": {"key": "${second}"}}],
            },
        )
        assert own.status_code == 204, own.text
    invocation = TaskTemplateInvocation(
        "readTwo", TaskTemplateConfig("two", [{"name": "second", "value": "/3/0/2"}], True, {})
    )
    report = coiote.task_templates.run_on_device_and_await(endpoint, invocation, 10)
    assert report.status == "Success"
    assert [p["name"] for p in report.properties] == [
        "Device.0.Manufacturer",
        "Device.0.Serial Number",
    ]
    response = coiote.task_templates.run_on_device(
        endpoint,
        TaskTemplateInvocation(
            "readResource",
            TaskTemplateConfig("one", [{"name": "key", "value": "/3/0/0"}], True, {}),
        ),
        True,
    )
    assert response.status_code == 201, response.text


def test_bad_input_is_refused_and_nothing_is_created(server, devices, given_on):
    endpoint = name("bad")
    devices(endpoint)
    with server.admin() as http:
        before = http.get(f"{API}/tasks").json()

        def configure(operations: list[dict[str, Any]]) -> httpx.Response:
            return http.post(
                f"{API}/tasks/configure/{endpoint}",
                json={"taskDefinition": {"name": name("t"), "operations": operations}},
            )

        unknown_template = http.post(
            f"{API}/tasksFromTemplates/device/{endpoint}", json={"templateName": "nope"}
        )
        assert (unknown_template.status_code, unknown_template.json()["code"]) == (404, 4040)
        for operations, code in (
            ([{"read": {"key": "/3/0/999"}}], 4003),
            ([{"read": {"key": "Nothing.0.Here"}}], 4003),
            ([{"read": {"key": "/31999/0"}}], 4003),
            ([{"write": {"key": "Device.0.Manufacturer", "value": "x"}}], 4000),
            ([{"execute": {"key": "/3/0/0"}}], 4000),
            ([{"reboot": {}}], 4000),
            ([], 4000),
        ):
            response = configure(operations)
            assert (response.status_code, response.json()["code"]) == (400, code), response.text
        bad_callback = http.post(
            f"{API}/tasks/configure/{endpoint}",
            json={
                "taskDefinition": {
                    "name": "cb",
                    "operations": [{"read": {"key": "/3/0/0"}}],
                    "callback": {"url": "ftp://x", "secret": "s" * 20},
                }
            },
        )
        assert bad_callback.status_code == 400
        assert http.get(f"{API}/tasks").json() == before
        no_report = http.get(f"{API}/taskReports/d:nope:1/{endpoint}")
        assert (no_report.status_code, no_report.json()["code"]) == (404, 4040)
        # A polling interval beyond 30 s, or not a number, is refused, not waited for.
        for interval in ("31", "1e400", "NaN", "-1"):
            since = http.get(
                f"{API}/taskReports/findSince",
                params={"lastUpdateTime": "2026-01-01T00:00:00Z", "pollingInterval": interval},
                timeout=5,
            )
            assert (since.status_code, since.json()["code"]) == (400, 4000), since.text

    given = given_on(server)
    domain = given.domain()
    login = given.user(domain=domain, permissions=[
        "POST tasks/configure/{deviceId}", "GET tasks", "GET tasks/{id}",
        "GET taskReports/{taskId}/{deviceId}", "POST tasksFromTemplates/device/{id}",
        "GET settingValues/deviceProfile/{deviceId}",
    ])  # fmt: skip
    with server.client(given.token(login)) as theirs:
        response = theirs.post(
            f"{API}/tasks/configure/{endpoint}",
            json={"taskDefinition": {"name": "x", "operations": [{"read": {"key": "/3/0/0"}}]}},
        )
        assert response.status_code == 404
        response = theirs.post(
            f"{API}/tasksFromTemplates/device/{endpoint}", json={"templateName": "reboot"}
        )
        assert response.status_code == 404
        assert theirs.get(f"{API}/settingValues/deviceProfile/{endpoint}").status_code == 404
        assert theirs.get(f"{API}/tasks").json() == []
    with server.admin() as http:
        assert http.get(f"{API}/tasks").json() == before


def test_a_silent_device_times_out_after_its_attempts(server, devices):
    endpoint = name("silent")
    device = devices(endpoint)
    server.call(device.stop(deregister=False))  # still registered, no longer answering
    with server.admin() as http:
        task_id = http.post(
            f"{API}/tasks/configure/{endpoint}",
            json={
                "taskDefinition": {
                    "name": "read",
                    "operations": [{"read": {"key": "/3/0/0"}}],
                    "maxAttempts": 1,
                }
            },
        ).json()
        report = eventually(
            lambda: (
                (r := http.get(f"{API}/taskReports/{task_id}/{endpoint}")).status_code == 200
                and r.json()
            ),
            timeout=20,
        )
    assert report["status"] == "Timeout"
    assert report["summary"].startswith("no answer after 1 attempts")


def test_a_reused_group_id_inherits_nothing_from_its_former_owner(
    server, devices, coiote, given_on
):
    """Group ids are global: a domain that deletes its group and another that creates one
    with the same id later must not share group tasks or setting values."""
    given = given_on(server)
    former = given.token(given.user(domain=given.domain(), account_type="admin"))
    group, setting = f"reused{secrets.token_hex(3)}", f"former{secrets.token_hex(2)}"
    with server.client(former) as http:
        assert http.post(f"{API}/groups", json={"id": group}).status_code == 201
        put = http.put(
            f"{API}/settingValues", json={"name": setting, "value": "x", "groupId": group}
        )
        assert put.status_code == 204, put.text
        task_id = http.post(
            f"{API}/tasksFromTemplates/group/{group}", json={"templateName": "reboot"}
        ).json()
        assert http.delete(f"{API}/groups/{group}").status_code == 204
    endpoint = name("reuse")
    with server.admin() as http:  # the root domain takes the id over, with a device in it
        assert http.post(f"{API}/groups", json={"id": group}).status_code == 201
        created = http.post(
            f"{API}/devices",
            json={"properties": {"endpointName": endpoint}, "directGroups": [group]},
        )
        assert created.status_code == 201, created.text
    devices(endpoint)
    # The registration reads are done: the engine has served the device's first contact.
    eventually(lambda: coiote.devices.get_one(endpoint).manufacturer)
    with server.admin() as http:
        profile = http.get(f"{API}/settingValues/deviceProfile/{endpoint}").json()
        assert setting not in {value["name"] for value in profile}
        summary = http.get(f"{API}/taskReports/summary", params={"taskId": task_id}).json()
        assert summary["totalScheduled"] == 0, summary
