# ruff: noqa: F811 - the fixtures imported from lwm2m_harness are test parameters here
"""The Coiote device event feed: Server-Sent Events of registrations and telemetry."""

from __future__ import annotations

import json
import secrets
import socket
import threading
from typing import Any

import httpx
from coiote.v3.model.observations import ObservationAttribute, SetObservationRequest

from lwm2m_harness import coiote, devices, eventually, server  # noqa: F401 - fixtures
from meadowlark.lwm2m.path import LwM2mPath

FEED = "/api/coiotedm/v3/events"
SENSOR_NAME = "Temperature.0.Sensor Value"


class FeedReader:
    """Reads one SSE stream in a background thread, collecting the decoded events."""

    def __init__(self, url: str, token: str, params: dict[str, str] | None = None) -> None:
        self.events: list[dict[str, Any]] = []
        self._client = httpx.Client(
            base_url=url, headers={"Authorization": f"Bearer {token}"}, timeout=60
        )
        self._response = self._client.send(
            self._client.build_request("GET", FEED, params=params), stream=True
        )
        assert self._response.status_code == 200, self._response.read()
        assert self._response.headers["content-type"].startswith("text/event-stream")
        self._thread = threading.Thread(target=self._read, daemon=True)
        self._thread.start()

    def _read(self) -> None:
        try:
            for line in self._response.iter_lines():
                if line.startswith("data: "):
                    self.events.append(json.loads(line.removeprefix("data: ")))
        except httpx.HTTPError:  # the test closed the stream
            pass

    def of(self, endpoint: str, event_type: str) -> list[dict[str, Any]]:
        return [
            e for e in self.events if e["endpointName"] == endpoint and e["eventType"] == event_type
        ]

    def close(self) -> None:
        # Shut the socket down so the reader thread's blocking read returns at once.
        stream = self._response.extensions["network_stream"]
        stream.get_extra_info("socket").shutdown(socket.SHUT_RDWR)
        self._response.close()
        self._client.close()
        self._thread.join(10)


def _set_temperature(server, device, value: float) -> None:
    async def change() -> None:
        device.set_temperature(value)

    server.call(change())


def test_feed_streams_lifecycle_and_telemetry_of_own_devices(
    server, coiote, devices, given_domain, given_user, token_for
):
    other_domain = given_domain()
    outsider = given_user(domain=other_domain, roles=["Admin"], account_type="admin")
    admin_feed = FeedReader(server.url, server.admin_token)
    outsider_feed = FeedReader(server.url, token_for(outsider))
    telemetry_only = FeedReader(server.url, server.admin_token, {"eventTypes": "notification"})
    try:
        endpoint = f"feed-{secrets.token_hex(4)}"
        device = devices(endpoint)
        registered = eventually(lambda: admin_feed.of(endpoint, "deviceRegistered"))[0]
        assert registered["type"] == "lifecycle"
        assert registered["domain"] == "/root/"
        assert registered["lwm2mVersion"] == "1.1"
        assert isinstance(registered["timestamp"], int)

        request = SetObservationRequest(
            attributes=[ObservationAttribute("pmin", "0")], createEnsureObserveIfNotExists=True
        )
        response = coiote.observations.set_observation_on_device(endpoint, SENSOR_NAME, request)
        assert response.status_code == 201, response.text
        eventually(
            lambda: any(
                key == (LwM2mPath(3303, 0, 5700),)
                for key in server.runtime.lwm2m.observed_paths(endpoint)
            )
        )
        _set_temperature(server, device, 31.25)

        def notified() -> dict[str, Any] | None:
            values = [e for e in admin_feed.of(endpoint, "notification") if e["value"] == "31.25"]
            return values[0] if values else None

        entry = eventually(notified)
        assert entry == {
            "type": "telemetry",
            "eventType": "notification",
            "endpointName": endpoint,
            "domain": "/root/",
            "timestamp": entry["timestamp"],
            "url": "/3303/0/5700",
            "path": SENSOR_NAME,
            "value": "31.25",
            "valueType": "Float",
        }
        eventually(lambda: telemetry_only.of(endpoint, "notification"))
        assert {e["eventType"] for e in telemetry_only.events} == {"notification"}
        assert outsider_feed.of(endpoint, "deviceRegistered") == []
        assert outsider_feed.of(endpoint, "notification") == []
    finally:
        for feed in (admin_feed, outsider_feed, telemetry_only):
            feed.close()


def test_feed_refuses_bad_requests(server, error_body):
    with server.client() as anonymous:
        error_body(anonymous.get(FEED), 401)
    with server.admin() as http:
        error_body(http.get(FEED, params={"eventTypes": "explosions"}), 400)
