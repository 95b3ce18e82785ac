"""``meadowlark devices``: provision devices and their DTLS credentials from the shell.

Every change goes through the devices service the REST API uses (validation, sealing of
the PSK, audit, the registration ending on a key rotation). Keys are never printed.
Bad input (options, a CSV file) gets a one-line error and exit code 2.

A running server learns of the new credentials at once: through the cluster when the
store is shared by nodes (PostgreSQL), else through the sockets of the workers of
``meadowlark serve`` in the data dir; a single-process server re-reads them within
``PskKeyring.RESYNC_SECONDS``.
"""

from __future__ import annotations

import sys
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import replace
from pathlib import Path
from typing import Annotated, Any, TypeVar

import typer
from sqlalchemy import or_, select

from meadowlark.cli.runner import SYSTEM, run_on_runtime
from meadowlark.cluster.feeds import BATCH
from meadowlark.cluster.node import ClusterNode, new_node_id
from meadowlark.cluster.signals import LocalSignals
from meadowlark.cluster.wiring import local_socket_directory
from meadowlark.core import devices
from meadowlark.core.domains import normalize_domain_id
from meadowlark.core.errors import InvalidInput
from meadowlark.runtime import Runtime
from meadowlark.store.device_models import Device
from meadowlark.store.psk_keyring import PSK_TOPIC

devices_app = typer.Typer(help="Devices and their DTLS credentials.", no_args_is_help=True)

T = TypeVar("T")
BAD_INPUT = 2
NOTICE_IDS = 100
"""Changed devices named one by one in the notice to running servers; more: re-read all."""


def _fail(message: str) -> typer.Exit:
    typer.echo(f"error: {message}", err=True)
    return typer.Exit(BAD_INPUT)


def _run(work: Callable[[Runtime], Awaitable[T]]) -> T:
    """Run ``work`` on a prepared runtime; a service error is a message and exit code 2."""
    return run_on_runtime(work, service_error_exit=BAD_INPUT)


def _psk(hex_key: str | None, text_key: str | None) -> dict[str, Any] | None:
    """The ``dtlsPsk`` of the options (``-``: read the key from the first line of stdin,
    so that it stays out of the shell history and the process list)."""
    if hex_key is not None and text_key is not None:
        raise _fail("give either --psk-key or --psk-key-text, not both")
    if hex_key == "-":
        hex_key = sys.stdin.readline().strip()
    if text_key == "-":
        text_key = sys.stdin.readline().rstrip("\r\n")
    if hex_key is not None:
        return {"HexadecimalPsk": hex_key}
    if text_key is not None:
        return {"PlainTextPsk": text_key}
    return None


async def _tell_servers(runtime: Runtime, device_ids: Sequence[str]) -> None:
    """Make running servers re-read these devices' credentials. With a cluster, the
    keyring's commit hook has announced them already; otherwise the workers of
    ``meadowlark serve`` on this data dir listen on local sockets."""
    if runtime.cluster is not None or not device_ids:
        return
    directory = local_socket_directory(Path(runtime.settings.data_dir))
    keys: list[str | None] = list(device_ids) if len(device_ids) <= NOTICE_IDS else [None]
    node = ClusterNode(LocalSignals(directory, new_node_id()))
    await node.publish(PSK_TOPIC, {BATCH: [{"key": key} for key in keys]})


async def _reconcile_groups(runtime: Runtime, device_ids: Sequence[str]) -> None:
    for device_id in device_ids:
        await runtime.observations.reconcile_device(device_id)


@devices_app.command("add")
def add(
    endpoint: str,
    domain: Annotated[str, typer.Option(help="Domain of the device, e.g. /root/acme/")],
    security_mode: Annotated[
        str | None, typer.Option(help="nosec or psk (default: psk when a key is given)")
    ] = None,
    psk_identity: Annotated[str | None, typer.Option(help="DTLS PSK identity")] = None,
    psk_key: Annotated[
        str | None, typer.Option(help="PSK as hex digits ('-': read from stdin)")
    ] = None,
    psk_key_text: Annotated[
        str | None, typer.Option(help="PSK as text, used as its UTF-8 bytes ('-': stdin)")
    ] = None,
    group: Annotated[list[str] | None, typer.Option(help="Group id (repeatable)")] = None,
) -> None:
    """Pre-provision a device, optionally with DTLS-PSK credentials."""
    new = devices.NewDevice(
        endpoint_name=endpoint,
        domain=domain,
        security_mode=security_mode,
        dtls_identity=psk_identity,
        dtls_psk=_psk(psk_key, psk_key_text),
        groups=tuple(group or ()),
    )

    async def create(runtime: Runtime) -> Device:
        async with runtime.db.session() as session:
            device = await devices.create_device(session, SYSTEM, new, psk_box=runtime.psk_box)
            await session.commit()
        if new.groups:
            await _reconcile_groups(runtime, [device.id])
        if device.dtls_psk is not None:
            await _tell_servers(runtime, [device.id])
        return device

    device = _run(create)
    identity = f", identity {device.dtls_identity}" if device.dtls_identity else ""
    typer.echo(f"created {device.id} in {device.domain_id} ({device.security_mode}{identity})")


@devices_app.command("set-psk")
def set_psk(
    endpoint: str,
    psk_identity: Annotated[
        str | None, typer.Option(help="New DTLS PSK identity (default: keep the current one)")
    ] = None,
    psk_key: Annotated[
        str | None, typer.Option(help="New PSK as hex digits ('-': read from stdin)")
    ] = None,
    psk_key_text: Annotated[
        str | None, typer.Option(help="New PSK as text, used as its UTF-8 bytes ('-': stdin)")
    ] = None,
) -> None:
    """Rotate a device's PSK (it becomes a PSK device); its registration ends."""
    psk = _psk(psk_key, psk_key_text)
    if psk is None:
        raise _fail("give the new key with --psk-key or --psk-key-text")

    async def rotate(runtime: Runtime) -> devices.DeviceUpdate:
        operator = SYSTEM
        async with runtime.db.session() as session:
            device_id = await session.scalar(
                select(Device.id)
                .where(or_(Device.endpoint_name == endpoint, Device.id == endpoint))
                .order_by(Device.endpoint_name != endpoint)
                .limit(1)
            )
            update = await devices.update_device(
                session,
                operator,
                device_id or endpoint,
                devices.DeviceChanges(
                    security_mode="psk", dtls_identity=psk_identity, dtls_psk=psk
                ),
                psk_box=runtime.psk_box,
            )
            await session.commit()
        if update.barred:
            await runtime.lwm2m.forget(update.device.endpoint_name)
            await _tell_servers(runtime, [update.device.id])
        return update

    update = _run(rotate)
    device = update.device
    if update.barred:
        typer.echo(
            f"credentials of {device.id} changed (identity {device.dtls_identity}); "
            "its registration ends and it must register again with the new key"
        )
    else:
        typer.echo(f"{device.id} already has this identity and key: nothing changed")


@devices_app.command("list")
def list_devices(
    domain: Annotated[str, typer.Option(help="Only this domain and those below it")] = "/root/",
) -> None:
    """List devices: id, endpoint name, domain, security mode, DTLS identity (never keys)."""
    try:
        scope = normalize_domain_id(domain)
    except InvalidInput as exc:
        raise _fail(exc.message) from None

    async def show(runtime: Runtime) -> None:
        principal = replace(SYSTEM, domain_id=scope)
        bookmark = None
        async with runtime.db.session() as session:
            while True:
                page = await devices.find_devices(
                    session,
                    principal,
                    None,
                    limit=devices.MAX_PAGE_SIZE,
                    bookmark=bookmark,
                    with_groups=False,
                )
                for device in page.devices:
                    typer.echo(
                        "\t".join(
                            (
                                device.id,
                                device.endpoint_name,
                                device.domain_id,
                                device.security_mode,
                                device.dtls_identity or "-",
                            )
                        )
                    )
                bookmark = page.next_bookmark
                if bookmark is None:
                    return

    _run(show)


@devices_app.command("import")
def import_csv(
    file: Annotated[
        Path,
        typer.Argument(
            help="CSV with a header row: endpoint,domain,securityMode,dtlsIdentity,"
            "dtlsPsk (hex),groups (separated by ';')"
        ),
    ],
) -> None:
    """Import devices from a CSV: all of them, or none when any row is invalid."""
    try:
        text = file.read_text(encoding="utf-8-sig")
    except (OSError, UnicodeDecodeError) as exc:
        reason = exc.strerror if isinstance(exc, OSError) else "not UTF-8 text"
        raise _fail(f"cannot read {file}: {reason}") from None
    try:
        rows = devices.parse_device_csv(text)
    except InvalidInput as exc:
        raise _fail(exc.message) from None
    if not rows:
        raise _fail(f"{file} has no devices")

    async def load(runtime: Runtime) -> list[tuple[int, str]]:
        async with runtime.db.session() as session:
            failures = await devices.import_devices(session, SYSTEM, rows, psk_box=runtime.psk_box)
            if failures:
                await session.rollback()
                return failures
            await session.commit()
        created = [row for _, row in rows if isinstance(row, devices.NewDevice)]
        ids = [row.device_id or row.endpoint_name for row in created]
        await _reconcile_groups(
            runtime, [i for i, row in zip(ids, created, strict=True) if row.groups]
        )
        await _tell_servers(
            runtime, [i for i, row in zip(ids, created, strict=True) if row.dtls_psk]
        )
        return []

    failures = _run(load)
    if failures:
        for line, reason in failures:
            typer.echo(f"line {line}: {reason}", err=True)
        typer.echo(f"nothing imported: {len(failures)} of {len(rows)} rows are invalid", err=True)
        raise typer.Exit(BAD_INPUT)
    typer.echo(f"imported {len(rows)} devices")
