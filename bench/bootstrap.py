"""Bootstraps per second of ``meadowlark serve``'s bootstrap server, as a ratio against
plain registrations measured in the same run.

``meadowlark serve`` runs as users start it (the CLI in a subprocess, SQLite in a
temporary data folder), with its bootstrap port. ``DEVICES`` simulated devices register
directly (the baseline), then as many others, each with a bootstrap device and a NoSec
configuration, are bootstrapped (Request, Discover, Delete x2, Write x2, Read, Finish,
credentials stored) and register where they were sent; ``CONCURRENCY`` at a time.
"""

from __future__ import annotations

import asyncio
import socket
import statistics
import tempfile
import time
from collections.abc import Awaitable, Callable

import httpx

from bench.common import free_port, python, server_process

ADMIN_PASSWORD = "bench-admin-password"  # noqa: S105 - a throwaway local server
DEVICES = 300
CONCURRENCY = 50
API = "/api/coiotedm/v3"


def run(duration: float = 5.0) -> dict[str, float]:
    """``duration`` is unused: the figure is the time for a fixed number of devices."""
    from meadowlark.simulator import SimulatedDevice
    from meadowlark.simulator.bootstrap import bootstrap_into

    http_port, coap_port, bootstrap_port = (
        free_port(),
        free_port(socket.SOCK_DGRAM),
        free_port(socket.SOCK_DGRAM),
    )
    with tempfile.TemporaryDirectory() as data_dir:
        env = {
            "MEADOWLARK_HTTP": f"127.0.0.1:{http_port}",
            "MEADOWLARK_COAP": f"127.0.0.1:{coap_port}",
            "MEADOWLARK_BOOTSTRAP": f"127.0.0.1:{bootstrap_port}",
            "MEADOWLARK_BOOTSTRAP_DTLS": "off",
            "MEADOWLARK_DATA_DIR": data_dir,
            "MEADOWLARK_ADMIN_PASSWORD": ADMIN_PASSWORD,
            "MEADOWLARK_LOG_LEVEL": "warning",
        }
        command = [python(), "-m", "meadowlark.cli.main", "serve"]
        base = f"http://127.0.0.1:{http_port}"
        with server_process(command, env=env, ready_url=f"{base}/ready"):
            _provision(base, [f"bsbench-{i:05d}" for i in range(DEVICES)])
            server = f"coap://127.0.0.1:{coap_port}"
            bootstrap = f"coap://127.0.0.1:{bootstrap_port}"

            async def plain(device: SimulatedDevice) -> None:
                await device.start()

            async def bootstrapped(device: SimulatedDevice) -> None:
                await bootstrap_into(device, bootstrap)
                await device.start()

            def devices(prefix: str) -> list[SimulatedDevice]:
                return [
                    SimulatedDevice(f"{prefix}-{i:05d}", server, lifetime=3600)
                    for i in range(DEVICES)
                ]

            baseline, _ = asyncio.run(_timed(devices("plain"), plain))
            measured, latencies = asyncio.run(_timed(devices("bsbench"), bootstrapped))
    figures = {
        "registrations_per_s": DEVICES / baseline,
        "bootstraps_per_s": DEVICES / measured,
        "ratio": baseline / measured,
        "bootstrap_p50_ms": statistics.median(latencies) * 1000,
    }
    print(
        f"bootstrap: {figures['bootstraps_per_s']:.0f} bootstraps+registrations/s vs "
        f"{figures['registrations_per_s']:.0f} registrations/s "
        f"(ratio {figures['ratio']:.3f}); {DEVICES} devices, {CONCURRENCY} at a time, "
        f"bootstrap p50 {figures['bootstrap_p50_ms']:.0f} ms"
    )
    return figures


def _provision(base: str, endpoints: list[str]) -> None:
    """A bootstrap device and a NoSec configuration per endpoint."""
    with httpx.Client(base_url=base, timeout=30) as http:
        token = http.post(
            "/api/auth/oauth_password", data={"username": "admin", "password": ADMIN_PASSWORD}
        ).json()["access_token"]
        http.headers["Authorization"] = f"Bearer {token}"
        for start in range(0, len(endpoints), 100):
            batch = [
                {"properties": {"endpointName": e}, "connectorType": "bootstrap"}
                for e in endpoints[start : start + 100]
            ]
            added = http.post(f"{API}/devices/batch", json=batch).json()
            assert added["failed"] == 0, added
        for endpoint in endpoints:
            configured = http.put(
                f"{API}/bootstrap/configuration/device/bs-{endpoint}", json={"lifetime": 3600}
            )
            assert configured.status_code == 200, configured.text


async def _timed(
    devices: list[object], start: Callable[[object], Awaitable[None]]
) -> tuple[float, list[float]]:
    """Seconds for all ``devices`` to start (``CONCURRENCY`` at once), and each one's."""
    slots = asyncio.Semaphore(CONCURRENCY)
    latencies: list[float] = []

    async def one(device: object) -> None:
        async with slots:
            began = time.perf_counter()
            await start(device)
            latencies.append(time.perf_counter() - began)

    began = time.perf_counter()
    await asyncio.gather(*(one(device) for device in devices))
    took = time.perf_counter() - began
    await asyncio.gather(*(device.stop() for device in devices))  # type: ignore[attr-defined]
    return took, latencies


if __name__ == "__main__":
    run()
