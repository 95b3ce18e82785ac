"""``meadowlark serve --workers 2`` on the embedded SQLite store: two worker processes on
one REST port and one CoAP port (SO_REUSEPORT). The kernel spreads the devices over the
workers by source address; each device is readable through whichever worker answers the
HTTP request. A killed worker is restarted; SIGTERM stops them all."""

from __future__ import annotations

import os
import signal
import time

import httpx
import pytest
from node_processes import DeviceLoop, running, start_node, wait_for_coap_workers, worker_pids


@pytest.fixture(scope="module")
def served(tmp_path_factory):
    node = start_node("workers", tmp_path_factory.mktemp("workers"), workers=2)
    with running(node):
        yield node


def test_devices_on_either_worker_are_readable_through_any_answer(served):
    assert len(worker_pids(served)) == 2
    wait_for_coap_workers(served, 2)
    devices = DeviceLoop()
    try:
        # Eight source addresses: with two workers, some land on each (1 - 2**-7).
        fleet = [devices.register(f"workers-dev-{n}", served.coap) for n in range(8)]
        token = served.token()
        headers = {"Authorization": f"Bearer {token}"}
        listed = httpx.get(f"{served.url}/api/lwm2m/v1/clients", headers=headers, timeout=30)
        assert {client["endpoint"] for client in listed.json()} >= {
            device.endpoint_name for device in fleet
        }
        for device in fleet:
            for _ in range(2):  # a new connection each time: either worker may accept it
                read = httpx.get(
                    f"{served.url}/api/lwm2m/v1/clients/{device.endpoint_name}/3/0/0",
                    headers=headers,
                    timeout=30,
                )
                assert read.status_code == 200, read.text
                assert read.json()["content"]["value"] == "Meadowlark"
    finally:
        devices.close()


def test_a_killed_worker_is_replaced_and_sigterm_stops_all(served):
    before = worker_pids(served)
    os.kill(before[0], signal.SIGKILL)
    deadline = time.monotonic() + 30
    while True:
        now = worker_pids(served)
        if len(now) == 2 and before[0] not in now:
            break
        assert time.monotonic() < deadline, served.output()
        time.sleep(0.2)
    served.wait_ready()
    assert served.stop() == 0
    for pid in now:
        assert not os.path.exists(f"/proc/{pid}") or _zombie(pid)
    assert "Traceback" not in served.output()


def _zombie(pid: int) -> bool:
    with open(f"/proc/{pid}/stat") as stat:
        return stat.read().split()[2] == "Z"


def test_workers_die_with_a_supervisor_killed_by_sigkill(tmp_path):
    node = start_node("killed", tmp_path / "killed", workers=2)
    node.wait_ready()
    workers = worker_pids(node)
    assert len(workers) == 2
    node.process.send_signal(signal.SIGKILL)
    node.process.wait(10)
    deadline = time.monotonic() + 20
    while any(os.path.exists(f"/proc/{pid}") and not _zombie(pid) for pid in workers):
        assert time.monotonic() < deadline, "a worker outlived its supervisor"
        time.sleep(0.1)
    with pytest.raises(httpx.TransportError):  # nobody serves the port any more
        httpx.get(f"{node.url}/health", timeout=2)
