"""``meadowlark serve --workers 2`` with its DTLS bootstrap port (``MEADOWLARK_BOOTSTRAP_DTLS``)
and ``meadowlark simulate --bootstrap coaps://... --psk-identity --psk-key``, as real
processes: a fresh device that holds only its bootstrap PSK is bootstrapped over DTLS,
gets fresh management PSK credentials, registers with them over DTLS and is read through
REST. Neither key shows in any REST response about the device, the audit log, the device
events feed or the server's log (at debug level). A wrong bootstrap key gets nothing and
is audited."""

from __future__ import annotations

import re
import secrets
import socket
import sqlite3
import subprocess
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import pytest
from node_processes import (
    ADMIN_PASSWORD,
    EXECUTABLE,
    clean_environment,
    free_port,
    running,
    start_node,
)

from meadowlark.core.secret_box import PSK_PURPOSE, SecretBox, derive_key

PSK_KEY = "e2e-bootstrap-dtls-psk-key-" + "x" * 16
"""The server's ``MEADOWLARK_PSK_KEY``: the test opens the stored management key with it
to know what to look for."""
API = "/api/coiotedm/v3"


@dataclass
class Served:
    base: str
    data_dir: Path
    log: Path
    bootstrap_dtls_port: int


@pytest.fixture(scope="module")
def served(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Served]:
    data_dir = tmp_path_factory.mktemp("bootstrap-dtls-e2e")
    bootstrap_dtls_port = free_port(socket.SOCK_DGRAM)
    node = start_node(
        "bootstrap-dtls",
        data_dir,
        workers=2,
        extra_env={
            "MEADOWLARK_BOOTSTRAP_DTLS": f"127.0.0.1:{bootstrap_dtls_port}",
            "MEADOWLARK_PSK_KEY": PSK_KEY,
            "MEADOWLARK_LOG_LEVEL": "debug",
        },
    )
    with running(node):
        shown = f"LwM2M Bootstrap (CoAP over DTLS) on coaps://127.0.0.1:{bootstrap_dtls_port}"
        assert shown in node.output()
        yield Served(node.url, data_dir, node.log, bootstrap_dtls_port)


@contextmanager
def _admin(base: str) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=base, timeout=30) as http:
        token = http.post(
            "/api/auth/oauth_password",
            data={"grant_type": "password", "username": "admin", "password": ADMIN_PASSWORD},
        ).json()["access_token"]
        http.headers["Authorization"] = f"Bearer {token}"
        yield http


@dataclass
class EventFeed:
    """``GET /api/coiotedm/v3/events`` of one endpoint, read as raw text by a thread."""

    base: str
    token: str
    endpoint: str
    text: list[str] = field(default_factory=list)
    opened: threading.Event = field(default_factory=threading.Event)
    closing: bool = False

    def start(self) -> None:
        threading.Thread(target=self._read, daemon=True).start()
        assert self.opened.wait(30), "the event stream did not open"

    def _read(self) -> None:
        try:
            with httpx.stream(
                "GET",
                f"{self.base}{API}/events",
                params={"endpointName": self.endpoint},
                headers={"Authorization": f"Bearer {self.token}"},
                timeout=httpx.Timeout(10, read=None),
            ) as response:
                for line in response.iter_lines():
                    self.opened.set()
                    self.text.append(line)
                    if self.closing:
                        return
        except httpx.HTTPError:
            pass


def _simulate(served: Served, prefix: str, identity: str, key: str, seconds: int) -> list[str]:
    return [
        str(EXECUTABLE), "simulate", "--devices", "1", "--prefix", prefix,
        "--bootstrap", f"coaps://127.0.0.1:{served.bootstrap_dtls_port}",
        "--psk-identity", identity, "--psk-key", key,
        "--handshake-timeout", "5", "--duration", str(seconds), "--interval", "1",
    ]  # fmt: skip


def _stored_management_key(served: Served, endpoint: str) -> bytes:
    with sqlite3.connect(served.data_dir / "meadowlark.db") as db:
        device_id, sealed = db.execute(
            "SELECT id, dtls_psk FROM devices WHERE endpoint_name = ?", (endpoint,)
        ).fetchone()
        (bootstrap_sealed,) = db.execute(
            "SELECT dtls_psk FROM bootstrap_accounts WHERE endpoint_name = ?", (endpoint,)
        ).fetchone()
    assert sealed.startswith("enc1:") and bootstrap_sealed.startswith("enc1:")
    return SecretBox(derive_key(PSK_KEY, PSK_PURPOSE)).open(sealed, device_id)


def _psk_bootstrap_account(
    http: httpx.Client, endpoint: str, key: bytes, configuration: dict[str, Any]
) -> str:
    """A bootstrap account with PSK identity ``bs-{endpoint}`` and ``key``, configured
    with ``configuration``; its id."""
    account = http.post(
        f"{API}/devices",
        json={
            "properties": {"endpointName": endpoint},
            "connectorType": "bootstrap",
            "securityMode": "psk",
            "dtlsIdentity": f"bs-{endpoint}",
            "dtlsPsk": {"HexadecimalPsk": key.hex()},
        },
    )
    assert account.status_code == 201, account.text
    account_id: str = account.json()["id"]
    configured = http.put(f"{API}/bootstrap/configuration/device/{account_id}", json=configuration)
    assert configured.status_code == 200, configured.text
    return account_id


def test_a_fresh_device_is_bootstrapped_over_dtls_and_no_key_shows(served):
    prefix = f"bsdtls{secrets.token_hex(3)}"
    endpoint = f"{prefix}-0000"
    bootstrap_identity = f"bs-{endpoint}"
    bootstrap_key = secrets.token_bytes(16)
    with _admin(served.base) as http:
        account_id = _psk_bootstrap_account(
            http, endpoint, bootstrap_key, {"securityMode": "psk", "lifetime": 120}
        )
        feed = EventFeed(served.base, str(http.headers["Authorization"])[7:], endpoint)
        feed.start()
        simulating = subprocess.Popen(  # noqa: S603 - our own entry point
            _simulate(served, prefix, "bs-{endpoint}", bootstrap_key.hex(), 20),
            env=clean_environment(),
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        try:
            deadline = time.monotonic() + 30
            while True:
                record = http.get(f"{API}/devices/{endpoint}")
                if record.status_code == 200 and record.json()["lastRegisterTime"]:
                    break
                assert simulating.poll() is None, simulating.communicate()
                assert time.monotonic() < deadline, "the device did not register in 30 s"
                time.sleep(0.2)
            read = http.get(f"/api/lwm2m/v1/clients/{endpoint}/3/0/0", params={"format": "text"})
            assert read.status_code == 200, read.text
            responses = {"read": read.content}
            for url in (
                f"{API}/devices/{endpoint}",
                f"{API}/devices/{account_id}",
                f"{API}/devices",
                f"/api/lwm2m/v1/clients/{endpoint}",
                "/api/admin/audit?limit=1000",
            ):
                response = http.get(url)
                assert response.status_code == 200, (url, response.text)
                responses[url] = response.content
        finally:
            stdout, stderr = simulating.communicate(timeout=60)
            feed.closing = True
        assert simulating.returncode == 0, stderr
        registered = [int(n) for n in re.findall(r"registered=(\d+)", stdout)]
        assert registered and max(registered) == 1, stdout + stderr
        record = http.get(f"{API}/devices/{endpoint}").json()
        assert record["securityMode"] == "psk" and record["dtlsPsk"] is None
        assert record["dtlsIdentity"] and record["dtlsIdentity"] != bootstrap_identity
        audit = http.get("/api/admin/audit", params={"limit": 1000}).json()
    management_key = _stored_management_key(served, endpoint)
    assert len(management_key) == 16 and management_key != bootstrap_key
    events = "\n".join(feed.text)
    assert "deviceBootstrap" in events and "finish /bs ok" in events
    names = {row["event"] for row in audit if row["subject"] in (endpoint, account_id)}
    assert {"bootstrap.requested", "bootstrap.finished"} <= names
    places = {
        **responses,
        "events feed": events.encode(),
        "server log": served.log.read_bytes(),
        "simulator output": (stdout + stderr).encode(),
    }
    for key in (management_key, bootstrap_key):
        for form in (key.hex().encode(), key.hex().upper().encode(), key):
            for where, text in places.items():
                assert form not in text, f"a key shows in {where}"


def test_a_wrong_bootstrap_key_gets_nothing_and_is_audited(served):
    prefix = f"bsdtlsbad{secrets.token_hex(3)}"
    endpoint = f"{prefix}-0000"
    key = secrets.token_bytes(16)
    with _admin(served.base) as http:
        _psk_bootstrap_account(http, endpoint, key, {"securityMode": "psk"})
        wrong = secrets.token_bytes(16).hex()
        simulated = subprocess.run(  # noqa: S603 - our own entry point
            _simulate(served, prefix, "bs-{endpoint}", wrong, 8),
            env=clean_environment(),
            capture_output=True,
            text=True,
            timeout=60,
            check=False,
        )
        assert simulated.returncode == 0, simulated.stderr
        assert "registered=1" not in simulated.stdout
        deadline = time.monotonic() + 10
        while True:
            audit = http.get("/api/admin/audit", params={"limit": 1000}).json()
            failed = [
                row
                for row in audit
                if row["event"] == "device.dtls_handshake_failed"
                and row["details"].get("identity") == f"bs-{endpoint}"
            ]
            if failed:
                break
            assert time.monotonic() < deadline, "no device.dtls_handshake_failed audit row"
            time.sleep(0.2)
        assert not [row for row in audit if row["subject"] == endpoint]  # no bootstrap ran
        assert http.get(f"{API}/devices/{endpoint}").status_code == 404
    log = served.log.read_bytes()
    for form in (key.hex().encode(), wrong.encode(), key):
        assert form not in log
