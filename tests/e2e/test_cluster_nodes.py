"""Two ``meadowlark serve`` nodes on loopback sharing one PostgreSQL database.

A device registered on node A is read, written and observed through node B's REST API
(B hands each request to A, whose socket reaches the device; A's notifications reach
B's SSE subscribers). Node A killed with SIGKILL loses no acknowledged registration:
its devices' next Updates, sent to node B, are answered 2.04 (not 4.04) and B serves
them from then on.
"""

from __future__ import annotations

import os
import signal

import httpx
import pytest
from node_processes import DeviceLoop, EventReader, Node, running, start_node

from meadowlark.lwm2m.path import LwM2mPath

TIMEZONE = LwM2mPath(3, 0, 15)
POSTGRES_URL_ENV = "MEADOWLARK_TEST_POSTGRES_URL"


@pytest.fixture(
    scope="module",
    params=[
        pytest.param(
            "postgres",
            marks=[
                pytest.mark.postgres,
                pytest.mark.skipif(
                    not os.environ.get(POSTGRES_URL_ENV), reason=f"{POSTGRES_URL_ENV} not set"
                ),
            ],
        )
    ],
)
def backend(request: pytest.FixtureRequest) -> str:
    """PostgreSQL only (the nodes share it); ``database_url`` makes a fresh database."""
    return request.param  # type: ignore[no-any-return]


@pytest.fixture(scope="module")
def nodes(database_url, tmp_path_factory):
    base = tmp_path_factory.mktemp("cluster")
    # Started together: the schema is migrated once, under an advisory lock.
    a = start_node("node-a", base / "a", database_url=database_url)
    b = start_node("node-b", base / "b", database_url=database_url)
    with running(a, b):
        yield a, b


@pytest.fixture(scope="module")
def devices():
    loop = DeviceLoop()
    yield loop
    loop.close()


def _client(node: Node) -> httpx.Client:
    return httpx.Client(
        base_url=f"{node.url}/api/lwm2m/v1",
        headers={"Authorization": f"Bearer {node.token()}"},
        timeout=30,
    )


def test_a_device_on_node_a_is_read_written_and_observed_through_node_b(nodes, devices):
    a, b = nodes
    device = devices.register("cluster-dev-1", a.coap)
    ep = device.endpoint_name
    events = EventReader(b.url, b.token(), ep=ep)
    try:
        with _client(b) as rest:
            described = rest.get(f"/clients/{ep}")
            assert described.status_code == 200, described.text
            assert ep in [client["endpoint"] for client in rest.get("/clients").json()]

            read = rest.get(f"/clients/{ep}/3/0/0")
            assert read.status_code == 200, read.text
            assert read.json()["content"]["value"] == "Meadowlark"

            written = rest.put(f"/clients/{ep}/3/0/15", json={"value": "Europe/Cluster"})
            assert written.status_code == 200, written.text
            assert rest.get(f"/clients/{ep}/3/0/15").json()["content"]["value"] == (
                "Europe/Cluster"
            )
            assert devices.call(device.objects.read, TIMEZONE).value == "Europe/Cluster"

            missing = rest.get(f"/clients/{ep}/3/0/99")  # the device's own 4.04 comes back
            assert missing.status_code == 404, missing.text

            observed = rest.post(f"/clients/{ep}/3303/0/5700/observe")
            assert observed.status_code == 200, observed.text
            assert observed.json()["content"]["kind"] == "singleResource"
            devices.call(device.set_temperature, 31.5)
            notification = events.next("NOTIFICATION", lambda data: data["val"]["value"] == 31.5)
            assert notification["ep"] == ep and notification["res"] == "/3303/0/5700"
    finally:
        events.close()


def test_a_killed_node_loses_no_registration_and_its_devices_move_at_their_update(nodes, devices):
    a, b = nodes
    fleet = [devices.register(f"cluster-kill-{n}", a.coap) for n in range(12)]
    assert all(device.location is not None for device in fleet)  # all acknowledged
    a.process.send_signal(signal.SIGKILL)
    a.process.wait(10)

    for device in fleet:
        location = device.location
        devices.update_via(device, b.coap)
        assert device.location == location  # 2.04 for the same registration
        assert device.stats.registrations == 1 and device.stats.updates == 1

    with _client(b) as rest:
        for device in fleet:
            ep = device.endpoint_name
            read = rest.get(f"/clients/{ep}/3/0/0")
            assert read.status_code == 200, read.text
        written = rest.put(f"/clients/{fleet[0].endpoint_name}/3/0/15", json={"value": "UTC"})
        assert written.status_code == 200, written.text
        assert devices.call(fleet[0].objects.read, TIMEZONE).value == "UTC"
