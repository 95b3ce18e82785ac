"""A webhook receiver that is down while devices send and while the server restarts gets
every selected event afterwards, in order, each with a valid signature (simulated devices
over real UDP, the real store, a real HTTP receiver)."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from sqlalchemy import func, select

from lwm2m_harness import Lwm2mTestServer, eventually, running_lwm2m_server
from meadowlark.simulator import SimulatedDevice
from meadowlark.store.event_handler_models import EventOutboxRow
from webhook_receiver import WebhookReceiver

HANDLERS = "/api/coiotedm/v3/deviceEvents/handler"
SENSOR = "/3303/0/5700"
DOMAIN = "/root/restarts/"
ENDPOINT = "restart-dev"


@pytest.fixture
def settings(tmp_path, database_url, settings_for):
    return settings_for(
        tmp_path / "data",
        database_url=database_url,
        event_handlers={"retry_initial": 0.05, "retry_max": 0.5, "poll_interval": 0.1},
    )


@pytest.fixture
def receiver() -> Iterator[WebhookReceiver]:
    started = WebhookReceiver().start()
    yield started
    started.stop()


def _send(server: Lwm2mTestServer, values: list[float]) -> None:
    async def run() -> None:
        device = SimulatedDevice(ENDPOINT, server.server_uri, lwm2m_version="1.1")
        await device.start()
        try:
            for value in values:
                device.set_temperature(value)
                assert (await device.send([SENSOR])).is_successful()
        finally:
            await device.stop()

    server.call(run())


async def _queued(server: Lwm2mTestServer) -> int:
    async with server.runtime.db.session() as session:
        count = await session.scalar(select(func.count()).select_from(EventOutboxRow))
    return int(count or 0)


def test_receiver_down_across_a_server_restart_gets_everything(settings, receiver):
    receiver.stop()  # down from the start; it comes back on the same port
    before, after = [1.0, 2.0, 3.0, 4.0, 5.0], [6.0, 7.0, 8.0]
    with running_lwm2m_server(settings) as first:
        with first.admin() as http:
            assert http.post("/api/coiotedm/v3/domains", json={"id": DOMAIN}).is_success
            device = {"properties": {"endpointName": ENDPOINT}, "domain": DOMAIN}
            assert http.post("/api/coiotedm/v3/devices", json=device).status_code == 201
            handler = {
                "name": "restart",
                "filter": {"type": "telemetry", "lwm2mUrls": [SENSOR]},
                "connectionConfig": {"uri": receiver.url},
            }
            created = http.post(f"{HANDLERS}/webhook", params={"domain": DOMAIN}, json=handler)
            assert created.status_code == 201, created.text
            secret = created.headers["x-meadowlark-signing-secret"]
        _send(first, before)
        eventually(lambda: first.call(_queued(first)) == len(before), timeout=20)

    with running_lwm2m_server(settings) as second:
        _send(second, after)
        eventually(lambda: second.call(_queued(second)) == len(before) + len(after), timeout=20)
        receiver.start()
        eventually(lambda: len(receiver.received) >= len(before) + len(after), timeout=30)
        eventually(lambda: second.call(_queued(second)) == 0, timeout=10)
    assert [body["value"] for body in receiver.bodies()] == before + after
    assert all(request.signed_by(secret) for request in receiver.received)
    assert {body["endpointName"] for body in receiver.bodies()} == {ENDPOINT}
