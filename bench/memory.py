"""Resident memory per registered device of ``meadowlark serve`` at 200,000 devices.

The server (a process, embedded SQLite defaults) gets a warm-up of a few devices, then
``devices`` more register from ``bench.coap_load storm`` processes (one UDP socket per
device, 127.x source addresses), offered at ``rate`` Registers per second so the server
is busy but not flooded (retransmission and 5.03 Max-Age retries still apply). The
figure is the VmRSS growth from after the warm-up to all registered, per device (target:
<= 5 KiB). The baseline, measured the same way in the same run, is a bare aiocoap
``rd`` resource that only answers 2.01 and keeps nothing.
"""

from __future__ import annotations

import tempfile
import time
from contextlib import ExitStack
from pathlib import Path
from typing import Any

from bench.storm import Served, bare_rd, describe, meadowlark_serve, registration_storm, warm_up

TARGET_KIB = 5.0


def _grow(
    stack: ExitStack, tmp: Path, served: Served, name: str, devices: int, rate: float,
    subnet: int, max_seconds: float,
) -> tuple[float, dict[str, Any]]:  # fmt: skip
    warm_up(stack, tmp, served.coap_port)
    before = served.rss_kib()
    result = registration_storm(
        tmp, served.coap_port, devices, prefix=name, subnet=subnet, ramp=devices / rate,
        max_seconds=max_seconds,
    )  # fmt: skip
    time.sleep(2.0)  # the batch writers flush
    after = served.rss_kib()
    print(f"  {describe(name, result)}")
    print(f"  {name:22} RSS {before / 1024:.0f} -> {after / 1024:.0f} MiB")
    return (after - before) / devices, result


def run(
    duration: float = 5.0,
    devices: int = 200_000,
    rate: float = 1000.0,
    max_seconds: float = 1800.0,
    baseline: bool = True,
) -> dict[str, float]:
    """``duration`` is unused (the run lasts until every device is registered)."""
    del duration
    print(f"resident memory per registered device at {devices} devices ({rate:g} Registers/s)")
    figures: dict[str, float] = {}
    with tempfile.TemporaryDirectory(prefix="bench-memory-") as directory:
        tmp = Path(directory)
        base_kib = None
        if baseline:
            with ExitStack() as stack:
                served = stack.enter_context(bare_rd(stack, tmp))
                base_kib, _ = _grow(stack, tmp, served, "bare", devices, rate, 4, max_seconds)
        with ExitStack() as stack:
            served = stack.enter_context(meadowlark_serve(tmp / "data", tmp / "serve.log"))
            our_kib, result = _grow(stack, tmp, served, "dev", devices, rate, 3, max_seconds)
    figures["kib_per_device"] = our_kib
    verdict = "met" if our_kib <= TARGET_KIB and result["lost"] == 0 else "NOT met"
    print(f"  meadowlark serve: {our_kib:.2f} KiB per device (target <= {TARGET_KIB:g}: {verdict})")
    if base_kib is not None:
        figures["ratio_vs_bare"] = our_kib / base_kib if base_kib > 0 else float("inf")
        print(
            f"  bare aiocoap rd: {base_kib:.2f} KiB per device; "
            f"ratio ours / bare {figures['ratio_vs_bare']:.2f}"
        )
    return figures


if __name__ == "__main__":
    import argparse

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--devices", type=int, default=200_000)
    parser.add_argument("--rate", type=float, default=1000.0)
    parser.add_argument("--max-seconds", type=float, default=1800.0)
    parser.add_argument("--no-baseline", action="store_true")
    arguments = parser.parse_args()
    run(
        devices=arguments.devices, rate=arguments.rate, max_seconds=arguments.max_seconds,
        baseline=not arguments.no_baseline,
    )  # fmt: skip
