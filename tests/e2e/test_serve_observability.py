"""``meadowlark serve --workers 2`` as operators run it: ``/metrics`` gives the whole
node's figures whichever worker answers the scrape; the separate metrics address serves
them without authentication (and the REST port then has no ``/metrics``); lifecycle log
lines are JSON objects by default (output not a terminal) and human-readable with
``--log-format console``."""

from __future__ import annotations

import json
import os
import shutil
import signal
import socket
import time
from pathlib import Path

import httpx
import pytest
from node_processes import (
    DeviceLoop,
    free_port,
    running,
    start_node,
    wait_for_coap_workers,
    worker_pids,
)
from prometheus_client import CollectorRegistry, generate_latest, multiprocess
from prometheus_client.parser import text_string_to_metric_families

FAST_GAUGES = {"MEADOWLARK_METRICS__SAMPLE_INTERVAL": "0.2"}
DEVICES = 8
"""Eight source addresses: with two workers, some land on each (1 - 2**-7)."""


def _samples(text: str) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    return {
        (sample.name, tuple(sorted(sample.labels.items()))): sample.value
        for family in text_string_to_metric_families(text)
        for sample in family.samples
    }


def _json_lines(node) -> list[dict]:
    return [json.loads(line) for line in node.output().splitlines() if line.startswith("{")]


def _wait_for_line(node, check, timeout: float = 30) -> dict:
    deadline = time.monotonic() + timeout
    while True:
        for line in _json_lines(node):
            if check(line):
                return line
        assert time.monotonic() < deadline, node.output()[-5000:]
        time.sleep(0.1)


@pytest.fixture(scope="module")
def node(tmp_path_factory):
    served = start_node(
        "observed", tmp_path_factory.mktemp("observed"), workers=2, extra_env=FAST_GAUGES
    )
    with running(served):
        wait_for_coap_workers(served)
        yield served


@pytest.fixture(scope="module")
def fleet(node):
    devices = DeviceLoop()
    try:
        yield [devices.register(f"observed-dev-{n}", node.coap) for n in range(DEVICES)], devices
    finally:
        devices.close()


def test_every_scrape_counts_the_devices_of_both_workers(node, fleet):
    headers = {"Authorization": f"Bearer {node.token()}"}
    deadline = time.monotonic() + 30
    answers: list[float] = []
    while len(answers) < 10:  # a new connection each time: either worker may accept it
        response = httpx.get(f"{node.url}/metrics", headers=headers, timeout=30)
        assert response.status_code == 200, response.text
        samples = _samples(response.text)
        registered = samples[("meadowlark_registered_devices", ())]
        created = samples[("meadowlark_registrations_total", (("result", "created"),))]
        if registered == DEVICES:
            answers.append(registered)
            assert created >= DEVICES
        else:  # a worker's gauge is at most one sample interval behind
            assert time.monotonic() < deadline, response.text
            time.sleep(0.1)


def test_lifecycle_lines_are_json_with_the_device_fields(node, fleet):
    devices, loop = fleet
    registered = _wait_for_line(
        node,
        lambda line: (
            line.get("event") == "device.registered"
            and line.get("endpoint") == devices[0].endpoint_name
        ),
    )
    assert registered["domain"] == "/root/"
    assert registered["transport"] == "udp"
    assert registered["device_id"]
    assert registered["level"] == "info" and registered["timestamp"]
    loop.run(devices[1].stop())  # a De-register
    gone = _wait_for_line(
        node,
        lambda line: (
            line.get("event") == "device.deregistered"
            and line.get("endpoint") == devices[1].endpoint_name
        ),
    )
    assert gone["domain"] == "/root/" and gone["transport"] == "udp" and gone["device_id"]
    assert not any("[info" in line for line in node.output().splitlines())


def test_request_ids_reach_the_log_lines(node):
    response = httpx.get(
        f"{node.url}/api/coiotedm/v3/devices",
        headers={"Authorization": "Bearer not-a-token", "X-Request-Id": "e2e-trace-1"},
        timeout=30,
    )
    assert response.status_code == 401
    assert response.headers["x-request-id"] == "e2e-trace-1"
    assert response.json()["requestId"] == "e2e-trace-1"


def _one_process(folder: Path, pid: int, into: Path) -> dict:
    """The figures of one worker alone: its value files aggregated by themselves."""
    into.mkdir()
    for file in folder.glob(f"*_{pid}.db"):
        shutil.copy(file, into / file.name)
    registry = CollectorRegistry()
    multiprocess.MultiProcessCollector(registry, path=str(into))
    return _samples(generate_latest(registry).decode())


def _scrape(node, headers) -> dict:
    response = httpx.get(f"{node.url}/metrics", headers=headers, timeout=30)
    assert response.status_code == 200, response.text
    return _samples(response.text)


def test_a_dead_workers_gauges_stop_counting(node, fleet, tmp_path):
    headers = {"Authorization": f"Bearer {node.token()}"}
    folder = node.log.parent / "metrics"  # in the data dir
    registered = ("meadowlark_registered_devices", ())
    created = ("meadowlark_registrations_total", (("result", "created"),))
    victim = worker_pids(node)[0]
    before = _scrape(node, headers)
    held = _one_process(folder, victim, tmp_path / "victim")[registered]
    os.kill(victim, signal.SIGKILL)
    deadline = time.monotonic() + 30
    while list(folder.glob(f"gauge_livesum_{victim}.db")) or len(worker_pids(node)) < 2:
        assert time.monotonic() < deadline, node.output()[-3000:]
        time.sleep(0.1)
    after = _scrape(node, headers)
    # The devices the dead worker held are gone (until they register again); the
    # registrations it counted still count.
    assert after[registered] == before[registered] - held
    assert after[created] >= before[created]


def test_a_separate_metrics_address_and_console_logs(tmp_path):
    metrics_port = free_port(socket.SOCK_STREAM)
    served = start_node(
        "listener",
        tmp_path,
        workers=2,
        extra_env={**FAST_GAUGES, "MEADOWLARK_METRICS__LISTEN": f"127.0.0.1:{metrics_port}"},
        args=("--log-format", "console"),
    )
    with running(served):
        wait_for_coap_workers(served)
        devices = DeviceLoop()
        try:
            device = devices.register("listener-dev", served.coap)
            headers = {"Authorization": f"Bearer {served.token()}"}
            assert httpx.get(f"{served.url}/metrics", headers=headers).status_code == 404
            metrics_url = f"http://127.0.0.1:{metrics_port}"
            deadline = time.monotonic() + 30
            while True:
                scraped = httpx.get(f"{metrics_url}/metrics", timeout=30)  # no credentials
                assert scraped.status_code == 200, scraped.text
                samples = _samples(scraped.text)
                if samples[("meadowlark_registered_devices", ())] == 1:
                    break
                assert time.monotonic() < deadline, scraped.text
                time.sleep(0.1)
            assert httpx.get(f"{metrics_url}/other").status_code == 404
            assert httpx.post(f"{metrics_url}/metrics").status_code == 405
            deadline = time.monotonic() + 30
            while "device.registered" not in served.output():
                assert time.monotonic() < deadline, served.output()
                time.sleep(0.1)
        finally:
            devices.close()
        (line,) = [ln for ln in served.output().splitlines() if "device.registered" in ln]
        assert not line.startswith("{")
        assert f"endpoint={device.endpoint_name}" in line and "transport=udp" in line
        assert not any(ln.startswith("{") for ln in served.output().splitlines())
