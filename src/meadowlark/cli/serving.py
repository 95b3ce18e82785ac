"""Running one node: the REST server (uvicorn) and the CoAP server on one event loop."""

from __future__ import annotations

import asyncio
import contextlib
import socket
import ssl
from collections.abc import Awaitable, Callable, Iterator

import typer

from meadowlark import __version__
from meadowlark.config import HostPort, Settings
from meadowlark.runtime import Runtime
from meadowlark.store.migrate import SchemaTooNew


def print_admin_password(password: str) -> None:
    typer.echo(
        "\nFirst administrator created: login 'admin', password (shown only this once):\n"
        f"    {password}\n"
        "Change it with: meadowlark user set-password admin\n",
        err=True,
    )


def safe_url(url: str) -> str:
    from sqlalchemy.engine import make_url

    return make_url(url).render_as_string(hide_password=True)


def print_banner(settings: Settings) -> None:
    base = f"http://{settings.http}"
    typer.echo(
        f"Meadowlark {__version__}: REST on {base} (docs: {base}/docs), "
        f"database {safe_url(settings.resolved_database_url)}\n"
        f"Get a token: curl -X POST {base}/api/auth/oauth_password "
        "-d username=admin -d password=<admin password>",
        err=True,
    )
    if settings.metrics.listen is not None:
        typer.echo(f"Metrics on http://{settings.metrics.listen}/metrics", err=True)


def metrics_socket(address: HostPort, *, reuse_port: bool) -> socket.socket:
    """The separate metrics address's listening socket; every worker of ``serve
    --workers N`` binds it (SO_REUSEPORT) and any of them answers for the node."""
    family = socket.AF_INET6 if ":" in address.host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    if reuse_port:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
    try:
        sock.bind((address.host, address.port))
    except OSError as exc:
        sock.close()
        typer.echo(f"error: cannot listen on {address} (metrics): {exc.strerror}", err=True)
        raise typer.Exit(1) from exc
    sock.listen(64)
    return sock


async def prepare_store(runtime: Runtime) -> None:
    """``runtime.prepare_store()``, printing a generated administrator password once; a
    database of a newer Meadowlark is a one-line error and exit code 1 (the runtime is
    closed first: ``serve`` has nothing else that would close it)."""
    try:
        generated = await runtime.prepare_store()
    except SchemaTooNew as exc:
        await runtime.close()
        typer.echo(f"error: {exc.message}", err=True)
        raise typer.Exit(1) from exc
    if generated:
        print_admin_password(generated)


async def prepare(settings: Settings) -> None:
    """Migrate the store and create the first administrator (printing a generated
    password once), before any worker starts."""
    runtime = Runtime.from_settings(settings)
    try:
        await prepare_store(runtime)
    finally:
        await runtime.close()
    secure = (settings.coap_tls, settings.coaps, settings.bootstrap_dtls)
    if any(address is not None for address in secure):  # generated once, before the workers
        from meadowlark.certificates import server_credentials

        server_credentials(settings)


def coap_tls_context(settings: Settings) -> ssl.SSLContext:
    """The CoAP-over-TLS server context: the server's certificate (configured or
    generated) and, with a CA bundle, optional client certificates."""
    from meadowlark.certificates import server_credentials
    from meadowlark.coap.tcp import server_tls_context

    credentials = server_credentials(settings)
    ca_bundle = None if credentials.ca_bundle is None else str(credentials.ca_bundle)
    return server_tls_context(str(credentials.certificate), str(credentials.private_key), ca_bundle)


def serve_node(
    settings: Settings,
    http_socket: socket.socket | None = None,
    *,
    worker: bool = False,
    before_coap: Callable[[], Awaitable[None]] | None = None,
) -> None:
    """Serve until SIGTERM/SIGINT. A ``worker`` of ``serve --workers N`` accepts on the
    supervisor's ``http_socket`` and shares the CoAP port (its socket is bound with
    SO_REUSEPORT); it prints no banner (the supervisor did). ``before_coap`` runs right
    before the CoAP port is bound (the supervisor's start barrier)."""
    import uvicorn

    from meadowlark.api.app import create_app
    from meadowlark.api.routers.metrics import listener_app
    from meadowlark.cli.dtls_serving import start_bootstrap_dtls, start_dtls
    from meadowlark.coap.bootstrap_site import BootstrapSite, NoRegistrations
    from meadowlark.coap.server import CoapServer
    from meadowlark.coap.site_context import SiteContext

    class BesideServer(uvicorn.Server):
        """A uvicorn server beside the REST one on its loop; the REST server takes
        SIGTERM/SIGINT (two servers replacing each other's handlers would lose one)."""

        @contextlib.contextmanager
        def capture_signals(self) -> Iterator[None]:
            yield

    async def main() -> None:
        metrics_address = settings.metrics.listen
        metrics_listening = (
            None if metrics_address is None else metrics_socket(metrics_address, reuse_port=worker)
        )
        runtime = Runtime.from_settings(settings)
        await prepare_store(runtime)
        if not worker:
            print_banner(settings)
        lwm2m = settings.lwm2m
        coap_server = CoapServer(
            runtime.lwm2m,
            settings.coap.host,
            settings.coap.port,
            max_payload=lwm2m.max_payload,
            block_size=lwm2m.block_size,
            traffic=runtime.lwm2m.traffic,
            downloads=runtime.firmware_images,
            reuse_port=worker,
            tcp=None
            if settings.coap_tcp is None
            else (settings.coap_tcp.host, settings.coap_tcp.port),
            tls=None
            if settings.coap_tls is None
            else (settings.coap_tls.host, settings.coap_tls.port),
            tls_context=None if settings.coap_tls is None else coap_tls_context(settings),
        )
        await runtime.start_lwm2m()
        if before_coap is not None:
            await before_coap()
        runtime.lwm2m.attach(await coap_server.start())
        dtls_server = await start_dtls(settings, runtime, coap_server, reuse_port=worker)
        runtime.firmware_images.bind_coap(settings.coap.host, coap_server.port)
        runtime.firmware_images.bind_http(settings.http.host, settings.http.port)
        runtime.bootstrap_configurations.bind("coap", settings.coap.host, coap_server.port)
        if dtls_server is not None and settings.coaps is not None:  # PSK configurations' default
            runtime.bootstrap_configurations.bind("coaps", settings.coaps.host, dtls_server.port)
        bootstrap_site = BootstrapSite(runtime.bootstrap, lwm2m.max_payload)
        bootstrap_host: CoapServer | SiteContext | None = None
        if settings.bootstrap is not None:
            bootstrap_server = CoapServer(
                NoRegistrations(),
                settings.bootstrap.host,
                settings.bootstrap.port,
                max_payload=lwm2m.max_payload,
                block_size=lwm2m.block_size,
                reuse_port=worker,
                site=bootstrap_site,
            )
            runtime.bootstrap.attach(await bootstrap_server.start())
            bootstrap_host = bootstrap_server
        elif settings.bootstrap_dtls is not None:  # DTLS only: a context without plain UDP
            bootstrap_host = SiteContext(bootstrap_site, loggername="coap-bootstrap")
        bootstrap_dtls = None
        if bootstrap_host is not None:
            bootstrap_dtls = await start_bootstrap_dtls(
                settings, runtime, bootstrap_host, reuse_port=worker
            )
        if not worker:
            typer.echo(f"LwM2M (CoAP) on udp://{settings.coap}", err=True)
            if settings.coaps is not None:
                typer.echo(f"LwM2M (CoAP over DTLS) on coaps://{settings.coaps}", err=True)
            for label, scheme, address in (
                ("TCP", "coap+tcp", settings.coap_tcp),
                ("TLS", "coaps+tcp", settings.coap_tls),
            ):
                if address is not None:
                    typer.echo(f"LwM2M (CoAP over {label}) on {scheme}://{address}", err=True)
            if settings.bootstrap is not None:
                typer.echo(f"LwM2M Bootstrap (CoAP) on udp://{settings.bootstrap}", err=True)
            if bootstrap_dtls is not None:
                typer.echo(
                    f"LwM2M Bootstrap (CoAP over DTLS) on coaps://{settings.bootstrap_dtls}",
                    err=True,
                )
        server = uvicorn.Server(
            uvicorn.Config(
                create_app(runtime, manage_runtime=False),
                host=settings.http.host,
                port=settings.http.port,
                log_level="warning",
                log_config=None,  # uvicorn's lines go through configure_logging's handler
                access_log=False,
                server_header=False,
                proxy_headers=False,
            )
        )
        metrics_server, metrics_task = None, None
        if metrics_listening is not None:
            metrics_server = BesideServer(
                uvicorn.Config(
                    listener_app(runtime),
                    log_level="warning",
                    log_config=None,
                    access_log=False,
                    server_header=False,
                    lifespan="off",
                )
            )
            metrics_task = asyncio.create_task(metrics_server.serve(sockets=[metrics_listening]))
        try:
            await server.serve(sockets=None if http_socket is None else [http_socket])
        finally:
            if metrics_server is not None and metrics_task is not None:
                metrics_server.should_exit = True
                await metrics_task
            if dtls_server is not None:
                await dtls_server.stop()
            if bootstrap_dtls is not None:
                await bootstrap_dtls.stop()
            if bootstrap_host is not None:
                await bootstrap_host.stop()
            await coap_server.stop()
            await runtime.close()

    asyncio.run(main())
