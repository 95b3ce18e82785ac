"""A real server whose LwM2M side listens on loopback UDP, for tests with simulated devices.

The plain ``server`` fixture of ``tests/conftest.py`` serves HTTP only. Test modules that
import ``server`` from here replace it (and so every builder built on it) with a server
that also runs CoAP on 127.0.0.1 in the same event loop, the way ``meadowlark serve``
does. Simulated devices run on that loop too; ``call`` runs a coroutine there.
"""

from __future__ import annotations

import asyncio
import socket
import threading
import time
from collections.abc import Callable, Coroutine, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any, TypeVar

import pytest
from coiote.client import Coiote

from live_server import Server
from meadowlark.simulator import SimulatedDevice

T = TypeVar("T")


@dataclass(kw_only=True)
class Lwm2mTestServer(Server):
    """A ``Server`` that also serves CoAP, with the event loop both run on."""

    coap_port: int
    loop: asyncio.AbstractEventLoop
    coap: Any = None
    """The running ``CoapServer`` (more transports join its context)."""
    tcp_port: int | None = None
    """CoAP over TCP (``streams=True``), and ``tls_port`` over TLS."""
    tls_port: int | None = None

    @property
    def server_uri(self) -> str:
        return f"coap://127.0.0.1:{self.coap_port}"

    def call(self, work: Coroutine[Any, Any, T], timeout: float = 30) -> T:
        """Run ``work`` on the server's event loop and return its result."""
        return asyncio.run_coroutine_threadsafe(work, self.loop).result(timeout)


@contextmanager
def running_lwm2m_server(
    settings: Any, coap_port: int = 0, *, streams: bool = False
) -> Iterator[Lwm2mTestServer]:
    """uvicorn and the CoAP server (127.0.0.1, ``coap_port`` or an ephemeral one) on one
    loop in a thread; ``streams`` adds CoAP over TCP and TLS on ephemeral ports (TLS with
    the settings' certificates, as ``meadowlark serve``)."""
    import uvicorn

    from meadowlark.api.app import create_app
    from meadowlark.coap.server import CoapServer
    from meadowlark.logging import configure_logging
    from meadowlark.runtime import Runtime

    configure_logging("warning")
    runtime = Runtime.from_settings(settings)
    server = uvicorn.Server(
        uvicorn.Config(
            create_app(runtime),
            log_level="warning",
            access_log=False,
            lifespan="on",
            timeout_graceful_shutdown=5,
        )
    )
    coap = CoapServer(
        runtime.lwm2m,
        "127.0.0.1",
        coap_port,
        max_payload=4096,
        traffic=runtime.lwm2m.traffic,
        downloads=runtime.firmware_images,
        **(_stream_listeners(settings) if streams else {}),
    )
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)  # see tests/conftest.py
    sock.bind(("127.0.0.1", 0))
    sock.listen(128)
    ready = threading.Event()
    started: dict[str, Any] = {}
    failure: list[BaseException] = []

    async def main() -> None:
        serving = asyncio.create_task(server.serve(sockets=[sock]))
        while not server.started and not serving.done():  # noqa: ASYNC110 - uvicorn has a flag only
            await asyncio.sleep(0.01)
        if not serving.done():  # the lifespan has prepared the store: devices may come
            await runtime.start_lwm2m()
            runtime.lwm2m.attach(await coap.start())
            runtime.firmware_images.bind_coap("127.0.0.1", coap.port)
            runtime.firmware_images.bind_http("127.0.0.1", sock.getsockname()[1])
            started.update(loop=asyncio.get_running_loop(), port=coap.port)
            if streams:
                started.update(tcp=coap.stream_port("tcp"), tls=coap.stream_port("tls"))
        ready.set()
        try:
            await serving
        finally:
            await coap.stop()

    def serve() -> None:
        try:
            asyncio.run(main())
        except BaseException as exc:  # reported to the test below
            failure.append(exc)
        finally:
            ready.set()

    thread = threading.Thread(target=serve, name="uvicorn-lwm2m", daemon=True)
    thread.start()
    if not ready.wait(60) or "loop" not in started:
        sock.close()
        raise RuntimeError(f"server did not start: {failure!r}")
    try:
        yield Lwm2mTestServer(
            url=f"http://127.0.0.1:{sock.getsockname()[1]}",
            settings=settings,
            runtime=runtime,
            coap_port=started["port"],
            loop=started["loop"],
            coap=coap,
            tcp_port=started.get("tcp"),
            tls_port=started.get("tls"),
        )
    finally:
        server.should_exit = True
        thread.join(timeout=30)
        sock.close()
        assert not thread.is_alive(), "server thread did not stop"
        assert not failure, failure


def _stream_listeners(settings: Any) -> dict[str, Any]:
    from meadowlark.cli.serving import coap_tls_context

    loopback = ("127.0.0.1", 0)
    return {"tcp": loopback, "tls": loopback, "tls_context": coap_tls_context(settings)}


@pytest.fixture(scope="module")
def server(
    tmp_path_factory: pytest.TempPathFactory,
    database_url: str | None,
    settings_for: Callable[..., Any],
) -> Iterator[Lwm2mTestServer]:
    """Replaces the HTTP-only ``server``: one LwM2M-enabled server per module and backend.

    Its tokens live an hour: the modules sign in once (admin, tenants) and the long sweeps
    among them can outlast the default five minutes next to other test workers."""
    settings = settings_for(
        tmp_path_factory.mktemp("data"), database_url=database_url, token_lifetime=3600
    )
    with running_lwm2m_server(settings) as running:
        yield running


@pytest.fixture
def devices(server: Lwm2mTestServer) -> Iterator[Callable[..., SimulatedDevice]]:
    """``devices(endpoint, **options)``: a simulated device registered with the server,
    de-registered after the test."""
    started: list[SimulatedDevice] = []

    def start(endpoint: str, **options: Any) -> SimulatedDevice:
        async def register() -> SimulatedDevice:
            device = SimulatedDevice(endpoint, server.server_uri, **options)
            await device.start()
            return device

        device = server.call(register())
        started.append(device)
        return device

    yield start
    for device in started:
        server.call(device.stop())


@pytest.fixture(scope="module")
def coiote(server: Lwm2mTestServer) -> Iterator[Coiote]:
    """python-coiote signed in as the administrator."""
    client = Coiote(server.url, auth=server.admin_token)
    yield client
    client.session.close()


def eventually(check: Callable[[], T], timeout: float = 10, interval: float = 0.05) -> T:
    """Poll ``check`` until it returns a truthy value (or its last AssertionError)."""
    deadline = time.monotonic() + timeout
    while True:
        try:
            result = check()
        except AssertionError:
            if time.monotonic() > deadline:
                raise
        else:
            if result:
                return result
            if time.monotonic() > deadline:
                raise AssertionError(f"condition still false after {timeout} s: {result!r}")
        time.sleep(interval)
