"""``meadowlark`` command line (typer)."""

from __future__ import annotations

import asyncio
import os
import socket
import sys
from dataclasses import replace
from pathlib import Path
from typing import Annotated

import typer
from sqlalchemy import select

from meadowlark import __version__
from meadowlark.cli.db import db_app
from meadowlark.cli.devices import devices_app
from meadowlark.cli.doctor import doctor
from meadowlark.cli.runner import SYSTEM, load_settings, run_on_runtime
from meadowlark.cli.serving import prepare, print_banner, serve_node
from meadowlark.cli.simulate import simulate
from meadowlark.cli.supervisor import (
    Supervisor,
    concrete_udp_port,
    default_workers,
    http_listener,
    worker_environment,
)
from meadowlark.cluster.wiring import signals_kind
from meadowlark.config import HostPort
from meadowlark.connectivity.things import ImportReport, parse_import_csv
from meadowlark.core.domains import get_domain, normalize_domain_id
from meadowlark.core.users import NewUser, UserChanges
from meadowlark.logging import configure_logging
from meadowlark.runtime import Runtime
from meadowlark.store.models import User

app = typer.Typer(help="Meadowlark LwM2M device management server.", no_args_is_help=True)
user_app = typer.Typer(help="User accounts.", no_args_is_help=True)
things_app = typer.Typer(help="SIM cards (console Things).", no_args_is_help=True)
app.add_typer(db_app, name="db")
app.add_typer(user_app, name="user")
app.add_typer(things_app, name="things")
app.add_typer(devices_app, name="devices")
app.command()(simulate)
app.command()(doctor)


@app.command()
def serve(
    http: Annotated[
        str | None, typer.Option(help="REST address host:port [MEADOWLARK_HTTP]")
    ] = None,
    coap: Annotated[
        str | None, typer.Option(help="CoAP address host:port [MEADOWLARK_COAP]")
    ] = None,
    coaps: Annotated[
        str | None,
        typer.Option(help="CoAP over DTLS address host:port, or off [MEADOWLARK_COAPS]"),
    ] = None,
    coap_tcp: Annotated[
        str | None, typer.Option(help="CoAP over TCP host:port, or off [MEADOWLARK_COAP_TCP]")
    ] = None,
    coap_tls: Annotated[
        str | None, typer.Option(help="CoAP over TLS host:port, or off [MEADOWLARK_COAP_TLS]")
    ] = None,
    data_dir: Annotated[
        Path | None, typer.Option(help="State folder [MEADOWLARK_DATA_DIR]")
    ] = None,
    database_url: Annotated[str | None, typer.Option(help="[MEADOWLARK_DATABASE_URL]")] = None,
    token_lifetime: Annotated[
        int | None, typer.Option(help="Seconds [MEADOWLARK_TOKEN_LIFETIME]")
    ] = None,
    admin_password: Annotated[str | None, typer.Option(help="[MEADOWLARK_ADMIN_PASSWORD]")] = None,
    signup: Annotated[bool | None, typer.Option(help="Self sign-up [MEADOWLARK_SIGNUP]")] = None,
    workers: Annotated[
        int | None,
        typer.Option(
            min=1,
            envvar="MEADOWLARK_WORKERS",
            help="Worker processes sharing the ports (default: the number of cores; "
            "1: a single process) [MEADOWLARK_WORKERS]",
        ),
    ] = None,
    log_format: Annotated[
        str | None,
        typer.Option(
            help="json or console (default: json unless standard error is a terminal) "
            "[MEADOWLARK_LOG_FORMAT]"
        ),
    ] = None,
) -> None:
    """Run the REST and LwM2M servers (migrates the store first)."""
    settings = load_settings(
        http=http,
        coap=coap,
        coaps=coaps,
        coap_tcp=coap_tcp,
        coap_tls=coap_tls,
        data_dir=data_dir,
        database_url=database_url,
        token_lifetime=token_lifetime,
        admin_password=admin_password,
        signup=signup,
        log_format=log_format,
    )
    configure_logging(settings.log_level, json=settings.log_as_json)
    count = workers or default_workers()
    if count == 1:
        serve_node(settings)
        return
    asyncio.run(prepare(settings))
    try:
        http_socket = http_listener(settings.http)
    except OSError as exc:
        typer.echo(f"error: cannot listen on {settings.http}: {exc.strerror}", err=True)
        raise typer.Exit(1) from exc
    coap_address = HostPort(host=settings.coap.host, port=concrete_udp_port(settings.coap))
    listening = HostPort(host=settings.http.host, port=http_socket.getsockname()[1])
    shown = settings.model_copy(update={"http": listening, "coap": coap_address})
    print_banner(shown)
    typer.echo(f"LwM2M (CoAP) on udp://{coap_address}, {count} workers", err=True)
    coaps_address = None
    if settings.coaps is not None:
        coaps_address = HostPort(host=settings.coaps.host, port=concrete_udp_port(settings.coaps))
        typer.echo(f"LwM2M (CoAP over DTLS) on coaps://{coaps_address}", err=True)
    streams = {"tcp": _stream_address(settings.coap_tcp), "tls": _stream_address(settings.coap_tls)}
    for kind, scheme in (("tcp", "coap+tcp"), ("tls", "coaps+tcp")):
        if streams[kind] != "off":
            typer.echo(f"LwM2M (CoAP over {kind.upper()}) on {scheme}://{streams[kind]}", err=True)
    bootstrap_address = None
    if settings.bootstrap is not None:
        bootstrap_address = HostPort(
            host=settings.bootstrap.host, port=concrete_udp_port(settings.bootstrap)
        )
        typer.echo(f"LwM2M Bootstrap (CoAP) on udp://{bootstrap_address}", err=True)
    bootstrap_dtls_address = None
    if settings.bootstrap_dtls is not None:
        bootstrap_dtls_address = HostPort(
            host=settings.bootstrap_dtls.host, port=concrete_udp_port(settings.bootstrap_dtls)
        )
        typer.echo(
            f"LwM2M Bootstrap (CoAP over DTLS) on coaps://{bootstrap_dtls_address}", err=True
        )
    signals = settings.cluster.signals
    if signals_kind(settings, settings.resolved_database_url.startswith("sqlite")) == "off":
        signals = "local"  # one host's workers on the embedded store
    env = worker_environment(
        os.environ,
        {
            "MEADOWLARK_HTTP": str(listening),
            "MEADOWLARK_COAP": str(coap_address),
            "MEADOWLARK_COAPS": "off" if coaps_address is None else str(coaps_address),
            "MEADOWLARK_COAP_TCP": streams["tcp"],
            "MEADOWLARK_COAP_TLS": streams["tls"],
            "MEADOWLARK_BOOTSTRAP": "off" if bootstrap_address is None else str(bootstrap_address),
            "MEADOWLARK_BOOTSTRAP_DTLS": "off"
            if bootstrap_dtls_address is None
            else str(bootstrap_dtls_address),
            "MEADOWLARK_DATA_DIR": str(settings.data_dir),
            "MEADOWLARK_DATABASE_URL": settings.database_url,
            "MEADOWLARK_TOKEN_LIFETIME": str(settings.token_lifetime),
            "MEADOWLARK_ADMIN_PASSWORD": admin_password,
            "MEADOWLARK_SIGNUP": None if signup is None else str(signup).lower(),
            "MEADOWLARK_CLUSTER__SIGNALS": signals,
            "MEADOWLARK_LOG_FORMAT": settings.log_format,
        },
    )
    metrics_dir = (settings.data_dir / "metrics").resolve()
    raise typer.Exit(Supervisor(count, http_socket, env, metrics_dir).run())


@user_app.command("create")
def user_create(
    login: str,
    password: Annotated[str | None, typer.Option(help="Prompted for if not given")] = None,
    domain: str = "/root/",
    email: str = "",
    account_type: Annotated[
        str, typer.Option("--type", help="developer|business|admin")
    ] = "developer",
    role: Annotated[list[str] | None, typer.Option(help="Role name (repeatable)")] = None,
) -> None:
    """Create a user."""
    secret = password or typer.prompt("Password", hide_input=True, confirmation_prompt=True)

    async def create(runtime: Runtime) -> None:
        async with runtime.db.session() as session:
            user = await runtime.users.create(
                session,
                SYSTEM,
                NewUser(
                    login=login,
                    password=secret,
                    domain=domain,
                    email=email,
                    account_type=account_type,
                    email_verified=True,
                    tos_accepted=True,
                    roles=tuple(role or ()),
                ),
            )
            await session.commit()
        typer.echo(f"created {user.login} ({user.account_type}) in {user.domain_id}")

    run_on_runtime(create)


@user_app.command("list")
def user_list() -> None:
    """List users."""

    async def show(runtime: Runtime) -> None:
        async with runtime.db.session() as session:
            users = (await session.scalars(select(User).order_by(User.login))).all()
        for user in users:
            state = "active" if user.active else "disabled"
            typer.echo(
                f"{user.login:30} {user.account_type:10} {state:9} {user.domain_id} "
                f"{','.join(user.roles)}"
            )

    run_on_runtime(show)


@user_app.command("disable")
def user_disable(login: str) -> None:
    """Disable a user; its tokens stop working at once."""
    _change_user(login, UserChanges(enabled=False), f"disabled {login}")


@user_app.command("set-password")
def user_set_password(
    login: str,
    password: Annotated[str | None, typer.Option(help="Prompted for if not given")] = None,
) -> None:
    """Set a user's password; its tokens are revoked."""
    secret = password or typer.prompt("New password", hide_input=True, confirmation_prompt=True)
    _change_user(login, UserChanges(password=secret), f"password of {login} changed")


def _change_user(login: str, changes: UserChanges, message: str) -> None:
    async def change(runtime: Runtime) -> None:
        async with runtime.db.session() as session:
            await runtime.users.update(session, SYSTEM, login, changes)
            await session.commit()
        typer.echo(message)

    run_on_runtime(change)


@things_app.command("import")
def things_import(
    file: Annotated[Path, typer.Argument(help="CSV: ICCID, IMSI, MSISDN, IMEI, name, group, tags")],
    domain: Annotated[str, typer.Option(help="Domain that owns the SIMs")] = "/root/",
) -> None:
    """Import SIMs from a CSV: a result per row (created, or why not), with a progress bar."""
    try:
        text = file.read_text(encoding="utf-8-sig")
    except (OSError, UnicodeDecodeError) as exc:
        typer.echo(f"error: cannot read {file}: {exc}", err=True)
        raise typer.Exit(2) from exc

    async def run(runtime: Runtime) -> ImportReport:
        owner = replace(SYSTEM, domain_id=normalize_domain_id(domain))
        async with runtime.db.session() as session:
            await get_domain(session, SYSTEM, owner.domain_id)
        rows = parse_import_csv(text)
        with typer.progressbar(length=len(rows), label="Importing", file=sys.stderr) as bar:
            return await runtime.things.import_things(
                owner, rows, first_row=2, progress=bar.update, chunk=100
            )

    report = run_on_runtime(run)
    for result in report.results:
        outcome = result.thing_id if result.error is None else f"error: {result.error}"
        typer.echo(f"row {result.row}\t{result.iccid or '-'}\t{outcome}")
    typer.echo(f"{report.imported} imported, {report.failed} failed", err=True)
    if report.failed:
        raise typer.Exit(1)


@app.command()
def token(
    login: str,
    api_token: Annotated[
        str | None, typer.Option(help="Create a named long-lived API token instead")
    ] = None,
    days: Annotated[int, typer.Option(help="Lifetime of an API token in days")] = 90,
) -> None:
    """Print an access token for a user (for scripts); no password needed on this host."""

    async def issue(runtime: Runtime) -> str:
        async with runtime.db.session() as session:
            user = await session.scalar(select(User).where(User.login == login))
            if user is None or not user.active:
                typer.echo(f"error: no active user {login!r}", err=True)
                raise typer.Exit(1)
            if api_token:
                principal = await runtime.identity.principal_for(user, via="cli")
                value, _ = await runtime.identity.create_api_token(
                    principal,
                    name=api_token,
                    expires_in_days=days,
                    permissions=None,
                    client_ip="cli",
                )
                return value
            issued = await runtime.identity.open_session(
                session, user, grant="cli", client_ip="cli", refresh=False
            )
            return issued.access_token

    typer.echo(run_on_runtime(issue))


def _stream_address(address: HostPort | None) -> str:
    """``off``, or ``address`` with a concrete port if it was 0 (every worker binds the
    same TCP port)."""
    if address is None:
        return "off"
    if address.port:
        return str(address)
    family = socket.AF_INET6 if ":" in address.host else socket.AF_INET
    with socket.socket(family, socket.SOCK_STREAM) as probe:
        probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
        probe.bind((address.host, 0))
        return str(HostPort(host=address.host, port=probe.getsockname()[1]))


@app.command()
def version() -> None:
    """Print the version."""
    typer.echo(__version__)


if __name__ == "__main__":
    app()
