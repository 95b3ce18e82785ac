"""``meadowlark doctor``: the configuration, and what stands in the way of serving it.

Every check prints one line (``label  state``); a problem adds ``fix:`` lines below it.
Errors make the exit code 1, warnings do not (``serve`` would still start).
"""

from __future__ import annotations

import asyncio
import errno
import importlib.util
import secrets
import socket
import stat
from dataclasses import dataclass
from datetime import UTC, datetime

import typer
from pydantic import SecretStr
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncConnection

from meadowlark import __version__
from meadowlark.certificates import check_server_credentials, server_credentials
from meadowlark.cli.runner import load_settings
from meadowlark.cli.serving import safe_url
from meadowlark.config import HostPort, Settings
from meadowlark.core.secret_box import SealError, SecretBox
from meadowlark.store.db import Database
from meadowlark.store.migrate import SchemaState, schema_state
from meadowlark.store.psk_keyring import BOOTSTRAP_PSKS, DEVICE_PSKS, PskSource, check_stored_psks

CLOCK_SKEW_WARNING = 2.0
"""Seconds between this host's clock and the database server's that earn a warning."""
CLOCK_SKEW_ERROR = 30.0
"""Seconds of skew that are an error: token expiry and DTLS certificate validity use the
clock of whichever node checks them, so nodes must agree well within a token lifetime."""
MIN_SECRET_LENGTH = 32
"""Shortest configured secret key or PSK key accepted (characters)."""


@dataclass
class Report:
    """The doctor's output and its tally of problems."""

    errors: int = 0
    warnings: int = 0

    def line(self, label: str, state: str) -> None:
        typer.echo(f"{label:15} {state}")

    def error(self, label: str, state: str, fix: str | None = None) -> None:
        self.errors += 1
        self.line(label, state)
        if fix:
            self.fix(fix)

    def warning(self, label: str, state: str, fix: str | None = None) -> None:
        self.warnings += 1
        self.line(label, f"warning: {state}")
        if fix:
            self.fix(fix)

    def fix(self, advice: str) -> None:
        typer.echo(f"{'':15} fix: {advice}")


def doctor() -> None:
    """Check the database, migrations, ports, keys, certificates and clock; print what
    to fix. Exit code 1 when an error is found."""
    settings = load_settings()
    report = Report()
    typer.echo(f"meadowlark {__version__}")
    report.line("data dir", str(settings.data_dir.resolve()))
    report.line("database", safe_url(settings.resolved_database_url))
    report.line("REST", str(settings.http))
    report.line("CoAP", str(settings.coap))
    report.line("token lifetime", f"{settings.token_lifetime} s")
    report.line("sign-up", "on" if settings.signup else "off")
    report.line("token exchange", settings.token_exchange.issuer or "off")
    present = importlib.util.find_spec("psycopg") is not None
    typer.echo(f"{'PostgreSQL driver (psycopg)':28} {'available' if present else 'not installed'}")
    _check_secret_keys(settings, report)
    database = asyncio.run(_check_database(settings, report))
    _check_device_security(settings, report, database)
    _check_ports(settings, report)
    _check_certificates(settings, report)
    if settings.dev:
        report.line("dev mode", "ON (placeholder secrets allowed)")
    typer.echo(f"{report.errors} error(s), {report.warnings} warning(s)")
    raise typer.Exit(1 if report.errors else 0)


# -- database, migrations, clock --------------------------------------------------------


@dataclass(frozen=True, slots=True)
class DatabaseHealth:
    reachable: bool
    schema: SchemaState | None


async def _check_database(settings: Settings, report: Report) -> DatabaseHealth:
    db = Database(settings.resolved_database_url)
    try:
        try:
            async with db.engine.connect() as connection:
                await connection.execute(text("SELECT 1"))
        except Exception as exc:  # report, don't crash: this is a diagnostic
            report.error(
                "database",
                f"unreachable ({type(exc).__name__}: {exc})",
                "check MEADOWLARK_DATABASE_URL and that the database server is up",
            )
            return DatabaseHealth(reachable=False, schema=None)
        report.line("database", "ok")
        schema = await schema_state(db.engine)
        _report_schema(schema, report)
        async with db.engine.connect() as connection:
            await _check_clock(connection, report)
        return DatabaseHealth(reachable=True, schema=schema)
    finally:
        await db.dispose()


def _report_schema(schema: SchemaState, report: Report) -> None:
    if schema.at_head:
        report.line("migrations", f"at head ({schema.head})")
    elif not schema.known:
        report.error(
            "migrations",
            f"this database was migrated by a newer Meadowlark (revision {schema.revision}); "
            f"this version knows up to {schema.head}",
            "upgrade Meadowlark or restore a backup (downgrades are not supported)",
        )
    elif schema.revision is None:
        report.warning(
            "migrations",
            f"empty database (no schema yet; head is {schema.head})",
            "run `meadowlark db upgrade` (`meadowlark serve` also does it at start)",
        )
    else:
        report.warning(
            "migrations",
            f"behind: at {schema.revision}, head is {schema.head}",
            "run `meadowlark db upgrade` (`meadowlark serve` also does it at start)",
        )


async def database_clock(connection: AsyncConnection) -> datetime | None:
    """The database server's clock; None for SQLite, which has no server (it runs in
    the process that opens it, on this host's clock)."""
    if connection.dialect.name == "sqlite":
        return None
    value: datetime = await connection.scalar(text("SELECT clock_timestamp()"))
    return value


def clock_skew(before: datetime, server: datetime, after: datetime) -> float:
    """Seconds the server's clock is ahead of ours (negative: behind), taking its
    reading as made halfway between our ``before`` and ``after``."""
    return (server - (before + (after - before) / 2)).total_seconds()


async def _check_clock(connection: AsyncConnection, report: Report) -> None:
    before = datetime.now(UTC)
    server = await database_clock(connection)
    after = datetime.now(UTC)
    if server is None:
        report.line("clock skew", "not checkable on SQLite (no database server clock)")
        return
    skew = clock_skew(before, server, after)
    uncertainty = (after - before).total_seconds() / 2
    direction = "ahead of" if skew > 0 else "behind"
    state = f"{abs(skew):.3f} s (database server {direction} this host, ±{uncertainty:.3f} s)"
    fix = "synchronise the clocks of this host and the database server (NTP: chrony/timesyncd)"
    if abs(skew) > CLOCK_SKEW_ERROR:
        report.error("clock skew", state, f"{fix}; tokens and DTLS need agreeing clocks")
    elif abs(skew) > CLOCK_SKEW_WARNING:
        report.warning("clock skew", state, fix)
    else:
        report.line("clock skew", state)


# -- keys -------------------------------------------------------------------------------


def _check_secret_keys(settings: Settings, report: Report) -> None:
    if settings.secret_key is not None:
        _check_configured_key(
            "secret key", "MEADOWLARK_SECRET_KEY", settings.secret_key, settings.dev, report
        )
    else:
        key_file = settings.data_dir / "secret_key"
        if not key_file.exists():
            report.line("secret key", f"generated into {key_file} on first start")
        elif key_file.stat().st_mode & (stat.S_IRWXG | stat.S_IRWXO):
            report.warning(
                "secret key",
                f"{key_file} is readable by other users",
                f"chmod 600 {key_file}",
            )
        else:
            report.line("secret key", f"generated, in {key_file}")
    if settings.psk_key is not None:
        _check_configured_key(
            "PSK key", "MEADOWLARK_PSK_KEY", settings.psk_key, settings.dev, report
        )


def _check_configured_key(
    label: str, variable: str, secret: SecretStr, dev: bool, report: Report
) -> None:
    length = len(secret.get_secret_value())
    if length >= MIN_SECRET_LENGTH:
        report.line(label, f"configured ({variable}, {length} characters)")
    elif dev:
        report.warning(label, f"{variable} is only {length} characters (dev mode)")
    else:
        report.error(
            label,
            f"{variable} is only {length} characters",
            f"use at least {MIN_SECRET_LENGTH} random characters (`openssl rand -base64 48`)",
        )


def _check_device_security(settings: Settings, report: Report, database: DatabaseHealth) -> None:
    """The DTLS library, and whether stored device PSKs open with the configured key: a
    changed MEADOWLARK_SECRET_KEY (or MEADOWLARK_PSK_KEY) would otherwise lock those
    devices out without a word."""
    try:
        import mbedtls.version

        dtls = f"python-mbedtls {mbedtls.__version__} ({mbedtls.version.version})"
    except ImportError:
        dtls = "not installed (python-mbedtls: the mbedtls module)"
    typer.echo(f"{'DTLS (python-mbedtls)':28} {dtls}")

    source = "MEADOWLARK_PSK_KEY" if settings.psk_key is not None else "the secret key"
    box = SecretBox.for_psks(settings)
    probe = secrets.token_bytes(16)
    try:
        sealing = "ok" if box.open(box.seal(probe, "doctor"), "doctor") == probe else "failed"
    except SealError:
        sealing = "failed"
    state = f"{sealing} (AES-256-GCM, key derived from {source})"
    if sealing == "ok":
        report.line("PSK sealing", state)
    else:
        report.error("PSK sealing", state)
    labels = ("device PSKs", "bootstrap PSKs")
    schema = database.schema
    why = None
    if not database.reachable or schema is None:
        why = "database unreachable"
    elif schema.revision is None:
        why = "no schema yet"
    elif not schema.known:
        why = "schema of a newer Meadowlark"
    if why is not None:
        for label in labels:
            report.line(label, f"not checked ({why})")
        return

    async def count(psks: PskSource) -> str:
        db = Database(settings.resolved_database_url)
        try:
            health = await check_stored_psks(db, box, psks)
        except Exception as exc:  # report, don't crash: e.g. a store not migrated yet
            return f"not checked ({type(exc).__name__}; has `meadowlark db upgrade` run?)"
        finally:
            await db.dispose()
        if not health.unreadable:
            return f"{health.stored} stored, all open with the current key"
        shown = ", ".join(health.unreadable[:5])
        more = ", ..." if len(health.unreadable) > 5 else ""
        return (
            f"{len(health.unreadable)} of {health.stored} do NOT open with the current key "
            f"(wrong MEADOWLARK_SECRET_KEY / MEADOWLARK_PSK_KEY?); those devices cannot "
            f"authenticate: {shown}{more}"
        )

    for label, psks in zip(labels, (DEVICE_PSKS, BOOTSTRAP_PSKS), strict=True):
        state = asyncio.run(count(psks))
        if "NOT open" in state:
            report.error(
                label, state, "set the key the PSKs were sealed with, or set the PSKs again"
            )
        else:
            report.line(label, state)


# -- ports and certificates ---------------------------------------------------------------


def _check_ports(settings: Settings, report: Report) -> None:
    listeners: tuple[tuple[str, HostPort | None, int], ...] = (
        ("REST port", settings.http, socket.SOCK_STREAM),
        ("CoAP port", settings.coap, socket.SOCK_DGRAM),
        ("CoAP/TCP port", settings.coap_tcp, socket.SOCK_STREAM),
        ("CoAP/TLS port", settings.coap_tls, socket.SOCK_STREAM),
        ("DTLS port", settings.coaps, socket.SOCK_DGRAM),
        ("Bootstrap port", settings.bootstrap, socket.SOCK_DGRAM),
        ("Bootstrap DTLS", settings.bootstrap_dtls, socket.SOCK_DGRAM),
    )
    if settings.metrics.listen is not None:  # else /metrics is on the REST port
        listeners += (("Metrics port", settings.metrics.listen, socket.SOCK_STREAM),)
    for label, address, kind in listeners:
        if address is None:
            report.line(label, "off")
            continue
        problem = bind_problem(address, kind)
        if problem is None:
            report.line(label, "ok")
        elif problem.errno == errno.EADDRINUSE:
            report.error(
                label,
                f"{address} already in use",
                "stop what listens there (a running Meadowlark?) or choose another address",
            )
        else:
            report.error(label, f"cannot bind {address} ({problem.strerror})")


def bind_problem(address: HostPort, kind: int) -> OSError | None:
    """Why a listener of ``kind`` cannot bind ``address`` (None: it can)."""
    family = socket.AF_INET6 if ":" in address.host else socket.AF_INET
    try:
        with socket.socket(family, kind) as probe:
            probe.bind((address.host, address.port))
    except OSError as exc:
        return exc
    return None


def _check_certificates(settings: Settings, report: Report) -> None:
    """The DTLS/TLS certificate material."""
    generated = settings.tls.certificate is None
    if generated and not (settings.data_dir / "tls" / "server.pem").exists():
        report.line("certificate", "self-signed, generated on first start")
        return
    credentials = server_credentials(settings)
    problems = check_server_credentials(credentials)
    origin = "self-signed (data dir)" if generated else str(credentials.certificate)
    if not problems:
        report.line("certificate", f"{origin}: ok")
    else:
        report.error("certificate", f"{origin}: {problems[0]}")
        for problem in problems[1:]:
            report.error("", problem)
    if credentials.ca_bundle is None:
        report.line("client CAs", "none (X.509 devices cannot authenticate)")
