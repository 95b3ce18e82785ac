"""DTLS-PSK against plain UDP on the same ``meadowlark serve``, measured in the same run.

``meadowlark serve`` runs from the CLI with its defaults (SQLite in a temporary data
folder), its plain CoAP and its DTLS listener (``MEADOWLARK_COAPS``) on loopback ports.
``devices`` PSK devices (identity = endpoint name, a key of their own) and as many NoSec
ones are provisioned through the devices API. Simulated devices (the simulator's lean
endpoint; ``python -m bench.dtls devices`` in a process of its own per side) then give
two ratios:

1. registrations: every device of a side opens its socket and Registers, ``window`` at a
   time; DTLS devices first complete a full PSK handshake (HelloVerifyRequest cookie
   exchange included). Devices per second, DTLS / plain UDP.
2. requests: server-initiated reads (``GET /api/lwm2m/v1/clients/{ep}/3/0/0``, each
   one a CoAP GET to the device and its answer) over ``concurrency`` keep-alive HTTP
   connections for ``duration`` seconds, spread over the registered devices: over
   established DTLS sessions, then over plain UDP; best of ``rounds``. Reads per second,
   DTLS / plain UDP.

The device processes do the client side of every handshake and of every record on the
same two cores as the server, so the handshake ratio includes the simulator's share.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager
from pathlib import Path
from typing import Any

import httpx

from bench.common import free_port, http_request, python, repo_root
from bench.registrations import ADMIN_PASSWORD

MASTER_KEY = bytes.fromhex("6d6561646f776c61726b2d62656e6368")
"""The per-device keys are derived from it (``derive_psk``)."""
PROVISION_BATCH = 100
READ_PATH = "3/0/0"


@contextmanager
def serve(tmp: Path) -> Iterator[dict[str, int]]:
    """``meadowlark serve`` with loopback ports; yields its pid and ports."""
    ports = {
        "http": free_port(),
        "coap": free_port(socket.SOCK_DGRAM),
        "coaps": free_port(socket.SOCK_DGRAM),
    }
    env = {
        **os.environ,
        "PYTHONPATH": str(repo_root() / "src"),
        "MEADOWLARK_HTTP": f"127.0.0.1:{ports['http']}",
        "MEADOWLARK_COAP": f"127.0.0.1:{ports['coap']}",
        "MEADOWLARK_COAPS": f"127.0.0.1:{ports['coaps']}",
        "MEADOWLARK_DATA_DIR": str(tmp / "meadowlark-data"),
        "MEADOWLARK_ADMIN_PASSWORD": ADMIN_PASSWORD,
    }
    log_path = tmp / "serve.log"
    with log_path.open("wb") as log:
        process = subprocess.Popen(  # noqa: S603 - our own interpreter and CLI
            [python(), "-m", "meadowlark.cli.main", "serve"], env=env, stdout=log, stderr=log
        )
        try:
            _wait_ready(process, f"http://127.0.0.1:{ports['http']}/ready", log_path)
            yield {"pid": process.pid, **ports}
        finally:
            process.terminate()
            try:
                process.wait(timeout=15)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()


def _wait_ready(process: subprocess.Popen[bytes], url: str, log: Path) -> None:
    deadline = time.monotonic() + 90
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"meadowlark serve exited: {log.read_text()[-2000:]}")
        try:
            if httpx.get(url, timeout=1).status_code == 200:
                return
        except httpx.HTTPError:
            pass
        time.sleep(0.2)
    raise RuntimeError("meadowlark serve did not become ready")


def endpoint_names(prefix: str, count: int) -> list[str]:
    return [f"{prefix}-{index:05d}" for index in range(count)]


def login(http_port: int) -> str:
    form = {"username": "admin", "password": ADMIN_PASSWORD}
    answer = httpx.post(f"http://127.0.0.1:{http_port}/api/auth/oauth_password", data=form)
    answer.raise_for_status()
    return str(answer.json()["access_token"])


def provision(http_port: int, token: str, names: list[str], *, psk: bool) -> None:
    """Pre-provision ``names`` through the devices API: PSK devices with their derived
    keys, or NoSec ones."""
    from meadowlark.simulator.dtls import derive_psk

    headers = {"Authorization": f"Bearer {token}"}
    url = f"http://127.0.0.1:{http_port}/api/coiotedm/v3/devices/batch"
    for start in range(0, len(names), PROVISION_BATCH):
        items: list[dict[str, Any]] = []
        for name in names[start : start + PROVISION_BATCH]:
            item: dict[str, Any] = {"id": name, "properties": {"endpointName": name}}
            if psk:
                item["securityMode"] = "psk"
                item["dtlsIdentity"] = name
                item["dtlsPsk"] = {"HexadecimalPsk": derive_psk(MASTER_KEY, name).hex()}
            else:
                item["securityMode"] = "nosec"
            items.append(item)
        answer = httpx.post(url, json=items, headers=headers, timeout=60)
        answer.raise_for_status()
        if answer.json()["failed"]:
            raise RuntimeError(f"provisioning failed: {answer.text[:2000]}")


class DeviceProcess:
    """``python -m bench.dtls devices ...``: a side's simulated devices in a process."""

    def __init__(self, stack: ExitStack, tmp: Path, name: str, *options: object) -> None:
        env = {**os.environ, "PYTHONPATH": f"{repo_root() / 'src'}{os.pathsep}{repo_root()}"}
        self.log = tmp / f"{name}.log"
        self.process = subprocess.Popen(  # noqa: S603 - our own interpreter and module
            [python(), "-m", "bench.dtls", "devices", *map(str, options)],
            cwd=repo_root(), env=env, stdin=subprocess.PIPE, stdout=subprocess.PIPE,
            stderr=self.log.open("wb"),
        )  # fmt: skip
        stack.callback(self.stop)

    def result(self, timeout: float) -> dict[str, Any]:
        assert self.process.stdout is not None
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            line = self.process.stdout.readline()
            if not line:
                break
            if line.startswith(b"{"):
                return dict(json.loads(line))
        raise RuntimeError(f"device process printed no result: {self.log.read_text()[-2000:]}")

    def stop(self) -> None:
        if self.process.stdin is not None and not self.process.stdin.closed:
            self.process.stdin.close()
        try:
            self.process.wait(timeout=60)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()


def register_side(
    stack: ExitStack, tmp: Path, name: str, server: str, prefix: str, devices: int, window: int
) -> dict[str, Any]:
    """Start a side's devices (they stay registered until the stack closes)."""
    process = DeviceProcess(
        stack, tmp, name, "--server", server, "--prefix", prefix,
        "--devices", devices, "--window", window,
    )  # fmt: skip
    return process.result(timeout=600)


def read_load(
    http_port: int, token: str, names: list[str], duration: float, concurrency: int
) -> dict[str, float]:
    """Closed-loop REST reads over raw keep-alive connections, cycling through ``names``."""
    headers = {"Authorization": f"Bearer {token}"}
    requests = [
        http_request("GET", f"/api/lwm2m/v1/clients/{name}/{READ_PATH}", headers=headers)
        for name in names
    ]

    async def main() -> dict[str, float]:
        latencies: list[float] = []
        errors = 0
        stop_at = time.perf_counter() + duration

        async def connection(offset: int) -> None:
            nonlocal errors
            reader, writer = await asyncio.open_connection("127.0.0.1", http_port)
            position = offset
            try:
                while time.perf_counter() < stop_at:
                    started = time.perf_counter()
                    writer.write(requests[position % len(requests)])
                    position += concurrency
                    head = await reader.readuntil(b"\r\n\r\n")
                    length = 0
                    for line in head.split(b"\r\n")[1:]:
                        if line[:15].lower() == b"content-length:":
                            length = int(line[15:])
                    await reader.readexactly(length)
                    latencies.append(time.perf_counter() - started)
                    if int(head[9:12]) != 200:
                        errors += 1
            finally:
                writer.close()

        started = time.perf_counter()
        await asyncio.gather(*(connection(offset) for offset in range(concurrency)))
        seconds = time.perf_counter() - started
        return {
            "per_second": (len(latencies) - errors) / seconds,
            "p50_ms": statistics.median(latencies) * 1000 if latencies else 0.0,
            "errors": errors,
        }

    return asyncio.run(main())


def run(
    duration: float = 5.0,
    devices: int = 300,
    window: int = 32,
    concurrency: int = 16,
    rounds: int = 2,
) -> dict[str, float]:
    with ExitStack() as stack:
        tmp = Path(stack.enter_context(tempfile.TemporaryDirectory(prefix="bench-dtls-")))
        server = stack.enter_context(serve(tmp))
        token = login(server["http"])
        sides = {
            "udp": (f"coap://127.0.0.1:{server['coap']}", endpoint_names("udp", devices)),
            "dtls": (f"coaps://127.0.0.1:{server['coaps']}", endpoint_names("dtls", devices)),
        }
        for side, (_, names) in sides.items():
            provision(server["http"], token, names, psk=side == "dtls")
        warm = 20
        provision(server["http"], token, endpoint_names("warmdtls", warm), psk=True)
        provision(server["http"], token, endpoint_names("warmudp", warm), psk=False)
        register_side(stack, tmp, "warm-udp", sides["udp"][0], "warmudp", warm, window)
        register_side(stack, tmp, "warm-dtls", sides["dtls"][0], "warmdtls", warm, window)
        registered = {
            side: register_side(stack, tmp, side, uri, side, devices, window)
            for side, (uri, _) in sides.items()
        }
        reads: dict[str, dict[str, float]] = {}
        for _ in range(rounds):
            for side in ("dtls", "udp"):
                result = read_load(server["http"], token, sides[side][1], duration, concurrency)
                if side not in reads or result["per_second"] > reads[side]["per_second"]:
                    reads[side] = result
    register_ratio = registered["dtls"]["per_second"] / registered["udp"]["per_second"]
    read_ratio = reads["dtls"]["per_second"] / reads["udp"]["per_second"]
    print(
        f"dtls: meadowlark serve (SQLite), {devices} simulated devices per side, "
        f"{window} registering at once; reads over {concurrency} HTTP connections, "
        f"{duration:g} s, best of {rounds}"
    )
    for side, label in (("udp", "plain UDP (baseline)"), ("dtls", "DTLS-PSK")):
        result = registered[side]
        failed = f"  FAILED {result['failed']}" if result["failed"] else ""
        print(
            f"  {label:22} handshake+Register {result['per_second']:8.1f} dev/s{failed}   "
            f"reads {reads[side]['per_second']:8.1f}/s  p50 {reads[side]['p50_ms']:6.2f} ms"
            + (f"  errors {reads[side]['errors']}" if reads[side]["errors"] else "")
        )
    print(f"  ratio full DTLS-PSK handshakes+Register / plain Register: {register_ratio:.3f}")
    print(f"  ratio reads over DTLS / over plain UDP: {read_ratio:.3f}")
    return {"dtls_register_ratio": register_ratio, "dtls_read_ratio": read_ratio}


# --- the device process -------------------------------------------------------------------


async def _devices(server: str, prefix: str, count: int, window: int) -> None:
    from meadowlark.simulator import RegistrationError, SimulatedDevice
    from meadowlark.simulator.client import DeviceTiming
    from meadowlark.simulator.coap import CoapError
    from meadowlark.simulator.dtls import PskCredentials, derive_psk
    from meadowlark.simulator.fleet import ensure_file_limit

    ensure_file_limit(count + 256)
    secure = server.startswith("coaps://")
    timing = DeviceTiming(handshake_timeout=60.0)
    devices = [
        SimulatedDevice(
            name,
            server,
            lifetime=3600,
            timing=timing,
            security=PskCredentials(name, derive_psk(MASTER_KEY, name)) if secure else None,
        )
        for name in endpoint_names(prefix, count)
    ]
    limit = asyncio.Semaphore(window)
    failures: list[str] = []

    async def start(device: SimulatedDevice) -> None:
        async with limit:
            try:
                await device.start()
            except (RegistrationError, CoapError, OSError) as error:
                failures.append(f"{device.endpoint_name}: {error}")

    began = time.perf_counter()
    await asyncio.gather(*(start(device) for device in devices))
    seconds = time.perf_counter() - began
    done = count - len(failures)
    result = {"registered": done, "failed": len(failures), "seconds": seconds}
    result["per_second"] = done / seconds
    if failures:
        result["first_failure"] = failures[0]
    print(json.dumps(result), flush=True)
    loop = asyncio.get_running_loop()
    reader = asyncio.StreamReader()
    await loop.connect_read_pipe(lambda: asyncio.StreamReaderProtocol(reader), sys.stdin)
    await reader.read()  # until the benchmark closes stdin
    await asyncio.gather(*(device.stop(deregister=False) for device in devices))


def main() -> None:
    parser = argparse.ArgumentParser(description="bench.dtls: the devices of one side")
    parser.add_argument("mode", choices=["devices"])
    parser.add_argument("--server", required=True)
    parser.add_argument("--prefix", required=True)
    parser.add_argument("--devices", type=int, required=True)
    parser.add_argument("--window", type=int, required=True)
    args = parser.parse_args()
    asyncio.run(_devices(args.server, args.prefix, args.devices, args.window))


if __name__ == "__main__":
    if len(sys.argv) > 1 and sys.argv[1] == "devices":
        main()
    else:
        run()
