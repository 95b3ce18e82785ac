# ruff: noqa: F811 - the fixtures imported from lwm2m_harness are test parameters here
"""Interop with an independent LwM2M client stack: Telefonica's lwm2m-node-lib (npm).

Runs when ``MEADOWLARK_TEST_INTEROP_NODE_MODULES`` names a ``node_modules`` folder holding
``lwm2m-node-lib`` (``.ci/run`` installs it); skipped otherwise.

That library answers single values only in text: an object-instance read in TLV (which
LwM2M 1.0 requires clients to support) wedges it. The server's registration reads of /3/0
and /5/0 are such reads, so the test switches them off with the ``registrationRead``
setting; Eclipse Wakaama (``test_wakaama_tasks.py``) answers them.
"""

from __future__ import annotations

import os
import queue
import secrets
import shutil
import subprocess
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from lwm2m_harness import eventually, server  # noqa: F401 - fixtures

NODE_MODULES = os.environ.get("MEADOWLARK_TEST_INTEROP_NODE_MODULES", "")
pytestmark = pytest.mark.skipif(
    not (Path(NODE_MODULES) / "lwm2m-node-lib").is_dir() or shutil.which("node") is None,
    reason="set MEADOWLARK_TEST_INTEROP_NODE_MODULES to a node_modules with lwm2m-node-lib",
)
SCRIPT = Path(__file__).with_name("node_lwm2m_client.js")


@pytest.fixture
def node_client(server) -> Iterator[str]:
    endpoint = f"node-{secrets.token_hex(4)}"
    with server.admin() as http:
        off = http.put(
            "/api/coiotedm/v3/settingValues", json={"name": "registrationRead", "value": "off"}
        )
        assert off.status_code == 204, off.text
    process = subprocess.Popen(  # noqa: S603 - our own script
        ["node", str(SCRIPT), str(server.coap_port), endpoint],  # noqa: S607
        env={**os.environ, "NODE_PATH": NODE_MODULES, "NODE_NO_WARNINGS": "1"},
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    lines: queue.Queue[str] = queue.Queue()
    reader = threading.Thread(target=lambda: [lines.put(line) for line in process.stdout])
    reader.start()
    try:
        deadline = time.monotonic() + 20
        while True:  # the library logs JSON lines of its own before ours
            try:
                line = lines.get(timeout=max(0.0, deadline - time.monotonic()))
            except queue.Empty:
                pytest.fail("the node client did not register within 20 s")
            if line.strip() == "registered":
                break
        yield endpoint
    finally:
        process.terminate()
        process.wait(10)
        reader.join(10)
        process.stdout.close()  # type: ignore[union-attr]
        process.stderr.close()  # type: ignore[union-attr]


def test_independent_client_registers_and_is_managed(server, node_client):
    base = f"/api/lwm2m/v1/clients/{node_client}"
    with server.admin() as http:
        registration = http.get(base).json()
        assert registration["lwM2mVersion"] == "1.0"
        assert {link["url"] for link in registration["objectLinks"]} >= {"/3/0", "/3303/0"}

        manufacturer = http.get(f"{base}/3/0/0").json()["content"]
        assert manufacturer == {
            "id": 0,
            "kind": "singleResource",
            "type": "string",
            "value": "Telefonica-node",
        }
        assert http.get(f"{base}/3303/0/5700").json()["content"]["value"] == 21.5

        written = http.put(f"{base}/3/0/14", json={"value": "+02:00"})
        assert written.status_code == 200, written.text
        assert http.get(f"{base}/3/0/14").json()["content"]["value"] == "+02:00"
        assert http.post(f"{base}/3/0/4").status_code == 200  # Reboot (Execute)

    with server.admin() as http:
        http.get(f"{base}/3303/0/5700")
    cached = eventually(
        lambda: server.call(server.runtime.lwm2m.cached_values(node_client)) or None
    )
    assert any(str(path) == "/3303/0/5700" for path in cached)
