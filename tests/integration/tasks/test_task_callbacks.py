# ruff: noqa: F811 - the fixtures imported from lwm2m_harness are test parameters here
"""Report callbacks to a real local HTTP receiver (signed, retried while it is down, once
per device) and the firmware operation kind routed to an injected updater."""

from __future__ import annotations

import hashlib
import hmac
import json
import secrets
import socket
import threading
import time
from collections.abc import Callable, Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import httpx
import pytest

from lwm2m_harness import Lwm2mTestServer, devices, eventually, running_lwm2m_server  # noqa: F401
from meadowlark.core.firmware_contract import FirmwareOutcome

API = "/api/coiotedm/v3"
SECRET = "callback-secret-0123456789"


@pytest.fixture(scope="module")
def server(tmp_path_factory, database_url, settings_for) -> Iterator[Lwm2mTestServer]:
    settings = settings_for(
        tmp_path_factory.mktemp("callbacks"),
        database_url=database_url,
        lwm2m={"request_timeout": 3},
        tasks={
            "callback_retry_initial": 0.2,
            "callback_retry_max": 0.4,
            "callback_poll_interval": 0.1,
            "callback_timeout": 2,
        },
    )
    with running_lwm2m_server(settings) as running:
        yield running


class Receiver:
    """A local HTTP server that records the reports POSTed to it; ``stop``/``start`` take it
    down and bring it back on the same port."""

    def __init__(self) -> None:
        with socket.socket() as probe:
            probe.bind(("127.0.0.1", 0))
            self.port = probe.getsockname()[1]
        self.received: list[tuple[dict[str, str], bytes]] = []
        self._server: ThreadingHTTPServer | None = None
        self._thread: threading.Thread | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}/reports"

    def start(self) -> None:
        received = self.received

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:  # noqa: N802 - http.server's name
                body = self.rfile.read(int(self.headers["Content-Length"]))
                received.append((dict(self.headers.items()), body))
                self.send_response(204)
                self.end_headers()

            def log_message(self, *args: Any) -> None:
                pass

        self._server = ThreadingHTTPServer(("127.0.0.1", self.port), Handler)
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True)
        self._thread.start()

    def stop(self) -> None:
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
            self._server = None

    def reports(self) -> list[dict[str, Any]]:
        verified = []
        for headers, body in self.received:
            timestamp = headers["X-Meadowlark-Timestamp"]
            expected = hmac.new(SECRET.encode(), timestamp.encode() + b"." + body, hashlib.sha256)
            assert headers["X-Meadowlark-Signature"] == "sha256=" + expected.hexdigest()
            verified.append(json.loads(body))
        return verified


@pytest.fixture
def receiver() -> Iterator[Receiver]:
    receiver = Receiver()
    yield receiver
    receiver.stop()


def test_callback_gets_each_report_once_also_after_being_down(server, devices, receiver):
    group = f"cb{secrets.token_hex(3)}"
    endpoints = [f"cb-{secrets.token_hex(3)}" for _ in range(4)]
    with server.admin() as http:
        assert http.post(f"{API}/groups", json={"id": group}).status_code == 201
        for endpoint in endpoints:
            created = http.post(
                f"{API}/devices",
                json={"properties": {"endpointName": endpoint}, "directGroups": [group]},
            )
            assert created.status_code == 201, created.text
        for endpoint in endpoints[:2]:
            devices(endpoint)
        created = http.post(
            f"{API}/tasksFromTemplates/group/{group}",
            json={
                "templateName": "readResource",
                "config": {"parameters": [{"name": "key", "value": "/3/0/0"}]},
                "callback": {"name": "hook", "url": receiver.url, "secret": SECRET},
            },
        )
        assert created.status_code == 201, created.text
        task_id = created.json()
        assert task_id.startswith(f"g:{group}:")
        eventually(
            lambda: (
                http.get(f"{API}/taskReports/summary", params={"taskId": task_id}).json()[
                    "completed"
                ]
                == 2
            )
        )
        time.sleep(0.8)  # the receiver is down: deliveries fail and back off
        assert receiver.received == []
        receiver.start()
        eventually(lambda: len(receiver.received) == 2)
        for endpoint in endpoints[2:]:  # members that come later get the task too
            devices(endpoint)
        eventually(lambda: len(receiver.received) == 4)
        time.sleep(0.5)
        reports = receiver.reports()
        assert sorted(report["deviceId"] for report in reports) == sorted(endpoints)
        assert {report["taskId"] for report in reports} == {task_id}
        assert all(report["status"] == "Success" for report in reports)
        assert reports[0]["properties"] == [
            {"name": "Device.0.Manufacturer", "value": "Meadowlark"}
        ]
        summary = http.get(f"{API}/taskReports/summary", params={"taskId": task_id}).json()
        assert summary == {
            "totalScheduled": 4, "inProgress": 0, "completed": 4, "successes": 4, "failures": 0,
            "notCompleted": 0, "completionRate": 100, "successRate": 100, "failureRate": 0,
        }  # fmt: skip
        assert "secret" not in json.dumps(http.get(f"{API}/tasks/{task_id}").json()).lower()
        deleted = http.delete(f"{API}/tasks/callback/{task_id}/hook")
        assert deleted.status_code == 204
        assert http.delete(f"{API}/tasks/callback/{task_id}/hook").status_code == 404


class RecordingUpdater:
    """A test updater: records the calls and answers with a set outcome."""

    def __init__(self, outcome: FirmwareOutcome) -> None:
        self.outcome = outcome
        self.calls: list[dict[str, Any]] = []

    async def update(self, **request: Any) -> FirmwareOutcome:
        self.calls.append(request)
        return self.outcome

    async def check_image(self, *, domain_id: str, resource_id: str) -> None:
        """Every image exists for this updater."""


@pytest.fixture
def firmware_updater(server) -> Iterator[Callable[[Any], None]]:
    """``firmware_updater(u)`` hands the task engine ``u``; the real one comes back after."""
    engine = server.runtime.tasks.engine
    real = engine.firmware

    def use(updater: Any) -> None:
        engine.firmware = updater

    yield use
    engine.firmware = real


@pytest.fixture
def updater(firmware_updater) -> RecordingUpdater:
    recording = RecordingUpdater(FirmwareOutcome(True, 1, "1.0.0", "1.0.1", "updated"))
    firmware_updater(recording)
    return recording


def _firmware_requests(http: httpx.Client, endpoint: str, image: str) -> list[httpx.Response]:
    return [
        http.post(f"{API}/tasks/upgrade/{endpoint}/{image}"),
        http.post(
            f"{API}/tasksFromTemplates/device/{endpoint}",
            json={
                "templateName": "Lwm2mFirmwareUpdate",
                "config": {"parameters": [{"name": "resourceId", "value": image}]},
            },
        ),
    ]


def _tasks_of(http: httpx.Client, endpoint: str) -> list[Any]:
    return http.get(f"{API}/tasks", params={"searchCriteria": f"targetId eq '{endpoint}'"}).json()


def test_firmware_requests_for_an_unknown_image_are_refused(server, given_on):
    """An image of a sibling domain is refused exactly like one that does not exist."""
    given = given_on(server)
    ours, theirs = (
        given.token(given.user(domain=given.domain(), account_type="admin")) for _ in range(2)
    )
    endpoint = f"fw-{secrets.token_hex(3)}"
    with server.client(theirs) as http:
        created = http.post(
            f"{API}/resources",
            json={
                "name": "theirs",
                "category": "FIRMWARE",
                "location": {"InternalLocation": {"fileName": "theirs.bin"}},
            },
        )
        assert created.status_code == 201, created.text
        their_image = created.json()["id"]
    with server.client(ours) as http:
        device = http.post(f"{API}/devices", json={"properties": {"endpointName": endpoint}})
        assert device.status_code == 201, device.text
        device_id = device.json()["id"]
        for image in ("no-such-image", their_image):
            for response in _firmware_requests(http, device_id, image):
                assert (response.status_code, response.json()["code"]) == (404, 4041), image
        assert _tasks_of(http, device_id) == []
        own = http.post(
            f"{API}/resources",
            json={"name": "ours", "location": {"InternalLocation": {"fileName": "ours.bin"}}},
        )
        assert own.status_code == 201, own.text
        accepted = http.post(f"{API}/tasks/upgrade/{device_id}/{own.json()['id']}")
        assert accepted.status_code == 201, accepted.text  # the same request with a real image


def test_firmware_requests_without_an_updater_are_503(server, devices, firmware_updater):
    firmware_updater(None)
    endpoint = f"fw-{secrets.token_hex(3)}"
    devices(endpoint)
    with server.admin() as http:
        for response in _firmware_requests(http, endpoint, "image-1"):
            assert (response.status_code, response.json()["code"]) == (503, 5030)
        assert _tasks_of(http, endpoint) == []


def test_firmware_upgrade_route_and_template_call_the_updater(server, devices, updater):
    endpoint = f"fw-{secrets.token_hex(3)}"
    devices(endpoint)
    with server.admin() as http:
        bad = http.post(f"{API}/tasks/upgrade/{endpoint}/image-1", params={"timeout": "soon"})
        assert (bad.status_code, bad.json()["code"]) == (400, 4000)
        upgrade = http.post(
            f"{API}/tasks/upgrade/{endpoint}/image-1",
            # python-coiote's spelling of its enums; the plain one is accepted too.
            params={
                "transferMethod": "TransferMethod.Push",
                "transferProtocol": "TransferProtocol.COAP",
                "timeout": "2m",
                "upgradeStrategy": "UpgradeStrategy.WithoutObservations",
                "blocking": "True",
            },
        )
        assert upgrade.status_code == 201, upgrade.text
        task_id = upgrade.json()
        report = eventually(
            lambda: (
                (r := http.get(f"{API}/taskReports/{task_id}/{endpoint}")).status_code == 200
                and r.json()
            )
        )
        assert report["status"] == "Success"
        assert {p["name"]: p["value"] for p in report["properties"]} == {
            "oldFirmwareVersion": "1.0.0", "newFirmwareVersion": "1.0.1",
            "result": "1", "resultDetails": "updated",
        }  # fmt: skip
        assert updater.calls[-1] == {
            "domain_id": "/root/", "device_id": endpoint, "resource_id": "image-1",
            "transfer_method": "Push", "transfer_protocol": "COAP", "timeout_seconds": 120.0,
        }  # fmt: skip

        updater.outcome = FirmwareOutcome(False, 5, "1.0.1", None, "integrity check failure")
        awaited = http.post(
            f"{API}/tasksFromTemplates/device/{endpoint}",
            params={"waitTimeSeconds": "10s"},
            json={
                "templateName": "Lwm2mFirmwareUpdate",
                "config": {"parameters": [{"name": "resourceId", "value": "image-2"}]},
            },
        )
        assert awaited.status_code == 201, awaited.text
        report = awaited.json()
        assert report["status"] == "Failure" and "integrity check failure" in report["summary"]
        assert {"name": "result", "value": "5"} in report["properties"]
        assert updater.calls[-1]["transfer_method"] == "Pull"
        assert updater.calls[-1]["timeout_seconds"] == 1200.0
