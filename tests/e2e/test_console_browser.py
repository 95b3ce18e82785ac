"""The web console in a real browser: Debian's chromium driven by playwright-core
(tests/e2e/console/console.test.mjs) against ``meadowlark serve`` run as a process, with a
simulated device registered.

The script signs in, finds the device, opens its object tree, reads, writes and observes
resources (a live notification must reach the page), logs out (the token is revoked), and
checks that a user of another domain (who signs in with a two-factor code) sees no trace
of the device and that a read-only user sees Read buttons only; last, the device
deregisters and its status turns offline in the open page. Access tokens live 6 s here,
so the console refreshes its token on the way. Screenshots at 1280 px and 390 px go to
test-artifacts/console/.
"""

from __future__ import annotations

import re
import shutil
import subprocess
import threading
from collections.abc import Iterator
from pathlib import Path

import httpx
import pyotp
import pytest
from console_support import ARTIFACTS, HARNESS, ROOT, needs_browser, script_env, serving_node
from node_processes import DeviceLoop, Node

from meadowlark.lwm2m.path import LwM2mPath

CONSOLE = ROOT / "console"
SCRIPT = HARNESS / "console.test.mjs"
OTHER_PASSWORD = "Other-Domain-Pa55word!"
SENSOR = LwM2mPath(3303, 0, 5700)
TIMEZONE = LwM2mPath(3, 0, 15)
TOKEN_LIFETIME = 6
GROUP = "console-lab"
VIEWER_PASSWORD = "Viewer-Pa55word!"
VIEWER_PERMISSIONS = [
    "GET devices/find/details",
    "GET devices/{id}",
    "GET instantiatedResources/dataModelDefinition/{deviceId}",
    "GET instantiatedResources/resourcesData/{deviceId}",
    "lwm2m:GET /api/lwm2m/v1/clients/{ep}",
    "lwm2m:GET /api/lwm2m/v1/clients/{ep}/{path}",
    "lwm2m:GET /api/lwm2m/v1/events",
]
SCRIPT_TIMEOUT = 120


needs_node = pytest.mark.skipif(shutil.which("node") is None, reason="node is not installed")


@needs_node
def test_console_helpers_under_node_test() -> None:
    """The console's pure helpers (typed write values, object tree, SSE parsing,
    searchCriteria building): console/tests/*.test.js under node's own test runner."""
    run = subprocess.run(
        ["node", "--test", "--test-reporter=tap", "tests/"],  # noqa: S607 - node from PATH
        cwd=CONSOLE,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert run.returncode == 0, f"{run.stdout}\n{run.stderr}"
    assert re.search(r"^# fail 0$", run.stdout, re.MULTILINE), run.stdout


@pytest.fixture
def node(tmp_path: Path) -> Iterator[Node]:
    # Short-lived access tokens: the console must refresh them during the test.
    extra_env = {"MEADOWLARK_TOKEN_LIFETIME": str(TOKEN_LIFETIME)}
    with serving_node("console", tmp_path / "node", extra_env) as node:
        yield node


@pytest.fixture
def devices() -> Iterator[DeviceLoop]:
    loop = DeviceLoop()
    yield loop
    loop.close()


def _other_domain_admin(node: Node, token: str) -> str:
    """An administrator of a sibling domain: every permission, none of root's devices."""
    login = "console-other-admin"
    with httpx.Client(base_url=node.url, headers={"Authorization": f"Bearer {token}"}) as http:
        domain = http.post(
            "/api/coiotedm/v3/domains", json={"id": "/root/console-other/", "description": ""}
        )
        assert domain.status_code == 201, domain.text
        user = http.post(
            "/api/coiotedm/v3/users",
            json={
                "login": login,
                "password": OTHER_PASSWORD,
                "domain": "/root/console-other/",
                "email": "",
                "emailVerified": True,
                "tosAccepted": True,
                "roles": ["Admin"],
                "permissions": [],
                "accountType": "developer",
            },
        )
        assert user.status_code == 201, user.text
    return login


def _viewer(node: Node, token: str) -> str:
    """A user of the device's domain who may look at devices but not act on them."""
    login = "console-viewer"
    with httpx.Client(base_url=node.url, headers={"Authorization": f"Bearer {token}"}) as http:
        user = http.post(
            "/api/coiotedm/v3/users",
            json={
                "login": login,
                "password": VIEWER_PASSWORD,
                "domain": "/root/",
                "email": "",
                "emailVerified": True,
                "tosAccepted": True,
                "roles": [],
                "permissions": VIEWER_PERMISSIONS,
                "accountType": "developer",
            },
        )
        assert user.status_code == 201, user.text
    return login


def _put_in_group(node: Node, token: str, device_id: str, group: str) -> None:
    with httpx.Client(base_url=node.url, headers={"Authorization": f"Bearer {token}"}) as http:
        created = http.post("/api/coiotedm/v3/groups", json={"id": group, "description": "lab"})
        assert created.status_code == 201, created.text
        joined = http.put(f"/api/coiotedm/v3/devices/{device_id}", json={"addGroups": [group]})
        assert joined.status_code == 204, joined.text


def _enable_two_factor(node: Node, login: str, password: str) -> str:
    """Turn 2FA on for the user; its TOTP secret."""
    signed_in = httpx.post(
        f"{node.url}/api/auth/oauth_password",
        data={"grant_type": "password", "username": login, "password": password},
    )
    assert signed_in.status_code == 201, signed_in.text
    headers = {"Authorization": f"Bearer {signed_in.json()['access_token']}"}
    with httpx.Client(base_url=node.url, headers=headers) as http:
        secret = http.post("/api/auth/2fa/enroll").json()["secret"]
        confirmed = http.post("/api/auth/2fa/confirm", json={"code": pyotp.TOTP(secret).now()})
        assert confirmed.status_code == 200, confirmed.text
    return secret


def _move_temperature_while_observed(devices: DeviceLoop, device, stop: threading.Event) -> None:
    """Once the page observes the sensor, give it new readings (40 °C and up)."""
    reading = 40.0
    while not stop.wait(0.4):
        if devices.call(lambda: bool(device.observations)):
            devices.call(device.set_temperature, reading)
            reading += 0.5


def _run_script(env: dict[str, str], devices: DeviceLoop, device) -> tuple[int, str]:
    """Run the browser script; it asks for device actions with lines on its stdout
    (``@deregister``) and waits for ``done`` on its stdin. Its exit code and output."""
    script = subprocess.Popen(  # noqa: S603 - our own test script
        ["node", str(SCRIPT)],  # noqa: S607 - node from PATH, checked above
        cwd=HARNESS,
        env=env,
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    watchdog = threading.Timer(SCRIPT_TIMEOUT, script.kill)
    watchdog.start()
    lines = []
    try:
        assert script.stdout is not None and script.stdin is not None
        for line in script.stdout:
            lines.append(line)
            if line.strip() == "@deregister":
                devices.run(device.stop(deregister=True))
                devices.devices.remove(device)
                script.stdin.write("done\n")
                script.stdin.flush()
        returncode = script.wait()
    finally:
        watchdog.cancel()
    return returncode, "".join(lines)


@needs_browser
def test_console_in_chromium(node: Node, devices: DeviceLoop) -> None:
    token = node.token()
    other_login = _other_domain_admin(node, token)
    viewer_login = _viewer(node, token)
    other_totp = pyotp.TOTP(_enable_two_factor(node, other_login, OTHER_PASSWORD))
    endpoint = "console-e2e-sensor"
    device = devices.register(endpoint, node.coap)
    _put_in_group(node, token, endpoint, GROUP)
    stop = threading.Event()
    mover = threading.Thread(
        target=_move_temperature_while_observed, args=(devices, device, stop), daemon=True
    )
    mover.start()
    env = script_env(
        node,
        OTHER_LOGIN=other_login,
        VIEWER_LOGIN=viewer_login,
        VIEWER_PASSWORD=VIEWER_PASSWORD,
        OTHER_PASSWORD=OTHER_PASSWORD,
        OTHER_OTP=other_totp.now(),  # valid for this window and the next (valid_window=1)
        DEVICE_ENDPOINT=endpoint,
        DEVICE_GROUP=GROUP,
    )
    try:
        returncode, output = _run_script(env, devices, device)
    finally:
        stop.set()
        mover.join(5)
    assert returncode == 0, f"{output}\n--- server log ---\n{node.output()}"
    assert "all console checks passed" in output
    print(output)  # the steps with their timings, shown with pytest -s
    # The write reached the device itself, not only the server's answer.
    written = devices.call(device.objects.read, TIMEZONE)
    assert written.value == "America/Chicago"
    for page in ("login", "devices", "device"):
        for width in (1280, 390):
            assert (ARTIFACTS / f"{page}-{width}.png").stat().st_size > 0
