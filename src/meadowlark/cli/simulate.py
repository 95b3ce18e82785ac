"""``meadowlark simulate``: run a fleet of simulated LwM2M devices against a server."""

from __future__ import annotations

import asyncio
import time
from typing import Annotated

import typer

from meadowlark.lwm2m.codec.formats import ContentFormat
from meadowlark.simulator.client import LEGACY_FORMATS, MODERN_FORMATS, DeviceTiming
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
    server: Annotated[str, typer.Option(help="LwM2M server URI.")] = "coap://127.0.0.1:5683",
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
    bootstrap: Annotated[
        str | None,
        typer.Option(
            help="Bootstrap server URI (coap://host:port): each device starts with only its "
            "bootstrap account and registers where the bootstrap server sends it "
            "(--server is then unused)."
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
    if bootstrap_pack and bootstrap is None:
        raise typer.BadParameter("needs --bootstrap", param_hint="--bootstrap-pack")
    if bootstrap_pack and lwm2m_version != "1.2":
        raise typer.BadParameter("needs --lwm2m-version 1.2", param_hint="--bootstrap-pack")
    available = LEGACY_FORMATS if lwm2m_version == "1.0" else MODERN_FORMATS
    formats = (preferred, *(fmt for fmt in available if fmt != preferred))
    config = FleetConfig(
        devices=devices,
        server_uri=server,
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
