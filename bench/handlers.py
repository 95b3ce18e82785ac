"""Webhook deliveries per second from ``meadowlark serve`` to a local receiver, against
bare ingest measured in the same run.

``meadowlark serve`` runs from the CLI with its defaults (SQLite in a temporary folder).
``devices`` generator devices (``bench.coap_load notify``) register and are observed on
/3303/0/5700 through the REST API. The receiver is a minimal asyncio HTTP/1.1 server in
its own process (``python -m bench.handlers sink PORT``) that answers 200 to every
request and counts them.

1. bare ingest: confirmable notifications, ``window`` in flight, for ``duration``
   seconds, with no event handler: notifications ACKed per second;
2. a webhook handler selecting /3303/0/5700 is created (``POST deviceEvents/handler/
   webhook``), and the same load runs again: notifications ACKed per second, the
   receiver's requests per second during the load, and the time until the outbox is
   drained after it (every notification is one delivery).

Printed: each figure and its ratio to bare ingest (deliveries/s over load plus drain).
"""

from __future__ import annotations

import asyncio
import json
import sqlite3
import sys
import tempfile
import time
from contextlib import ExitStack
from pathlib import Path
from typing import Any

import httpx

from bench.common import free_port, python
from bench.lwm2m import JsonProcess, generator, started
from bench.notifications import _observe_all, _phase, wait_idle
from bench.registrations import ADMIN_PASSWORD, meadowlark_serve

OBSERVED = "/3303/0/5700"


# --- the receiver (its own process) ----------------------------------------------------------


async def _sink(port: int) -> None:
    received = 0

    async def serve(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        nonlocal received
        try:
            while True:
                head = await reader.readuntil(b"\r\n\r\n")
                length = 0
                for line in head.split(b"\r\n"):
                    if line[:15].lower() == b"content-length:":
                        length = int(line[15:])
                await reader.readexactly(length)
                received += 1
                writer.write(b"HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n")
        except (asyncio.IncompleteReadError, ConnectionError):
            writer.close()

    server = await asyncio.start_server(serve, "127.0.0.1", port, backlog=512)
    loop = asyncio.get_running_loop()
    commands = asyncio.StreamReader()
    await loop.connect_read_pipe(lambda: asyncio.StreamReaderProtocol(commands), sys.stdin)
    print(json.dumps({"event": "ready"}), flush=True)
    async with server:
        while line := await commands.readline():
            json.loads(line)
            print(json.dumps({"event": "count", "received": received}), flush=True)


# --- the run ---------------------------------------------------------------------------------


def _count(sink: JsonProcess) -> int:
    return int(sink.call(cmd="count")["received"])


def _create_handler(http_port: int, receiver: str) -> None:
    base = f"http://127.0.0.1:{http_port}"
    with httpx.Client(base_url=base, timeout=30) as http:
        login = http.post(
            "/api/auth/oauth_password", data={"username": "admin", "password": ADMIN_PASSWORD}
        )
        login.raise_for_status()
        http.headers["Authorization"] = f"Bearer {login.json()['access_token']}"
        created = http.post(
            "/api/coiotedm/v3/deviceEvents/handler/webhook",
            json={
                "name": "bench",
                "filter": {"type": "telemetry", "lwm2mUrls": [OBSERVED]},
                "connectionConfig": {"uri": receiver},
            },
        )
        if created.status_code != 201:
            raise RuntimeError(f"handler not created: {created.text}")


def _outbox_rows(database: Path) -> int:
    with sqlite3.connect(database) as connection:
        (count,) = connection.execute("SELECT count(*) FROM event_handler_outbox").fetchone()
    return int(count)


def run(duration: float = 5.0, devices: int = 200, window: int = 64) -> dict[str, Any]:
    with ExitStack() as stack:
        tmp = Path(stack.enter_context(tempfile.TemporaryDirectory(prefix="bench-handlers-")))
        pid, coap_port, http_port = stack.enter_context(meadowlark_serve(tmp, with_http=True))
        sink_port = free_port()
        sink = stack.enter_context(
            started(stack, [python(), "-m", "bench.handlers", "sink", str(sink_port)], "sink", tmp)
        )
        sink.expect("ready", timeout=30)
        options: list[object] = ["--devices", devices, "--duration", duration, "--rate", 1000]
        options += ["--con-window", window, "--max-seconds", 300]
        load = generator(
            stack, tmp, "notify-handlers", "notify", "--source", "127.0.0.32", "--prefix", "obs",
            "--server", f"127.0.0.1:{coap_port}", *options,
        )  # fmt: skip
        if load.expect("registered", timeout=400)["created"] != devices:
            raise RuntimeError("not every device registered")
        load.expect("ready", timeout=60)
        endpoints = [f"obs-{index:06d}" for index in range(devices)]
        observed = asyncio.run(_observe_all(http_port, endpoints))
        if load.expect("observing", timeout=120)["observations"] != devices or observed != devices:
            raise RuntimeError(f"observed {observed} of {devices}")
        wait_idle(pid)

        bare = _phase(load, "con", duration, coap_port)
        wait_idle(pid)
        _create_handler(http_port, f"http://127.0.0.1:{sink_port}/hook")
        time.sleep(1.0)
        before = _count(sink)
        started_at = time.monotonic()
        with_handler = _phase(load, "con", duration, coap_port)
        during = _count(sink) - before
        load_seconds = time.monotonic() - started_at
        acked = with_handler.get("acked", 0)
        database = next((tmp / "meadowlark-data").glob("*.db"))
        last, stalled_since = -1, time.monotonic()
        while True:  # until the outbox is empty and the receiver has everything
            delivered = _count(sink) - before
            if _outbox_rows(database) == 0 and delivered == last:
                break
            if delivered != last:
                last, stalled_since = delivered, time.monotonic()
            if time.monotonic() - stalled_since > 30:
                break
            time.sleep(0.2)
        left = _outbox_rows(database)
        total_seconds = time.monotonic() - started_at
        log = (tmp / "serve.log").read_text(errors="replace").splitlines()
        problems = [line for line in log if "event_" in line][-5:]

    base = bare["per_second"]
    ingest = with_handler["per_second"]
    live = during / load_seconds
    overall = delivered / total_seconds
    print(
        f"webhook deliveries: {devices} observed devices, CON {window} in flight, "
        f"{duration:g} s of load (meadowlark serve, SQLite; receiver: asyncio HTTP/1.1 process)"
    )
    print(f"  bare ingest, no handler (baseline)    {base:9.1f} notif/s")
    print(
        f"  ingest with a webhook handler         {ingest:9.1f} notif/s   ratio {ingest / base:.3f}"
    )
    print(f"  deliveries during the load            {live:9.1f} req/s     ratio {live / base:.3f}")
    print(
        f"  deliveries incl. drain ({delivered} in {total_seconds:.1f} s, {left} left)"
        f"{overall:9.1f} req/s     ratio {overall / base:.3f}"
    )
    print(
        f"  ({acked} notifications ACKed under load; out-of-order ones are stale and not delivered)"
    )
    for line in problems:
        print(f"  serve.log: {line[:300]}")
    return {
        "bare_ingest_per_second": base,
        "ingest_with_handler_ratio": ingest / base,
        "webhook_deliveries_per_second": overall,
        "webhook_deliveries_ratio": overall / base,
        "delivered": delivered,
        "left_in_outbox": left,
    }


if __name__ == "__main__":
    if sys.argv[1:2] == ["sink"]:
        asyncio.run(_sink(int(sys.argv[2])))
    else:
        run()
