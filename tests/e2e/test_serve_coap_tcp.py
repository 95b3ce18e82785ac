"""``meadowlark serve --workers 2`` with CoAP over TCP and TLS: both workers accept on the
same TCP ports (SO_REUSEPORT), each device's connection lands on one of them, and every
device is readable through whichever worker answers the HTTP request; the server's
request goes back over the device's own connection."""

from __future__ import annotations

import re
import socket
import ssl
import time

import httpx
import pytest
from node_processes import DeviceLoop, free_port, running, start_node

from meadowlark.simulator import SimulatedDevice


@pytest.fixture(scope="module")
def served(tmp_path_factory):
    """TCP on port 0: the supervisor picks one port that both workers bind."""
    tls = free_port(socket.SOCK_STREAM)
    node = start_node(
        "streams",
        tmp_path_factory.mktemp("streams"),
        workers=2,
        extra_env={
            "MEADOWLARK_COAP_TCP": "127.0.0.1:0",
            "MEADOWLARK_COAP_TLS": f"127.0.0.1:{tls}",
        },
    )
    with running(node):
        announced = re.search(r"coap\+tcp://127\.0\.0\.1:(\d+)", node.output())
        assert announced is not None, node.output()
        node.stream_ports = (int(announced.group(1)), tls)  # type: ignore[attr-defined]
        assert f"coaps+tcp://127.0.0.1:{tls}" in node.output()
        yield node


def _listeners_on(port: int) -> int:
    """How many TCP sockets listen on ``port`` (state 0A in /proc/net/tcp[6])."""
    count = 0
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        with open(table) as lines:
            for line in list(lines)[1:]:
                fields = line.split()
                count += int(fields[1].rsplit(":", 1)[1], 16) == port and fields[3] == "0A"
    return count


def test_tcp_and_tls_devices_on_either_worker_are_managed(served):
    tcp, tls = served.stream_ports
    deadline = time.monotonic() + 60
    while _listeners_on(tcp) < 2 or _listeners_on(tls) < 2:
        assert time.monotonic() < deadline, served.output()
        time.sleep(0.1)
    generated = served.log.parent / "tls" / "server.pem"  # the node's data dir
    trust = ssl.create_default_context(cafile=str(generated))
    devices = DeviceLoop()
    try:

        async def start(name: str, uri: str) -> SimulatedDevice:
            device = SimulatedDevice(
                name, uri, binding="T", tls=trust, tls_server_name="meadowlark"
            )
            await device.start()
            devices.devices.append(device)
            return device

        fleet = [
            devices.run(start(f"e2e-tcp-{n}", f"coap+tcp://127.0.0.1:{tcp}")) for n in range(6)
        ]
        fleet += [
            devices.run(start(f"e2e-tls-{n}", f"coaps+tcp://127.0.0.1:{tls}")) for n in range(2)
        ]
        headers = {"Authorization": f"Bearer {served.token()}"}
        for device in fleet:
            for _ in range(2):  # a new HTTP connection each time: either worker may answer
                read = httpx.get(
                    f"{served.url}/api/lwm2m/v1/clients/{device.endpoint_name}/3/0/0",
                    headers=headers,
                    timeout=30,
                )
                assert read.status_code == 200, read.text
                assert read.json()["content"]["value"] == "Meadowlark"
            shown = httpx.get(
                f"{served.url}/api/lwm2m/v1/clients/{device.endpoint_name}",
                headers=headers,
                timeout=30,
            ).json()
            assert shown["bindingMode"] == "T"
    finally:
        devices.close()
    assert "Traceback" not in served.output()
