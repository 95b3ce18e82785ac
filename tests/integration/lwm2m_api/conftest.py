"""A real node for the LwM2M REST API: SQLite file, CoAP on 127.0.0.1 and uvicorn on
ephemeral ports, all on one event loop in a background thread, plus simulated devices
(LwM2M 1.0 and 1.1) on that loop. Tests talk HTTP over loopback and reach the loop
through ``Lab.run`` / ``Lab.call``. One lab serves the whole package.
"""

from __future__ import annotations

import asyncio
import json
import queue
import secrets
import socket
import threading
import time
from collections.abc import Callable, Coroutine, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar

import httpx
import pytest

from meadowlark.auth.permissions import CATALOG
from meadowlark.lwm2m.codec.formats import ContentFormat
from meadowlark.runtime import Runtime
from meadowlark.simulator import DeviceTiming, SimulatedDevice
from meadowlark.store.device_models import Device

T = TypeVar("T")
ADMIN_PASSWORD = "Admin-Test-Pa55word!"
AWAKE_WINDOW = 1.0
"""Seconds the server deems a queue-mode device reachable after it last spoke."""
LWM2M_PERMISSIONS = sorted(name for name in CATALOG if name.startswith("lwm2m:"))
LWM2M_VIEW_PERMISSIONS = sorted(
    name for name in LWM2M_PERMISSIONS if CATALOG[name].action == "view"
)
V11_FORMATS = (
    ContentFormat.SENML_CBOR,
    ContentFormat.SENML_JSON,
    ContentFormat.LWM2M_CBOR,
    ContentFormat.TLV,
    ContentFormat.OMA_JSON,
    ContentFormat.CBOR,
)
"""What the 1.1 test device announces: every multi-value format, and plain CBOR."""


@dataclass
class Lab:
    url: str
    coap_port: int
    runtime: Runtime
    loop: asyncio.AbstractEventLoop
    devices: list[SimulatedDevice] = field(default_factory=list)
    _admin_token: str | None = field(default=None, repr=False)

    # --- the loop ------------------------------------------------------------------------

    def run(self, work: Coroutine[Any, Any, T], timeout: float = 30) -> T:
        """Run a coroutine on the lab's loop and wait for its result."""
        return asyncio.run_coroutine_threadsafe(work, self.loop).result(timeout)

    def call(self, function: Callable[..., T], *args: Any) -> T:
        """Call a plain function on the lab's loop (device objects live there)."""

        async def call() -> T:
            return function(*args)

        return self.run(call())

    # --- HTTP (also what ``given_on`` needs) -------------------------------------------------

    def client(self, token: str | None = None, **kwargs: Any) -> httpx.Client:
        headers = dict(kwargs.pop("headers", {}))
        if token is not None:
            headers["Authorization"] = f"Bearer {token}"
        return httpx.Client(base_url=self.url, headers=headers, timeout=30, **kwargs)

    def login(self, username: str, password: str) -> str:
        with self.client() as http:
            response = http.post(
                "/api/auth/oauth_password",
                data={"grant_type": "password", "username": username, "password": password},
            )
        assert response.status_code == 201, response.text
        return response.json()["access_token"]  # type: ignore[no-any-return]

    @property
    def admin_token(self) -> str:
        if self._admin_token is None:
            self._admin_token = self.login("admin", ADMIN_PASSWORD)
        return self._admin_token

    def admin(self) -> httpx.Client:
        return self.client(self.admin_token)

    # --- devices -------------------------------------------------------------------------

    def device(self, name: str, lwm2m_version: str = "1.1", **options: Any) -> SimulatedDevice:
        """A simulated device, registered when this returns; stopped with the lab."""
        if lwm2m_version != "1.0":
            options.setdefault("content_formats", V11_FORMATS)
        options.setdefault("timing", DeviceTiming(ack_timeout=1.0, reboot_delay=0.2))

        async def start() -> SimulatedDevice:
            device = SimulatedDevice(
                name, f"coap://127.0.0.1:{self.coap_port}", lwm2m_version, **options
            )
            await device.start()
            return device

        device = self.run(start())
        self.devices.append(device)
        return device

    def provision(self, endpoint: str, domain_id: str) -> None:
        """Create the device record in ``domain_id`` before the device first registers."""

        async def insert() -> None:
            async with self.runtime.db.transaction() as session:
                session.add(Device(id=endpoint, endpoint_name=endpoint, domain_id=domain_id))

        self.run(insert())

    def events(self, token: str | None = None, **params: str) -> EventStream:
        """An open SSE stream of ``/events`` (as admin unless ``token`` is given)."""
        return EventStream(self, token or self.admin_token, params)


class EventStream:
    """An SSE subscription read by a task on the lab's loop; events queue up as
    ``(kind, data)`` for the test thread. Open once the server has subscribed."""

    def __init__(self, lab: Lab, token: str, params: dict[str, str]) -> None:
        self._lab = lab
        self._events: queue.Queue[tuple[str, dict[str, Any]]] = queue.Queue()
        self._task: asyncio.Task[None] | None = None
        lab.run(self._open(token, params))

    async def _open(self, token: str, params: dict[str, str]) -> None:
        ready: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self._task = asyncio.get_running_loop().create_task(self._read(token, params, ready))
        await ready

    async def _read(self, token: str, params: dict[str, str], ready: asyncio.Future[None]) -> None:
        headers = {"Authorization": f"Bearer {token}"}
        try:
            async with (
                httpx.AsyncClient(
                    base_url=self._lab.url, headers=headers, timeout=httpx.Timeout(10, read=None)
                ) as http,
                http.stream("GET", "/api/lwm2m/v1/events", params=params) as response,
            ):
                assert response.status_code == 200, await response.aread()
                assert response.headers["content-type"].startswith("text/event-stream")
                ready.set_result(None)
                kind = ""
                async for line in response.aiter_lines():
                    if line.startswith("event: "):
                        kind = line[len("event: ") :]
                    elif line.startswith("data: "):
                        self._events.put((kind, json.loads(line[len("data: ") :])))
        except Exception as exc:
            if not ready.done():
                ready.set_exception(exc)
            raise

    def next(
        self,
        kind: str,
        where: Callable[[dict[str, Any]], bool] = lambda _: True,
        timeout: float = 10,
    ) -> dict[str, Any]:
        """The next event of ``kind`` passing ``where``; other events are skipped."""
        deadline = time.monotonic() + timeout
        while (remaining := deadline - time.monotonic()) > 0:
            try:
                got_kind, data = self._events.get(timeout=remaining)
            except queue.Empty:
                break
            if got_kind == kind and where(data):
                return data
        raise AssertionError(f"no matching {kind} event within {timeout} s")

    def drain(self, seconds: float) -> list[tuple[str, dict[str, Any]]]:
        """Every event arriving within ``seconds``."""
        deadline = time.monotonic() + seconds
        seen = []
        while (remaining := deadline - time.monotonic()) > 0:
            try:
                seen.append(self._events.get(timeout=remaining))
            except queue.Empty:
                break
        return seen

    def close(self) -> None:
        async def stop() -> None:
            assert self._task is not None
            self._task.cancel()
            await asyncio.gather(self._task, return_exceptions=True)

        self._lab.run(stop())

    def __enter__(self) -> EventStream:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()


def _free_socket() -> socket.socket:
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    # Accepted connections inherit it. asyncio sets it itself only where the listening
    # socket was made with proto=IPPROTO_TCP (loop.create_server, as `meadowlark serve`
    # uses it); without it, every response body waits ~40 ms for a delayed ACK.
    sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    sock.bind(("127.0.0.1", 0))
    sock.listen(128)
    return sock


@pytest.fixture(scope="package")
def lab(
    tmp_path_factory: pytest.TempPathFactory, settings_for: Callable[..., Any]
) -> Iterator[Lab]:
    """The node and its loop thread; devices are stopped (de-registered) at the end."""
    import uvicorn

    from meadowlark.api.app import create_app
    from meadowlark.coap.server import CoapServer
    from meadowlark.logging import configure_logging

    configure_logging("warning")
    settings = settings_for(
        Path(tmp_path_factory.mktemp("lwm2m-api")),
        coap="127.0.0.1:0",
        lwm2m={"request_timeout": 3.0, "awake_window": AWAKE_WINDOW, "value_flush_interval": 0.02},
        # the package signs in once: its tokens outlast the package next to other workers
        token_lifetime=3600,
    )
    sock = _free_socket()
    started: queue.Queue[Lab | BaseException] = queue.Queue()
    uvicorn_server: list[uvicorn.Server] = []

    async def main() -> None:
        runtime = Runtime.from_settings(settings)
        await runtime.prepare_store()
        coap = CoapServer(runtime.lwm2m, "127.0.0.1", 0, max_payload=65536)
        await runtime.start_lwm2m()
        runtime.lwm2m.attach(await coap.start())
        config = uvicorn.Config(
            create_app(runtime, manage_runtime=False),
            log_level="warning",
            access_log=False,
            timeout_graceful_shutdown=1,
        )
        server = uvicorn.Server(config)
        uvicorn_server.append(server)
        serving = asyncio.get_running_loop().create_task(server.serve(sockets=[sock]))
        while not server.started and not serving.done():  # noqa: ASYNC110 - uvicorn has only a flag
            await asyncio.sleep(0.01)
        port = sock.getsockname()[1]
        lab = Lab(f"http://127.0.0.1:{port}", coap.port, runtime, asyncio.get_running_loop())
        started.put(lab)
        try:
            await serving
        finally:
            for device in lab.devices:
                await device.stop()
            await coap.stop()
            await runtime.close()

    def serve() -> None:
        try:
            asyncio.run(main())
        except BaseException as exc:  # reported to the waiting test
            started.put(exc)

    thread = threading.Thread(target=serve, name="lwm2m-lab", daemon=True)
    thread.start()
    outcome = started.get(timeout=60)
    if isinstance(outcome, BaseException):
        raise RuntimeError("the lab did not start") from outcome
    try:
        yield outcome
    finally:
        uvicorn_server[0].should_exit = True
        thread.join(timeout=30)
        sock.close()
        assert not thread.is_alive(), "the lab thread did not stop"
        assert started.empty(), started.get()


@pytest.fixture(scope="package")
def given(lab: Lab, given_on: Callable[[Any], Any]) -> Any:
    """User and domain builders (tests/conftest.py ``Given``) on the lab."""
    return given_on(lab)


@pytest.fixture(scope="package")
def dev10(lab: Lab) -> SimulatedDevice:
    return lab.device(f"api-v10-{secrets.token_hex(3)}", "1.0")


@pytest.fixture(scope="package")
def dev11(lab: Lab) -> SimulatedDevice:
    return lab.device(f"api-v11-{secrets.token_hex(3)}", "1.1")


@pytest.fixture(scope="package")
def devices(dev10: SimulatedDevice, dev11: SimulatedDevice) -> dict[str, SimulatedDevice]:
    """The plain devices by LwM2M version."""
    return {"1.0": dev10, "1.1": dev11}
