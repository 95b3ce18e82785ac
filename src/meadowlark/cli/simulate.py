"""``meadowlark simulate``: run a fleet of simulated LwM2M devices against a server."""

from __future__ import annotations

import asyncio
import ssl
import time
from pathlib import Path
from typing import Annotated
from urllib.parse import urlsplit

import typer
from mbedtls.exceptions import TLSError

from meadowlark.lwm2m.codec.formats import ContentFormat
from meadowlark.simulator.client import LEGACY_FORMATS, MODERN_FORMATS, DeviceTiming
from meadowlark.simulator.coap_tcp import client_tls_context
from meadowlark.simulator.dtls import (
    FleetCertificates,
    FleetPsk,
    FleetSecurity,
    client_configuration,
)
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
        typer.Option(
            help="LwM2M server URI, coap:// or coaps:// (DTLS) (default: 127.0.0.1, port "
            "5683, 5684 for TLS)."
        ),
    ] = None,
    transport: Annotated[
        str, typer.Option(help="udp, tcp or tls (CoAP over TCP/TLS, binding T).")
    ] = "udp",
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
    ramp: Annotated[
        float,
        typer.Option(
            help="Registrations started per second. A DTLS server may throttle handshakes "
            "per address (Meadowlark: 20/s by default); beyond it handshakes are retried.",
            min=0,
        ),
    ] = 200,
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
    psk_identity: Annotated[
        str,
        typer.Option(help="DTLS-PSK identity; {endpoint} stands for the endpoint name."),
    ] = "{endpoint}",
    psk_key: Annotated[
        str | None, typer.Option(help="DTLS-PSK key in hex, for a coaps:// server.")
    ] = None,
    psk_per_device: Annotated[
        bool,
        typer.Option(
            help="Derive each device's key from --psk-key: the first 16 bytes of "
            "HMAC-SHA256(key, endpoint name)."
        ),
    ] = False,
    certificate: Annotated[
        str | None,
        typer.Option(
            help="DTLS or TLS client certificate (PEM); for DTLS, {endpoint} in the name: one each."
        ),
    ] = None,
    private_key: Annotated[
        str | None, typer.Option(help="The certificate's private key (PEM), same pattern.")
    ] = None,
    ca: Annotated[
        Path | None,
        typer.Option(
            help="CA bundle (PEM) that checks the server's certificate (TLS default: the "
            "local server's generated certificate)."
        ),
    ] = None,
    handshake_timeout: Annotated[
        float, typer.Option(help="Seconds a DTLS handshake may take.", min=0.1)
    ] = 30.0,
    bootstrap: Annotated[
        str | None,
        typer.Option(
            help="Bootstrap server URI (coap://host:port, or coaps:// with the bootstrap "
            "account's --psk-identity/--psk-key): each device starts with only its "
            "bootstrap account and registers where, and with the credentials, the "
            "bootstrap server gives it (--server is then unused)."
        ),
    ] = None,
    bootstrap_pack: Annotated[
        bool,
        typer.Option(help="Bootstrap with Bootstrap-Pack-Request (LwM2M 1.2) instead."),
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
    tls, tls_name, security = None, server_name, None
    if transport == "tls":
        if psk_key is not None:
            raise typer.BadParameter(
                "a PSK is for DTLS (coaps://), not TLS", param_hint="--psk-key"
            )
        tls, tls_name = _tls_context(ca, certificate, private_key, server_name)
    else:
        security = _security(
            bootstrap or server_uri,
            prefix,
            psk_identity,
            psk_key,
            psk_per_device,
            certificate,
            private_key,
            ca,
        )
    if bootstrap_pack and bootstrap is None:
        raise typer.BadParameter("needs --bootstrap", param_hint="--bootstrap-pack")
    if bootstrap_pack and lwm2m_version != "1.2":
        raise typer.BadParameter("needs --lwm2m-version 1.2", param_hint="--bootstrap-pack")
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
        timing=DeviceTiming(queue_window=queue_window, handshake_timeout=handshake_timeout),
        firmware=firmware,
        security=security,
        tls=tls,
        tls_server_name=tls_name,
        bootstrap_uri=bootstrap,
        bootstrap_pack=bootstrap_pack,
    )
    try:
        asyncio.run(_run(Fleet(config), duration, interval))
    except KeyboardInterrupt:
        typer.echo("interrupted", err=True)
    except ValueError as error:
        typer.echo(f"error: {error}", err=True)
        raise typer.Exit(1) from error


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
    if transport == "udp" and parts.scheme == "coaps":
        return server  # DTLS
    if parts.scheme not in _SCHEMES.values():
        raise typer.BadParameter("must be a coap:// or coaps:// URI", param_hint="--server")
    return server if parts.scheme == scheme else f"{scheme}://{parts.netloc}{parts.path}"


def _tls_context(
    ca: Path | None, certificate: str | None, private_key: str | None, server_name: str | None
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


def _security(
    server: str,
    prefix: str,
    psk_identity: str,
    psk_key: str | None,
    psk_per_device: bool,
    certificate: str | None,
    private_key: str | None,
    ca: Path | None,
) -> FleetSecurity | None:
    """The fleet's DTLS credentials, checked by loading the first device's."""
    secure = urlsplit(server).scheme == "coaps"
    if psk_key is not None and certificate is not None:
        raise typer.BadParameter("give a PSK or a certificate, not both", param_hint="--psk-key")
    if (certificate is None) != (private_key is None):
        raise typer.BadParameter("goes with --private-key", param_hint="--certificate")
    if psk_key is None and certificate is None:
        if secure:
            raise typer.BadParameter(
                "coaps:// needs --psk-key or --certificate/--private-key", param_hint="--server"
            )
        return None
    if not secure:
        raise typer.BadParameter("DTLS credentials need a coaps:// server", param_hint="--server")
    security: FleetSecurity
    if psk_key is not None:
        try:
            key = bytes.fromhex(psk_key)
        except ValueError as error:
            raise typer.BadParameter("must be hexadecimal", param_hint="--psk-key") from error
        security = FleetPsk(key, psk_identity, psk_per_device)
        hint = "--psk-identity"
    else:
        assert certificate is not None and private_key is not None
        security = FleetCertificates(certificate, private_key, ca)
        hint = "--certificate"
    try:
        client_configuration(security.credentials(Fleet.device_name(prefix, 0)))
    except (KeyError, IndexError, ValueError, OSError, TLSError) as error:
        raise typer.BadParameter(f"unusable credentials: {error}", param_hint=hint) from error
    return security


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
        if fleet.last_failure is not None:
            typer.echo(f"last failure: {fleet.last_failure}", err=True)


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
