"""Bootstraps per second of ``meadowlark serve``'s bootstrap server, as a ratio against
plain registrations measured in the same run.

``meadowlark serve`` runs as users start it (the CLI in a subprocess, SQLite in a
temporary data folder), with its bootstrap port. ``DEVICES`` simulated devices register
directly (the baseline), then as many others, each with a bootstrap device and a NoSec
configuration, are bootstrapped (Request, Discover, Delete x2, Write x2, Read, Finish,
credentials stored) and register where they were sent; ``CONCURRENCY`` at a time.
Then ``SECURE_DEVICES`` more, each with a PSK bootstrap account and a PSK configuration,
bootstrap over DTLS (``MEADOWLARK_BOOTSTRAP_DTLS``) and register over DTLS with the
fresh management PSK they were given: two full DTLS-PSK handshakes each (the per-address
handshake throttle is lifted: every simulated device shares 127.0.0.1). Its ratio is
against the plain bootstraps of the same run.
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
SECURE_DEVICES = 100
MASTER_KEY = b"bench bootstrap master key"
CONCURRENCY = 50
API = "/api/coiotedm/v3"


def run(duration: float = 5.0) -> dict[str, float]:
    """``duration`` is unused: the figure is the time for a fixed number of devices."""
    from meadowlark.simulator import SimulatedDevice
    from meadowlark.simulator.bootstrap import bootstrap_into, start_bootstrapped
    from meadowlark.simulator.dtls import PskCredentials, derive_psk

    http_port, coap_port, bootstrap_port, coaps_port, bootstrap_dtls_port = (
        free_port(),
        free_port(socket.SOCK_DGRAM),
        free_port(socket.SOCK_DGRAM),
        free_port(socket.SOCK_DGRAM),
        free_port(socket.SOCK_DGRAM),
    )
    with tempfile.TemporaryDirectory() as data_dir:
        env = {
            "MEADOWLARK_HTTP": f"127.0.0.1:{http_port}",
            "MEADOWLARK_COAP": f"127.0.0.1:{coap_port}",
            "MEADOWLARK_BOOTSTRAP": f"127.0.0.1:{bootstrap_port}",
            "MEADOWLARK_COAPS": f"127.0.0.1:{coaps_port}",
            "MEADOWLARK_BOOTSTRAP_DTLS": f"127.0.0.1:{bootstrap_dtls_port}",
            "MEADOWLARK_DTLS__HANDSHAKES_PER_ADDRESS_PER_SECOND": "1000000",
            "MEADOWLARK_COAP_TCP": "off",
            "MEADOWLARK_COAP_TLS": "off",
            "MEADOWLARK_DATA_DIR": data_dir,
            "MEADOWLARK_ADMIN_PASSWORD": ADMIN_PASSWORD,
            "MEADOWLARK_LOG_LEVEL": "warning",
        }
        command = [python(), "-m", "meadowlark.cli.main", "serve"]
        base = f"http://127.0.0.1:{http_port}"
        with server_process(command, env=env, ready_url=f"{base}/ready"):
            _provision(base, [f"bsbench-{i:05d}" for i in range(DEVICES)])
            secure_names = [f"bssecure-{i:05d}" for i in range(SECURE_DEVICES)]
            _provision(base, secure_names, secure=True)
            server = f"coap://127.0.0.1:{coap_port}"
            bootstrap = f"coap://127.0.0.1:{bootstrap_port}"
            bootstrap_dtls = f"coaps://127.0.0.1:{bootstrap_dtls_port}"

            async def plain(device: SimulatedDevice) -> None:
                await device.start()

            async def bootstrapped(device: SimulatedDevice) -> None:
                await bootstrap_into(device, bootstrap)
                await device.start()

            async def secure(device: SimulatedDevice) -> None:
                await bootstrap_into(device, bootstrap_dtls)
                await start_bootstrapped(device)
                assert device.server_uri.startswith("coaps://"), device.server_uri

            def secure_devices() -> list[SimulatedDevice]:
                return [
                    SimulatedDevice(
                        name,
                        server,
                        lifetime=3600,
                        security=PskCredentials(f"bs-{name}", derive_psk(MASTER_KEY, name)),
                    )
                    for name in secure_names
                ]

            def devices(prefix: str) -> list[SimulatedDevice]:
                return [
                    SimulatedDevice(f"{prefix}-{i:05d}", server, lifetime=3600)
                    for i in range(DEVICES)
                ]

            baseline, _ = asyncio.run(_timed(devices("plain"), plain))
            measured, latencies = asyncio.run(_timed(devices("bsbench"), bootstrapped))
            secured, secure_latencies = asyncio.run(_timed(secure_devices(), secure))
    figures = {
        "registrations_per_s": DEVICES / baseline,
        "bootstraps_per_s": DEVICES / measured,
        "ratio": baseline / measured,
        "bootstrap_p50_ms": statistics.median(latencies) * 1000,
        "dtls_bootstraps_per_s": SECURE_DEVICES / secured,
        "dtls_ratio": measured / DEVICES / (secured / SECURE_DEVICES),
        "dtls_bootstrap_p50_ms": statistics.median(secure_latencies) * 1000,
    }
    print(
        f"bootstrap: {figures['bootstraps_per_s']:.0f} bootstraps+registrations/s vs "
        f"{figures['registrations_per_s']:.0f} registrations/s "
        f"(ratio {figures['ratio']:.3f}); {DEVICES} devices, {CONCURRENCY} at a time, "
        f"bootstrap p50 {figures['bootstrap_p50_ms']:.0f} ms\n"
        f"bootstrap over DTLS: {figures['dtls_bootstraps_per_s']:.0f} DTLS bootstraps+DTLS "
        f"registrations/s (ratio {figures['dtls_ratio']:.3f} of plain bootstraps); "
        f"{SECURE_DEVICES} devices, p50 {figures['dtls_bootstrap_p50_ms']:.0f} ms"
    )
    return figures


def _provision(base: str, endpoints: list[str], *, secure: bool = False) -> None:
    """A bootstrap device and a NoSec configuration per endpoint; ``secure``: a PSK
    bootstrap device (identity ``bs-`` and the name, key ``derive_psk``) and a PSK
    configuration."""
    from meadowlark.simulator.dtls import derive_psk

    with httpx.Client(base_url=base, timeout=30) as http:
        token = http.post(
            "/api/auth/oauth_password", data={"username": "admin", "password": ADMIN_PASSWORD}
        ).json()["access_token"]
        http.headers["Authorization"] = f"Bearer {token}"
        for start in range(0, len(endpoints), 100):
            batch = [
                {"properties": {"endpointName": e}, "connectorType": "bootstrap"}
                | (
                    {
                        "securityMode": "psk",
                        "dtlsIdentity": f"bs-{e}",
                        "dtlsPsk": {"HexadecimalPsk": derive_psk(MASTER_KEY, e).hex()},
                    }
                    if secure
                    else {}
                )
                for e in endpoints[start : start + 100]
            ]
            added = http.post(f"{API}/devices/batch", json=batch).json()
            assert added["failed"] == 0, added
        for endpoint in endpoints:
            configured = http.put(
                f"{API}/bootstrap/configuration/device/bs-{endpoint}",
                json={"lifetime": 3600} | ({"securityMode": "psk"} if secure else {}),
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
