# ruff: noqa: F811 - the fixtures imported from lwm2m_harness are test parameters here
"""A queue-mode device over CoAP over TCP whose connection closes sleeps at once: the
transport tells the server (``UplinkHandler.on_peer_closed``), so a request meanwhile is
queued (202) instead of failing on the closed connection (502) for the rest of the awake
window, and it is delivered when the device connects and registers again. Real sockets
on loopback; SQLite and PostgreSQL."""

from __future__ import annotations

import secrets
import time
from collections.abc import Callable, Iterator
from typing import Any

import pytest

from lwm2m_harness import Lwm2mTestServer, eventually, running_lwm2m_server
from meadowlark.lwm2m.path import LwM2mPath
from meadowlark.simulator import DeviceTiming, SimulatedDevice

LWM2M = "/api/lwm2m/v1/clients"
AWAKE_WINDOW = 60.0
"""Far longer than the test: without the hook, the device would stay awake throughout."""


@pytest.fixture(scope="module")
def server(
    tmp_path_factory: pytest.TempPathFactory,
    database_url: str | None,
    settings_for: Callable[..., Any],
) -> Iterator[Lwm2mTestServer]:
    settings = settings_for(
        tmp_path_factory.mktemp("data"),
        database_url=database_url,
        lwm2m={"request_timeout": 3.0, "awake_window": AWAKE_WINDOW},
    )
    with running_lwm2m_server(settings, streams=True) as running:
        yield running


async def _drop_connection(device: SimulatedDevice) -> None:
    endpoint = device._endpoint
    assert endpoint is not None and endpoint._transport is not None  # type: ignore[union-attr]
    endpoint._transport.abort()  # type: ignore[union-attr]


async def _read_local(device: SimulatedDevice, path: str) -> object:
    return device.objects.read(LwM2mPath.parse(path)).value  # type: ignore[attr-defined]


def test_a_closed_connection_puts_a_queue_mode_device_to_sleep_and_queues_requests(server):
    endpoint = f"tcp-closed-{secrets.token_hex(4)}"
    device = SimulatedDevice(
        endpoint,
        f"coap+tcp://127.0.0.1:{server.tcp_port}",
        binding="T",
        queue_mode=True,
        timing=DeviceTiming(queue_window=AWAKE_WINDOW),
    )
    server.call(device.start())
    try:
        with server.admin() as http:
            assert http.get(f"{LWM2M}/{endpoint}").json()["sleeping"] is False
            server.call(_drop_connection(device))
            deadline = time.monotonic() + 10
            while not http.get(f"{LWM2M}/{endpoint}").json()["sleeping"]:
                assert time.monotonic() < deadline, "still awake after its connection closed"
                time.sleep(0.05)
            written = http.put(f"{LWM2M}/{endpoint}/1/0/1", json={"id": 1, "value": 4321})
            assert written.status_code == 202, written.text
            assert written.json()["delayed"] is True
        server.call(device.start())  # connects and registers again: the queue goes out
        eventually(lambda: server.call(_read_local(device, "/1/0/1")) == 4321)
    finally:
        server.call(device.stop())
