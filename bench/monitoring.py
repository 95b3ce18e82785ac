"""Notifications per second absorbed by ``meadowlark serve`` with monitoring on, against
the same server with monitoring off (bare ingest), in the same run.

One ``meadowlark serve`` (SQLite in a temporary folder), ``devices`` generator devices
(``bench.coap_load notify``) registered and observed on /3303/0/5700 through the REST
API, all put in one group. Then the NON and confirmable phases of
``bench.notifications`` run in turns with the group's monitoring off (every value goes
to the last-value cache only) and on (every value is also a monitoring sample), each
``rounds`` times; each side keeps its best round. After an "on" phase the run checks
that the samples reached ``monitoring_samples``; after an "off" phase that none did.
"""

from __future__ import annotations

import asyncio
import sqlite3
import tempfile
import time
from contextlib import ExitStack
from pathlib import Path
from typing import Any

import httpx

from bench.notifications import _phase, observed_load, wait_idle
from bench.registrations import ADMIN_PASSWORD, meadowlark_serve

COIOTE = "/api/coiotedm/v3"
GROUP = "bench-monitored"


async def _admin(http: httpx.AsyncClient) -> None:
    login = await http.post(
        "/api/auth/oauth_password", data={"username": "admin", "password": ADMIN_PASSWORD}
    )
    login.raise_for_status()
    http.headers["Authorization"] = f"Bearer {login.json()['access_token']}"


async def _group_all(http_port: int, endpoints: list[str]) -> None:
    async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{http_port}", timeout=30) as http:
        await _admin(http)
        (await http.post(f"{COIOTE}/groups", json={"id": GROUP})).raise_for_status()
        limit = asyncio.Semaphore(16)

        async def join(endpoint: str) -> None:
            async with limit:
                answer = await http.put(f"{COIOTE}/devices/{endpoint}", json={"addGroups": [GROUP]})
                answer.raise_for_status()

        await asyncio.gather(*(join(endpoint) for endpoint in endpoints))


async def _switch(http_port: int, on: bool) -> None:
    async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{http_port}", timeout=30) as http:
        await _admin(http)
        action = "enable" if on else "disable"
        answer = await http.post(f"{COIOTE}/deviceMonitoring/configuration/group/{GROUP}/{action}")
        answer.raise_for_status()


def _samples(data_dir: Path) -> int:
    database = next(data_dir.glob("*.db"))
    with sqlite3.connect(database) as connection:
        (count,) = connection.execute("SELECT count(*) FROM monitoring_samples").fetchone()
    return int(count)


def _settled_samples(data_dir: Path, max_seconds: float = 120.0) -> int:
    """The sample count once the writer has caught up (it stopped growing)."""
    deadline = time.monotonic() + max_seconds
    count = _samples(data_dir)
    while time.monotonic() < deadline:
        time.sleep(0.5)
        now = _samples(data_dir)
        if now == count:
            break
        count = now
    return count


def run(
    duration: float = 5.0,
    devices: int = 500,
    window: int = 64,
    rate: float = 40_000.0,
    rounds: int = 2,
) -> dict[str, float]:
    """``duration``: seconds per phase; ``devices``: observed devices."""
    with ExitStack() as stack:
        tmp = Path(stack.enter_context(tempfile.TemporaryDirectory(prefix="bench-monitor-")))
        data_dir = tmp / "meadowlark-data"
        pid, coap_port, http_port = stack.enter_context(meadowlark_serve(tmp, with_http=True))
        options: list[object] = ["--devices", devices, "--duration", duration, "--rate", rate]
        options += ["--con-window", window, "--max-seconds", 300]
        load = observed_load(
            stack,
            tmp,
            (coap_port, http_port),
            "notify-monitored",
            "127.0.0.32",
            "mon",
            devices,
            options,
        )
        endpoints = [f"mon-{index:06d}" for index in range(devices)]
        asyncio.run(_group_all(http_port, endpoints))
        wait_idle(pid)

        best: dict[tuple[str, str], dict[str, Any]] = {}
        sampled = {"off": 0, "on": 0}
        for _ in range(rounds):
            for phase in ("non", "con"):
                for side in ("off", "on"):
                    asyncio.run(_switch(http_port, side == "on"))
                    time.sleep(0.5)  # the settings reload
                    before = _settled_samples(data_dir)
                    result = _phase(load, phase, duration, coap_port)
                    sampled[side] += _settled_samples(data_dir) - before
                    kept = best.get((side, phase))
                    if kept is None or result["per_second"] > kept["per_second"]:
                        best[side, phase] = result
                    time.sleep(0.5)
    print(
        f"notifications absorbed with monitoring on vs bare ingest: {devices} observed devices "
        f"in one group, meadowlark serve on SQLite, {duration:g} s per phase, best of "
        f"{rounds}; NON offered at {rate:g}/s, CON {window} in flight"
    )
    figures: dict[str, float] = {}
    for phase in ("non", "con"):
        off, on = best["off", phase], best["on", phase]
        ratio = on["per_second"] / off["per_second"]
        for label, result in (("monitoring off (bare ingest)", off), ("monitoring on", on)):
            print(f"  {phase.upper()} {label:30} {result['per_second']:9.1f} notif/s")
        print(f"  ratio {phase.upper()} monitoring on / off: {ratio:.3f}")
        figures[f"monitoring_{phase}_ratio"] = ratio
        figures[f"monitoring_{phase}_per_second"] = on["per_second"]
    print(f"  samples written: {sampled['on']} with monitoring on, {sampled['off']} with it off")
    if sampled["off"] or not sampled["on"]:
        raise RuntimeError(f"monitoring switch had no effect: {sampled}")
    return figures


if __name__ == "__main__":
    run()
