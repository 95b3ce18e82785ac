"""The web console's tasks, monitoring, admin and Things pages in a real browser:
Debian's chromium driven by playwright-core (tests/e2e/console/console_pages.test.mjs)
against ``meadowlark serve`` run as a process, with a simulated device registered.

The data the pages show is prepared through the public API first: the device in a group,
monitoring on with a named monitoring of its temperature, an observation whose
notifications become samples, a Thing (SIM) linked to the device, and a view-only user
(Monitor role). The script then creates a task from a template and watches its summary
fill in, draws the samples and their aggregates, creates a user, a role and a domain,
activates and pings the Thing, and checks that the view-only user sees the same pages
without any button that changes something.
Screenshots at 1280 px and 390 px go to test-artifacts/console/.
"""

from __future__ import annotations

import subprocess
import time
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import httpx
import pytest
from console_support import ARTIFACTS, HARNESS, needs_browser, script_env, serving_node
from node_processes import DeviceLoop, Node, eventually

from meadowlark.connectivity.identifiers import with_check_digit

SCRIPT = HARNESS / "console_pages.test.mjs"
COIOTE = "/api/coiotedm/v3"
ENDPOINT = "console-pages-sensor"
GROUP = "console-lab"
MONITORING = "lab-temperature"
RESOURCE = "/3303/0/5700"
TEXT_RESOURCE = "/3/0/15"  # Timezone: text samples, counted per value
ICCID = with_check_digit("894401" + "000000004242")
THING = f"ThingId_ICCID_{ICCID}"
THING_NAME = "lab-sim"
VIEWER = "console-viewer"
VIEWER_PASSWORD = "Viewer-Pa55word!"
PAGES = ("tasks", "task", "monitoring", "users", "roles", "domains", "things", "thing")


pytestmark = needs_browser


@pytest.fixture
def node(tmp_path: Path) -> Iterator[Node]:
    with serving_node("console-pages", tmp_path / "node") as node:
        yield node


@pytest.fixture
def devices() -> Iterator[DeviceLoop]:
    loop = DeviceLoop()
    yield loop
    loop.close()


def _created(response: httpx.Response) -> httpx.Response:
    assert response.status_code in (200, 201), f"{response.request.url}: {response.text}"
    return response


def _prepare(node: Node, devices: DeviceLoop) -> None:
    """The device in a group and monitored, samples of its temperature, a linked SIM."""
    headers = {"Authorization": f"Bearer {node.token()}"}
    with httpx.Client(base_url=node.url, headers=headers, timeout=30) as http:
        _created(http.post(f"{COIOTE}/groups", json={"id": GROUP}))
        _created(
            http.post(
                f"{COIOTE}/devices",
                json={
                    "id": ENDPOINT,
                    "properties": {"endpointName": ENDPOINT},
                    "directGroups": [GROUP],
                },
            )
        )
        device = devices.register(ENDPOINT, node.coap)
        _created(http.post(f"{COIOTE}/deviceMonitoring/configuration/device/{ENDPOINT}/enable"))
        _created(
            http.post(
                f"{COIOTE}/monitoring",
                json={"name": MONITORING, "groupId": GROUP, "resources": [RESOURCE, TEXT_RESOURCE]},
            )
        )
        _created(http.post(f"/api/lwm2m/v1/clients/{ENDPOINT}{RESOURCE}/observe"))
        for step in range(12):
            devices.call(device.set_temperature, 20.0 + step * 0.75)
            time.sleep(0.15)
        since = (datetime.now(UTC) - timedelta(hours=1)).isoformat()

        def sampled() -> bool:
            page = http.get(
                f"{COIOTE}/deviceMonitoring/data/{ENDPOINT}/resourceUrl/{RESOURCE}",
                params={"timeRangeStart": since},
            )
            return page.status_code == 200 and len(page.json()["data"]) >= 5

        eventually(sampled, timeout=20)
        for _ in range(3):  # each answer to a read is a sample too
            _created(http.get(f"/api/lwm2m/v1/clients/{ENDPOINT}{TEXT_RESOURCE}"))
        _created(
            http.post(
                "/thing", json={"ICCID": ICCID, "ThingName": THING_NAME, "MSISDN": "447700900123"}
            )
        )
        _created(http.put(f"/thing/{THING}/device", json={"Endpoint": ENDPOINT}))
        _created(
            http.post(
                f"{COIOTE}/users",
                json={
                    "login": VIEWER,
                    "password": VIEWER_PASSWORD,
                    "domain": "/root/",
                    "roles": ["Monitor"],
                    "emailVerified": True,
                    "tosAccepted": True,
                },
            )
        )


def test_console_pages_in_chromium(node: Node, devices: DeviceLoop) -> None:
    _prepare(node, devices)
    env = script_env(
        node,
        DEVICE_ID=ENDPOINT,
        RESOURCE_URL=RESOURCE,
        TEXT_RESOURCE_URL=TEXT_RESOURCE,
        MONITORING_NAME=MONITORING,
        GROUP_ID=GROUP,
        THING_ID=THING,
        THING_NAME=THING_NAME,
        VIEWER_LOGIN=VIEWER,
        VIEWER_PASSWORD=VIEWER_PASSWORD,
    )
    run = subprocess.run(  # noqa: S603 - our own test script
        ["node", str(SCRIPT)],  # noqa: S607 - node from PATH, checked above
        cwd=HARNESS,
        env=env,
        capture_output=True,
        text=True,
        timeout=150,
    )
    assert run.returncode == 0, f"{run.stdout}\n{run.stderr}\n--- server log ---\n{node.output()}"
    assert "all console page checks passed" in run.stdout
    # What the pages did reached the server: the user is disabled, the SIM active.
    headers = {"Authorization": f"Bearer {node.token()}"}
    with httpx.Client(base_url=node.url, headers=headers, timeout=30) as http:
        user = http.get(f"{COIOTE}/users/console-operator").json()
        assert user["active"] is False
        assert user["roles"] == ["Monitor"]
        assert http.get(f"/thing/{THING}/state").text == "ACTIVE"
        roles = {role["name"]: role for role in http.get("/api/admin/roles").json()}
        assert "GET devices/find/details" in roles["console-device-readers"]["permissions"]
    for page in PAGES:
        for width in (1280, 390):
            assert (ARTIFACTS / f"{page}-{width}.png").stat().st_size > 0
