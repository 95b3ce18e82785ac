"""``meadowlark serve`` with its bootstrap port (``MEADOWLARK_BOOTSTRAP``) and
``meadowlark simulate --bootstrap``, both as real processes: simulated devices that start
with only their bootstrap account are bootstrapped and register."""

from __future__ import annotations

import re
import secrets
import socket
import subprocess
from collections.abc import Iterator

import httpx
import pytest
from node_processes import EXECUTABLE, Node, clean_environment, free_port, running, start_node

API = "/api/coiotedm/v3"


@pytest.fixture(scope="module")
def served(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Node, int]]:
    """``meadowlark serve``; yields (the node, its bootstrap port)."""
    bootstrap_port = free_port(socket.SOCK_DGRAM)
    node = start_node(
        "bootstrap",
        tmp_path_factory.mktemp("bootstrap-e2e"),
        extra_env={"MEADOWLARK_BOOTSTRAP": f"127.0.0.1:{bootstrap_port}"},
    )
    with running(node):
        shown = f"LwM2M Bootstrap (CoAP) on udp://127.0.0.1:{bootstrap_port}"
        assert shown in node.output()
        yield node, bootstrap_port


def test_simulated_devices_bootstrap_then_register(served):
    node, bootstrap_port = served
    prefix = f"bse2e{secrets.token_hex(3)}"
    with httpx.Client(base_url=node.url, timeout=30) as http:
        http.headers["Authorization"] = f"Bearer {node.token()}"
        for index in range(2):
            endpoint = f"{prefix}-{index:04d}"
            body = {"properties": {"endpointName": endpoint}, "connectorType": "bootstrap"}
            account = http.post(f"{API}/devices", json=body)
            assert account.status_code == 201, account.text
            configured = http.put(
                f"{API}/bootstrap/configuration/device/{account.json()['id']}",
                json={"lifetime": 120},
            )
            assert configured.status_code == 200, configured.text
        simulated = subprocess.run(  # noqa: S603 - our own entry point
            [
                str(EXECUTABLE),
                "simulate",
                "--devices",
                "2",
                "--prefix",
                prefix,
                "--bootstrap",
                f"coap://127.0.0.1:{bootstrap_port}",
                "--duration",
                "4",
                "--interval",
                "1",
            ],  # fmt: skip
            env=clean_environment(),
            capture_output=True,
            text=True,
            timeout=60,
            check=False,
        )
        assert simulated.returncode == 0, simulated.stderr
        registered = [int(n) for n in re.findall(r"registered=(\d+)", simulated.stdout)]
        assert registered and max(registered) == 2, simulated.stdout + simulated.stderr
        device = http.get(f"{API}/devices/{prefix}-0000").json()
        assert device["properties"]["lifetime"] == "120"
        assert device["lastRegisterTime"] is not None, device
