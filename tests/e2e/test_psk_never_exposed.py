"""A device PSK given to the Coiote API is stored sealed and shows up nowhere in clear:
not in any API response, the audit log, the CLI's output, nor the server's own log (at
debug level). PSKs an older version stored in clear are sealed at the next start."""

from __future__ import annotations

import base64
import os
import secrets
import signal
import socket
import sqlite3
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

API = "/api/coiotedm/v3"
ADMIN_PASSWORD = "Psk-Leak-Admin-Pa55word!"


def _free_port(kind: int) -> int:
    with socket.socket(socket.AF_INET, kind) as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]  # type: ignore[no-any-return]


def _environment(data_dir: Path) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("MEADOWLARK_")}
    env.update(
        {
            "MEADOWLARK_DATA_DIR": str(data_dir),
            "MEADOWLARK_ADMIN_PASSWORD": ADMIN_PASSWORD,
            "MEADOWLARK_LOG_LEVEL": "debug",
            "MEADOWLARK_HTTP": f"127.0.0.1:{_free_port(socket.SOCK_STREAM)}",
            "MEADOWLARK_COAP": f"127.0.0.1:{_free_port(socket.SOCK_DGRAM)}",
            # No default port: a server running on this machine must not stop this one.
            "MEADOWLARK_COAPS": f"127.0.0.1:{_free_port(socket.SOCK_DGRAM)}",
            "MEADOWLARK_COAP_TCP": "off",
            "MEADOWLARK_COAP_TLS": "off",
            "MEADOWLARK_BOOTSTRAP": "off",
            "MEADOWLARK_BOOTSTRAP_DTLS": "off",
        }
    )
    return env


class Serving:
    def __init__(self, data_dir: Path, env: dict[str, str], log: Path) -> None:
        self.url = f"http://{env['MEADOWLARK_HTTP']}"
        self._log = log.open("ab")
        self.process = subprocess.Popen(  # noqa: S603 - our own interpreter and entry point
            [sys.executable, "-m", "meadowlark.cli.main", "serve", "--workers", "1"],
            env=env,
            stdout=self._log,
            stderr=self._log,
            cwd=data_dir,
        )
        deadline = time.monotonic() + 60
        while True:
            assert self.process.poll() is None, log.read_text(errors="replace")
            try:
                if httpx.get(f"{self.url}/ready", timeout=2).status_code == 200:
                    break
            except httpx.TransportError:
                pass
            assert time.monotonic() < deadline, "server not ready in 60 s"
            time.sleep(0.1)

    def stop(self) -> None:
        self.process.send_signal(signal.SIGTERM)
        try:
            self.process.wait(timeout=30)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()
        self._log.close()


@pytest.fixture
def data_dir(tmp_path: Path) -> Iterator[Path]:
    yield tmp_path / "data"


def _forms(key: bytes) -> list[str]:
    """How a key could leak: hex either case, the text itself, base64."""
    forms = [key.hex(), key.hex().upper(), base64.b64encode(key).decode()]
    try:
        forms.append(key.decode("utf-8"))
    except UnicodeDecodeError:
        pass
    return forms


def test_a_psk_is_stored_sealed_and_never_shown_in_clear(data_dir: Path):
    hex_key = secrets.token_bytes(16)
    text_key = f"plain-{secrets.token_hex(8)}".encode()
    binary_key = secrets.token_bytes(24)
    legacy_key = secrets.token_bytes(16)
    keys = (hex_key, text_key, binary_key, legacy_key)
    endpoint, batch_endpoint = f"leak-{secrets.token_hex(3)}", f"leak-b-{secrets.token_hex(3)}"

    data_dir.mkdir(parents=True)
    env = _environment(data_dir)
    log = data_dir / "server.log"
    server = Serving(data_dir, env, log)
    bodies: list[str] = []
    try:
        token = httpx.post(
            f"{server.url}/api/auth/oauth_password",
            data={"grant_type": "password", "username": "admin", "password": ADMIN_PASSWORD},
        ).json()["access_token"]
        with httpx.Client(
            base_url=server.url, headers={"Authorization": f"Bearer {token}"}, timeout=30
        ) as http:

            def call(method: str, path: str, **kwargs) -> httpx.Response:
                response = http.request(method, path, **kwargs)
                assert response.status_code < 500, response.text
                bodies.append(f"{method} {path} {response.status_code} {response.headers}")
                bodies.append(response.text)
                return response

            created = call(
                "POST",
                f"{API}/devices",
                json={
                    "properties": {"endpointName": endpoint},
                    "securityMode": "psk",
                    "dtlsIdentity": f"id-{endpoint}",
                    "dtlsPsk": {"HexadecimalPsk": hex_key.hex()},
                },
            )
            assert created.status_code == 201
            batch = call(
                "POST",
                f"{API}/devices/batch",
                json=[
                    {
                        "properties": {"endpointName": batch_endpoint},
                        "dtlsIdentity": f"id-{batch_endpoint}",
                        "dtlsPsk": {"PlainTextPsk": text_key.decode()},
                    },
                    {  # refused: the reason must not echo the key
                        "properties": {"endpointName": f"bad-{endpoint}"},
                        "dtlsIdentity": f"id-bad-{endpoint}",
                        "dtlsPsk": {"HexadecimalPsk": hex_key.hex() + "0"},
                    },
                    {
                        "properties": {"endpointName": f"bad2-{endpoint}"},
                        "dtlsIdentity": f"id-{endpoint}",  # taken
                        "dtlsPsk": {"HexadecimalPsk": hex_key.hex()},
                    },
                ],
            )
            assert batch.json()["succeeded"] == 1
            rotated = call(
                "PUT",
                f"{API}/devices/{endpoint}",
                json={"dtlsPsk": {"BinaryPsk": list(binary_key)}},
            )
            assert rotated.status_code == 204
            for bad in (
                {"dtlsPsk": {"HexadecimalPsk": hex_key.hex() + "z"}},
                {"dtlsPsk": {"BinaryPsk": [*binary_key, 256]}},
                {"dtlsPsk": {"PlainTextPsk": text_key.decode(), "HexadecimalPsk": "00"}},
                {"dtlsPsk": {"PlainTextPsk": text_key.decode()}, "securityMode": "nosec"},
                {"dtlsPsk": text_key.decode()},
            ):
                assert call("PUT", f"{API}/devices/{endpoint}", json=bad).status_code == 400
            for path in (
                f"{API}/devices/{endpoint}",
                f"{API}/devices/{batch_endpoint}",
                f"{API}/devices",
                f"{API}/devices/find/details",
                f"{API}/devices/find/details?fieldSelection=id,dtlsPsk,dtlsIdentity",
                f"{API}/devices/find/details?searchCriteria=securityMode eq 'psk'",
                f"{API}/devices/all/count",
                "/api/admin/audit?limit=1000",
            ):
                assert call("GET", path).status_code == 200
            device = http.get(f"{API}/devices/{endpoint}").json()
            assert device["dtlsPsk"] is None and device["dtlsIdentity"] == f"id-{endpoint}"
            audit = http.get("/api/admin/audit?limit=1000").json()
            assert "device.security_changed" in str(audit)  # the rotation is audited

        cli_env = {**env, "MEADOWLARK_LOG_LEVEL": "debug"}
        for args in (["devices", "list"], ["doctor"]):
            done = subprocess.run(  # noqa: S603 - our own interpreter and entry point
                [sys.executable, "-m", "meadowlark.cli.main", *args],
                env=cli_env,
                capture_output=True,
                text=True,
                timeout=120,
            )
            bodies.extend([done.stdout, done.stderr])
            assert "Traceback" not in done.stderr
        assert f"id-{endpoint}" in bodies[-4]  # devices list shows the identity
    finally:
        server.stop()

    database = data_dir / "meadowlark.db"
    with sqlite3.connect(database) as connection:
        rows = dict(
            connection.execute("SELECT id, dtls_psk FROM devices WHERE dtls_psk IS NOT NULL")
        )
        assert set(rows) == {endpoint, batch_endpoint}
        assert all(value.startswith("enc1:") for value in rows.values())
        # a row as an older version wrote it: the key in clear (hex)
        connection.execute(
            "INSERT INTO devices (id, endpoint_name, domain_id, friendly_name, description,"
            " properties, blacklisted, management_enabled, connector_type, security_mode,"
            " dtls_identity, dtls_psk, creation_time, queue_mode)"
            " VALUES ('legacy', 'legacy', '/root/', '', '', '{}', 0, 1, 'lwm2m', 'psk',"
            " 'id-legacy', ?, '2026-01-01 00:00:00', 0)",
            (legacy_key.hex(),),
        )

    server = Serving(data_dir, env, log)  # sealed at start
    server.stop()
    with sqlite3.connect(database) as connection:
        (legacy,) = connection.execute(
            "SELECT dtls_psk FROM devices WHERE id = 'legacy'"
        ).fetchone()
        stored_text = "\n".join(
            value
            for (value,) in connection.execute(
                "SELECT dtls_psk FROM devices WHERE dtls_psk IS NOT NULL"
            )
        )
    assert legacy.startswith("enc1:")
    logged = log.read_text(errors="replace")
    assert "stored_psks_sealed" in logged and "debug" in logged.lower()

    everything = "\n".join([*bodies, logged, stored_text])
    assert "enc1:" not in "\n".join(bodies)  # not even the sealed form is shown
    for key in keys:
        for form in _forms(key):
            assert form not in everything, f"a PSK leaked ({len(form)} characters)"
