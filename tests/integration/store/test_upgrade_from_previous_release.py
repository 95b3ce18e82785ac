"""Upgrades: a database made by the previous release's schema, with rows written the way
that release wrote them, migrated to head by ``meadowlark db upgrade``, is read back by
this code through the REST API. Downgrades are refused, plainly.

``PREVIOUS_RELEASE_REVISION`` is the alembic revision of the newest tagged release. When
a release is tagged, set it to that release's head (``ls src/meadowlark/store/migrations/
versions``, the highest number at the tag) and, if that schema changed a table used
below, update the plain SQL in ``_insert_previous_release_rows`` to what that release
writes. Until a new migration lands after it, the upgrade step is a no-op, but the rows
are still read back through the API.
"""

from __future__ import annotations

import asyncio
import os
import re
import signal
import sqlite3
import subprocess
import sys
import tempfile
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
from alembic import command
from sqlalchemy import JSON, Boolean, DateTime, bindparam, text
from typer.testing import CliRunner

from live_server import FREE_PORTS
from meadowlark.auth.passwords import hash_password
from meadowlark.cli.main import app
from meadowlark.core.secret_box import SecretBox
from meadowlark.store.db import Database
from meadowlark.store.migrate import alembic_config, head_revision

PREVIOUS_RELEASE_REVISION = "0015"
"""Schema of the previous tagged release (no git tags yet: 0015 is the last revision of
the release before this session's work)."""
PREVIOUS_RELEASE_DUMP = Path(__file__).with_name("previous_release.sql")
"""SQLite dump (``iterdump``) of a database the previous release made, with the rows of
``_insert_previous_release_rows``. Regenerate it when bumping the revision, with the
release's code checked out (``PYTHONPATH=src:tests``):
``python tests/integration/store/test_upgrade_from_previous_release.py``."""

API = "/api/coiotedm/v3"
DOMAIN = "/root/legacy/"
USER_PASSWORD = "Legacy-User-Pa55word!"
PSK = bytes.fromhex("a1b2c3d4e5f60718293a4b5c6d7e8f90")
CREATED = datetime(2026, 1, 15, 8, 0, tzinfo=UTC)
TYPES: dict[str, Any] = {
    "created": DateTime(timezone=True),
    "updated": DateTime(timezone=True),
    "yes": Boolean(),
    "no": Boolean(),
    "empty_list": JSON(),
    "empty_map": JSON(),
    "roles": JSON(),
    "operations": JSON(),
    "value": JSON(),
}


async def _execute(session: Any, sql: str, **values: Any) -> None:
    """``sql`` with the ``values`` it names, typed as the release's columns store them."""
    used = {name: value for name, value in values.items() if re.search(rf":{name}\b", sql)}
    statement = text(sql).bindparams(
        *(bindparam(name, type_=TYPES[name]) for name in used if name in TYPES)
    )
    await session.execute(statement, used)


async def _insert_previous_release_rows(url: str, box: SecretBox) -> None:
    """A domain, a user, devices (one with a sealed PSK), a group with a member, a task
    and cached values, in the previous release's tables, as plain SQL."""
    password_hash = await hash_password(USER_PASSWORD)
    common = {"created": CREATED, "updated": CREATED, "yes": True, "no": False}
    db = Database(url)
    try:
        async with db.transaction() as session:
            await _execute(
                session,
                "INSERT INTO domains (id, description, customer_id, organization_id, created_at)"
                " VALUES (:id, 'legacy customers', 'cust-legacy', 'org-legacy', :created)",
                id=DOMAIN,
                created=CREATED,
            )
            await _execute(
                session,
                "INSERT INTO users (id, login, email, password_hash, domain_id, account_type,"
                " active, email_verified, tos_accepted, full_name, roles, extra_permissions,"
                " things_group_ids, properties, token_generation, totp_enabled, created_at,"
                " updated_at) VALUES ('u-legacy', 'legacy-user', 'legacy@example.com', :hash,"
                " :domain, 'developer', :yes, :yes, :yes, 'Legacy User', :roles, :empty_list,"
                " :empty_list, :empty_map, 0, :no, :created, :updated)",
                hash=password_hash,
                domain=DOMAIN,
                roles=["Monitor"],
                empty_list=[],
                empty_map={},
                **common,
            )
            for device_id, mode, identity, sealed in (
                ("legacy-plain", "nosec", None, None),
                ("legacy-psk", "psk", "id-legacy-psk", box.seal(PSK, "legacy-psk")),
            ):
                await _execute(
                    session,
                    "INSERT INTO devices (id, endpoint_name, domain_id, friendly_name,"
                    " description, properties, blacklisted, management_enabled, connector_type,"
                    " security_mode, dtls_identity, dtls_psk, creation_time, queue_mode,"
                    " manufacturer, serial_number) VALUES (:id, :id, :domain, 'legacy device',"
                    " '', :empty_map, :no, :yes, 'lwm2m', :mode, :identity, :sealed, :created,"
                    " :no, 'Legacy Corp', 'SN-0001')",
                    id=device_id,
                    domain=DOMAIN,
                    mode=mode,
                    identity=identity,
                    sealed=sealed,
                    empty_map={},
                    **common,
                )
            for path, kind, value in (
                ("/3/0/0", "String", "Legacy Corp"),
                ("/3/0/2", "String", "SN-0001"),
                ("/3303/0/5700", "Float", 19.25),
            ):
                await _execute(
                    session,
                    "INSERT INTO resource_values (device_id, path, type, value, updated_at)"
                    " VALUES ('legacy-plain', :path, :kind, :value, :updated)",
                    path=path,
                    kind=kind,
                    value=value,
                    updated=CREATED,
                )
            await _execute(
                session,
                "INSERT INTO device_groups (id, domain_id, description, created_at)"
                " VALUES ('legacy-group', :domain, 'old fleet', :created)",
                domain=DOMAIN,
                created=CREATED,
            )
            await _execute(
                session,
                "INSERT INTO group_memberships (device_id, group_id)"
                " VALUES ('legacy-plain', 'legacy-group')",
            )
            await _execute(
                session,
                "INSERT INTO tasks (id, domain_id, name, target_kind, target_id, operations,"
                " parameters, properties, is_active, batch_requests, max_attempts, created_at,"
                " updated_at) VALUES ('legacy-plain:1', :domain, 'read serial', 'device',"
                " 'legacy-plain', :operations, :empty_list, :empty_map, :no, :yes, 3,"
                " :created, :updated)",
                domain=DOMAIN,
                operations=[{"read": {"key": "/3/0/2"}}],
                empty_list=[],
                empty_map={},
                **common,
            )
    finally:
        await db.dispose()


@pytest.fixture(scope="module")
def previous_release(tmp_path_factory, database_url, settings_for):
    """Settings of an installation whose database the previous release made and filled."""
    settings = settings_for(tmp_path_factory.mktemp("legacy"), database_url=database_url)
    url = settings.resolved_database_url
    command.upgrade(alembic_config(url), PREVIOUS_RELEASE_REVISION)
    asyncio.run(_insert_previous_release_rows(url, SecretBox.for_psks(settings)))
    return settings


def _env(settings) -> dict[str, str]:
    env = {
        "MEADOWLARK_DATA_DIR": str(settings.data_dir),
        "MEADOWLARK_SECRET_KEY": settings.secret_key.get_secret_value(),
        "MEADOWLARK_ADMIN_PASSWORD": settings.admin_password.get_secret_value(),
    }
    if settings.database_url:
        env["MEADOWLARK_DATABASE_URL"] = settings.database_url
    return env


def _revision(url: str) -> str:
    async def main() -> str:
        db = Database(url)
        try:
            async with db.session() as session:
                return str(await session.scalar(text("SELECT version_num FROM alembic_version")))
        finally:
            await db.dispose()

    return asyncio.run(main())


def _registration_transports(url: str) -> dict[str, tuple[Any, ...]]:
    async def main() -> dict[str, tuple[Any, ...]]:
        db = Database(url)
        try:
            async with db.session() as session:
                rows = await session.execute(
                    text(
                        "SELECT id, registration_transport, registration_identity_mode,"
                        " registration_identity_name FROM devices"
                    )
                )
                return {row[0]: tuple(row[1:]) for row in rows}
        finally:
            await db.dispose()

    return asyncio.run(main())


def test_the_previous_release_schema_is_upgraded_and_read(previous_release, serve):
    upgrade_and_read(previous_release, serve)


@pytest.fixture
def committed_previous_release(tmp_path, settings_for):
    """An SQLite installation loaded from the committed dump of the previous release."""
    settings = settings_for(tmp_path / "committed")
    settings.data_dir.mkdir()
    with sqlite3.connect(settings.data_dir / "meadowlark.db") as connection:
        connection.executescript(PREVIOUS_RELEASE_DUMP.read_text(encoding="utf-8"))
    return settings


def test_the_committed_previous_release_database_is_upgraded_and_read(
    committed_previous_release, serve
):
    """The same rows, but in the schema exactly as the release created it: an edit to an
    old migration cannot make this database look like what the code expects."""
    upgrade_and_read(committed_previous_release, serve)


def upgrade_and_read(previous_release, serve) -> None:
    """``db upgrade`` takes the previous release's database to head, and the server
    reads every row ``_insert_previous_release_rows`` wrote."""
    url = previous_release.resolved_database_url
    assert _revision(url) == PREVIOUS_RELEASE_REVISION
    upgraded = CliRunner().invoke(app, ["db", "upgrade"], env=_env(previous_release))
    assert upgraded.exit_code == 0, upgraded.output
    assert _revision(url) == head_revision()
    # 0016: the rows have no registration transport or identity (read as plain UDP)
    assert _registration_transports(url) == {
        "legacy-plain": (None, None, None),
        "legacy-psk": (None, None, None),
    }

    with serve(previous_release) as server, server.admin() as http:
        device = http.get(f"{API}/devices/legacy-psk")
        assert device.status_code == 200, device.text
        assert (device.json()["domain"], device.json()["dtlsIdentity"]) == (DOMAIN, "id-legacy-psk")
        cached = {
            entry["name"]: entry["value"]
            for entry in http.get(f"{API}/cachedDataModels/legacy-plain").json()
        }
        assert cached["Device.0.Manufacturer"] == "Legacy Corp"
        assert cached["Temperature.0.Sensor Value"] == "19.25"
        assert http.get(f"{API}/groups/legacy-group").json()["description"] == "old fleet"
        plain = http.get(f"{API}/devices/legacy-plain").json()
        assert (plain["domain"], plain["directGroups"]) == (DOMAIN, ["legacy-group"]), plain
        task = http.get(f"{API}/tasks/legacy-plain:1")
        assert task.status_code == 200, task.text
        assert task.json()["config"]["taskName"] == "read serial"
        assert DOMAIN in http.get(f"{API}/domains").text
        token = server.login("legacy-user", USER_PASSWORD)  # the old password hash works
        with server.client(token) as user:
            assert user.get("/api/auth/me").json()["login"] == "legacy-user"
    # the sealed PSK opens with the same key after the upgrade
    doctor = CliRunner().invoke(app, ["doctor"], env={**_env(previous_release), **FREE_PORTS})
    assert "device PSKs     1 stored, all open with the current key" in doctor.stdout


@pytest.fixture
def newer_database(tmp_path, settings_for):
    """An SQLite installation stamped by a Meadowlark newer than this one."""
    settings = settings_for(tmp_path / "newer")
    url = settings.resolved_database_url
    command.upgrade(alembic_config(url), "head")

    async def stamp() -> None:
        db = Database(url)
        try:
            async with db.transaction() as session:
                await session.execute(text("UPDATE alembic_version SET version_num = '0999'"))
        finally:
            await db.dispose()

    asyncio.run(stamp())
    return settings


REFUSAL = (
    "this database was migrated by a newer Meadowlark (revision 0999); this version "
    f"knows up to {head_revision()}; upgrade Meadowlark or restore a backup"
)


def test_db_upgrade_doctor_and_other_commands_refuse_a_newer_database(newer_database):
    env = {**_env(newer_database), **FREE_PORTS}
    for command_line in (["db", "upgrade"], ["user", "list"], ["devices", "list"]):
        result = CliRunner().invoke(app, command_line, env=env)
        assert result.exit_code == 1, (command_line, result.output)
        assert result.stderr.strip().splitlines()[-1] == f"error: {REFUSAL}", command_line
        assert isinstance(result.exception, SystemExit)  # a message, not a traceback
    doctor = CliRunner().invoke(app, ["doctor"], env=env)
    assert doctor.exit_code == 1 and "revision 0999" in doctor.stdout
    assert "downgrades are not supported" in doctor.stdout


@pytest.mark.parametrize("workers", ["1", "2"])
def test_serve_refuses_a_newer_database(newer_database, workers):
    env = {k: v for k, v in os.environ.items() if not k.startswith("MEADOWLARK_")}
    env.update({**_env(newer_database), **FREE_PORTS, "MEADOWLARK_WORKERS": workers})
    done = subprocess.run(  # noqa: S603 - our own interpreter and entry point
        [sys.executable, "-m", "meadowlark.cli.main", "serve"],
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 1, done.stderr
    assert f"error: {REFUSAL}" in done.stderr
    assert "Traceback" not in done.stderr and done.returncode != -signal.SIGTERM


def test_there_is_no_downgrade_command():
    result = CliRunner().invoke(app, ["db", "--help"])
    assert result.exit_code == 0
    assert "downgrade" not in result.stdout and "upgrade" in result.stdout
    assert CliRunner().invoke(app, ["db", "downgrade", "0014"]).exit_code == 2


def write_previous_release_dump() -> None:
    """Build the previous release's database as the tests do and dump it as SQL."""
    from conftest import make_settings

    with tempfile.TemporaryDirectory() as folder:
        settings = make_settings(Path(folder))
        url = settings.resolved_database_url
        command.upgrade(alembic_config(url), PREVIOUS_RELEASE_REVISION)
        asyncio.run(_insert_previous_release_rows(url, SecretBox.for_psks(settings)))
        with sqlite3.connect(Path(folder) / "meadowlark.db") as connection:
            dump = "\n".join(connection.iterdump())
    PREVIOUS_RELEASE_DUMP.write_text(dump + "\n", encoding="utf-8")


if __name__ == "__main__":
    write_previous_release_dump()
