"""DTLS-PSK against plain UDP on the same ``meadowlark serve``, measured in the same run.

``meadowlark serve`` runs from the CLI with its defaults (SQLite in a temporary data
folder), its plain CoAP and its DTLS listener (``MEADOWLARK_COAPS``) on loopback ports.
``devices`` PSK devices (identity = endpoint name, a key of their own) and as many NoSec
ones are provisioned through the devices API. Simulated devices (the simulator's lean
endpoint; ``python -m bench.dtls devices`` in a process of its own per side) then give
two ratios:

1. registrations: every device of a side opens its socket and Registers, ``window`` at a
   time; DTLS devices first complete a full PSK handshake (HelloVerifyRequest cookie
   exchange included). Devices per second, DTLS / plain UDP. Before that, the DTLS
   devices' handshakes alone (each session closed at once) give the handshake rate.
2. requests on the established sessions, for ``duration`` seconds each, best of
   ``rounds``, DTLS / plain UDP:

   - REST reads: ``GET /api/lwm2m/v1/clients/{ep}/3/0/0`` (a CoAP GET to the device and
     its answer) over ``concurrency`` keep-alive HTTP connections, spread over the
     devices; the REST layer's cost is in both;
   - Updates: Registration Updates from the devices, ``window`` in flight, round robin
     (CoAP only, closer to the transport's own cost).

The machine is shared, so each figure also comes with the CPU seconds ``meadowlark serve``
(its workers included) spent per operation: per device registered (until the server is
idle again, the work that follows a Register included), per read and per Update.

Each device has a loopback address of its own (127.N.x.y), as devices in the field do:
the server throttles handshakes per address (``handshakes_per_address_per_second``),
which would otherwise be what is measured. The device processes do the client side of
every handshake and record on the same machine, so the figures include their share.
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
        "MEADOWLARK_COAP_TCP": "off",
        "MEADOWLARK_COAP_TLS": "off",
        "MEADOWLARK_BOOTSTRAP": "off",
        "MEADOWLARK_BOOTSTRAP_DTLS": "off",
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

    def updates(self, duration: float) -> dict[str, Any]:
        """Tell the devices to send Updates for ``duration`` seconds; their counts."""
        assert self.process.stdin is not None
        self.process.stdin.write(f"{duration}\n".encode())
        self.process.stdin.flush()
        return self.result(timeout=duration + 120)

    def stop(self) -> None:
        if self.process.stdin is not None and not self.process.stdin.closed:
            self.process.stdin.close()
        try:
            self.process.wait(timeout=60)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()


SOURCE_NETWORKS = {"warmudp": 30, "warmdtls": 31, "udp": 32, "dtls": 33, "handshakes": 34}
"""The second byte of each side's device addresses (127.N.x.y)."""


def register_side(
    stack: ExitStack, tmp: Path, name: str, server: str, prefix: str, devices: int, window: int
) -> tuple[DeviceProcess, dict[str, Any]]:
    """Start a side's devices (they stay registered until the stack closes)."""
    process = DeviceProcess(
        stack, tmp, name, "--server", server, "--prefix", prefix,
        "--devices", devices, "--window", window, "--network", SOURCE_NETWORKS[prefix],
    )  # fmt: skip
    result = process.result(timeout=600)
    if not result["registered"]:
        raise RuntimeError(f"no {name} device registered: {result.get('first_failure')}")
    return process, result


def handshakes_alone(tmp: Path, server: str, devices: int, window: int) -> dict[str, Any]:
    """Full handshakes of the DTLS side's identities, each closed at once (no Register)."""
    with ExitStack() as stack:
        process = DeviceProcess(
            stack, tmp, "handshakes", "--server", server, "--prefix", "dtls",
            "--devices", devices, "--window", window, "--network", SOURCE_NETWORKS["handshakes"],
            "--handshake-only",
        )  # fmt: skip
        return process.result(timeout=600)


def device_address(network: int, index: int) -> str:
    return f"127.{network}.{index // 250}.{index % 250 + 1}"


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
            "seconds": seconds,
            "per_second": (len(latencies) - errors) / seconds,
            "p50_ms": statistics.median(latencies) * 1000 if latencies else 0.0,
            "errors": errors,
        }

    return asyncio.run(main())


def tree_cpu_seconds(pid: int) -> float:
    """CPU seconds (user and system) of process ``pid`` and all its descendants."""
    ticks = os.sysconf("SC_CLK_TCK")
    parents: dict[int, int] = {}
    times: dict[int, float] = {}
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rpartition(")")[2].split()
        except OSError:
            continue  # the process ended meanwhile
        process = int(stat.parent.name)
        parents[process] = int(fields[1])
        times[process] = (int(fields[11]) + int(fields[12])) / ticks
    total = 0.0
    for process, seconds in times.items():
        ancestor = process
        while ancestor not in (pid, 0, 1) and ancestor in parents:
            ancestor = parents[ancestor]
        if ancestor == pid:
            total += seconds
    return total


def settle(pid: int, *, idle_cpu: float = 0.03, interval: float = 0.5) -> None:
    """Wait until ``pid`` and its workers use under ``idle_cpu`` CPU seconds per interval."""
    deadline = time.monotonic() + 120
    before = tree_cpu_seconds(pid)
    while time.monotonic() < deadline:
        time.sleep(interval)
        now = tree_cpu_seconds(pid)
        if now - before < idle_cpu:
            return
        before = now


def run(
    duration: float = 5.0,
    devices: int = 300,
    window: int = 32,
    concurrency: int = 16,
    rounds: int = 3,
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
        settle(server["pid"])
        cpu = tree_cpu_seconds(server["pid"])
        handshakes = handshakes_alone(tmp, sides["dtls"][0], devices, window)
        settle(server["pid"])
        handshakes["cpu_ms"] = (tree_cpu_seconds(server["pid"]) - cpu) * 1000 / devices
        registered: dict[str, dict[str, Any]] = {}
        processes: dict[str, DeviceProcess] = {}
        for side, (uri, _) in sides.items():
            settle(server["pid"])
            cpu = tree_cpu_seconds(server["pid"])
            processes[side], registered[side] = register_side(
                stack, tmp, side, uri, side, devices, window
            )
            settle(server["pid"])
            spent = tree_cpu_seconds(server["pid"]) - cpu
            registered[side]["cpu_ms"] = spent * 1000 / registered[side]["registered"]
        reads: dict[str, dict[str, Any]] = {}
        updates: dict[str, dict[str, Any]] = {}
        for _ in range(rounds):
            for side in ("dtls", "udp"):
                cpu = tree_cpu_seconds(server["pid"])
                result = read_load(server["http"], token, sides[side][1], duration, concurrency)
                done = result["per_second"] * result["seconds"]
                result["cpu_ms"] = (tree_cpu_seconds(server["pid"]) - cpu) * 1000 / max(1, done)
                if side not in reads or result["per_second"] > reads[side]["per_second"]:
                    reads[side] = result
                settle(server["pid"])
                cpu = tree_cpu_seconds(server["pid"])
                result = processes[side].updates(duration)
                settle(server["pid"])
                spent = tree_cpu_seconds(server["pid"]) - cpu
                result["cpu_ms"] = spent * 1000 / max(1, result["updates"])
                if side not in updates or result["per_second"] > updates[side]["per_second"]:
                    updates[side] = result
    register_ratio = registered["dtls"]["per_second"] / registered["udp"]["per_second"]
    handshake_ratio = handshakes["per_second"] / registered["udp"]["per_second"]
    read_ratio = reads["dtls"]["per_second"] / reads["udp"]["per_second"]
    register_cost = registered["dtls"]["cpu_ms"] / registered["udp"]["cpu_ms"]
    read_cost = reads["dtls"]["cpu_ms"] / reads["udp"]["cpu_ms"]
    update_ratio = updates["dtls"]["per_second"] / updates["udp"]["per_second"]
    update_cost = updates["dtls"]["cpu_ms"] / updates["udp"]["cpu_ms"]
    print(
        f"dtls: meadowlark serve (SQLite), {devices} simulated devices per side, "
        f"{window} registering at once; reads over {concurrency} HTTP connections, "
        f"{duration:g} s, best of {rounds}"
    )
    for side, label in (("udp", "plain UDP (baseline)"), ("dtls", "DTLS-PSK")):
        result = registered[side]
        failed = f"  FAILED {result['failed']}" if result["failed"] else ""
        read, update = reads[side], updates[side]
        print(
            f"  {label:20} registrations {result['per_second']:7.1f}/s "
            f"(server {result['cpu_ms']:5.2f} ms CPU each, simulator "
            f"{result['client_cpu_ms']:5.2f} ms){failed}\n"
            f"  {'':20} REST reads    {read['per_second']:7.1f}/s "
            f"(server {read['cpu_ms']:5.2f} ms CPU each) p50 {read['p50_ms']:6.2f} ms"
            + (f"  errors {read['errors']}" if read["errors"] else "")
            + f"\n  {'':20} Updates       {update['per_second']:7.1f}/s "
            f"(server {update['cpu_ms']:5.2f} ms CPU each)"
            + (f"  failed {update['failed']}" if update["failed"] else "")
        )
    print(
        f"  {'DTLS-PSK':20} handshakes alone {handshakes['per_second']:7.1f}/s (server "
        f"{handshakes['cpu_ms']:5.2f} ms CPU each, simulator {handshakes['client_cpu_ms']:5.2f}"
        f" ms), each closed at once"
        + (f"  FAILED {handshakes['failed']}" if handshakes["failed"] else "")
    )
    print(
        f"  ratio full DTLS-PSK handshakes alone / plain Register per second: {handshake_ratio:.3f}"
    )
    print(
        f"  ratio full DTLS-PSK handshakes+Register / plain Register per second: "
        f"{register_ratio:.3f}  (server CPU per registration: {register_cost:.2f}x)"
    )
    print(
        f"  ratio REST reads over DTLS / over plain UDP per second: {read_ratio:.3f}  "
        f"(server CPU per read: {read_cost:.2f}x)"
    )
    print(
        f"  ratio Updates over DTLS / over plain UDP per second: {update_ratio:.3f}  "
        f"(server CPU per Update: {update_cost:.2f}x)"
    )
    return {
        "dtls_handshake_ratio": handshake_ratio,
        "dtls_update_ratio": update_ratio,
        "dtls_update_cpu_ratio": update_cost,
        "dtls_register_ratio": register_ratio,
        "dtls_read_ratio": read_ratio,
        "dtls_register_cpu_ratio": register_cost,
        "dtls_read_cpu_ratio": read_cost,
    }


# --- the device process -------------------------------------------------------------------


async def _handshakes(server: str, prefix: str, count: int, window: int, network: int) -> None:
    """Full handshakes, each session closed (close_notify) as soon as it is up."""
    from meadowlark.simulator.client import resolve_server
    from meadowlark.simulator.dtls import DtlsCoapEndpoint, DtlsError, PskCredentials, derive_psk

    address = await resolve_server(server)
    limit = asyncio.Semaphore(window)
    failures: list[str] = []

    async def handshake(index: int, name: str) -> None:
        async with limit:
            try:
                endpoint = await DtlsCoapEndpoint.connect(
                    lambda _: None,
                    (device_address(network, index), 0),
                    server=address,
                    credentials=PskCredentials(name, derive_psk(MASTER_KEY, name)),
                )
            except (DtlsError, OSError) as error:
                failures.append(f"{name}: {error}")
            else:
                endpoint.close()

    began, cpu = time.perf_counter(), time.process_time()
    names = endpoint_names(prefix, count)
    await asyncio.gather(*(handshake(index, name) for index, name in enumerate(names)))
    seconds = time.perf_counter() - began
    done = count - len(failures)
    result: dict[str, Any] = {"registered": done, "failed": len(failures), "seconds": seconds}
    result["per_second"] = done / seconds
    result["client_cpu_ms"] = (time.process_time() - cpu) * 1000 / max(1, done)
    if failures:
        result["first_failure"] = failures[0]
    print(json.dumps(result), flush=True)


async def _devices(server: str, prefix: str, count: int, window: int, network: int) -> None:
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
            local_host=device_address(network, index),
        )
        for index, name in enumerate(endpoint_names(prefix, count))
    ]
    limit = asyncio.Semaphore(window)
    failures: list[str] = []

    async def start(device: SimulatedDevice) -> None:
        async with limit:
            try:
                await device.start()
            except (RegistrationError, CoapError, OSError) as error:
                failures.append(f"{device.endpoint_name}: {error}")

    began, cpu = time.perf_counter(), time.process_time()
    await asyncio.gather(*(start(device) for device in devices))
    seconds = time.perf_counter() - began
    done = count - len(failures)
    result = {"registered": done, "failed": len(failures), "seconds": seconds}
    result["per_second"] = done / seconds
    result["client_cpu_ms"] = (time.process_time() - cpu) * 1000 / max(1, done)
    if failures:
        result["first_failure"] = failures[0]
    print(json.dumps(result), flush=True)
    loop = asyncio.get_running_loop()
    reader = asyncio.StreamReader()
    await loop.connect_read_pipe(lambda: asyncio.StreamReaderProtocol(reader), sys.stdin)
    registered = [device for device in devices if device.location is not None]
    while line := await reader.readline():  # a duration: Updates for that long
        print(json.dumps(await _updates(registered, window, float(line))), flush=True)
    await asyncio.gather(*(device.stop(deregister=False) for device in devices))


async def _updates(devices: list[Any], window: int, duration: float) -> dict[str, Any]:
    """Closed-loop Registration Updates: ``window`` devices at a time, round robin."""
    from meadowlark.simulator import RegistrationError
    from meadowlark.simulator.coap import CoapError

    stop_at = time.perf_counter() + duration
    sent = failed = 0

    async def lane(offset: int) -> None:
        nonlocal sent, failed
        position = offset
        while time.perf_counter() < stop_at:
            try:
                await devices[position % len(devices)].update()
                sent += 1
            except (RegistrationError, CoapError):
                failed += 1
            position += window

    began = time.perf_counter()
    await asyncio.gather(*(lane(offset) for offset in range(min(window, len(devices)))))
    seconds = time.perf_counter() - began
    return {"updates": sent, "failed": failed, "seconds": seconds, "per_second": sent / seconds}


def main() -> None:
    parser = argparse.ArgumentParser(description="bench.dtls: the devices of one side")
    parser.add_argument("mode", choices=["devices"])
    parser.add_argument("--server", required=True)
    parser.add_argument("--prefix", required=True)
    parser.add_argument("--devices", type=int, required=True)
    parser.add_argument("--window", type=int, required=True)
    parser.add_argument("--network", type=int, required=True, help="127.N.x.y addresses")
    parser.add_argument("--handshake-only", action="store_true", help="no Register")
    args = parser.parse_args()
    work = _handshakes if args.handshake_only else _devices
    asyncio.run(work(args.server, args.prefix, args.devices, args.window, args.network))


if __name__ == "__main__":
    if len(sys.argv) > 1 and sys.argv[1] == "devices":
        main()
    else:
        run()
