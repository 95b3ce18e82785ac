"""The README flow end to end: ``meadowlark serve`` as a real process configured by env vars."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
from pathlib import Path

import httpx
import pytest

from live_server import wait_until_ready

ADMIN_PASSWORD = "E2e-Admin-Pa55word!"


def _free_port(kind: int) -> int:
    with socket.socket(socket.AF_INET, kind) as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]  # type: ignore[no-any-return]


@pytest.fixture(scope="module")
def served(tmp_path_factory):
    """``meadowlark serve`` on a free port; yields (base URL, log file)."""
    data_dir = tmp_path_factory.mktemp("e2e")
    port = _free_port(socket.SOCK_STREAM)
    env = {k: v for k, v in os.environ.items() if not k.startswith("MEADOWLARK_")}
    env.update(
        {
            "MEADOWLARK_HTTP": f"127.0.0.1:{port}",
            "MEADOWLARK_COAP": f"127.0.0.1:{_free_port(socket.SOCK_DGRAM)}",
            "MEADOWLARK_COAPS": "127.0.0.1:0",  # DTLS on a free port, not 5684
            "MEADOWLARK_COAP_TCP": "off",  # no CoAP over TCP/TLS here
            "MEADOWLARK_COAP_TLS": "off",
            "MEADOWLARK_BOOTSTRAP": "off",
            "MEADOWLARK_BOOTSTRAP_DTLS": "off",
            "MEADOWLARK_DATA_DIR": str(data_dir),
            "MEADOWLARK_ADMIN_PASSWORD": ADMIN_PASSWORD,
            "MEADOWLARK_TOKEN_LIFETIME": "120",
            "MEADOWLARK_LOG_LEVEL": "debug",
        }
    )
    log_path = data_dir / "server.log"
    executable = Path(sys.executable).parent / "meadowlark"
    with open(log_path, "wb") as log:
        process = subprocess.Popen(  # noqa: S603 - our own entry point
            [str(executable), "serve"], env=env, stdout=log, stderr=subprocess.STDOUT, cwd=data_dir
        )
    base = f"http://127.0.0.1:{port}"
    try:
        wait_until_ready(process, base, lambda: log_path.read_text(errors="replace"))
        yield base, log_path, process
    finally:
        if process.poll() is None:
            process.send_signal(signal.SIGTERM)
            try:
                process.wait(timeout=20)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()


def test_readme_flow(served):
    base, log_path, _ = served
    with httpx.Client(base_url=base, timeout=30) as http:
        assert http.get("/ready").json() == {"status": "ready"}
        assert http.get("/health").json() == {"status": "ok"}
        docs = http.get("/docs")
        assert docs.status_code == 200 and "swagger" in docs.text.lower()
        assert http.get("/openapi.json").json()["info"]["title"] == "Meadowlark"
        signup = http.get("/signup")
        assert signup.status_code == 200
        assert signup.headers["content-type"].startswith("text/html")
        assert "<form" in signup.text

        token = http.post(
            "/api/auth/oauth_password",
            data={"grant_type": "password", "username": "admin", "password": ADMIN_PASSWORD},
        )
        assert token.status_code == 201, token.text
        body = token.json()
        assert body["token_type"] == "Bearer" and body["expires_in"] == 120
        headers = {"Authorization": f"Bearer {body['access_token']}"}
        me = http.get("/api/auth/me", headers=headers)
        assert me.status_code == 200 and me.json()["login"] == "admin"
        assert http.get("/api/coiotedm/v3/domains", headers=headers).json()[0] == "/root/"
        assert (
            http.post(
                "/api/auth/signup",
                json={
                    "login": "readme-dev",
                    "email": "dev@example.com",
                    "password": "Readme-Dev-Pa55",
                },
            ).status_code
            == 201
        )
        assert (
            http.post(
                "/Auth", json={"UserName": "readme-dev", "Password": "Readme-Dev-Pa55"}
            ).status_code
            == 200
        )
        assert http.post("/api/auth/logout", headers=headers).status_code == 204

    logs = log_path.read_text(errors="replace")
    assert "REST on" in logs and "/api/auth/oauth_password" in logs  # the start-up hint
    for secret in (ADMIN_PASSWORD, body["access_token"], "Readme-Dev-Pa55"):
        assert secret not in logs, "a secret reached the log"


def test_clean_shutdown(served):
    _, log_path, process = served
    process.send_signal(signal.SIGTERM)
    # uvicorn shuts down gracefully, then re-raises the captured signal: -SIGTERM is clean.
    assert process.wait(timeout=20) in (0, -signal.SIGTERM), log_path.read_text(errors="replace")
    assert "Traceback" not in log_path.read_text(errors="replace")
