"""Notifications per second absorbed by ``meadowlark serve``, against bare aiocoap.

``meadowlark serve`` runs from the CLI with its defaults (SQLite in a temporary data
folder). ``devices`` generator devices (``bench.coap_load notify``) register with it and
are observed on /3303/0/5700 through the REST API (``POST .../observe``), as a user
would; the baseline is a bare aiocoap endpoint (``bench.bare_coap observer``) that
observes the same number of generator devices and only counts.

Then each side gets, for ``duration`` seconds each:

- NON notifications offered at ``rate`` per second (open loop, more than either side
  takes): absorbed = sent minus the datagrams the kernel dropped at the receiver's
  socket (its ``drops`` counter in /proc/net/udp6), over the time until its receive
  queue is empty again;
- confirmable ones, ``window`` in flight (one per device, a notification goes out when an
  earlier one is ACKed): absorbed = ACKed.

For ``meadowlark serve`` the run checks afterwards that each device's last notified value
reached the database (``resource_values``), so that the figure is of values persisted.
Both sides are set up first, then measured in turns, ``rounds`` times; each keeps its
best round.
"""

from __future__ import annotations

import asyncio
import sqlite3
import tempfile
from contextlib import ExitStack
from pathlib import Path
from typing import Any

import httpx

from bench.lwm2m import JsonProcess, bare_process, generator
from bench.registrations import ADMIN_PASSWORD, flame_graph, meadowlark_serve

OBSERVED = "3303/0/5700"


def udp_socket(port: int) -> tuple[int, int]:
    """(receive queue bytes, datagrams dropped) of the UDP socket bound to ``port``."""
    wanted = f":{port:04X}"
    for table in ("/proc/net/udp6", "/proc/net/udp"):
        for line in Path(table).read_text().splitlines()[1:]:
            fields = line.split()
            if fields[1].endswith(wanted):
                return int(fields[4].split(":")[1], 16), int(fields[-1])
    raise RuntimeError(f"no UDP socket on port {port}")


def _phase(load: JsonProcess, phase: str, duration: float, port: int) -> dict[str, Any]:
    import time

    assert load.process.stdin is not None
    _, dropped_before = udp_socket(port)
    load.process.stdin.write(f"{phase}\n".encode())
    load.process.stdin.flush()
    load.expect("start", timeout=30)
    started = time.monotonic()
    result = load.expect("end", timeout=duration + 60)
    if phase == "con":
        result["per_second"] = result.get("acked", 0) / result["seconds"]
        return result
    deadline = time.monotonic() + 30
    while udp_socket(port)[0] and time.monotonic() < deadline:
        time.sleep(0.01)
    seconds = time.monotonic() - started
    dropped = udp_socket(port)[1] - dropped_before
    result["dropped"] = dropped
    result["per_second"] = (result["sent"] - dropped) / seconds
    return result


def observed_load(
    stack: ExitStack,
    tmp: Path,
    servers: tuple[int, int],
    name: str,
    source: str,
    prefix: str,
    devices: int,
    options: list[object],
) -> JsonProcess:
    """The ``notify`` generator's devices registered with ``meadowlark serve`` (its CoAP
    and HTTP ports in ``servers``) and each observed through REST; the generator's handle."""
    coap_port, http_port = servers
    load = generator(
        stack, tmp, name, "notify", "--source", source, "--prefix", prefix,
        "--server", f"127.0.0.1:{coap_port}", *options,
    )  # fmt: skip
    registered = load.expect("registered", timeout=400)
    if registered["created"] != devices:
        raise RuntimeError(f"only {registered['created']} of {devices} registered")
    load.expect("ready", timeout=60)
    endpoints = [f"{prefix}-{index:06d}" for index in range(devices)]
    observed = asyncio.run(_observe_all(http_port, endpoints))
    if load.expect("observing", timeout=120)["observations"] != devices or observed != devices:
        raise RuntimeError(f"meadowlark observed {observed} of {devices}")
    return load


async def _observe_all(http_port: int, endpoints: list[str]) -> int:
    base = f"http://127.0.0.1:{http_port}"
    async with httpx.AsyncClient(base_url=base, timeout=30) as http:
        login = await http.post(
            "/api/auth/oauth_password", data={"username": "admin", "password": ADMIN_PASSWORD}
        )
        login.raise_for_status()
        http.headers["Authorization"] = f"Bearer {login.json()['access_token']}"
        limit = asyncio.Semaphore(16)

        async def one(endpoint: str) -> bool:
            async with limit:
                answer = await http.post(f"/api/lwm2m/v1/clients/{endpoint}/{OBSERVED}/observe")
                return answer.status_code == 200

        return sum(await asyncio.gather(*(one(endpoint) for endpoint in endpoints)))


def wait_idle(pid: int, *, busy_share: float = 0.05, max_seconds: float = 120.0) -> float:
    """Wait until process ``pid`` uses under ``busy_share`` of a core over one second (the
    work that followed the registrations is done); returns the seconds waited."""
    import os
    import time

    ticks = os.sysconf("SC_CLK_TCK")

    def cpu_seconds() -> float:
        fields = Path(f"/proc/{pid}/stat").read_text().rpartition(")")[2].split()
        return (int(fields[11]) + int(fields[12])) / ticks

    started = time.monotonic()
    while time.monotonic() - started < max_seconds:
        before = cpu_seconds()
        time.sleep(1.0)
        if cpu_seconds() - before < busy_share:
            break
    return time.monotonic() - started


def _persisted(data_dir: Path, since_iso: str) -> int:
    """Devices whose observed value was written to the database at or after ``since``."""
    database = next(data_dir.glob("*.db"))
    with sqlite3.connect(database) as connection:
        (count,) = connection.execute(
            "SELECT count(*) FROM resource_values JOIN devices ON devices.id = device_id "
            "WHERE devices.endpoint_name LIKE ? AND path = ? AND updated_at >= ?",
            ("obs-%", f"/{OBSERVED}", since_iso),
        ).fetchone()
    return int(count)


def run(
    duration: float = 5.0,
    devices: int = 500,
    window: int = 64,
    rate: float = 40_000.0,
    rounds: int = 2,
    profile: str | None = None,
) -> dict:
    """``duration``: seconds per phase; ``devices``: observed devices per side;
    ``profile``: a py-spy flame graph (SVG) of ``meadowlark serve``'s first NON phase."""
    import time
    from datetime import UTC, datetime

    with ExitStack() as stack:
        tmp = Path(stack.enter_context(tempfile.TemporaryDirectory(prefix="bench-notify-")))
        pid, coap_port, http_port = stack.enter_context(meadowlark_serve(tmp, with_http=True))
        options: list[object] = ["--devices", devices, "--duration", duration, "--rate", rate]
        options += ["--con-window", window, "--max-seconds", 300]
        ours = observed_load(
            stack, tmp, (coap_port, http_port), "notify-ours", "127.0.0.31", "obs", devices, options
        )

        observer, observer_port = bare_process(stack, tmp, "observer", "bare-observer")
        bare = generator(
            stack, tmp, "notify-bare", "notify", "--source", "127.0.0.30", *options
        )  # fmt: skip
        ready = bare.expect("ready", timeout=60)
        answer = observer.call(timeout=120, cmd="observe", addresses=ready["addresses"], accept=112)
        if bare.expect("observing", timeout=120)["observations"] != devices:
            raise RuntimeError(f"bare aiocoap observed {answer} of {devices}")

        wait_idle(pid)
        best: dict[tuple[str, str], dict[str, Any]] = {}
        persisted = 0
        sides = (("bare", bare, observer_port), ("ours", ours, coap_port))
        for round_ in range(rounds):
            for phase in ("non", "con"):
                for name, load, port in sides:
                    since = datetime.now(UTC).replace(tzinfo=None).isoformat(sep=" ")
                    recorded = profile if (name, phase, round_) == ("ours", "non", 0) else None
                    with flame_graph(pid, recorded):
                        result = _phase(load, phase, duration, port)
                    if name == "ours":
                        time.sleep(1.0)  # the value writer flushes in batches
                        persisted = max(persisted, _persisted(tmp / "meadowlark-data", since))
                    kept = best.get((name, phase))
                    if kept is None or result["per_second"] > kept["per_second"]:
                        best[name, phase] = result
                    time.sleep(0.5)
    print(
        f"notifications absorbed: {devices} observed devices, {duration:g} s per phase, best "
        f"of {rounds}; NON offered at {rate:g}/s, CON {window} in flight (one per device)"
    )
    figures = {}
    for phase in ("non", "con"):
        base, our = best["bare", phase], best["ours", phase]
        ratio = our["per_second"] / base["per_second"]
        for label, result in (
            (f"bare aiocoap observer {phase.upper()} (baseline)", base),
            (f"meadowlark serve {phase.upper()} (SQLite)", our),
        ):
            lost = f"  dropped {result['dropped']}" if result.get("dropped") else ""
            lost += f"  timeouts {result['timeouts']}" if result.get("timeouts") else ""
            lost += f"  RST {result['reset']}" if result.get("reset") else ""
            print(
                f"  {label:38} {result['per_second']:9.1f} notif/s  (sent "
                f"{result.get('sent', 0)}){lost}"
            )
        print(f"  ratio {phase.upper()} meadowlark serve / bare aiocoap: {ratio:.3f}")
        figures[f"notify_{phase}_per_second"] = our["per_second"]
        figures[f"notify_{phase}_ratio"] = ratio
    print(f"  values persisted: {persisted} of {devices} devices' last value in the database")
    return figures


if __name__ == "__main__":
    run()
