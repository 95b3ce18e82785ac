"""Authenticated REST reads against ``GET /health`` of the same ``meadowlark serve`` process.

One server (embedded SQLite defaults) holds ``devices`` provisioned devices and
``clients`` LwM2M registrations (made over CoAP by ``bench.coap_load``). With
``concurrency`` keep-alive connections: ``GET /health`` (unauthenticated, no database),
``GET devices/{id}`` and ``GET /api/lwm2m/v1/clients`` with a bearer token, in
``rounds`` interleaved rounds that share ``duration`` seconds per request. Each ratio
divides an authenticated request's throughput by ``/health``'s over the same rounds, so
a neighbour's CPU use during the run weighs on both sides alike.
"""

from __future__ import annotations

import asyncio
import json
import statistics
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


def _combined(results: list[LoadResult]) -> LoadResult:
    """Several rounds of one request as one figure (p50 and p99: the rounds' medians)."""
    return LoadResult(
        requests=sum(result.requests for result in results),
        seconds=sum(result.seconds for result in results),
        p50_ms=statistics.median(result.p50_ms for result in results),
        p99_ms=statistics.median(result.p99_ms for result in results),
        errors=sum(result.errors for result in results),
    )


def _line(name: str, result: LoadResult, health: float) -> str:
    return (
        f"  {name:34} {result.per_second:8.1f} req/s  p50 {result.p50_ms:7.2f} ms  "
        f"p99 {result.p99_ms:7.2f} ms  ratio {result.per_second / health:5.2f}"
        f"{'  ERRORS ' + str(result.errors) if result.errors else ''}"
    )


def run(
    duration: float = 5.0,
    concurrency: int = 16,
    devices: int = 1_000,
    clients: int = 10,
    rounds: int = 3,
) -> dict[str, float]:
    http_port, coap_port = free_port(), free_port()
    with tempfile.TemporaryDirectory() as data_dir:
        env = {
            "MEADOWLARK_HTTP": f"127.0.0.1:{http_port}",
            "MEADOWLARK_COAP": f"127.0.0.1:{coap_port}",
            "MEADOWLARK_COAPS": "127.0.0.1:0",  # DTLS on a free port, not 5684
            "MEADOWLARK_COAP_TCP": "off",  # no CoAP over TCP/TLS here
            "MEADOWLARK_COAP_TLS": "off",
            "MEADOWLARK_BOOTSTRAP": "off",
            "MEADOWLARK_BOOTSTRAP_DTLS": "off",
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

            device_path = f"/api/coiotedm/v3/devices/{quote(device_id(devices // 2), safe='')}"
            requests = {
                "GET /health": http_request("GET", "/health"),
                "GET devices/{id} (bearer)": http_request("GET", device_path, headers=bearer),
                "GET /api/lwm2m/v1/clients (bearer)": http_request(
                    "GET", "/api/lwm2m/v1/clients", headers=bearer
                ),
            }
            measured: dict[str, list[LoadResult]] = {name: [] for name in requests}
            for _ in range(rounds):
                for name, request in requests.items():
                    measured[name].append(
                        run_load(
                            request,
                            port=http_port,
                            duration=duration / rounds,
                            concurrency=concurrency,
                        )
                    )

    results = {name: _combined(runs) for name, runs in measured.items()}
    health = results["GET /health"].per_second
    print(
        f"rest: meadowlark serve (SQLite), {concurrency} keep-alive connections, {rounds} "
        f"interleaved rounds, {duration:.0f} s per request; {devices} devices, "
        f"{registered} registered LwM2M clients"
    )
    for name, result in results.items():
        print(_line(name, result, health))
    return {
        "device_get_vs_health": results["GET devices/{id} (bearer)"].per_second / health,
        "clients_list_vs_health": results["GET /api/lwm2m/v1/clients (bearer)"].per_second / health,
    }
