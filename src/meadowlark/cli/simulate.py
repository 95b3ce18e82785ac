"""``meadowlark simulate``: run a fleet of simulated LwM2M devices against a server."""

from __future__ import annotations

import asyncio
import ssl
import time
from pathlib import Path
from typing import Annotated
from urllib.parse import urlsplit

import typer

from meadowlark.lwm2m.codec.formats import ContentFormat
from meadowlark.simulator.client import LEGACY_FORMATS, MODERN_FORMATS, DeviceTiming
from meadowlark.simulator.coap_tcp import client_tls_context
from meadowlark.simulator.firmware import FirmwareBehaviour
from meadowlark.simulator.fleet import Fleet, FleetConfig, FleetSnapshot

FORMAT_NAMES = {
    "senml-cbor": ContentFormat.SENML_CBOR,
    "senml-json": ContentFormat.SENML_JSON,
    "lwm2m-cbor": ContentFormat.LWM2M_CBOR,
    "tlv": ContentFormat.TLV,
    "oma-json": ContentFormat.OMA_JSON,
}


def simulate(
    devices: Annotated[int, typer.Option(help="Number of simulated devices.", min=1)] = 10,
    server: Annotated[
        str | None,
        typer.Option(help="LwM2M server URI (default: 127.0.0.1, port 5683, 5684 for TLS)."),
    ] = None,
    transport: Annotated[
        str, typer.Option(help="udp, tcp or tls (CoAP over TCP/TLS, binding T).")
    ] = "udp",
    ca: Annotated[
        Path | None,
        typer.Option(help="TLS: CAs to trust (default: the server's generated certificate)."),
    ] = None,
    certificate: Annotated[
        Path | None, typer.Option(help="TLS: client certificate (PEM) to present.")
    ] = None,
    private_key: Annotated[Path | None, typer.Option(help="TLS: its private key (PEM).")] = None,
    server_name: Annotated[
        str | None, typer.Option(help="TLS: the name the server's certificate carries.")
    ] = None,
    prefix: Annotated[str, typer.Option(help="Endpoint names are PREFIX-0000, ...")] = "sim",
    lwm2m_version: Annotated[str, typer.Option("--lwm2m-version", help="1.0, 1.1 or 1.2.")] = "1.1",
    fallback_version: Annotated[
        str | None, typer.Option(help="Version to retry with when the server answers 4.12.")
    ] = None,
    rate: Annotated[
        float, typer.Option(help="Value changes per second across the fleet.", min=0)
    ] = 0.0,
    duration: Annotated[
        float | None, typer.Option(help="Seconds to run; until Ctrl-C when absent.")
    ] = None,
    format: Annotated[  # noqa: A002 - the option is --format
        str, typer.Option(help=f"Preferred content format: {', '.join(FORMAT_NAMES)}.")
    ] = "senml-cbor",
    queue_mode: Annotated[bool, typer.Option(help="Register in queue mode.")] = False,
    lifetime: Annotated[int, typer.Option(help="Registration lifetime (s).", min=1)] = 300,
    ramp: Annotated[float, typer.Option(help="Registrations started per second.", min=0)] = 200,
    confirmable: Annotated[bool, typer.Option(help="Send confirmable notifications.")] = False,
    queue_window: Annotated[
        float, typer.Option(help="Seconds a queue-mode device listens after an uplink.")
    ] = 93.0,
    interval: Annotated[float, typer.Option(help="Seconds between stats lines.", min=0.1)] = 5,
    firmware_fail: Annotated[
        str | None,
        typer.Option(
            help="Make firmware updates fail: 'download:N' (Update Result N: 2-7 or 9 "
            "after the download) or 'update' (Execute Update fails, Update Result 8)."
        ),
    ] = None,
    firmware_reboot: Annotated[
        bool, typer.Option(help="Reboot and register again to install new firmware.")
    ] = False,
) -> None:
    """Simulate LwM2M devices (register, answer requests, notify) until stopped."""
    preferred = FORMAT_NAMES.get(format)
    if preferred is None:
        raise typer.BadParameter(f"unknown format {format!r}", param_hint="--format")
    if lwm2m_version not in ("1.0", "1.1", "1.2"):
        raise typer.BadParameter("must be 1.0, 1.1 or 1.2", param_hint="--lwm2m-version")
    firmware = _firmware_behaviour(firmware_fail, firmware_reboot)
    server_uri = _server_uri(server, transport)
    tls, tls_name = None, server_name
    if transport == "tls":
        tls, tls_name = _tls_context(ca, certificate, private_key, server_name)
    available = LEGACY_FORMATS if lwm2m_version == "1.0" else MODERN_FORMATS
    formats = (preferred, *(fmt for fmt in available if fmt != preferred))
    config = FleetConfig(
        devices=devices,
        server_uri=server_uri,
        binding="U" if transport == "udp" else "T",
        prefix=prefix,
        lwm2m_version=lwm2m_version,
        fallback_lwm2m_version=fallback_version,
        lifetime=lifetime,
        queue_mode=queue_mode,
        content_formats=formats,
        confirmable_notifications=confirmable,
        rate=rate,
        ramp_rate=ramp,
        timing=DeviceTiming(queue_window=queue_window),
        firmware=firmware,
        tls=tls,
        tls_server_name=tls_name,
    )
    try:
        asyncio.run(_run(Fleet(config), duration, interval))
    except KeyboardInterrupt:
        typer.echo("interrupted", err=True)
    except ValueError as error:
        typer.echo(f"error: {error}", err=True)
        raise typer.Exit(1) from error


_SCHEMES = {"udp": "coap", "tcp": "coap+tcp", "tls": "coaps+tcp"}


def _server_uri(server: str | None, transport: str) -> str:
    """The server URI for ``transport``: ``coap://`` becomes ``coap+tcp://`` (TCP) or
    ``coaps+tcp://`` (TLS), keeping host and port."""
    scheme = _SCHEMES.get(transport)
    if scheme is None:
        raise typer.BadParameter("must be udp, tcp or tls", param_hint="--transport")
    if server is None:
        return f"{scheme}://127.0.0.1:{5684 if transport == 'tls' else 5683}"
    parts = urlsplit(server)
    if parts.scheme not in _SCHEMES.values():
        raise typer.BadParameter("must be a coap:// URI", param_hint="--server")
    return server if parts.scheme == scheme else f"{scheme}://{parts.netloc}{parts.path}"


def _tls_context(
    ca: Path | None, certificate: Path | None, private_key: Path | None, server_name: str | None
) -> tuple[ssl.SSLContext, str | None]:
    """The client context; without ``--ca``, the local server's generated certificate is
    trusted (by its own name, unless ``--server-name`` says another)."""
    if (certificate is None) != (private_key is None):
        raise typer.BadParameter("--certificate and --private-key go together")
    if ca is None:
        from meadowlark.config import Settings

        settings = Settings()
        generated = settings.data_dir / "tls" / "server.pem"
        if generated.exists():
            ca, server_name = generated, server_name or settings.tls.server_name
    try:
        context = client_tls_context(
            None if ca is None else str(ca),
            None if certificate is None else str(certificate),
            None if private_key is None else str(private_key),
        )
    except (OSError, ssl.SSLError) as error:
        raise typer.BadParameter(f"cannot load the TLS files: {error}") from error
    return context, server_name


def _firmware_behaviour(failure: str | None, reboot: bool) -> FirmwareBehaviour:
    if failure is None:
        return FirmwareBehaviour(reboot_after_update=reboot)
    if failure == "update":
        return FirmwareBehaviour(update_failure=True, reboot_after_update=reboot)
    kind, _, code = failure.partition(":")
    try:
        if kind != "download" or not code.isdigit():
            raise ValueError("expected 'download:N' or 'update'")
        return FirmwareBehaviour(download_failure=int(code), reboot_after_update=reboot)
    except ValueError as error:
        raise typer.BadParameter(str(error), param_hint="--firmware-fail") from error


async def _run(fleet: Fleet, duration: float | None, interval: float) -> None:
    began = time.monotonic()
    reporter = asyncio.get_running_loop().create_task(_report(fleet, began, interval))
    starting = asyncio.get_running_loop().create_task(fleet.start())
    try:
        if duration is None:
            await starting
            await asyncio.Event().wait()
        else:
            await asyncio.wait({starting}, timeout=duration)
            if starting.done():
                starting.result()
                await asyncio.sleep(max(0.0, duration - (time.monotonic() - began)))
    finally:
        for task in (starting, reporter):
            task.cancel()
        await asyncio.gather(starting, reporter, return_exceptions=True)
        await fleet.stop()
        _print(fleet.snapshot(), began)


async def _report(fleet: Fleet, began: float, interval: float) -> None:
    while True:
        await asyncio.sleep(interval)
        _print(fleet.snapshot(), began)


def _print(snapshot: FleetSnapshot, began: float) -> None:
    elapsed = time.monotonic() - began
    per_second = snapshot.notifications_sent / elapsed if elapsed > 0 else 0.0
    typer.echo(
        f"[{elapsed:7.1f}s] devices={snapshot.devices} registered={snapshot.registered} "
        f"failed={snapshot.failed} notifications={snapshot.notifications_sent} "
        f"({per_second:.1f}/s) requests={snapshot.requests_answered} "
        f"changes={snapshot.value_changes}"
    )
