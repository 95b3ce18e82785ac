"""``meadowlark db backup`` and ``db restore``: a backup taken while ``meadowlark serve``
runs, restored into a fresh data dir (SQLite) or a fresh database (PostgreSQL), gives a
server that finds every device, user, group, domain and cached value again."""

from __future__ import annotations

import asyncio
import contextlib
import os
import secrets
import signal
import socket
import sqlite3
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import httpx
import psycopg
import pytest
from sqlalchemy.engine import make_url
from typer.testing import CliRunner

from live_server import wait_until_ready
from meadowlark.cli.main import app
from meadowlark.simulator.client import SimulatedDevice

SECRET = "backup-test-signing-key-" + "b" * 40
ADMIN_PASSWORD = "Backup-Admin-Pa55word!"
USER_PASSWORD = "Backup-User-Pa55word!"
KEY_HEX = "00112233445566778899aabbccddeeff"
API = "/api/coiotedm/v3"


def _free_port(kind: int) -> int:
    with socket.socket(socket.AF_INET, kind) as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]  # type: ignore[no-any-return]


def cli(env: dict[str, str], *args: str):
    result = CliRunner().invoke(app, list(args), env=env)
    assert result.exception is None or isinstance(result.exception, SystemExit), result.exception
    return result


@contextmanager
def fresh_database(backend: str, tmp_path: Path, name: str) -> Iterator[dict[str, str]]:
    """The environment of an installation of its own: a data dir, and for PostgreSQL a
    new database (dropped afterwards)."""
    env = {"MEADOWLARK_DATA_DIR": str(tmp_path / name), "MEADOWLARK_SECRET_KEY": SECRET}
    if backend == "sqlite":
        yield env
        return
    maintenance = make_url(os.environ["MEADOWLARK_TEST_POSTGRES_URL"])
    database = f"meadowlark_backup_{secrets.token_hex(5)}"
    params = {
        "host": maintenance.host,
        "port": maintenance.port or 5432,
        "user": maintenance.username,
        "password": maintenance.password,
        "dbname": maintenance.database,
    }
    with psycopg.connect(**params, autocommit=True) as connection:
        connection.execute(f'CREATE DATABASE "{database}"')
    try:
        url = maintenance.set(database=database).render_as_string(hide_password=False)
        yield {**env, "MEADOWLARK_DATABASE_URL": url}
    finally:
        with psycopg.connect(**params, autocommit=True) as connection:
            connection.execute(f'DROP DATABASE IF EXISTS "{database}" WITH (FORCE)')


@contextmanager
def serving(env: dict[str, str]) -> Iterator[tuple[str, int]]:
    """``meadowlark serve`` as a process; its REST base URL and CoAP port."""
    http_port, coap_port = _free_port(socket.SOCK_STREAM), _free_port(socket.SOCK_DGRAM)
    process_env = {k: v for k, v in os.environ.items() if not k.startswith("MEADOWLARK_")}
    process_env.update(env)
    process_env.update(
        {
            "MEADOWLARK_HTTP": f"127.0.0.1:{http_port}",
            "MEADOWLARK_COAP": f"127.0.0.1:{coap_port}",
            "MEADOWLARK_COAPS": "off",
            "MEADOWLARK_COAP_TCP": "off",
            "MEADOWLARK_COAP_TLS": "off",
            "MEADOWLARK_BOOTSTRAP": "off",
            "MEADOWLARK_BOOTSTRAP_DTLS": "off",
            "MEADOWLARK_ADMIN_PASSWORD": ADMIN_PASSWORD,
            "MEADOWLARK_LOG_LEVEL": "warning",
            "MEADOWLARK_WORKERS": "1",
        }
    )
    log_path = Path(env["MEADOWLARK_DATA_DIR"]).with_suffix(".log")
    with log_path.open("ab") as log:
        process = subprocess.Popen(  # noqa: S603 - our own interpreter and entry point
            [sys.executable, "-m", "meadowlark.cli.main", "serve"],
            env=process_env,
            stdout=log,
            stderr=log,
        )
    base = f"http://127.0.0.1:{http_port}"
    try:
        wait_until_ready(process, base, lambda: log_path.read_text(errors="replace"))
        yield base, coap_port
    finally:
        process.send_signal(signal.SIGTERM)
        # uvicorn shuts down gracefully, then re-raises the captured signal: -SIGTERM is clean.
        exit_code = process.wait(timeout=30)
        assert exit_code in (0, -signal.SIGTERM), log_path.read_text(errors="replace")


def admin(base: str) -> httpx.Client:
    with httpx.Client(base_url=base, timeout=30) as http:
        response = http.post(
            "/api/auth/oauth_password", data={"username": "admin", "password": ADMIN_PASSWORD}
        )
    assert response.status_code == 201, response.text
    token = response.json()["access_token"]
    return httpx.Client(base_url=base, timeout=30, headers={"Authorization": f"Bearer {token}"})


def cached_manufacturer(http: httpx.Client, endpoint: str) -> str | None:
    response = http.get(f"{API}/cachedDataModels/{endpoint}")
    assert response.status_code == 200, response.text
    values = {entry["name"]: entry["value"] for entry in response.json()}
    return values.get("Device.0.Manufacturer")


MANUFACTURER_ROW = (
    "SELECT v.value FROM resource_values v JOIN devices d ON d.id = v.device_id"
    " WHERE d.endpoint_name = {0} AND v.path = '/3/0/0'"
)


def stored_manufacturer(env: dict[str, str], endpoint: str) -> object:
    """The cached Manufacturer as committed to the database (None before), read past the
    server: the API also shows values still in its write-behind batch (committed by the
    next flush, ``value_flush_interval`` later), which a backup taken then does not hold."""
    if "MEADOWLARK_DATABASE_URL" not in env:
        path = Path(env["MEADOWLARK_DATA_DIR"]) / "meadowlark.db"
        with contextlib.closing(sqlite3.connect(f"{path.as_uri()}?mode=ro", uri=True)) as db:
            row = db.execute(MANUFACTURER_ROW.format("?"), (endpoint,)).fetchone()
    else:
        url = make_url(env["MEADOWLARK_DATABASE_URL"]).set(drivername="postgresql")
        with psycopg.connect(url.render_as_string(hide_password=False)) as db:
            row = db.execute(MANUFACTURER_ROW.format("%s"), (endpoint,)).fetchone()
    return None if row is None else row[0]


async def register_and_get_cached(
    endpoint: str, coap_port: int, http: httpx.Client, env: dict[str, str]
) -> None:
    """A simulated device registers; the server reads its Device object into the cache,
    and writes it to the database."""
    device = SimulatedDevice(endpoint, f"coap://127.0.0.1:{coap_port}")
    await device.start()
    try:
        deadline = time.monotonic() + 30
        while await asyncio.to_thread(cached_manufacturer, http, endpoint) is None:
            assert time.monotonic() < deadline, "registration reads were not cached"
            await asyncio.sleep(0.1)
        while await asyncio.to_thread(stored_manufacturer, env, endpoint) is None:
            assert time.monotonic() < deadline, "cached values were not written to the database"
            await asyncio.sleep(0.05)
    finally:
        await device.stop(deregister=False)


@pytest.mark.parametrize(
    "backend",
    [
        "sqlite",
        pytest.param(
            "postgres",
            marks=[
                pytest.mark.postgres,
                pytest.mark.skipif(
                    not os.environ.get("MEADOWLARK_TEST_POSTGRES_URL"),
                    reason="MEADOWLARK_TEST_POSTGRES_URL not set",
                ),
            ],
        ),
    ],
)
def test_a_backup_taken_while_serving_restores_everything(backend, tmp_path):
    tag = secrets.token_hex(3)
    domain, group, login = f"/root/backup{tag}/", f"backup-group-{tag}", f"backup-user-{tag}"
    plain, secured, simulated = f"bk-plain-{tag}", f"bk-psk-{tag}", f"bk-sim-{tag}"
    backup_file = tmp_path / "meadowlark.backup"
    with (
        fresh_database(backend, tmp_path, "original") as original,
        fresh_database(backend, tmp_path, "restored") as restored,
    ):
        with serving(original) as (base, coap_port), admin(base) as http:
            assert http.post(f"{API}/domains", json={"id": domain}).status_code == 201
            user = {
                "login": login,
                "password": USER_PASSWORD,
                "domain": domain,
                "emailVerified": True,
                "tosAccepted": True,
                "accountType": "developer",
            }
            assert http.post(f"{API}/users", json=user).status_code == 201, user
            assert http.post(f"{API}/groups", json={"id": group}).status_code == 201
            body = {"properties": {"endpointName": plain}, "domain": domain}
            assert http.post(f"{API}/devices", json=body).status_code == 201
            added = cli(
                original, "devices", "add", secured, "--domain", "/root/",
                "--psk-identity", f"id-{secured}", "--psk-key", KEY_HEX,
            )  # fmt: skip
            assert added.exit_code == 0, added.output
            asyncio.run(register_and_get_cached(simulated, coap_port, http, original))

            refused = cli(original, "db", "restore", str(backup_file), "--force")
            assert refused.exit_code == 1  # no file yet
            done = cli(original, "db", "backup", str(backup_file))  # online, server running
            assert done.exit_code == 0, done.output
            assert f"to {backup_file}" in done.stdout and "secret_key" in done.stderr
            if backend == "sqlite":
                busy = cli(original, "db", "restore", str(backup_file), "--force")
                assert busy.exit_code == 1
                assert "is in use (a running `meadowlark serve`?)" in busy.stderr, busy.output

        restore = cli(restored, "db", "restore", str(backup_file))
        assert restore.exit_code == 0, restore.output
        assert "restored" in restore.stdout and "do not open" not in restore.output
        again = cli(restored, "db", "restore", str(backup_file))
        assert again.exit_code == 1 and "not empty; pass --force" in again.stderr, again.output
        assert cli(restored, "db", "restore", str(backup_file), "--force").exit_code == 0

        with serving(restored) as (base, _), admin(base) as http:
            for endpoint in (plain, secured, simulated):
                response = http.get(f"{API}/devices/{endpoint}")
                assert response.status_code == 200, (endpoint, response.text)
            assert http.get(f"{API}/devices/{plain}").json()["domain"] == domain
            assert http.get(f"{API}/devices/{secured}").json()["dtlsIdentity"] == f"id-{secured}"
            assert http.get(f"{API}/groups/{group}").status_code == 200
            assert domain in http.get(f"{API}/domains").text
            assert cached_manufacturer(http, simulated) == "Meadowlark"
            login_response = httpx.post(
                f"{base}/api/auth/oauth_password",
                data={"username": login, "password": USER_PASSWORD},
            )
            assert login_response.status_code == 201, login_response.text
        doctor = cli(restored, "doctor")
        assert "device PSKs     1 stored, all open with the current key" in doctor.stdout


def test_restore_refuses_what_is_not_our_backup(tmp_path):
    env = {"MEADOWLARK_DATA_DIR": str(tmp_path / "data"), "MEADOWLARK_SECRET_KEY": SECRET}
    garbage = tmp_path / "garbage.bin"
    garbage.write_bytes(b"PGDMP not for sqlite" + bytes(100))
    result = cli(env, "db", "restore", str(garbage))
    assert result.exit_code == 1 and "is not a Meadowlark backup" in result.stderr

    foreign = tmp_path / "foreign.db"
    with sqlite3.connect(foreign) as connection:
        connection.execute("CREATE TABLE notes (text TEXT)")
    result = cli(env, "db", "restore", str(foreign))
    assert result.exit_code == 1
    assert "is not a Meadowlark backup (no schema revision in it)" in result.stderr

    newer = tmp_path / "newer.db"
    with sqlite3.connect(newer) as connection:
        connection.execute("CREATE TABLE alembic_version (version_num VARCHAR(32))")
        connection.execute("INSERT INTO alembic_version VALUES ('0099_future')")
    result = cli(env, "db", "restore", str(newer))
    assert result.exit_code == 1
    assert "migrated by a newer Meadowlark (revision 0099_future)" in result.stderr
    assert not (tmp_path / "data" / "meadowlark.db").exists()


def test_an_older_backup_is_migrated_to_head_after_restore(tmp_path):
    from alembic import command

    from meadowlark.config import Settings
    from meadowlark.store.migrate import alembic_config, head_revision

    old = {"MEADOWLARK_DATA_DIR": str(tmp_path / "old"), "MEADOWLARK_SECRET_KEY": SECRET}
    url = Settings(data_dir=tmp_path / "old").resolved_database_url
    command.upgrade(alembic_config(url), "0014")
    backup_file = tmp_path / "old.backup"
    done = cli(old, "db", "backup", str(backup_file))
    assert done.exit_code == 0 and "(schema 0014)" in done.stdout, done.output

    new = {"MEADOWLARK_DATA_DIR": str(tmp_path / "new"), "MEADOWLARK_SECRET_KEY": SECRET}
    restored = cli(new, "db", "restore", str(backup_file))
    assert restored.exit_code == 0, restored.output
    assert f"migrated from 0014 to {head_revision()}" in restored.stdout
    doctor = cli(new, "doctor")
    assert f"at head ({head_revision()})" in doctor.stdout
