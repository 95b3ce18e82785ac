# ruff: noqa: F811 - the fixtures imported from lwm2m_harness are test parameters here
"""Coiote ``deviceEvents/handler`` against a real server (SQLite and PostgreSQL): the
routes, their error codes, and delivery from simulated devices over UDP to a real local
HTTP receiver and (through aiokafka's producer seam) to Kafka."""

from __future__ import annotations

import secrets
from collections.abc import Iterator
from typing import Any

import httpx
import pytest

from lwm2m_harness import Lwm2mTestServer, devices, eventually, running_lwm2m_server  # noqa: F401
from meadowlark.core.event_handlers import connectors
from meadowlark.core.events import DeviceEvent
from webhook_receiver import WebhookReceiver

HANDLERS = "/api/coiotedm/v3/deviceEvents/handler"
SENSOR = "/3303/0/5700"
FAST_RETRIES = {
    "retry_initial": 0.05,
    "retry_max": 0.3,
    "poll_interval": 0.1,
    "give_up_after": 3600,
    "request_timeout": 3,
}


@pytest.fixture(scope="module")
def server(tmp_path_factory, database_url, settings_for) -> Iterator[Lwm2mTestServer]:
    settings = settings_for(
        tmp_path_factory.mktemp("data"), database_url=database_url, event_handlers=FAST_RETRIES
    )
    with running_lwm2m_server(settings) as running:
        yield running


@pytest.fixture
def receiver() -> Iterator[WebhookReceiver]:
    started = WebhookReceiver().start()
    yield started
    started.stop()


@pytest.fixture
def domain(server) -> str:
    """A fresh domain (at most 10 handlers each) with its own device id prefix."""
    tag = f"eh{secrets.token_hex(3)}"
    with server.admin() as http:
        assert http.post("/api/coiotedm/v3/domains", json={"id": f"/root/{tag}/"}).is_success
    return f"/root/{tag}/"


def _webhook(url: str, urls: list[str] | None = None, **config: Any) -> dict[str, Any]:
    return {
        "name": "sink",
        "enabled": True,
        "filter": {"type": "telemetry", "lwm2mUrls": urls or [SENSOR]},
        "connectionConfig": {"uri": url, **config},
    }


def _create(http: httpx.Client, kind: str, body: dict[str, Any], domain: str) -> tuple[str, str]:
    response = http.post(f"{HANDLERS}/{kind}", params={"domain": domain}, json=body)
    assert response.status_code == 201, response.text
    return response.json(), response.headers["x-meadowlark-signing-secret"]


def _device(server: Lwm2mTestServer, domain: str, devices) -> Any:
    endpoint = f"{domain.strip('/').split('/')[-1]}-dev{secrets.token_hex(2)}"
    with server.admin() as http:
        created = http.post(
            "/api/coiotedm/v3/devices",
            json={"properties": {"endpointName": endpoint}, "domain": domain},
        )
        assert created.status_code == 201, created.text
    return devices(endpoint, lwm2m_version="1.1")


def _send_values(server: Lwm2mTestServer, device: Any, values: list[float]) -> None:
    async def send() -> None:
        for value in values:
            device.set_temperature(value)
            assert (await device.send([SENSOR])).is_successful()

    server.call(send())


def _handler(server: Lwm2mTestServer, handler_id: str) -> dict[str, Any]:
    with server.admin() as http:
        response = http.get(f"{HANDLERS}/{handler_id}")
    assert response.status_code == 200, response.text
    return response.json()


# --- the routes ------------------------------------------------------------------------------


def test_create_read_update_delete_with_secrets_masked(server, domain, error_body):
    body = _webhook(
        "https://example.com/in",
        auth={"type": "basic", "user": "hook", "password": "pa55"},
        additionalHeaders={"X-Tenant": "t1"},
    )
    with server.admin() as http:
        handler_id, signing_secret = _create(http, "webhook", body, domain)
        assert len(handler_id) == 24 and int(handler_id, 16) >= 0
        assert len(signing_secret) >= 32
        shown = http.get(f"{HANDLERS}/{handler_id}").json()
        assert shown["type"] == "webhook" and shown["domain"] == domain
        assert shown["connectionConfig"]["auth"] == {
            "type": "basic",
            "user": "hook",
            "password": "******",
        }
        assert "pa55" not in http.get(HANDLERS, params={"domain": domain}).text
        assert signing_secret not in http.get(f"{HANDLERS}/{handler_id}").text

        changed = http.put(
            f"{HANDLERS}/webhook/{handler_id}",
            json={"name": "renamed", "connectionConfig": shown["connectionConfig"]},
        )
        assert changed.status_code == 200, changed.text
        assert changed.json()["name"] == "renamed" and changed.json()["filter"] == body["filter"]
        error_body(http.put(f"{HANDLERS}/kafka/{handler_id}", json={"name": "x"}), 400)

        listed = http.get(HANDLERS, params={"domain": domain}).json()
        assert [h["id"] for h in listed] == [handler_id]
        assert http.delete(f"{HANDLERS}/{handler_id}").status_code == 204
        error_body(http.get(f"{HANDLERS}/{handler_id}"), 404)


def test_bad_input_gets_the_reference_codes_and_creates_nothing(server, domain, error_body):
    with server.admin() as http:
        assert error_body(http.get(f"{HANDLERS}/not-an-id"), 400)["code"] == 4002
        assert error_body(http.delete(f"{HANDLERS}/{'z' * 24}"), 400)["code"] == 4002
        for uri in ("ftp://example.com/x", "http://169.254.169.254/", "nonsense"):
            bad = http.post(f"{HANDLERS}/webhook", params={"domain": domain}, json=_webhook(uri))
            assert error_body(bad, 400)["code"] == 4005
        kafka = {
            "name": "k",
            "filter": {"type": "lifecycle", "eventTypes": ["deviceCreated"]},
            "connectionConfig": {
                "type": "custom",
                "value": "bootstrap.servers=nohost",
                "topic": "t",
            },
        }
        bad = http.post(f"{HANDLERS}/kafka", params={"domain": domain}, json=kafka)
        assert error_body(bad, 400)["code"] == 4006
        bad_url = _webhook("http://127.0.0.1:9/", urls=["/3303/x"])
        assert error_body(http.post(f"{HANDLERS}/webhook", json=bad_url), 400)["code"] == 4003
        assert http.get(HANDLERS, params={"domain": domain}).json() == []

        for _ in range(10):
            _create(http, "webhook", _webhook("http://127.0.0.1:9/"), domain)
        eleventh = http.post(
            f"{HANDLERS}/webhook", params={"domain": domain}, json=_webhook("http://127.0.0.1:9/")
        )
        assert error_body(eleventh, 400)["code"] == 4004
        assert len(http.get(HANDLERS, params={"domain": domain}).json()) == 10
        for handler in http.get(HANDLERS, params={"domain": domain}).json():
            assert http.delete(f"{HANDLERS}/{handler['id']}").status_code == 204


# --- delivery --------------------------------------------------------------------------------


def test_webhook_gets_every_selected_value_in_order_signed(server, domain, devices, receiver):
    device = _device(server, domain, devices)
    body = _webhook(receiver.url, auth={"type": "token", "token": "tok-1"})
    with server.admin() as http:
        handler_id, signing_secret = _create(http, "webhook", body, domain)
    values = [20.0 + i / 4 for i in range(12)]
    _send_values(server, device, values)

    eventually(lambda: len(receiver.received) >= len(values), timeout=20)
    received = list(receiver.received)
    assert [r.json["value"] for r in received] == values
    for request in received:
        assert request.signed_by(signing_secret)
        assert request.headers["authorization"] == "Bearer tok-1"
        assert request.json["endpointName"] == device.endpoint_name
        assert request.json["url"] == SENSOR and request.json["domainId"] == domain
    assert not received[0].signed_by("another secret")
    with server.admin() as http:
        assert http.delete(f"{HANDLERS}/{handler_id}").status_code == 204


def test_a_receiver_that_was_down_gets_everything_when_it_is_back(
    server, domain, devices, receiver
):
    device = _device(server, domain, devices)
    template = {"contentType": "json", "value": '{"ep":"$endpointName","v":$value}'}
    with server.admin() as http:
        handler_id, _ = _create(
            http, "webhook", _webhook(receiver.url, bodyTemplate=template, method="put"), domain
        )
    receiver.stop()
    values = [float(i) for i in range(8)]
    _send_values(server, device, values)
    eventually(lambda: server.call(_queued(server, handler_id)) == len(values))
    receiver.start()  # the same port again
    eventually(lambda: len(receiver.received) >= len(values), timeout=20)
    assert [r.json for r in receiver.received] == [
        {"ep": device.endpoint_name, "v": v} for v in values
    ]
    assert {r.method for r in receiver.received} == {"PUT"}
    eventually(lambda: server.call(_queued(server, handler_id)) == 0)
    assert _handler(server, handler_id)["enabled"] is True


async def _queued(server: Lwm2mTestServer, handler_id: str) -> int:
    from sqlalchemy import func, select

    from meadowlark.store.event_handler_models import EventOutboxRow

    async with server.runtime.db.session() as session:
        count = await session.scalar(
            select(func.count())
            .select_from(EventOutboxRow)
            .where(EventOutboxRow.handler_id == handler_id)
        )
    return int(count or 0)


def test_five_failed_deliveries_disable_the_handler_and_a_passing_test_enables_it(
    server, domain, devices, receiver
):
    device = _device(server, domain, devices)
    receiver.status = 400  # refuses every event for good
    with server.admin() as http:
        handler_id, _ = _create(http, "webhook", _webhook(receiver.url), domain)
    _send_values(server, device, [float(i) for i in range(7)])
    eventually(lambda: _handler(server, handler_id)["enabled"] is False, timeout=20)
    with server.admin() as http:
        audit = http.get("/api/admin/audit", params={"event": "event_handler.disabled"}).json()
        assert handler_id in str(audit)
        failed = http.post(f"{HANDLERS}/test/existing/{handler_id}").json()
        assert failed["successful"] is False and "400" in failed["message"]
        receiver.status = 200
        passed = http.post(f"{HANDLERS}/test/existing/{handler_id}").json()
        assert passed == {"successful": True, "message": "delivered"}
    assert _handler(server, handler_id)["enabled"] is True
    _send_values(server, device, [99.0])
    eventually(lambda: any(r.json["value"] == 99.0 for r in receiver.received), timeout=20)


def test_testing_a_configuration_sends_a_sample_and_saves_nothing(server, domain, receiver):
    with server.admin() as http:
        result = http.post(
            f"{HANDLERS}/test/webhook", params={"domain": domain}, json=_webhook(receiver.url)
        )
        assert result.json() == {"successful": True, "message": "delivered"}
        unreachable = http.post(
            f"{HANDLERS}/test/webhook",
            params={"domain": domain},
            json=_webhook("http://127.0.0.1:9/"),
        )
        assert unreachable.json()["successful"] is False
        assert http.get(HANDLERS, params={"domain": domain}).json() == []
    assert receiver.received[0].json["url"] == SENSOR


def test_lifecycle_events_reach_their_handler(server, domain, receiver):
    lifecycle = {
        "name": "life",
        "filter": {
            "type": "lifecycle",
            "eventTypes": ["deviceCreated", "deviceDeleted", "alertRaised"],
        },
        "connectionConfig": {"uri": receiver.url},
    }
    with server.admin() as http:
        _create(http, "webhook", lifecycle, domain)
        endpoint = f"life-{secrets.token_hex(3)}"
        created = http.post(
            "/api/coiotedm/v3/devices",
            json={"properties": {"endpointName": endpoint}, "domain": domain},
        )
        assert created.status_code == 201
        assert http.delete(f"/api/coiotedm/v3/devices/{endpoint}").status_code == 204

    async def raise_alert() -> None:  # what the alert engine publishes on the bus
        from datetime import UTC, datetime

        event = DeviceEvent("alertRaised", endpoint, domain, datetime.now(UTC), reason="hot")  # type: ignore[arg-type]
        server.runtime.events._deliver(event, domain)

    server.call(raise_alert())
    eventually(lambda: len(receiver.received) >= 3, timeout=20)
    kinds = [(r.json["eventType"], r.json["endpointName"]) for r in receiver.received]
    assert kinds == [
        ("deviceCreated", endpoint),
        ("deviceDeleted", endpoint),
        ("alertRaised", endpoint),
    ]
    assert receiver.received[2].json["details"] == {"reason": "hot"}


class FakeProducer:
    """aiokafka's ``AIOKafkaProducer`` contract: ``start``, ``send_and_wait``, ``stop``."""

    records: list[dict[str, Any]] = []
    options: list[dict[str, Any]] = []
    fail_starts = 0

    def __init__(self, **options: Any) -> None:
        FakeProducer.options.append(options)

    async def start(self) -> None:
        from aiokafka.errors import KafkaConnectionError

        if FakeProducer.fail_starts:
            FakeProducer.fail_starts -= 1
            raise KafkaConnectionError("no broker")

    async def send_and_wait(self, topic, value=None, key=None, headers=None, **_: Any) -> None:
        FakeProducer.records.append(
            {"topic": topic, "value": value, "key": key, "headers": headers}
        )

    async def stop(self) -> None:
        """Nothing to flush."""


def test_kafka_handler_produces_signed_records_keyed_by_device(
    server, domain, devices, monkeypatch
):
    monkeypatch.setattr(connectors, "kafka_producer_factory", FakeProducer)
    FakeProducer.records.clear()
    FakeProducer.fail_starts = 2  # the broker is unreachable at first
    device = _device(server, domain, devices)
    kafka = {
        "name": "k",
        "filter": {"type": "telemetry", "lwm2mUrls": ["/3303/0"]},
        "connectionConfig": {
            "type": "custom",
            "value": "bootstrap.servers=127.0.0.1:9092\nacks=all",
            "topic": "lwm2m.telemetry",
            "headers": {"source": "meadowlark"},
        },
    }
    with server.admin() as http:
        _, signing_secret = _create(http, "kafka", kafka, domain)
    _send_values(server, device, [1.5, 2.5])
    eventually(lambda: len(FakeProducer.records) >= 2, timeout=20)
    assert FakeProducer.options[-1]["bootstrap_servers"] == ["127.0.0.1:9092"]
    for record, value in zip(FakeProducer.records, [1.5, 2.5], strict=True):
        assert (
            record["topic"] == "lwm2m.telemetry" and record["key"] == device.endpoint_name.encode()
        )
        headers = dict(record["headers"])
        assert headers["source"] == b"meadowlark"
        timestamp = headers["X-Meadowlark-Timestamp"]
        from meadowlark.core.tasks.callbacks import signature

        assert headers["X-Meadowlark-Signature"].decode() == signature(
            signing_secret, timestamp.decode(), record["value"]
        )
        assert httpx.Response(200, content=record["value"]).json()["value"] == value


def test_a_write_the_device_accepts_is_a_device_updated_via_write_event(
    server, domain, devices, receiver
):
    device = _device(server, domain, devices)
    lifecycle = {
        "name": "writes",
        "filter": {"type": "lifecycle", "eventTypes": ["deviceUpdatedViaWrite"]},
        "connectionConfig": {"uri": receiver.url},
    }
    with server.admin() as http:
        _create(http, "webhook", lifecycle, domain)
        written = http.put(
            f"/api/lwm2m/v1/clients/{device.endpoint_name}/3303/0/5750",
            json={"value": "written"},
        )
        assert written.is_success, written.text
    eventually(lambda: len(receiver.received) >= 1, timeout=20)
    event = receiver.received[0].json
    assert event["eventType"] == "deviceUpdatedViaWrite"
    assert event["endpointName"] == device.endpoint_name and event["domainId"] == domain
    assert event["details"] == {"urls": ["/3303/0/5750"]}


def test_only_a_devices_first_register_is_a_first_registration_event(server, domain, receiver):
    lifecycle = {
        "name": "firsts",
        "filter": {"type": "lifecycle", "eventTypes": ["deviceFirstRegistration"]},
        "connectionConfig": {"uri": receiver.url},
    }
    endpoint = f"first-{secrets.token_hex(3)}"
    with server.admin() as http:
        _create(http, "webhook", lifecycle, domain)
        created = http.post(
            "/api/coiotedm/v3/devices",
            json={"properties": {"endpointName": endpoint}, "domain": domain},
        )
        assert created.status_code == 201

    async def register_twice() -> None:
        from meadowlark.simulator import SimulatedDevice

        for _ in range(2):
            device = SimulatedDevice(endpoint, server.server_uri)
            await device.start()
            await device.stop()

    server.call(register_twice())
    eventually(lambda: len(receiver.received) >= 1, timeout=20)
    import time

    time.sleep(1.0)  # a second event would have come by now
    assert [(r.json["eventType"], r.json["endpointName"]) for r in receiver.received] == [
        ("deviceFirstRegistration", endpoint)
    ]
