"""A registration storm against ``meadowlark serve`` (a process, embedded SQLite defaults).

``devices`` simulated devices (one UDP socket each, from ``bench.coap_load storm``
processes with distinct 127.x source addresses) all register within ``ramp`` seconds,
each as a CoAP client: RFC 7252 retransmission of unanswered requests and, after a 5.03,
a retry once its Max-Age has passed. The figure is the time until the last device has
its 2.01 (target: < 60 s for 100,000 devices) and the devices lost (none may be). The
same storm against a bare aiocoap ``rd`` resource that only answers 2.01 is the
baseline measured in the same run.

Also printed: the server's resident memory per registered device (VmRSS growth over the
storm), the figure ``bench.memory`` takes at 200,000 devices.
"""

from __future__ import annotations

import math
import os
import socket
import subprocess
import tempfile
import time
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx

from bench.common import free_port, python, repo_root
from bench.lwm2m import bare_process, generator

DEVICES_PER_PROCESS = 18_000
"""Sockets per generator process: under the 20,000 descriptors a process may open here,
and under the ~28,000 ephemeral ports of one source address."""
WARM_UP_DEVICES = 200
ADMIN_PASSWORD = "bench-admin-password"  # noqa: S105 - a throwaway local server


@dataclass
class Served:
    """A server under test: its process id (for VmRSS) and CoAP port."""

    pid: int
    coap_port: int

    def rss_kib(self) -> int:
        """VmRSS of the process and all its descendants (``serve``'s worker processes)."""
        return sum(_vm_rss_kib(pid) for pid in _process_tree(self.pid))


def _process_tree(pid: int) -> list[int]:
    tree, pending = [], [pid]
    while pending:
        current = pending.pop()
        tree.append(current)
        for task in Path(f"/proc/{current}/task").iterdir():
            pending.extend(int(child) for child in (task / "children").read_text().split())
    return tree


def _vm_rss_kib(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    raise RuntimeError(f"no VmRSS for process {pid}")


@contextmanager
def meadowlark_serve(data_dir: Path, log: Path) -> Iterator[Served]:
    """``meadowlark serve`` as users start it (SQLite in ``data_dir``), until ready."""
    http_port, coap_port = free_port(), free_port(socket.SOCK_DGRAM)
    env = {
        **os.environ,
        "MEADOWLARK_HTTP": f"127.0.0.1:{http_port}",
        "MEADOWLARK_COAP": f"127.0.0.1:{coap_port}",
        "MEADOWLARK_COAPS": "127.0.0.1:0",  # DTLS on a free port, not 5684
        "MEADOWLARK_COAP_TCP": "off",  # no CoAP over TCP/TLS here
        "MEADOWLARK_COAP_TLS": "off",
        "MEADOWLARK_BOOTSTRAP": "off",
        "MEADOWLARK_BOOTSTRAP_DTLS": "off",
        "MEADOWLARK_DATA_DIR": str(data_dir),
        "MEADOWLARK_ADMIN_PASSWORD": ADMIN_PASSWORD,
    }
    with log.open("wb") as output:
        process = subprocess.Popen(  # noqa: S603 - our own interpreter and entry point
            [python(), "-m", "meadowlark.cli.main", "serve"],
            cwd=repo_root(), env=env, stdout=output, stderr=subprocess.STDOUT,
        )  # fmt: skip
    try:
        deadline = time.monotonic() + 120
        while True:
            if process.poll() is not None:
                raise RuntimeError(f"meadowlark serve exited: {log.read_text()[-2000:]}")
            try:
                if httpx.get(f"http://127.0.0.1:{http_port}/ready", timeout=2).status_code == 200:
                    break
            except httpx.HTTPError:
                pass
            if time.monotonic() > deadline:
                raise RuntimeError("meadowlark serve not ready in 120 s")
            time.sleep(0.2)
        yield Served(process.pid, coap_port)
    finally:
        process.terminate()
        try:
            process.wait(timeout=30)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


@contextmanager
def bare_rd(stack: ExitStack, tmp: Path) -> Iterator[Served]:
    server, port = bare_process(stack, tmp, "rd", "bare-rd")
    yield Served(server.pid, port)


def registration_storm(
    tmp: Path, coap_port: int, devices: int, *, prefix: str, subnet: int, ramp: float,
    max_seconds: float,
) -> dict[str, Any]:  # fmt: skip
    """Run the storm from enough generator processes; their figures summed up."""
    processes = math.ceil(devices / DEVICES_PER_PROCESS)
    share = math.ceil(devices / processes)
    with ExitStack() as stack:
        loads = []
        for number in range(processes):
            first = number * share
            count = min(share, devices - first)
            loads.append(
                generator(
                    stack,
                    tmp,
                    f"storm-{prefix}-{number}",
                    "storm",
                    "--server",
                    f"127.0.0.1:{coap_port}",
                    "--source",
                    f"127.0.{subnet}.{10 + number}",
                    "--devices",
                    count,
                    "--prefix",
                    prefix,
                    "--first",
                    first,
                    "--ramp",
                    ramp,
                    "--max-seconds",
                    max_seconds,
                )  # fmt: skip
            )
        for load in loads:
            load.expect("ready", timeout=300)
        for load in loads:  # all start together
            assert load.process.stdin is not None
            load.process.stdin.write(b"go\n")
            load.process.stdin.flush()
        results = [load.expect("stormed", timeout=max_seconds + 120) for load in loads]
    summed: dict[str, Any] = {"processes": processes, "codes": {}}
    for result in results:
        for key, value in result.items():
            if isinstance(value, int) and key != "pid":
                summed[key] = summed.get(key, 0) + value
        for code, number in result["codes"].items():
            summed["codes"][code] = summed["codes"].get(code, 0) + number
    summed["seconds"] = max(result["seconds"] for result in results)
    summed["p50_ms"] = max(result["p50_ms"] for result in results)
    summed["p99_ms"] = max(result["p99_ms"] for result in results)
    summed["per_second"] = summed["created"] / summed["seconds"] if summed["seconds"] else 0.0
    return summed


def warm_up(stack: ExitStack, tmp: Path, coap_port: int) -> None:
    """Register a few devices first, so the memory figure leaves out start-up effects."""
    load = generator(
        stack, tmp, "warm-up", "register", "--server", f"127.0.0.1:{coap_port}",
        "--source", "127.0.9.1", "--devices", WARM_UP_DEVICES, "--prefix", "warm",
        "--max-seconds", 60,
    )  # fmt: skip
    load.expect("registered", timeout=120)
    time.sleep(1.0)


def describe(name: str, result: dict[str, Any]) -> str:
    return (
        f"{name:22} {result['created']:7d}/{result['devices']} created in "
        f"{result['seconds']:6.1f} s ({result['per_second']:6.0f}/s), lost {result['lost']}, "
        f"5.03 {result.get('service_unavailable', 0)}, retransmissions "
        f"{result.get('retransmissions', 0)}, new exchanges {result.get('new_exchanges', 0)}, "
        f"p50 {result['p50_ms'] / 1000:.1f} s, p99 {result['p99_ms'] / 1000:.1f} s"
        f"{', other codes ' + str(result['codes']) if result['codes'] else ''}"
    )


def run(
    duration: float = 5.0,
    devices: int = 100_000,
    ramp: float = 5.0,
    max_seconds: float = 600.0,
    baseline: bool = True,
) -> dict[str, float]:
    """``duration`` is unused (the storm lasts until every device is registered)."""
    del duration
    print(
        f"registration storm: {devices} devices starting within {ramp:g} s, "
        f"{os.cpu_count()} cores shared by server and generators (figures from one run)"
    )
    figures: dict[str, float] = {}
    with tempfile.TemporaryDirectory(prefix="bench-storm-") as directory, ExitStack() as stack:
        tmp = Path(directory)
        base = None
        if baseline:
            with ExitStack() as bare_stack:
                served = bare_stack.enter_context(bare_rd(bare_stack, tmp))
                base = registration_storm(
                    tmp, served.coap_port, devices, prefix="bare", subnet=2, ramp=ramp,
                    max_seconds=max_seconds,
                )  # fmt: skip
            print(f"  {describe('bare aiocoap rd', base)}")
        served = stack.enter_context(meadowlark_serve(tmp / "data", tmp / "serve.log"))
        warm_up(stack, tmp, served.coap_port)
        rss_before = served.rss_kib()
        ours = registration_storm(
            tmp, served.coap_port, devices, prefix="dev", subnet=1, ramp=ramp,
            max_seconds=max_seconds,
        )  # fmt: skip
        time.sleep(1.0)
        rss_after = served.rss_kib()
        print(f"  {describe('meadowlark serve', ours)}")
        per_device = (rss_after - rss_before) / devices
        print(
            f"  meadowlark serve RSS {rss_before / 1024:.0f} -> {rss_after / 1024:.0f} MiB: "
            f"{per_device:.2f} KiB per registered device"
        )
        figures["storm_seconds"] = ours["seconds"]
        figures["storm_lost"] = ours["lost"]
        figures["storm_kib_per_device"] = per_device
        verdict = "met" if ours["lost"] == 0 and ours["seconds"] < 60 else "NOT met"
        print(f"  target (< 60 s, none lost): {verdict}")
        if base is not None and ours["seconds"]:
            ratio = base["seconds"] / ours["seconds"]
            figures["storm_ratio_vs_bare"] = ratio
            print(f"  ratio (bare aiocoap storm time / ours): {ratio:.2f}")
    return figures


if __name__ == "__main__":
    import argparse

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--devices", type=int, default=100_000)
    parser.add_argument("--ramp", type=float, default=5.0)
    parser.add_argument("--max-seconds", type=float, default=600.0)
    parser.add_argument("--no-baseline", action="store_true")
    arguments = parser.parse_args()
    run(
        devices=arguments.devices, ramp=arguments.ramp, max_seconds=arguments.max_seconds,
        baseline=not arguments.no_baseline,
    )  # fmt: skip
