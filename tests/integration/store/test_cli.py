"""The ``meadowlark`` command line: db upgrade, user management, tokens."""

from __future__ import annotations

import asyncio

import pytest
from typer.testing import CliRunner

from live_server import FREE_PORTS
from meadowlark.cli.main import app

SECRET = "cli-test-signing-key-" + "z" * 40


@pytest.fixture(scope="module")
def cli_env(tmp_path_factory, database_url):
    data_dir = tmp_path_factory.mktemp("cli")
    env = {"MEADOWLARK_DATA_DIR": str(data_dir), "MEADOWLARK_SECRET_KEY": SECRET}
    if database_url:
        env["MEADOWLARK_DATABASE_URL"] = database_url
    return env


def _run(env, *args, input=None):  # noqa: A002
    result = CliRunner().invoke(app, list(args), env=env, input=input)
    return result


@pytest.fixture(scope="module")
def generated_password(cli_env):
    first = _run(cli_env, "db", "upgrade")
    assert first.exit_code == 0, first.output
    assert "database at head" in first.stdout
    lines = first.stderr.splitlines()
    assert "First administrator created: login 'admin'" in first.stderr
    marker = next(line for line in lines if "shown only this once" in line)
    password = lines[lines.index(marker) + 1].strip()
    assert len(password) >= 20
    second = _run(cli_env, "db", "upgrade")
    assert second.exit_code == 0
    assert "First administrator" not in second.output and password not in second.output
    return password


def _verify(cli_env, login, password):
    from sqlalchemy import select

    from meadowlark.auth.passwords import verify_password
    from meadowlark.config import Settings
    from meadowlark.store.db import Database
    from meadowlark.store.models import User

    settings = Settings(
        data_dir=cli_env["MEADOWLARK_DATA_DIR"], database_url=cli_env.get("MEADOWLARK_DATABASE_URL")
    )

    async def main():
        db = Database(settings.resolved_database_url)
        try:
            async with db.session() as session:
                user = await session.scalar(select(User).where(User.login == login))
            return user, (await verify_password(password, user.password_hash))[0]
        finally:
            await db.dispose()

    return asyncio.run(main())


def test_db_upgrade_prints_the_generated_password_exactly_once(cli_env, generated_password):
    user, valid = _verify(cli_env, "admin", generated_password)
    assert valid and user.account_type == "admin"


def test_user_create_list_disable_set_password(cli_env, generated_password):
    created = _run(
        cli_env,
        "user",
        "create",
        "carol",
        "--password",
        "Carol-Pa55word",
        "--email",
        "carol@example.com",
        "--role",
        "Monitor",
    )
    assert created.exit_code == 0, created.output
    assert "created carol (developer) in /root/" in created.stdout
    duplicate = _run(cli_env, "user", "create", "carol", "--password", "Carol-Pa55word")
    assert duplicate.exit_code == 1 and "already exists" in duplicate.stderr
    weak = _run(cli_env, "user", "create", "dave", "--password", "short")
    assert weak.exit_code == 1 and "at least 8" in weak.stderr
    prompted = _run(cli_env, "user", "create", "erin", input="Erin-Pa55word\nErin-Pa55word\n")
    assert prompted.exit_code == 0, prompted.output
    assert _verify(cli_env, "erin", "Erin-Pa55word")[1]

    listed = _run(cli_env, "user", "list")
    assert listed.exit_code == 0
    rows = {line.split()[0]: line.split() for line in listed.stdout.splitlines()}
    assert rows["carol"][1:4] == ["developer", "active", "/root/"] and rows["carol"][4] == "Monitor"
    assert rows["admin"][1] == "admin"

    assert _run(cli_env, "user", "disable", "carol").exit_code == 0
    assert "carol" in _run(cli_env, "user", "list").stdout
    assert "disabled" in next(
        line
        for line in _run(cli_env, "user", "list").stdout.splitlines()
        if line.startswith("carol")
    )
    missing = _run(cli_env, "user", "disable", "nobody")
    assert missing.exit_code == 1 and "not found" in missing.stderr

    changed = _run(cli_env, "user", "set-password", "erin", "--password", "Erin-New-Pa55")
    assert changed.exit_code == 0 and "password of erin changed" in changed.stdout
    assert _verify(cli_env, "erin", "Erin-New-Pa55")[1]
    assert not _verify(cli_env, "erin", "Erin-Pa55word")[1]


def test_token_command_prints_working_tokens(cli_env, generated_password, settings_for, serve):
    session = _run(cli_env, "token", "admin")
    assert session.exit_code == 0, session.output
    access_token = session.stdout.strip().splitlines()[-1]
    api = _run(cli_env, "token", "admin", "--api-token", "scripts", "--days", "2")
    assert api.exit_code == 0, api.output
    api_token = api.stdout.strip().splitlines()[-1]
    assert api_token.startswith("mlk_")
    unknown = _run(cli_env, "token", "nobody")
    assert unknown.exit_code == 1 and "no active user" in unknown.stderr

    settings = settings_for(
        cli_env["MEADOWLARK_DATA_DIR"],
        database_url=cli_env.get("MEADOWLARK_DATABASE_URL"),
        secret_key=SECRET,
    )
    with serve(settings) as server, server.client() as http:
        for token, via in ((access_token, "bearer"), (api_token, "api_token")):
            me = http.get("/api/auth/me", headers={"Authorization": f"Bearer {token}"})
            assert me.status_code == 200, me.text
            assert (me.json()["login"], me.json()["via"]) == ("admin", via)
        # The password printed by "db upgrade" is the administrator's.
        assert (
            http.post(
                "/api/auth/oauth_password",
                data={"username": "admin", "password": generated_password},
            ).status_code
            == 201
        )
        # Users disabled on the command line cannot log in; set-password took effect.
        assert (
            http.post(
                "/api/auth/oauth_password", data={"username": "carol", "password": "Carol-Pa55word"}
            ).status_code
            == 401
        )
        assert (
            http.post(
                "/api/auth/oauth_password", data={"username": "erin", "password": "Erin-New-Pa55"}
            ).status_code
            == 201
        )


def test_version_and_doctor(cli_env):
    from meadowlark import __version__

    version = _run(cli_env, "version")
    assert version.exit_code == 0 and version.stdout.strip() == __version__
    doctor = _run({**cli_env, **FREE_PORTS}, "doctor")
    assert "database        ok" in doctor.stdout, doctor.output
    for label in ("CoAP/TCP port", "CoAP/TLS port", "DTLS port", "Bootstrap port"):
        assert f"{label:15} ok" in doctor.stdout, doctor.output
    assert "certificate     self-signed, generated on first start" in doctor.stdout
    assert doctor.exit_code == 0, doctor.output


def test_doctor_checks_the_configured_certificate(cli_env, tmp_path):
    from meadowlark.certificates import issue_certificate

    server, other = issue_certificate("srv", server=True), issue_certificate("other")
    (tmp_path / "srv.pem").write_bytes(server.certificate_pem)
    (tmp_path / "other.key").write_bytes(other.key_pem)
    env = {
        **cli_env,
        **FREE_PORTS,
        "MEADOWLARK_TLS__CERTIFICATE": str(tmp_path / "srv.pem"),
        "MEADOWLARK_TLS__PRIVATE_KEY": str(tmp_path / "other.key"),
    }
    doctor = _run(env, "doctor")
    assert "is not the certificate's key" in doctor.stdout, doctor.output
    assert doctor.exit_code == 1
    (tmp_path / "srv.key").write_bytes(server.key_pem)
    doctor = _run({**env, "MEADOWLARK_TLS__PRIVATE_KEY": str(tmp_path / "srv.key")}, "doctor")
    assert f"certificate     {tmp_path / 'srv.pem'}: ok" in doctor.stdout, doctor.output
    assert doctor.exit_code == 0, doctor.output


def test_placeholder_secret_is_a_configuration_error(cli_env):
    result = _run({**cli_env, "MEADOWLARK_ADMIN_PASSWORD": "changeme"}, "db", "upgrade")
    assert result.exit_code == 2 and "placeholder" in result.stderr


def test_things_import_reports_each_row(cli_env, generated_password, tmp_path):
    from meadowlark.connectivity.identifiers import with_check_digit

    good = [with_check_digit(f"89490000000000{n:04d}") for n in range(3)]
    csv_file = tmp_path / "sims.csv"
    csv_file.write_text(
        "ICCID,IMSI,MSISDN,IMEI,name,group,tags\n"
        + "".join(f"{iccid},,,,meter {n},,north;south\n" for n, iccid in enumerate(good))
        + "89490000000000000001,,,,bad,,\n"
        + f"{good[0]},,,,again,,\n"
    )
    result = _run(cli_env, "things", "import", str(csv_file))
    assert result.exit_code == 1, result.output
    lines = result.stdout.splitlines()
    assert lines[:3] == [
        f"row {n + 2}\t{iccid}\tThingId_ICCID_{iccid}" for n, iccid in enumerate(good)
    ]
    assert "check digit" in lines[3] and "already exists" in lines[4]
    assert "3 imported, 2 failed" in result.stderr and "Importing" in result.stderr
    missing = _run(cli_env, "things", "import", str(csv_file), "--domain", "/root/nowhere/")
    assert missing.exit_code == 1 and "not found" in missing.stderr
