"""``meadowlark doctor``: migrations behind or ahead, ports in use, clock skew against the
database server, weak keys, and a clean pass (SQLite and PostgreSQL)."""

from __future__ import annotations

import asyncio
import socket
from datetime import UTC, datetime, timedelta

import pytest
from sqlalchemy import text
from typer.testing import CliRunner

from live_server import FREE_PORTS
from meadowlark.cli import doctor as doctor_module
from meadowlark.cli.main import app
from meadowlark.store.db import Database
from meadowlark.store.migrate import head_revision

SECRET = "doctor-test-signing-key-" + "k" * 40


@pytest.fixture(scope="module")
def env(tmp_path_factory, database_url):
    values = {
        "MEADOWLARK_DATA_DIR": str(tmp_path_factory.mktemp("doctor")),
        "MEADOWLARK_SECRET_KEY": SECRET,
        **FREE_PORTS,
    }
    if database_url:
        values["MEADOWLARK_DATABASE_URL"] = database_url
    upgraded = CliRunner().invoke(app, ["db", "upgrade"], env=values)
    assert upgraded.exit_code == 0, upgraded.output
    return values


@pytest.fixture(scope="module")
def url(env):
    from meadowlark.config import Settings

    return Settings(
        data_dir=env["MEADOWLARK_DATA_DIR"], database_url=env.get("MEADOWLARK_DATABASE_URL")
    ).resolved_database_url


def doctor(env):
    result = CliRunner().invoke(app, ["doctor"], env=env)
    assert result.exception is None or isinstance(result.exception, SystemExit), result.exception
    return result


def lines_of(result, label: str) -> list[str]:
    """The line of check ``label`` and its ``fix:`` lines."""
    lines = result.stdout.splitlines()
    start = next(i for i, line in enumerate(lines) if line.startswith(f"{label:15} "))
    end = start + 1
    while end < len(lines) and lines[end].startswith(" " * 15 + " fix:"):
        end += 1
    return lines[start:end]


def set_revision(url: str, revision: str) -> None:
    async def main() -> None:
        db = Database(url)
        try:
            async with db.transaction() as session:
                await session.execute(
                    text("UPDATE alembic_version SET version_num = :revision"),
                    {"revision": revision},
                )
        finally:
            await db.dispose()

    asyncio.run(main())


@pytest.fixture
def revision(url):
    """``revision(x)`` stamps the database with revision ``x`` for one test."""
    yield lambda value: set_revision(url, value)
    set_revision(url, head_revision())


def test_a_healthy_installation_passes(env, backend):
    result = doctor(env)
    assert result.exit_code == 0, result.output
    assert lines_of(result, "migrations") == [f"{'migrations':15} at head ({head_revision()})"]
    assert "database        ok" in result.stdout
    assert "0 error(s), 0 warning(s)" in result.stdout, result.stdout
    clock = lines_of(result, "clock skew")
    if backend == "sqlite":
        assert clock == [f"{'clock skew':15} not checkable on SQLite (no database server clock)"]
    else:  # the real comparison with PostgreSQL's clock_timestamp() on this host
        assert "database server" in clock[0] and len(clock) == 1, clock


def test_database_url_password_is_masked(env, backend):
    if backend == "sqlite":
        pytest.skip("an SQLite URL has no password")
    password = env["MEADOWLARK_DATABASE_URL"].split(":")[2].split("@")[0]
    result = doctor(env)
    assert "***" in result.stdout and f":{password}@" not in result.stdout


def test_migrations_behind_say_run_db_upgrade(env, revision):
    revision("0014")
    result = doctor(env)
    assert lines_of(result, "migrations") == [
        f"{'migrations':15} warning: behind: at 0014, head is {head_revision()}",
        f"{'':15} fix: run `meadowlark db upgrade` (`meadowlark serve` also does it at start)",
    ]
    assert result.exit_code == 0, result.output  # serve would migrate it: not an error


def test_a_revision_of_a_newer_meadowlark_is_an_error(env, revision):
    revision("0099_future")
    result = doctor(env)
    assert lines_of(result, "migrations") == [
        f"{'migrations':15} this database was migrated by a newer Meadowlark "
        f"(revision 0099_future); this version knows up to {head_revision()}",
        f"{'':15} fix: upgrade Meadowlark or restore a backup (downgrades are not supported)",
    ]
    assert result.exit_code == 1


def test_a_port_in_use_is_an_error(env):
    with (
        socket.socket(socket.AF_INET, socket.SOCK_STREAM) as rest,
        socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as coap,
        socket.socket(socket.AF_INET, socket.SOCK_STREAM) as metrics,
    ):
        for stream in (rest, metrics):
            stream.bind(("127.0.0.1", 0))
            stream.listen()
        coap.bind(("127.0.0.1", 0))
        rest_port, coap_port = rest.getsockname()[1], coap.getsockname()[1]
        metrics_port = metrics.getsockname()[1]
        taken = {
            **env,
            "MEADOWLARK_HTTP": f"127.0.0.1:{rest_port}",
            "MEADOWLARK_COAP": f"127.0.0.1:{coap_port}",
            "MEADOWLARK_METRICS__LISTEN": f"127.0.0.1:{metrics_port}",
        }
        result = doctor(taken)
    assert result.exit_code == 1
    assert lines_of(result, "Metrics port")[0] == (
        f"{'Metrics port':15} 127.0.0.1:{metrics_port} already in use"
    )
    # Without a listener of its own, /metrics is on the REST port: no line for it.
    assert "Metrics port" not in doctor(env).stdout
    assert lines_of(result, "REST port") == [
        f"{'REST port':15} 127.0.0.1:{rest_port} already in use",
        f"{'':15} fix: stop what listens there (a running Meadowlark?) or choose another address",
    ]
    assert (
        lines_of(result, "CoAP port")[0] == f"{'CoAP port':15} 127.0.0.1:{coap_port} already in use"
    )
    assert lines_of(result, "DTLS port") == [f"{'DTLS port':15} ok"]


@pytest.mark.parametrize(
    ("offset", "level", "exit_code"),
    [(timedelta(seconds=45), "error", 1), (timedelta(seconds=-5), "warning", 0)],
)
def test_clock_skew_against_the_database_server(env, monkeypatch, offset, level, exit_code):
    """The database's clock is faked; the reading, comparison and verdict are real."""

    async def skewed_clock(connection):
        await connection.execute(text("SELECT 1"))  # a round trip, as the real reading
        return datetime.now(UTC) + offset

    monkeypatch.setattr(doctor_module, "database_clock", skewed_clock)
    result = doctor(env)
    clock = lines_of(result, "clock skew")
    seconds = abs(offset.total_seconds())
    direction = "ahead of" if offset.total_seconds() > 0 else "behind"
    assert clock[0].startswith(f"{'clock skew':15} {'warning: ' if level == 'warning' else ''}")
    assert f"(database server {direction} this host" in clock[0], clock
    measured = float(clock[0].split(" s (")[0].split()[-1])
    assert seconds - 1 < measured < seconds + 1, clock
    assert clock[1].startswith(f"{'':15} fix: synchronise the clocks"), clock
    assert result.exit_code == exit_code, result.output


def test_clock_skew_comparison_takes_the_midpoint_of_the_round_trip():
    before = datetime(2026, 1, 1, tzinfo=UTC)
    after = before + timedelta(seconds=2)
    assert doctor_module.clock_skew(before, before + timedelta(seconds=1), after) == 0
    assert doctor_module.clock_skew(before, before - timedelta(seconds=9), after) == -10


def test_a_short_secret_key_is_an_error(env):
    result = doctor({**env, "MEADOWLARK_SECRET_KEY": "short-key-1234"})
    assert lines_of(result, "secret key") == [
        f"{'secret key':15} MEADOWLARK_SECRET_KEY is only 14 characters",
        f"{'':15} fix: use at least 32 random characters (`openssl rand -base64 48`)",
    ]
    assert result.exit_code == 1
