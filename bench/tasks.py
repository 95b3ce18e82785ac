"""Group task throughput against the bare downlink rate of the same LwM2M server.

Our server (a ``Runtime`` on SQLite in a temporary folder with ``CoapServer``, as
``meadowlark serve`` wires them) runs in this process; ``devices`` generator devices
(``bench.coap_load``: raw UDP, one socket each, no coroutine per device) register with it
and answer reads of /3303/0/5700. Then, in the same run:

1. bare downlink: ``LwM2mServer.read`` of /3303/0/5700 on every device, ``workers`` in
   flight (what the server does per device with no task bookkeeping at all);
2. group task: one ``readResource`` task on a group holding every device, created like
   ``POST tasksFromTemplates/group/{id}``; timed until the summary counts every device
   completed. Each device run is claimed, executed and reported in the store.

Printed: device runs per second and its ratio to the bare reads per second, plus the
most asyncio tasks alive during the group task (it stays near ``workers``: idle devices
hold no coroutine).
"""

from __future__ import annotations

import asyncio
import socket
import sys
import tempfile
import time
from collections.abc import Callable
from contextlib import ExitStack
from pathlib import Path

from bench.common import free_port, python
from bench.lwm2m import ADMIN_PASSWORD, JsonProcess


async def _measure(
    devices: int, workers: int, port: int, start_load: Callable[[], JsonProcess], data_dir: Path
) -> dict[str, float]:
    from sqlalchemy import insert

    from meadowlark.auth.principal import Principal
    from meadowlark.coap.server import CoapServer
    from meadowlark.config import Settings
    from meadowlark.core.tasks.service import NewTask
    from meadowlark.logging import configure_logging
    from meadowlark.lwm2m.path import LwM2mPath
    from meadowlark.runtime import Runtime
    from meadowlark.store.coiote_models import Group, GroupMembership

    settings = Settings(
        coap=f"127.0.0.1:{port}",
        data_dir=data_dir,
        admin_password=ADMIN_PASSWORD,
        log_level="warning",
        lwm2m={"max_registrations_per_address_per_minute": 1_000_000_000, "request_timeout": 10},
        tasks={"workers": workers, "registration_reads": "off"},
    )
    configure_logging(settings.log_level)
    runtime = Runtime.from_settings(settings)
    await runtime.prepare_store()
    coap = CoapServer(runtime.lwm2m, "127.0.0.1", port)
    await runtime.start_lwm2m()
    runtime.lwm2m.attach(await coap.start())
    load = start_load()  # after our port is bound: the generator's sockets never take it
    try:
        await asyncio.to_thread(load.expect, "registered", 1800)
        await asyncio.to_thread(load.expect, "ready", 60)
        endpoints = [r.endpoint for r in await runtime.lwm2m.all_registrations()]
        devices = len(endpoints)  # those whose Register was answered in time
        path = LwM2mPath(3303, 0, 5700)

        # 1. bare downlink reads, ``workers`` in flight
        pending = list(endpoints)
        failures = 0

        async def reader() -> None:
            nonlocal failures
            while pending:
                endpoint = pending.pop()
                try:
                    await runtime.lwm2m.read(endpoint, path)
                except Exception:  # counted, the figure says how many failed
                    failures += 1

        started = time.perf_counter()
        await asyncio.gather(*(reader() for _ in range(workers)))
        bare_seconds = time.perf_counter() - started

        # 2. the group task
        async with runtime.db.transaction() as session:
            session.add(Group(id="bench", domain_id="/root/", description=""))
            await session.flush()
            await session.execute(
                insert(GroupMembership), [{"device_id": e, "group_id": "bench"} for e in endpoints]
            )
        admin = Principal("bench", "admin", "/root/", "admin", frozenset(), "bearer")
        new = NewTask(
            name="bench read",
            operations=[{"read": {"key": "/3303/0/5700"}}],
            parameters=[],
            properties={},
        )
        most_tasks = 0
        started = time.perf_counter()
        async with runtime.db.session() as session:
            task_id = await runtime.tasks.create_for_group(
                session, admin, "bench", new, rerun_if_exists=False, execute_immediately=True
            )
        while True:
            most_tasks = max(most_tasks, len(asyncio.all_tasks()))
            async with runtime.db.session() as session:
                summary = await runtime.tasks.summary(session, admin, task_id)
            if summary["completed"] == devices:
                break
            await asyncio.sleep(0.2)
        task_seconds = time.perf_counter() - started
        return {
            "devices": devices,
            "bare_per_second": devices / bare_seconds,
            "bare_failures": failures,
            "runs_per_second": devices / task_seconds,
            "successes": summary["successes"],
            "most_tasks": most_tasks,
        }
    finally:
        load.stop()
        await coap.stop()
        await runtime.close()


def run(duration: float = 5.0, devices: int = 10_000, workers: int = 64) -> dict[str, float]:
    """``devices``: simulated devices in the group; ``workers``: task workers, and reads
    in flight for the baseline. ``duration`` is not used (both phases are one pass)."""
    with ExitStack() as stack:
        tmp = Path(stack.enter_context(tempfile.TemporaryDirectory(prefix="bench-tasks-")))
        port = free_port(socket.SOCK_DGRAM)
        stderr = stack.enter_context((tmp / "load.stderr").open("wb"))
        command = [
            python(), "-m", "bench.coap_load", "notify", "--server", f"127.0.0.1:{port}",
            "--devices", str(devices), "--prefix", "task", "--window", "64",
            "--timeout", "30", "--max-seconds", "1800",
        ]  # fmt: skip
        figures = asyncio.run(
            _measure(
                devices,
                workers,
                port,
                lambda: JsonProcess(command, stderr, "task-devices"),
                tmp / "data",
            )
        )
    ratio = figures["runs_per_second"] / figures["bare_per_second"]
    print(
        f"tasks: group task over {figures['devices']} simulated devices (of {devices} started),"
        f" {workers} workers (SQLite)"
    )
    print(
        f"  bare LwM2mServer.read (baseline)  {figures['bare_per_second']:8.1f} reads/s"
        f"  ({figures['bare_failures']} failed)"
    )
    print(
        f"  group task device runs            {figures['runs_per_second']:8.1f} runs/s"
        f"   ratio {ratio:6.3f}  ({figures['successes']} succeeded,"
        f" at most {figures['most_tasks']} asyncio tasks alive)"
    )
    sys.stdout.flush()
    return {"task_runs_ratio": ratio, **figures}
