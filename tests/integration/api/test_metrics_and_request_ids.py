# ruff: noqa: F811 - the fixtures imported from lwm2m_harness are test parameters here
"""``GET /metrics`` on the REST port (who may read it, what it shows and that it moves
with the devices), and the ``X-Request-Id`` of every request and error body."""

from __future__ import annotations

import json
import secrets
import socket
import uuid

import pytest
from prometheus_client.parser import text_string_to_metric_families

from lwm2m_harness import devices, eventually, server  # noqa: F401 - fixtures
from webhook_receiver import WebhookReceiver

SENSOR = "/3303/0/5700"
DELIVERED = "meadowlark_event_handler_deliveries_total"
FAMILIES = {
    "meadowlark_registrations",
    "meadowlark_coap_uplink_messages",
    "meadowlark_coap_downlink_messages",
    "meadowlark_coap_downlink_duration_seconds",
    "meadowlark_registered_devices",
    "meadowlark_awake_devices",
    "meadowlark_queued_requests",
    "meadowlark_batched_writes_pending",
    "meadowlark_http_request_duration_seconds",
    "meadowlark_db_pool_checked_out",
    "meadowlark_db_pool_size",
    "meadowlark_sse_subscribers",
    "meadowlark_event_handler_deliveries",
    "meadowlark_event_handler_delivery_lag_seconds",
}


def _scrape(server) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    with server.admin() as http:
        response = http.get("/metrics")
    assert response.status_code == 200, response.text
    assert response.headers["content-type"].startswith("text/plain")
    samples = {}
    for family in text_string_to_metric_families(response.text):
        for sample in family.samples:
            samples[(sample.name, tuple(sorted(sample.labels.items())))] = sample.value
    return samples


def _families(server) -> set[str]:
    with server.admin() as http:
        text = http.get("/metrics").text
    return {family.name for family in text_string_to_metric_families(text)}


def _value(samples, name: str, **labels: str) -> float:
    return samples.get((name, tuple(sorted(labels.items()))), 0.0)


def test_an_anonymous_caller_gets_401(server, error_body):
    with server.client() as http:
        error_body(http.get("/metrics"), 401)


def test_a_user_without_the_permission_gets_403(server, given_user, token_for, error_body):
    login = given_user(roles=["Monitor"])  # every view permission, but not node-wide ones
    with server.client(token_for(login)) as http:
        body = error_body(http.get("/metrics"), 403)
    assert "admin:GET /metrics" in body["message"]


def test_a_tenant_administrator_gets_403(server, given_domain, given_user, token_for, error_body):
    """The figures count every tenant's devices: a domain's own administrator, who holds
    every permission, is still refused."""
    domain = given_domain()
    login = given_user(domain=domain, account_type="admin", roles=["Admin"])
    with server.client(token_for(login)) as http:
        body = error_body(http.get("/metrics"), 403)
    assert "root domain" in body["message"]


def test_the_administrator_sees_every_family(server):
    assert _families(server) >= FAMILIES


def test_figures_move_when_a_device_registers_and_is_read(server, devices):
    before = _scrape(server)
    endpoint = f"metrics-{secrets.token_hex(4)}"
    devices(endpoint)
    with server.admin() as http:
        read = http.get(f"/api/lwm2m/v1/clients/{endpoint}/3/0/0")
    assert read.status_code == 200, read.text
    after = _scrape(server)

    def grew(name: str, by: float = 1, **labels: str) -> None:
        assert _value(after, name, **labels) - _value(before, name, **labels) >= by, (
            name,
            labels,
        )

    grew("meadowlark_registrations_total", result="created")
    grew("meadowlark_coap_uplink_messages_total", type="register", result="2.01")
    grew("meadowlark_registered_devices")
    grew("meadowlark_coap_downlink_messages_total", type="read", result="2.05")
    grew("meadowlark_coap_downlink_duration_seconds_count", type="read")
    grew(
        "meadowlark_http_request_duration_seconds_count",
        route="/api/lwm2m/v1/clients/{ep}/{path:path}",
        method="GET",
        status="2xx",
    )
    assert _value(after, "meadowlark_db_pool_size") >= 1


def test_deliveries_to_event_handlers_are_counted_with_their_lag(server, devices):
    domain = f"/root/mx{secrets.token_hex(3)}/"
    endpoint = f"metrics-eh-{secrets.token_hex(3)}"
    receiver = WebhookReceiver().start()
    try:
        with server.admin() as http:
            assert http.post("/api/coiotedm/v3/domains", json={"id": domain}).is_success
            created = http.post(
                "/api/coiotedm/v3/devices",
                json={"properties": {"endpointName": endpoint}, "domain": domain},
            )
            assert created.status_code == 201, created.text
            handler = http.post(
                "/api/coiotedm/v3/deviceEvents/handler/webhook",
                params={"domain": domain},
                json={
                    "name": "metrics",
                    "enabled": True,
                    "filter": {"type": "telemetry", "lwm2mUrls": [SENSOR]},
                    "connectionConfig": {"uri": receiver.url},
                },
            )
            assert handler.status_code == 201, handler.text
        before = _scrape(server)
        device = devices(endpoint, lwm2m_version="1.1")

        async def send() -> None:
            for value in (21.0, 22.0, 23.0):
                device.set_temperature(value)
                assert (await device.send([SENSOR])).is_successful()

        server.call(send())
        eventually(lambda: len(receiver.received) >= 3, timeout=20)

        def delivered() -> dict | None:
            samples = _scrape(server)
            grown = _value(samples, DELIVERED, kind="webhook", result="delivered") - _value(
                before, DELIVERED, kind="webhook", result="delivered"
            )
            return samples if grown >= 3 else None

        after = eventually(delivered, timeout=10)
    finally:
        receiver.stop()
    lag = "meadowlark_event_handler_delivery_lag_seconds_count"
    assert _value(after, lag, kind="webhook") - _value(before, lag, kind="webhook") >= 3


def test_paths_never_become_labels(server):
    """A path that matches no route counts as ``unmatched``, an unknown method as
    ``other``: request lines cannot grow the series without bound."""
    marker = f"nowhere-{secrets.token_hex(4)}"
    with server.client() as http:
        assert http.get(f"/{marker}").status_code == 404
        assert http.request("PROPFIND", "/health").status_code == 405
    with server.admin() as http:
        text = http.get("/metrics").text
    assert marker not in text and "PROPFIND" not in text
    assert 'route="unmatched"' in text and 'method="other"' in text


# --- request ids --------------------------------------------------------------------------


def test_a_sane_request_id_comes_back_in_the_header_and_the_error_body(server, error_body):
    request_id = f"client-{uuid.uuid4()}"
    with server.client(headers={"X-Request-Id": request_id}) as http:
        ok = http.get("/health")
        refused = http.get("/api/coiotedm/v3/devices")
    assert ok.headers["x-request-id"] == request_id
    assert error_body(refused, 401)["requestId"] == request_id


def _raw_get(url: str, path: str, request_id: bytes) -> tuple[int, dict[str, str], bytes]:
    """A GET with the header bytes as given (HTTP clients refuse to send some of them)."""
    host, port = url.removeprefix("http://").split(":")
    with socket.create_connection((host, int(port)), timeout=30) as sock:
        sock.sendall(
            b"GET " + path.encode() + b" HTTP/1.1\r\nHost: test\r\nConnection: close\r\n"
            b"X-Request-Id: " + request_id + b"\r\n\r\n"
        )
        answer = b""
        while chunk := sock.recv(65536):
            answer += chunk
    head, _, body = answer.partition(b"\r\n\r\n")
    status_line, *lines = head.decode("latin-1").split("\r\n")
    headers = {}
    for line in lines:
        name, _, value = line.partition(":")
        headers[name.strip().lower()] = value.strip()
    return int(status_line.split()[1]), headers, body


@pytest.mark.parametrize(
    "hostile",
    [
        b"",
        b" ",
        b"a b",
        b"x" * 129,
        b"id\x7f",
        "\u00fcn\u00efcode".encode(),
        b"<script>",
        b"a\tb",
        b"../../etc",
        b"\xff\xfe",
        b"a" * 10_000,
    ],
)
def test_an_insane_request_id_is_replaced(server, hostile):
    status, headers, body = _raw_get(server.url, "/api/coiotedm/v3/devices", hostile)
    if status == 400:  # refused by the HTTP parser itself, before the application
        return
    assert status == 401, (status, body)
    request_id = json.loads(body)["requestId"]
    assert request_id == headers["x-request-id"]
    assert request_id.encode() != hostile.strip()
    assert len(request_id) == 32 and int(request_id, 16) >= 0


def test_every_request_gets_its_own_id(server, error_body):
    with server.client() as http:
        first = http.get("/health").headers["x-request-id"]
        second = http.get("/health").headers["x-request-id"]
        invalid = http.post("/api/coiotedm/v3/domains", content=b"{")
    assert first != second
    assert error_body(invalid, 401)["requestId"] not in (first, second)


def test_an_error_before_routing_names_the_request_too(server, error_body):
    """The body-size and text guards answer before any route: the id is there too."""
    with server.client(headers={"X-Request-Id": "too-large-1"}) as http:
        response = http.post(
            "/api/auth/oauth_password",
            content=b"x" * (server.settings.max_body_bytes + 1),
            headers={"content-type": "application/x-www-form-urlencoded"},
        )
    assert error_body(response, 413)["requestId"] == "too-large-1"
