"""A group task reboots 100 simulated devices (real UDP, real store), a fifth of them in
queue mode and asleep when it is created; the server restarts in the middle. Nothing is
lost and the summary is exact."""

from __future__ import annotations

import asyncio
import secrets
import socket
import threading
from collections.abc import Coroutine, Iterator
from concurrent.futures import Future
from typing import Any, TypeVar

import pytest

from lwm2m_harness import eventually, running_lwm2m_server
from meadowlark.simulator import DeviceTiming, SimulatedDevice

API = "/api/coiotedm/v3"
DEVICES = 100
SLEEPERS = 20
AWAKE_WINDOW = 1.5
T = TypeVar("T")


class DeviceLoop:
    """Simulated devices on their own loop, so they outlive a server restart."""

    def __init__(self) -> None:
        self.loop = asyncio.new_event_loop()
        self.thread = threading.Thread(target=self.loop.run_forever, daemon=True)
        self.thread.start()

    def run(self, work: Coroutine[Any, Any, T], timeout: float = 60) -> T:
        future: Future[T] = asyncio.run_coroutine_threadsafe(work, self.loop)
        return future.result(timeout)

    def close(self) -> None:
        self.loop.call_soon_threadsafe(self.loop.stop)
        self.thread.join(timeout=10)
        self.loop.close()


@pytest.fixture
def device_loop() -> Iterator[DeviceLoop]:
    loop = DeviceLoop()
    yield loop
    loop.close()


def _free_udp_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def test_group_reboot_of_100_devices_survives_a_restart(
    tmp_path, database_url, settings_for, device_loop
):
    settings = settings_for(
        tmp_path,
        database_url=database_url,
        lwm2m={
            "awake_window": AWAKE_WINDOW,
            "request_timeout": 3,
            "max_registrations_per_address_per_minute": 100_000,
        },
    )
    coap_port = _free_udp_port()
    group = f"fleet{secrets.token_hex(3)}"
    names = [f"gt-{index:03d}-{secrets.token_hex(2)}" for index in range(DEVICES)]
    sleepers = set(names[:SLEEPERS])
    timing = DeviceTiming(ack_timeout=1.0, reboot_delay=0.1, queue_window=AWAKE_WINDOW * 2)
    simulated = {
        name: SimulatedDevice(
            name, f"coap://127.0.0.1:{coap_port}", queue_mode=name in sleepers, timing=timing
        )
        for name in names
    }

    async def start_all() -> None:
        await asyncio.gather(*(device.start() for device in simulated.values()))

    async def stop_all() -> None:
        await asyncio.gather(*(device.stop(deregister=False) for device in simulated.values()))

    try:
        with running_lwm2m_server(settings, coap_port) as server, server.admin() as http:
            assert http.post(f"{API}/groups", json={"id": group}).status_code == 201
            batch = http.post(
                f"{API}/devices/batch",
                json=[
                    {"properties": {"endpointName": name}, "directGroups": [group]}
                    for name in names
                ],
            )
            assert batch.status_code in (200, 201) and batch.json()["succeeded"] == DEVICES
            device_loop.run(start_all())
            eventually(
                lambda: all(
                    device.sleeping for name, device in simulated.items() if name in sleepers
                )
            )
            eventually(
                lambda: (
                    not any(
                        server.runtime.lwm2m.is_awake(registration)
                        for registration in server.call(server.runtime.lwm2m.all_registrations())
                        if registration.endpoint in sleepers
                    )
                )
            )
            created = http.post(
                f"{API}/tasksFromTemplates/group/{group}", json={"templateName": "reboot"}
            )
            assert created.status_code == 201, created.text
            task_id = created.json()

            def summary() -> dict[str, int]:
                return http.get(f"{API}/taskReports/summary", params={"taskId": task_id}).json()

            eventually(lambda: summary()["completed"] == DEVICES - SLEEPERS, timeout=30)
            assert summary()["totalScheduled"] == DEVICES
            assert summary()["notCompleted"] == SLEEPERS
            rebooted = [name for name in names if name not in sleepers]
            eventually(lambda: all(simulated[name].stats.registrations == 2 for name in rebooted))

        # The server is down; its successor on the same store and port takes over.
        with running_lwm2m_server(settings, coap_port) as server, server.admin() as http:
            before = http.get(f"{API}/taskReports/summary", params={"taskId": task_id}).json()
            assert before["completed"] == DEVICES - SLEEPERS and before["totalScheduled"] == DEVICES
            for name in sorted(sleepers):  # the sleepers wake up, one after the other
                device_loop.run(simulated[name].update())
            eventually(
                lambda: (
                    http.get(f"{API}/taskReports/summary", params={"taskId": task_id}).json()[
                        "completed"
                    ]
                    == DEVICES
                ),
                timeout=30,
            )
            final = http.get(f"{API}/taskReports/summary", params={"taskId": task_id}).json()
            assert final == {
                "totalScheduled": DEVICES, "inProgress": 0, "completed": DEVICES,
                "successes": DEVICES, "failures": 0, "notCompleted": 0,
                "completionRate": 100, "successRate": 100, "failureRate": 0,
            }  # fmt: skip
            reports = http.get(
                f"{API}/taskReports", params={"searchCriteria": f"taskId eq '{task_id}'"}
            ).json()
            assert sorted(report["deviceId"] for report in reports) == sorted(names)
            report = http.get(f"{API}/taskReports/{task_id}/{names[-1]}").json()
            assert report["status"] == "Success" and report["summary"] == "1 operation succeeded"
            # Each sleeper: first Register, then the one after its reboot; in between, a
            # server alone on SQLite answers its Update 4.04 (it registers again), while
            # on PostgreSQL (a cluster node) the new server takes the registration over
            # from the store. Nobody rebooted twice.
            registers = 3 if server.runtime.cluster is None else 2
            eventually(
                lambda: all(simulated[name].stats.registrations == registers for name in sleepers)
            )
            assert all(simulated[name].stats.registrations == 2 for name in rebooted)
    finally:
        device_loop.run(stop_all())
