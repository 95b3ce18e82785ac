"""``meadowlark devices`` (add, set-psk, list, import) and ``doctor``'s PSK checks, on a
temporary data dir (SQLite) and on PostgreSQL. Keys are stored sealed and never shown;
bad input is a one-line error with exit code 2, never a traceback."""

from __future__ import annotations

import asyncio
import secrets
import threading
import time
from pathlib import Path

import pytest
from sqlalchemy import select
from typer.testing import CliRunner

from live_server import FREE_PORTS
from meadowlark.cli.main import app
from meadowlark.cluster.signals import LocalSignals, PostgresSignals
from meadowlark.cluster.wiring import local_socket_directory
from meadowlark.config import Settings
from meadowlark.core.secret_box import SecretBox
from meadowlark.store.db import Database
from meadowlark.store.device_models import Device
from meadowlark.store.models import AuditEvent

SECRET = "devices-cli-test-signing-key-" + "q" * 40
KEY_HEX = "7f3a9c0d11e2b4a6c8d0e2f4a6b8c0d2"


@pytest.fixture(scope="module")
def cli_env(tmp_path_factory, database_url):
    data_dir = tmp_path_factory.mktemp("devices-cli")
    env = {
        "MEADOWLARK_DATA_DIR": str(data_dir),
        "MEADOWLARK_SECRET_KEY": SECRET,
        "MEADOWLARK_HTTP": "127.0.0.1:0",
        "MEADOWLARK_COAP": "127.0.0.1:0",
    }
    if database_url:
        env["MEADOWLARK_DATABASE_URL"] = database_url
    result = CliRunner().invoke(app, ["db", "upgrade"], env=env)
    assert result.exit_code == 0, result.output
    domain = CliRunner().invoke(app, ["devices", "list"], env=env)
    assert domain.exit_code == 0, domain.output
    return env


def cli(env, *args, input=None):  # noqa: A002
    result = CliRunner().invoke(app, list(args), env=env, input=input)
    assert not isinstance(result.exception, Exception) or isinstance(
        result.exception, SystemExit
    ), result.exception  # an error is a message, never a traceback
    return result


def tag() -> str:
    return secrets.token_hex(4)


def settings(env) -> Settings:
    return Settings(
        data_dir=env["MEADOWLARK_DATA_DIR"],
        database_url=env.get("MEADOWLARK_DATABASE_URL"),
        secret_key=SECRET,
    )


def stored(env, endpoint: str) -> Device | None:
    async def main():
        db = Database(settings(env).resolved_database_url)
        try:
            async with db.session() as session:
                return await session.scalar(select(Device).where(Device.endpoint_name == endpoint))
        finally:
            await db.dispose()

    return asyncio.run(main())


def audit_events(env, subject: str) -> list[AuditEvent]:
    async def main():
        db = Database(settings(env).resolved_database_url)
        try:
            async with db.session() as session:
                rows = await session.scalars(
                    select(AuditEvent).where(AuditEvent.subject == subject).order_by(AuditEvent.id)
                )
                return list(rows)
        finally:
            await db.dispose()

    return asyncio.run(main())


def opened(env, device: Device) -> bytes:
    assert device.dtls_psk is not None and device.dtls_psk.startswith("enc1:")
    return SecretBox.for_psks(settings(env)).open(device.dtls_psk, device.id)


def test_add_stores_the_key_sealed_and_never_prints_it(cli_env):
    endpoint = f"cli-{tag()}"
    result = cli(
        cli_env,
        "devices", "add", endpoint, "--domain", "/root/",
        "--psk-identity", f"id-{endpoint}", "--psk-key", KEY_HEX,
    )  # fmt: skip
    assert result.exit_code == 0, result.output
    assert f"created {endpoint} in /root/ (psk, identity id-{endpoint})" in result.stdout
    assert KEY_HEX not in result.output
    device = stored(cli_env, endpoint)
    assert device.security_mode == "psk" and opened(cli_env, device) == bytes.fromhex(KEY_HEX)

    text = f"cli-text-{tag()}"
    result = cli(
        cli_env,
        "devices", "add", text, "--domain", "root",
        "--psk-identity", f"id-{text}", "--psk-key-text", "-",
        input="pass phrase\n",
    )  # fmt: skip
    assert result.exit_code == 0, result.output
    assert opened(cli_env, stored(cli_env, text)) == b"pass phrase"
    assert "pass phrase" not in result.output

    plain = f"cli-nosec-{tag()}"
    assert cli(cli_env, "devices", "add", plain, "--domain", "/root/").exit_code == 0
    assert stored(cli_env, plain).security_mode == "nosec"


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--psk-identity", "i", "--psk-key", "abc"], "even number of hexadecimal digits"),
        (["--psk-identity", "i", "--psk-key", "zz" + KEY_HEX], "hexadecimal"),
        (["--psk-key", KEY_HEX], "needs dtlsIdentity and dtlsPsk"),
        (["--psk-identity", "i", "--psk-key", "00", "--psk-key-text", "x"], "not both"),
        (["--security-mode", "magic"], "securityMode must be one of"),
        (
            ["--security-mode", "nosec", "--psk-identity", "i"],
            "applies to securityMode psk and cert",
        ),
        (["--psk-identity", "i", "--psk-key", "00" * 300], "longer than 256 bytes"),
        (["--group", "no-such-group"], "not found"),
    ],
)
def test_add_refuses_bad_input_with_exit_code_2(cli_env, args, message):
    endpoint = f"bad-{tag()}"
    result = cli(cli_env, "devices", "add", endpoint, "--domain", "/root/", *args)
    assert result.exit_code == 2, result.output
    assert message in result.stderr and KEY_HEX not in result.output
    assert stored(cli_env, endpoint) is None


@pytest.mark.parametrize("domain", ["/elsewhere/", "/root/no-such-domain/", "/root/\x00/"])
def test_add_to_a_bad_domain_is_exit_code_2(cli_env, domain):
    result = cli(cli_env, "devices", "add", f"d-{tag()}", "--domain", domain)
    assert result.exit_code == 2 and result.stderr.startswith("error: "), result.output


def test_set_psk_rotates_through_the_update_path_and_audits(cli_env):
    endpoint = f"rot-{tag()}"
    cli(cli_env, "devices", "add", endpoint, "--domain", "/root/")
    result = cli(
        cli_env, "devices", "set-psk", endpoint, "--psk-identity", f"id-{endpoint}",
        "--psk-key", "-", input=KEY_HEX + "\n",
    )  # fmt: skip
    assert result.exit_code == 0, result.output
    assert "its registration ends" in result.stdout and KEY_HEX not in result.output
    assert opened(cli_env, stored(cli_env, endpoint)) == bytes.fromhex(KEY_HEX)

    again = cli(cli_env, "devices", "set-psk", endpoint, "--psk-key", KEY_HEX.upper())
    assert again.exit_code == 0 and "nothing changed" in again.stdout
    rotated = cli(cli_env, "devices", "set-psk", endpoint, "--psk-key-text", "next key")
    assert rotated.exit_code == 0, rotated.output
    device = stored(cli_env, endpoint)
    assert device.dtls_identity == f"id-{endpoint}" and opened(cli_env, device) == b"next key"

    events = [e for e in audit_events(cli_env, endpoint) if e.event == "device.security_changed"]
    assert [(e.actor, e.details["keyChanged"]) for e in events] == [
        ("system", True),
        ("system", True),
    ]
    assert all(KEY_HEX not in str(e.details) and "next key" not in str(e.details) for e in events)

    for args, message in (
        ([f"nobody-{tag()}", "--psk-key", "00"], "not found"),
        ([endpoint], "give the new key"),
        ([endpoint, "--psk-key", "0"], "hexadecimal"),
    ):
        result = cli(cli_env, "devices", "set-psk", *args)
        assert result.exit_code == 2 and message in result.stderr, result.output


def test_list_shows_identities_never_keys(cli_env):
    endpoint = f"list-{tag()}"
    cli(
        cli_env, "devices", "add", endpoint, "--domain", "/root/",
        "--psk-identity", f"id-{endpoint}", "--psk-key", KEY_HEX,
    )  # fmt: skip
    result = cli(cli_env, "devices", "list")
    assert result.exit_code == 0, result.output
    assert f"{endpoint}\t{endpoint}\t/root/\tpsk\tid-{endpoint}" in result.stdout.splitlines()
    assert KEY_HEX not in result.output and "enc1:" not in result.output
    assert cli(cli_env, "devices", "list", "--domain", "nowhere").exit_code == 2


def write(tmp_path: Path, text: str | bytes) -> str:
    path = tmp_path / f"devices-{tag()}.csv"
    if isinstance(text, bytes):
        path.write_bytes(text)
    else:
        path.write_text(text, encoding="utf-8")
    return str(path)


def test_import_creates_every_device_of_a_valid_file(cli_env, tmp_path):
    a, b, c = (f"imp-{tag()}" for _ in range(3))
    group = f"grp-{tag()}"
    _create_group(cli_env, group)
    path = write(
        tmp_path,
        "endpoint,domain,securityMode,dtlsIdentity,dtlsPsk,groups\n"
        f"{a},/root/,psk,id-{a},{KEY_HEX},{group}\n"
        f"{b},,nosec,,,\n"
        f'"{c}",/root/,,id-{c},00ff,"{group}"\n',
    )
    result = cli(cli_env, "devices", "import", path)
    assert result.exit_code == 0, result.output
    assert "imported 3 devices" in result.stdout and KEY_HEX not in result.output
    assert opened(cli_env, stored(cli_env, a)) == bytes.fromhex(KEY_HEX)
    assert stored(cli_env, b).security_mode == "nosec"
    assert stored(cli_env, c).security_mode == "psk"


def _create_group(env, group_id: str) -> None:
    from meadowlark.cli.main import SYSTEM
    from meadowlark.core.groups import create_group

    async def main():
        db = Database(settings(env).resolved_database_url)
        try:
            async with db.session() as session:
                await create_group(session, SYSTEM, group_id, "")
                await session.commit()
        finally:
            await db.dispose()

    asyncio.run(main())


def test_import_is_all_or_nothing_and_reports_bad_rows_by_line(cli_env, tmp_path):
    good, taken = f"imp-ok-{tag()}", f"imp-taken-{tag()}"
    cli(cli_env, "devices", "add", taken, "--domain", "/root/")
    path = write(
        tmp_path,
        "endpoint,dtlsIdentity,dtlsPsk,domain\n"
        f"{good},id-{good},{KEY_HEX},/root/\n"  # line 2: fine
        f"{taken},,,\n"  # 3: exists
        f"x-{tag()},id-x,abc,\n"  # 4: odd hex
        ",,,\n"  # 5: no endpoint
        f"y-{tag()},,,/root/nowhere/\n"  # 6: unknown domain
        f"{good},id-{good}-2,00,\n"  # 7: twice in the file
        f"z-{tag()},id-{good},00,\n"  # 8: identity taken in the file
        f"w-{tag()},,,,extra\n",  # 9: more cells than columns
    )
    result = cli(cli_env, "devices", "import", path)
    assert result.exit_code == 2, result.output
    lines = result.stderr.splitlines()
    assert [line.split(":")[0] for line in lines[:-1]] == [f"line {n}" for n in range(3, 10)]
    assert "already exists" in lines[0] and "hexadecimal" in lines[1]
    assert "endpoint is empty" in lines[2] and "not found" in lines[3]
    assert "already exists" in lines[4] and "already used" in lines[5]
    assert "more cells" in lines[6]
    assert lines[-1] == "nothing imported: 7 of 8 rows are invalid"
    assert KEY_HEX not in result.output
    assert stored(cli_env, good) is None  # the valid row was not kept either


@pytest.mark.parametrize(
    ("content", "message"),
    [
        (b"\xff\xfe\x00garbage", "not UTF-8"),
        ("endpoint,secret\nx,y\n", "unknown column 'secret'"),
        ("name,domain\nx,/root/\n", "needs a header row"),
        ("endpoint,dtlsPsk,DTLSPSK\nx,00,11\n", "'dtlsPsk' appears twice"),
        ("", "needs a header row"),
        ("endpoint\n", "has no devices"),
        ("endpoint\nbad\0name\n", "NUL"),
        ('endpoint\n"' + "x" * 200_000 + '"\n', "malformed CSV"),
        ('endpoint\n"unterminated\n', "malformed CSV"),
    ],
)
def test_import_of_a_bad_file_is_a_message_and_exit_code_2(cli_env, tmp_path, content, message):
    result = cli(cli_env, "devices", "import", write(tmp_path, content))
    assert result.exit_code == 2, result.output
    assert result.stderr.startswith("error: ") or result.stderr.startswith("line ")
    if message:
        assert message in result.stderr


def test_import_of_a_missing_file_or_a_folder_is_exit_code_2(cli_env, tmp_path):
    for path in (tmp_path / "missing.csv", tmp_path):
        result = cli(cli_env, "devices", "import", str(path))
        assert result.exit_code == 2 and "cannot read" in result.stderr, result.output


def test_running_servers_hear_of_new_credentials(cli_env):
    """The workers of ``meadowlark serve`` on SQLite listen on sockets in the data dir;
    nodes on PostgreSQL on LISTEN/NOTIFY."""
    received: list[dict] = []
    loop = asyncio.new_event_loop()
    thread = threading.Thread(target=loop.run_forever, daemon=True)
    thread.start()
    url = cli_env.get("MEADOWLARK_DATABASE_URL")

    async def listen():
        if url is None:
            directory = local_socket_directory(Path(cli_env["MEADOWLARK_DATA_DIR"]))
            node = LocalSignals(directory, "worker-under-test")
            await node.start(received.append)
            return node, None
        db = Database(url)
        node = PostgresSignals(db, "node-under-test")
        await node.start(received.append)
        return node, db

    async def stop(node, db):
        await node.stop()
        if db is not None:
            await db.dispose()

    node, db = asyncio.run_coroutine_threadsafe(listen(), loop).result(10)
    try:
        endpoint = f"told-{tag()}"
        result = cli(
            cli_env, "devices", "add", endpoint, "--domain", "/root/",
            "--psk-identity", f"id-{endpoint}", "--psk-key", KEY_HEX,
        )  # fmt: skip
        assert result.exit_code == 0, result.output
        deadline = time.monotonic() + 5

        def psk_notices() -> list[dict]:  # other nodes on the same database send theirs
            return [m for m in received if m.get("topic") == "psks_changed"]

        while not psk_notices() and time.monotonic() < deadline:
            time.sleep(0.02)
        notices = psk_notices()
        assert notices and notices[0]["data"]["batch"] == [{"key": endpoint}], received
        assert KEY_HEX not in str(received)
    finally:
        asyncio.run_coroutine_threadsafe(stop(node, db), loop).result(10)
        loop.call_soon_threadsafe(loop.stop)
        thread.join(5)


def test_doctor_reports_dtls_and_counts_psks_that_do_not_open(cli_env):
    endpoint = f"doc-{tag()}"
    cli(
        cli_env, "devices", "add", endpoint, "--domain", "/root/",
        "--psk-identity", f"id-{endpoint}", "--psk-key", KEY_HEX,
    )  # fmt: skip
    result = cli({**cli_env, **FREE_PORTS}, "doctor")
    assert "DTLS (python-mbedtls)" in result.stdout and "DTLSSocket" not in result.stdout
    assert "PSK sealing     ok" in result.stdout
    assert "all open with the current key" in result.stdout, result.stdout
    assert "bootstrap PSKs" in result.stdout, result.stdout
    assert result.exit_code == 0, result.output

    wrong = {**cli_env, "MEADOWLARK_SECRET_KEY": "another-secret-key-" + "w" * 40}
    result = cli(wrong, "doctor")
    assert result.exit_code == 1
    line = next(line for line in result.stdout.splitlines() if line.startswith("device PSKs"))
    assert "do NOT open with the current key" in line and "cannot authenticate" in line
    assert KEY_HEX not in result.output
    # a dedicated PSK key set later: the stored ones were sealed under the secret key
    dedicated = {**cli_env, "MEADOWLARK_PSK_KEY": "dedicated-psk-key-" + "d" * 40}
    assert "do NOT open" in cli(dedicated, "doctor").stdout
