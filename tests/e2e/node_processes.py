"""Helpers of the scale-out end-to-end tests: ``meadowlark serve`` processes, simulated
devices on an event loop of their own, and an SSE reader."""

from __future__ import annotations

import asyncio
import json
import os
import queue
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Coroutine, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

import httpx

from live_server import wait_until_ready
from meadowlark.simulator import DeviceTiming, SimulatedDevice
from meadowlark.simulator.client import resolve_server

T = TypeVar("T")
ADMIN_PASSWORD = "Cluster-Admin-Pa55word!"
SECRET_KEY = "cluster-test-signing-key-0123456789abcdef0123456789"
EXECUTABLE = Path(sys.executable).parent / "meadowlark"
"""The ``meadowlark`` entry point of this interpreter's environment."""


def clean_environment() -> dict[str, str]:
    """This process's environment without its ``MEADOWLARK_`` settings."""
    return {k: v for k, v in os.environ.items() if not k.startswith("MEADOWLARK_")}


def free_port(kind: int) -> int:
    with socket.socket(socket.AF_INET, kind) as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]  # type: ignore[no-any-return]


@dataclass
class Node:
    """A running ``meadowlark serve``; ``coap`` is its UDP port."""

    name: str
    process: subprocess.Popen[bytes]
    url: str
    coap: int
    log: Path

    def output(self) -> str:
        return self.log.read_text(errors="replace")

    def wait_ready(self, timeout: float = 90) -> None:
        wait_until_ready(self.process, self.url, self.output, timeout)

    def stop(self) -> int:
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(timeout=30)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
        return self.process.returncode

    def token(self) -> str:
        response = httpx.post(
            f"{self.url}/api/auth/oauth_password",
            data={"grant_type": "password", "username": "admin", "password": ADMIN_PASSWORD},
            timeout=30,
        )
        assert response.status_code == 201, response.text
        return response.json()["access_token"]  # type: ignore[no-any-return]


def start_node(
    name: str,
    data_dir: Path,
    *,
    database_url: str | None = None,
    workers: int = 1,
    extra_env: dict[str, str] | None = None,
    args: tuple[str, ...] = (),
) -> Node:
    """``meadowlark serve --workers N`` as a process of its own, on free loopback ports;
    ``extra_env`` adds or overrides settings, ``args`` are more options of ``serve``."""
    data_dir.mkdir(parents=True, exist_ok=True)
    http_port, coap_port = free_port(socket.SOCK_STREAM), free_port(socket.SOCK_DGRAM)
    env = clean_environment()
    env.update(
        {
            "MEADOWLARK_HTTP": f"127.0.0.1:{http_port}",
            "MEADOWLARK_COAP": f"127.0.0.1:{coap_port}",
            "MEADOWLARK_COAPS": "127.0.0.1:0",  # DTLS on a free port, not 5684
            "MEADOWLARK_COAP_TCP": "off",  # no CoAP over TCP/TLS here
            "MEADOWLARK_COAP_TLS": "off",
            "MEADOWLARK_BOOTSTRAP": "off",
            "MEADOWLARK_BOOTSTRAP_DTLS": "off",
            "MEADOWLARK_DATA_DIR": str(data_dir),
            "MEADOWLARK_ADMIN_PASSWORD": ADMIN_PASSWORD,
            "MEADOWLARK_SECRET_KEY": SECRET_KEY,
            "MEADOWLARK_LWM2M__REQUEST_TIMEOUT": "5",
            "MEADOWLARK_TASKS__REGISTRATION_READS": "off",
        }
    )
    if database_url is not None:
        env["MEADOWLARK_DATABASE_URL"] = database_url
    env.update(extra_env or {})
    log = data_dir / f"{name}.log"
    with open(log, "wb") as out:
        process = subprocess.Popen(  # noqa: S603 - our own entry point
            [str(EXECUTABLE), "serve", "--workers", str(workers), *args],
            env=env,
            stdout=out,
            stderr=subprocess.STDOUT,
            cwd=data_dir,
        )
    return Node(name, process, f"http://127.0.0.1:{http_port}", coap_port, log)


def worker_pids(node: Node) -> list[int]:
    """The workers of ``serve --workers N``: the children of the supervisor process."""
    with open(f"/proc/{node.process.pid}/task/{node.process.pid}/children") as children:
        return [int(pid) for pid in children.read().split()]


def _udp_sockets_on(port: int) -> int:
    """How many UDP sockets are bound to ``port`` (IPv4 and IPv6)."""
    count = 0
    for table in ("/proc/net/udp", "/proc/net/udp6"):
        with open(table) as lines:
            for line in list(lines)[1:]:
                local = line.split()[1]
                count += int(local.rsplit(":", 1)[1], 16) == port
    return count


def wait_for_coap_workers(node: Node, count: int = 2) -> None:
    """Until every worker has bound the CoAP port: the kernel hashes a device's address
    over the sockets bound at the time, so a device must register after they all are."""
    deadline = time.monotonic() + 60
    while _udp_sockets_on(node.coap) < count:
        assert time.monotonic() < deadline, node.output()
        time.sleep(0.1)


class DeviceLoop:
    """Simulated devices live on this event loop, in a thread of its own."""

    def __init__(self) -> None:
        self.loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self.loop.run_forever, daemon=True)
        self._thread.start()
        self.devices: list[SimulatedDevice] = []

    def run(self, work: Coroutine[Any, Any, T], timeout: float = 60) -> T:
        return asyncio.run_coroutine_threadsafe(work, self.loop).result(timeout)

    def call(self, function: Callable[..., T], *args: Any) -> T:
        async def call() -> T:
            return function(*args)

        return self.run(call())

    def register(self, name: str, coap_port: int) -> SimulatedDevice:
        """A 1.1 device, registered (2.01 received) when this returns."""

        async def start() -> SimulatedDevice:
            device = SimulatedDevice(
                name,
                f"coap://127.0.0.1:{coap_port}",
                "1.1",
                lifetime=3600,
                timing=DeviceTiming(ack_timeout=1.0, reboot_delay=0.2),
            )
            await device.start()
            return device

        device = self.run(start())
        self.devices.append(device)
        return device

    def update_via(self, device: SimulatedDevice, coap_port: int) -> None:
        """Send the device's next Update to another port, from its same address (as after
        a load balancer moved it): the simulator has no public switch for that."""

        async def update() -> None:
            device._server = await resolve_server(f"coap://127.0.0.1:{coap_port}")
            await device.update()

        self.run(update())

    def close(self) -> None:
        async def stop() -> None:
            for device in self.devices:
                await device.stop(deregister=False)

        self.run(stop())
        self.loop.call_soon_threadsafe(self.loop.stop)
        self._thread.join(5)
        self.loop.close()


class EventReader:
    """``GET /api/lwm2m/v1/events`` read by a thread; events queue up as (kind, data)."""

    def __init__(self, url: str, token: str, **params: str) -> None:
        self._events: queue.Queue[tuple[str, dict[str, Any]]] = queue.Queue()
        self._opened = threading.Event()
        self._closing = False
        self._thread = threading.Thread(target=self._read, args=(url, token, params), daemon=True)
        self._thread.start()
        assert self._opened.wait(30), "the event stream did not open"

    def _read(self, url: str, token: str, params: dict[str, str]) -> None:
        headers = {"Authorization": f"Bearer {token}"}
        try:
            with httpx.stream(
                "GET",
                f"{url}/api/lwm2m/v1/events",
                params=params,
                headers=headers,
                timeout=httpx.Timeout(10, read=None),
            ) as response:
                assert response.status_code == 200
                kind = ""
                for line in response.iter_lines():
                    if line.startswith(":"):
                        self._opened.set()
                    elif line.startswith("event: "):
                        kind = line[len("event: ") :]
                    elif line.startswith("data: "):
                        self._events.put((kind, json.loads(line[len("data: ") :])))
                    if self._closing:
                        return
        except httpx.HTTPError:
            if not self._closing:
                raise

    def next(
        self, kind: str, where: Callable[[dict[str, Any]], bool], timeout: float = 20
    ) -> dict[str, Any]:
        deadline = time.monotonic() + timeout
        while (remaining := deadline - time.monotonic()) > 0:
            try:
                got, data = self._events.get(timeout=remaining)
            except queue.Empty:
                break
            if got == kind and where(data):
                return data
        raise AssertionError(f"no matching {kind} event within {timeout} s")

    def close(self) -> None:
        self._closing = True


@contextmanager
def running(*nodes: Node) -> Iterator[None]:
    try:
        for node in nodes:
            node.wait_ready()
        yield
    finally:
        for node in nodes:
            node.stop()


def eventually(check: Callable[[], bool], timeout: float = 20) -> None:
    deadline = time.monotonic() + timeout
    while not check():
        assert time.monotonic() < deadline, "condition not met in time"
        time.sleep(0.1)
