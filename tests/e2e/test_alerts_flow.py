# ruff: noqa: F811 - the fixtures imported from lwm2m_harness are test parameters here
"""Alerts end to end on simulated devices over real UDP and the real store: a threshold
alert raised and cleared with hysteresis by notified values, a no-contact alert fired when
a device goes silent and cleared when it comes back, a failed task and a failed firmware
update raising alerts, an acknowledgement over REST, and every transition on the SSE
feed."""

from __future__ import annotations

import json
import secrets
import socket
import threading
import time
from collections.abc import Callable, Iterator
from datetime import UTC, datetime, timedelta
from typing import Any
from urllib.parse import quote

import httpx
import pytest

from lwm2m_harness import Lwm2mTestServer, eventually, running_lwm2m_server  # noqa: F401
from meadowlark.lwm2m.path import LwM2mPath
from meadowlark.simulator import DeviceTiming, SimulatedDevice
from meadowlark.simulator.firmware import FirmwareBehaviour, build_image

COIOTE = "/api/coiotedm/v3"
LWM2M = "/api/lwm2m/v1"
SENSOR = "/3303/0/5700"
SENSOR_PATH = LwM2mPath(3303, 0, 5700)
ALERT_EVENTS = "alertRaised,alertAcknowledged,alertCleared"


@pytest.fixture(scope="module")
def server(
    tmp_path_factory: pytest.TempPathFactory,
    database_url: str | None,
    settings_for: Callable[..., Any],
) -> Iterator[Lwm2mTestServer]:
    settings = settings_for(
        tmp_path_factory.mktemp("alerts"),
        database_url=database_url,
        # The lease's own sweep runs once, at start: the no-contact test sweeps with its
        # clock ahead, which a sweep on the real clock would undo.
        alerts={"sweep_interval": 3600},
        cluster={"lease_ttl": 3.0},
    )
    with running_lwm2m_server(settings) as running:
        yield running


@pytest.fixture(scope="module")
def tenant(server: Lwm2mTestServer, given: Any) -> dict[str, str]:
    tag = f"ae{secrets.token_hex(4)}"
    domain = given.domain(f"/root/{tag}/")
    admin = given.user(f"{tag}-admin", domain=domain, roles=["Admin"], account_type="admin")
    return {"tag": tag, "domain": domain, "token": given.token(admin)}


class Feed:
    """The Coiote SSE feed's alert events, read in a background thread."""

    def __init__(self, server: Lwm2mTestServer, token: str) -> None:
        self.events: list[tuple[str, dict[str, Any]]] = []
        self._client = server.client(token)
        request = self._client.build_request(
            "GET", f"{COIOTE}/events", params={"eventTypes": ALERT_EVENTS}
        )
        self._response = self._client.send(request, stream=True)
        assert self._response.status_code == 200
        self._connected = threading.Event()
        self._thread = threading.Thread(target=self._read, daemon=True)
        self._thread.start()
        assert self._connected.wait(10)

    def _read(self) -> None:
        name = ""
        try:
            for line in self._response.iter_lines():
                if line.startswith(":"):
                    self._connected.set()
                elif line.startswith("event: "):
                    name = line.removeprefix("event: ")
                elif line.startswith("data: "):
                    self.events.append((name, json.loads(line.removeprefix("data: "))))
        except httpx.HTTPError:
            pass

    def of(self, rule_id: str) -> list[tuple[str, str]]:
        return [(name, data["alertId"]) for name, data in self.events if data["ruleId"] == rule_id]

    def close(self) -> None:
        stream = self._response.extensions["network_stream"]
        stream.get_extra_info("socket").shutdown(socket.SHUT_RDWR)
        self._response.close()
        self._client.close()
        self._thread.join(10)


@pytest.fixture(scope="module")
def feed(server: Lwm2mTestServer, tenant: dict[str, str]) -> Iterator[Feed]:
    reader = Feed(server, tenant["token"])
    yield reader
    reader.close()


def _device(server: Lwm2mTestServer, endpoint: str) -> SimulatedDevice:
    async def start() -> SimulatedDevice:
        device = SimulatedDevice(endpoint, server.server_uri)
        await device.start()
        return device

    return server.call(start())


def _new_device(server: Lwm2mTestServer, http: httpx.Client, endpoint: str) -> SimulatedDevice:
    created = http.post(f"{COIOTE}/devices", json={"properties": {"endpointName": endpoint}})
    assert created.status_code == 201, created.text
    return _device(server, endpoint)


def _rule(http: httpx.Client, body: dict[str, Any]) -> dict[str, Any]:
    created = http.post(f"{COIOTE}/alerts/rules", json=body)
    assert created.status_code == 201, created.text
    return created.json()  # type: ignore[no-any-return]


def _alerts(http: httpx.Client, rule: dict[str, Any]) -> list[dict[str, Any]]:
    answer = http.get(f"{COIOTE}/alerts", params={"limit": "1000"})
    assert answer.status_code == 200, answer.text
    return [alert for alert in answer.json()["alerts"] if alert["ruleId"] == rule["id"]]


def test_threshold_alert_follows_notified_values_with_hysteresis(server, tenant, feed):
    endpoint = f"{tenant['tag']}-thermo"
    with server.client(tenant["token"]) as http:
        rule = _rule(
            http,
            {
                "name": "too hot",
                "type": "threshold",
                "resourceUrl": SENSOR,
                "above": 30,
                "hysteresis": 2,
                "severity": "critical",
            },
        )
        device = _new_device(server, http, endpoint)
        try:
            attributes = http.put(
                f"{LWM2M}/clients/{endpoint}{SENSOR}/attributes", params={"pmin": "0"}
            )
            assert attributes.is_success, attributes.text
            assert http.post(f"{LWM2M}/clients/{endpoint}{SENSOR}/observe").is_success

            def notify(value: float) -> None:
                async def change() -> None:
                    device.set_temperature(value)

                server.call(change())
                eventually(lambda: _notified(server, endpoint, value))
                server.call(server.runtime.alerts.idle())

            notify(31.0)
            (raised,) = eventually(lambda: _alerts(http, rule))
            assert raised["state"] == "raised" and raised["value"] == 31.0
            notify(29.0)  # under 30, not by 2
            notify(33.0)
            assert [a["state"] for a in _alerts(http, rule)] == ["raised"]
            acknowledged = http.post(f"{COIOTE}/alerts/{raised['id']}/acknowledge")
            assert acknowledged.status_code == 200, acknowledged.text
            notify(27.9)
            eventually(lambda: _alerts(http, rule)[0]["state"] == "cleared")
            notify(30.5)
            states = eventually(
                lambda: [a["state"] for a in _alerts(http, rule)] == ["raised", "cleared"]
            )
            assert states
        finally:
            server.call(device.stop())
    eventually(lambda: len(feed.of(rule["id"])) == 4)
    names = [name for name, _ in feed.of(rule["id"])]
    assert names == ["alertRaised", "alertAcknowledged", "alertCleared", "alertRaised"]
    first = feed.events[[d["ruleId"] for _, d in feed.events].index(rule["id"])][1]
    assert first["endpointName"] == endpoint and first["severity"] == "critical"
    assert first["value"] == 31.0 and first["domain"] == tenant["domain"]


def _notified(server: Lwm2mTestServer, endpoint: str, value: float) -> bool:
    """The server has the value (the last notification reached the cache)."""
    cached = server.call(server.runtime.lwm2m.values.get(endpoint, SENSOR_PATH))
    found = cached.get(SENSOR_PATH)
    return found is not None and found.value == value


def test_no_contact_alert_fires_when_a_device_goes_silent_and_clears_when_it_is_back(
    server, tenant, feed
):
    endpoint = f"{tenant['tag']}-quiet"
    group = f"{tenant['tag']}-quiet"
    with server.client(tenant["token"]) as http:
        assert http.post(f"{COIOTE}/groups", json={"id": group}).status_code == 201
        device = _new_device(server, http, endpoint)
        assert http.put(f"{COIOTE}/devices/{endpoint}", json={"addGroups": [group]}).is_success
        rule = _rule(
            http, {"name": "silent", "type": "noContact", "noContactMinutes": 1, "groupId": group}
        )
        # The sweep runs on its lease; its minute is simulated by sweeping 57 s ahead.
        eventually(lambda: server.runtime.alert_sweep.held)

        def sweep_ahead() -> None:
            later = datetime.now(UTC) + timedelta(seconds=57)
            server.call(server.runtime.alerts.sweep(later))

        sweep_ahead()
        assert _alerts(http, rule) == []  # it talked just now
        server.call(device.stop(deregister=False))  # silent: no De-register, no Update
        time.sleep(3.5)
        sweep_ahead()
        (raised,) = _alerts(http, rule)
        assert raised["state"] == "raised" and "no contact for 1 minutes" in raised["message"]
        sweep_ahead()
        assert len(_alerts(http, rule)) == 1  # one open alert per rule and device

        back = _device(server, endpoint)
        try:
            sweep_ahead()
            (cleared,) = _alerts(http, rule)
            assert cleared["id"] == raised["id"] and cleared["state"] == "cleared"
        finally:
            server.call(back.stop())
    eventually(lambda: [n for n, _ in feed.of(rule["id"])] == ["alertRaised", "alertCleared"])


def test_failed_task_raises_an_alert_and_a_successful_one_clears_it(server, tenant, feed):
    endpoint = f"{tenant['tag']}-tasks"
    with server.client(tenant["token"]) as http:
        rule = _rule(http, {"name": "task failed", "type": "taskFailed"})
        device = _new_device(server, http, endpoint)
        try:

            def run(key: str) -> None:
                task = http.post(
                    f"{COIOTE}/tasks/configure/{endpoint}",
                    json={
                        "taskDefinition": {
                            "name": f"read {key}",
                            "operations": [{"read": {"key": key}}],
                        }
                    },
                )
                assert task.status_code == 201, task.text
                report = f"{COIOTE}/taskReports/{quote(task.json(), safe='')}/{endpoint}"
                eventually(lambda: http.get(report).status_code == 200, timeout=20)
                server.call(server.runtime.alerts.idle())

            run("/3303/7/5700")  # no such instance: the device refuses, the run fails
            (raised,) = eventually(lambda: _alerts(http, rule))
            assert raised["state"] == "raised" and raised["value"] == "Failure"
            assert "task" in raised["message"]
            run("/3/0/0")
            eventually(lambda: _alerts(http, rule)[0]["state"] == "cleared")
        finally:
            server.call(device.stop())
    eventually(lambda: [n for n, _ in feed.of(rule["id"])] == ["alertRaised", "alertCleared"])


def test_failed_firmware_update_raises_an_alert(server, tenant, feed):
    endpoint = f"{tenant['tag']}-fota"
    with server.client(tenant["token"]) as http:
        rule = _rule(http, {"name": "update failed", "type": "taskFailed", "severity": "info"})
        resource = http.post(
            f"{COIOTE}/resources",
            json={
                "name": "doomed image",
                "location": {"InternalLocation": {"fileName": "doomed.bin"}},
                "category": "FIRMWARE",
            },
        )
        assert resource.status_code == 201, resource.text
        resource_id = resource.json()["id"]
        uploaded = http.put(
            f"{COIOTE}/resources/{resource_id}/data",
            content=build_image("6.6.6", b"doomed"),
            headers={"Content-Type": "application/octet-stream"},
        )
        assert uploaded.status_code == 200, uploaded.text
        assert http.post(
            f"{COIOTE}/devices", json={"properties": {"endpointName": endpoint}}
        ).is_success

        async def start() -> SimulatedDevice:
            device = SimulatedDevice(
                endpoint,
                server.server_uri,
                firmware=FirmwareBehaviour(download_failure=5),
                timing=DeviceTiming(ack_timeout=1.0, firmware_delay=0.1, reboot_delay=0.2),
            )
            await device.start()
            return device

        device = server.call(start())
        try:
            task = http.post(
                f"{COIOTE}/tasks/upgrade/{endpoint}/{resource_id}",
                params={
                    "transferMethod": "Pull",
                    "transferProtocol": "HTTP",
                    "timeout": "1m",
                    "executeImmediately": "true",
                },
            )
            assert task.status_code in (200, 201), task.text
            (raised,) = eventually(lambda: _alerts(http, rule), timeout=30)
            assert raised["message"].startswith("firmware update ")
            assert "Failure" in raised["message"] and raised["severity"] == "info"
        finally:
            server.call(device.stop())
    eventually(lambda: [n for n, _ in feed.of(rule["id"])] == ["alertRaised"])
