"""Authenticated REST reads against ``GET /health`` of the same ``meadowlark serve`` process.

One server (embedded SQLite defaults) holds ``devices`` provisioned devices and
``clients`` LwM2M registrations (made over CoAP by ``bench.coap_load``). With
``concurrency`` keep-alive connections, one after another for ``duration`` seconds each:
``GET /health`` (unauthenticated, no database), ``GET devices/{id}`` and
``GET /api/lwm2m/v1/clients`` with a bearer token, then ``/health`` again. The ratios
divide each authenticated figure by the mean of the two ``/health`` figures, so a
neighbour's CPU use during the run shifts both sides alike.
"""

from __future__ import annotations

import asyncio
import json
import subprocess
import tempfile
from pathlib import Path
from urllib.parse import quote

import httpx

from bench.common import LoadResult, free_port, http_request, python, run_load, server_process
from bench.devices import device_id, insert_devices

ADMIN_PASSWORD = "bench-admin-password"  # noqa: S105 - a throwaway local server


def _register_clients(coap_port: int, count: int) -> int:
    """Register ``count`` LwM2M clients over CoAP; how many got 2.01."""
    output = subprocess.run(  # noqa: S603 - our own interpreter and module
        [python(), "-m", "bench.coap_load", "register", "--server", f"127.0.0.1:{coap_port}",
         "--devices", str(count), "--prefix", "rest", "--window", "16", "--max-seconds", "60"],
        capture_output=True, check=True, timeout=120, text=True,
    )  # fmt: skip
    for line in output.stdout.splitlines():
        event = json.loads(line)
        if event.get("event") == "registered":
            return int(event["created"])
    raise RuntimeError(f"no registration result: {output.stderr[-2000:]}")


def _line(name: str, result: LoadResult, health: float) -> str:
    return (
        f"  {name:34} {result.per_second:8.1f} req/s  p50 {result.p50_ms:7.2f} ms  "
        f"p99 {result.p99_ms:7.2f} ms  ratio {result.per_second / health:5.2f}"
        f"{'  ERRORS ' + str(result.errors) if result.errors else ''}"
    )


def run(
    duration: float = 5.0, concurrency: int = 16, devices: int = 1_000, clients: int = 10
) -> dict[str, float]:
    http_port, coap_port = free_port(), free_port()
    with tempfile.TemporaryDirectory() as data_dir:
        env = {
            "MEADOWLARK_HTTP": f"127.0.0.1:{http_port}",
            "MEADOWLARK_COAP": f"127.0.0.1:{coap_port}",
            "MEADOWLARK_DATA_DIR": data_dir,
            "MEADOWLARK_ADMIN_PASSWORD": ADMIN_PASSWORD,
            "MEADOWLARK_LOG_LEVEL": "warning",
        }
        command = [python(), "-m", "meadowlark.cli.main", "serve"]
        with server_process(command, env=env, ready_url=f"http://127.0.0.1:{http_port}/ready"):
            asyncio.run(insert_devices(f"sqlite+aiosqlite:///{Path(data_dir) / 'meadowlark.db'}",
                                       devices))  # fmt: skip
            registered = _register_clients(coap_port, clients)
            form = {"grant_type": "password", "username": "admin", "password": ADMIN_PASSWORD}
            token = httpx.post(
                f"http://127.0.0.1:{http_port}/api/auth/oauth_password", data=form
            ).json()["access_token"]
            bearer = {"Authorization": f"Bearer {token}"}

            def load(path: str, headers: dict[str, str] | None = None) -> LoadResult:
                return run_load(
                    http_request("GET", path, headers=headers),
                    port=http_port,
                    duration=duration,
                    concurrency=concurrency,
                )

            device_path = f"/api/coiotedm/v3/devices/{quote(device_id(devices // 2), safe='')}"
            health_before = load("/health")
            device = load(device_path, bearer)
            client_list = load("/api/lwm2m/v1/clients", bearer)
            health_after = load("/health")

    health = (health_before.per_second + health_after.per_second) / 2
    print(
        f"rest: meadowlark serve (SQLite), {concurrency} keep-alive connections, "
        f"{duration:.0f} s each; {devices} devices, {registered} registered LwM2M clients"
    )
    print(_line("GET /health (before)", health_before, health))
    print(_line("GET devices/{id} (bearer)", device, health))
    print(_line("GET /api/lwm2m/v1/clients (bearer)", client_list, health))
    print(_line("GET /health (after)", health_after, health))
    return {
        "device_get_vs_health": device.per_second / health,
        "clients_list_vs_health": client_list.per_second / health,
    }
