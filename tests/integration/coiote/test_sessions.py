"""Coiote v3 sessions against simulated devices registered to the real CoAP server.

The module's server runs REST and CoAP on one event loop, as ``meadowlark serve``
does; simulated devices live on a loop of their own in another thread, so that the
blocking python-coiote calls of the test never stall them.
"""

from __future__ import annotations

import asyncio
import secrets
import threading
import time
from collections.abc import Callable, Coroutine, Iterator
from concurrent.futures import Future
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any, TypeVar

import httpx
import pytest
import uvicorn
from coiote.client import Coiote
from coiote.v3.model.devices import Device, DeviceUpdateRequest

from meadowlark.api.app import create_app
from meadowlark.coap.server import CoapServer
from meadowlark.logging import configure_logging
from meadowlark.runtime import Runtime
from meadowlark.simulator import DeviceTiming, RegistrationError, SimulatedDevice

API = "/api/coiotedm/v3"
AWAKE_WINDOW = 0.5
T = TypeVar("T")


@dataclass
class LwM2mNode:
    """REST on ``url`` and CoAP on ``coap_port`` of one runtime."""

    url: str
    coap_port: int
    runtime: Runtime
    admin_token: str

    def client(self, token: str | None = None) -> httpx.Client:
        return httpx.Client(
            base_url=self.url,
            timeout=30,
            headers={"Authorization": f"Bearer {token or self.admin_token}"},
        )

    @property
    def server_uri(self) -> str:
        return f"coap://127.0.0.1:{self.coap_port}"


class DeviceLoop:
    """An event loop in a thread for simulated devices; ``run`` waits for a coroutine."""

    def __init__(self) -> None:
        self.loop = asyncio.new_event_loop()
        self.thread = threading.Thread(target=self.loop.run_forever, daemon=True)
        self.thread.start()

    def run(self, coroutine: Coroutine[Any, Any, T], timeout: float = 30) -> T:
        future: Future[T] = asyncio.run_coroutine_threadsafe(coroutine, self.loop)
        return future.result(timeout)

    def close(self) -> None:
        self.loop.call_soon_threadsafe(self.loop.stop)
        self.thread.join(timeout=10)
        self.loop.close()


@contextmanager
def serving_with_coap(settings: Any) -> Iterator[LwM2mNode]:
    configure_logging("warning")
    runtime = Runtime.from_settings(settings)
    ready = threading.Event()
    failure: list[BaseException] = []
    details: dict[str, int] = {}
    stopping: list[Callable[[], None]] = []

    async def main() -> None:
        await runtime.prepare_store()
        coap = CoapServer(runtime.lwm2m, "127.0.0.1", 0)
        await runtime.start_lwm2m()
        runtime.lwm2m.attach(await coap.start())
        server = uvicorn.Server(
            uvicorn.Config(
                create_app(runtime, manage_runtime=False),
                host="127.0.0.1",
                port=0,
                log_level="warning",
                access_log=False,
            )
        )
        serving = asyncio.create_task(server.serve())
        while not server.started:  # noqa: ASYNC110 - uvicorn offers only this flag
            await asyncio.sleep(0.02)
        details["http"] = server.servers[0].sockets[0].getsockname()[1]
        details["coap"] = coap.port
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        stopping.append(lambda: loop.call_soon_threadsafe(stop.set))
        ready.set()
        await stop.wait()
        server.should_exit = True
        await serving
        await coap.stop()
        await runtime.close()

    def serve() -> None:
        try:
            asyncio.run(main())
        except BaseException as exc:  # reported to the test
            failure.append(exc)
            ready.set()

    thread = threading.Thread(target=serve, daemon=True)
    thread.start()
    assert ready.wait(60) and not failure, failure
    url = f"http://127.0.0.1:{details['http']}"
    token = httpx.post(
        f"{url}/api/auth/oauth_password",
        data={
            "grant_type": "password",
            "username": "admin",
            "password": settings.admin_password.get_secret_value(),
        },
    ).json()["access_token"]
    try:
        yield LwM2mNode(url, details["coap"], runtime, token)
    finally:
        stopping[0]()
        thread.join(timeout=30)
        assert not thread.is_alive() and not failure, failure


@pytest.fixture(scope="module")
def node(tmp_path_factory, database_url, settings_for) -> Iterator[LwM2mNode]:
    settings = settings_for(
        tmp_path_factory.mktemp("sessions"),
        database_url=database_url,
        lwm2m={"awake_window": AWAKE_WINDOW, "request_timeout": 5},
    )
    with serving_with_coap(settings) as running:
        yield running


@pytest.fixture(scope="module")
def devices_loop() -> Iterator[DeviceLoop]:
    loop = DeviceLoop()
    yield loop
    loop.close()


@pytest.fixture(scope="module")
def coiote(node):
    client = Coiote(node.url, auth=node.admin_token)
    yield client
    client.session.close()


@pytest.fixture
def simulated(node, devices_loop) -> Iterator[Callable[..., SimulatedDevice]]:
    made: list[SimulatedDevice] = []

    def make(endpoint: str, **options: Any) -> SimulatedDevice:
        device = SimulatedDevice(endpoint, node.server_uri, **options)
        made.append(device)
        return device

    yield make
    for device in made:
        devices_loop.run(device.stop())


def eventually(check: Callable[[], bool], timeout: float = 10) -> None:
    deadline = time.monotonic() + timeout
    while not check():
        assert time.monotonic() < deadline, "condition not met in time"
        time.sleep(0.05)


def endpoint() -> str:
    return f"sess-{secrets.token_hex(4)}"


def test_registered_device_gets_the_update_trigger(coiote, devices_loop, simulated):
    device = simulated(endpoint())
    devices_loop.run(device.start())
    response = coiote.sessions.start_for_device(device.endpoint_name)
    assert response.status_code == 200, response.text
    assert response.json() == {"result": "triggered"}
    eventually(lambda: device.stats.updates >= 1)
    eventually(lambda: coiote.devices.get_one(device.endpoint_name).lastContactTime is not None)


def test_sleeping_device_gets_it_at_its_next_contact(node, coiote, devices_loop, simulated):
    device = simulated(
        endpoint(), queue_mode=True, timing=DeviceTiming(queue_window=AWAKE_WINDOW / 2)
    )
    devices_loop.run(device.start())

    def asleep() -> bool:  # the server's own view, not a guess from the clock
        with node.client() as http:
            shown = http.get(f"/api/lwm2m/v1/clients/{device.endpoint_name}")
            return shown.status_code == 200 and shown.json()["sleeping"] is True

    time.sleep(AWAKE_WINDOW)
    eventually(asleep)
    response = coiote.sessions.start_for_device(device.endpoint_name)
    assert response.status_code == 202, response.text
    assert device.stats.updates == 0
    devices_loop.run(device.update())
    eventually(lambda: device.stats.updates >= 2)


def test_unregistered_device_is_404_unless_deregistered_is_allowed(
    coiote, devices_loop, simulated, error_body
):
    name = endpoint()
    coiote.devices.create_one(Device(id=name, managementEnabled=True))
    body = error_body(coiote.sessions.start_for_device(name), 404)
    assert body["code"] == 4041 and "not registered" in body["message"]
    error_body(coiote.sessions.start_for_device(f"unknown-{name}"), 404)

    allowed = coiote.sessions.start_for_device(name, allow_deregistered=True)
    assert allowed.status_code == 200 and allowed.json() == {"result": "queued"}
    assert coiote.sessions.start_for_device(name, allow_deregistered=True).status_code == 200
    device = simulated(name)
    devices_loop.run(device.start())
    eventually(lambda: device.stats.updates >= 1)
    time.sleep(0.3)
    assert device.stats.updates == 1  # the repeated wish was queued once


def test_task_ids_are_unknown(coiote, devices_loop, simulated, error_body):
    device = simulated(endpoint())
    devices_loop.run(device.start())
    body = error_body(coiote.sessions.start_for_device(device.endpoint_name, task_id="t:1"), 404)
    assert "task" in body["message"]
    assert device.stats.updates == 0


@pytest.mark.parametrize("flags", [{"blacklisted": True}, {"managementEnabled": False}])
def test_barred_devices_are_refused_at_registration(node, flags, devices_loop, simulated):
    name = endpoint()
    with node.client() as http:
        created = http.post(f"{API}/devices", json={"properties": {"endpointName": name}, **flags})
        assert created.status_code == 201, created.text
    device = simulated(name)
    with pytest.raises(RegistrationError) as refused:
        devices_loop.run(device.start())
    assert str(refused.value.code) == "4.03 Forbidden"


def test_barring_or_deleting_a_registered_device_drops_its_registration(
    node, coiote, devices_loop, simulated
):
    barred, deleted = simulated(endpoint()), simulated(endpoint())
    for device in (barred, deleted):
        devices_loop.run(device.start())
    assert (
        coiote.devices.update_one(
            barred.endpoint_name, DeviceUpdateRequest(blacklisted=True)
        ).status_code
        == 204
    )
    assert coiote.sessions.start_for_device(barred.endpoint_name).status_code == 404
    with pytest.raises(RegistrationError):
        devices_loop.run(barred.update())  # 4.04, then the new Register gets 4.03

    assert coiote.devices.delete_one(deleted.endpoint_name).status_code == 204
    assert devices_loop.run(node.runtime.lwm2m.get_registration(deleted.endpoint_name)) is None


def test_other_domains_cannot_start_sessions(node, devices_loop, simulated, error_body):
    device = simulated(endpoint())
    devices_loop.run(device.start())
    with node.client() as http:
        domain = f"/root/s{secrets.token_hex(3)}/"
        assert http.post(f"{API}/domains", json={"id": domain}).status_code == 201
        login = f"sess-{secrets.token_hex(3)}"
        assert (
            http.post(
                f"{API}/users",
                json={
                    "login": login,
                    "password": "Sessions-Pa55word!",
                    "domain": domain,
                    "permissions": [
                        "POST sessions/{deviceId}",
                        "POST sessions/{deviceId}/allow-deregistered",
                    ],
                },
            ).status_code
            == 201
        )
    token = httpx.post(
        f"{node.url}/api/auth/oauth_password",
        data={"grant_type": "password", "username": login, "password": "Sessions-Pa55word!"},
    ).json()["access_token"]
    with node.client(token) as theirs:
        error_body(theirs.post(f"{API}/sessions/{device.endpoint_name}"), 404)
        error_body(theirs.post(f"{API}/sessions/{device.endpoint_name}/allow-deregistered"), 404)
    assert device.stats.updates == 0
