"""``meadowlark serve`` with its bootstrap port (``MEADOWLARK_BOOTSTRAP``) and
``meadowlark simulate --bootstrap``, both as real processes: simulated devices that start
with only their bootstrap account are bootstrapped and register."""

from __future__ import annotations

import os
import re
import secrets
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

ADMIN_PASSWORD = "E2e-Admin-Pa55word!"
API = "/api/coiotedm/v3"
EXECUTABLE = Path(sys.executable).parent / "meadowlark"


def _free_port(kind: int) -> int:
    with socket.socket(socket.AF_INET, kind) as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]  # type: ignore[no-any-return]


def _env(**settings: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("MEADOWLARK_")}
    env.update({f"MEADOWLARK_{name.upper()}": value for name, value in settings.items()})
    return env


@pytest.fixture(scope="module")
def served(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[str, int]]:
    """``meadowlark serve``; yields (REST base URL, bootstrap port)."""
    data_dir = tmp_path_factory.mktemp("bootstrap-e2e")
    http_port = _free_port(socket.SOCK_STREAM)
    bootstrap_port = _free_port(socket.SOCK_DGRAM)
    env = _env(
        http=f"127.0.0.1:{http_port}",
        coap=f"127.0.0.1:{_free_port(socket.SOCK_DGRAM)}",
        bootstrap=f"127.0.0.1:{bootstrap_port}",
        bootstrap_dtls="off",
        data_dir=str(data_dir),
        admin_password=ADMIN_PASSWORD,
    )
    log_path = data_dir / "server.log"
    with open(log_path, "wb") as log:
        process = subprocess.Popen(  # noqa: S603 - our own entry point
            [str(EXECUTABLE), "serve"], env=env, stdout=log, stderr=subprocess.STDOUT, cwd=data_dir
        )
    base = f"http://127.0.0.1:{http_port}"
    try:
        deadline = time.monotonic() + 60
        while True:
            assert process.poll() is None, log_path.read_text(errors="replace")
            try:
                if httpx.get(f"{base}/ready", timeout=2).status_code == 200:
                    break
            except httpx.TransportError:
                pass
            assert time.monotonic() < deadline, "server not ready in 60 s"
            time.sleep(0.1)
        assert f"LwM2M Bootstrap (CoAP) on udp://127.0.0.1:{bootstrap_port}" in (
            log_path.read_text(errors="replace")
        )
        yield base, bootstrap_port
    finally:
        process.send_signal(signal.SIGTERM)
        try:
            process.wait(timeout=20)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


def test_simulated_devices_bootstrap_then_register(served):
    base, bootstrap_port = served
    prefix = f"bse2e{secrets.token_hex(3)}"
    with httpx.Client(base_url=base, timeout=30) as http:
        token = http.post(
            "/api/auth/oauth_password",
            data={"grant_type": "password", "username": "admin", "password": ADMIN_PASSWORD},
        ).json()["access_token"]
        http.headers["Authorization"] = f"Bearer {token}"
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
            env=_env(),
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
