"""A running Meadowlark server as the tests see it: base URL, settings and HTTP helpers."""

from __future__ import annotations

import subprocess
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import httpx

FREE_PORTS = {
    f"MEADOWLARK_{name}": "127.0.0.1:0"
    for name in ("HTTP", "COAP", "COAP_TCP", "COAP_TLS", "COAPS", "BOOTSTRAP", "BOOTSTRAP_DTLS")
}
"""Every listener on a port the kernel picks (environment for a CLI run): checks such as
doctor's do not depend on what else runs on this machine."""


@dataclass
class Server:
    """A running server: its base URL and the settings it was started with."""

    url: str
    settings: Any
    runtime: Any
    _admin_token: str | None = field(default=None, repr=False)

    def client(self, token: str | None = None, **kwargs: Any) -> httpx.Client:
        headers = dict(kwargs.pop("headers", {}))
        if token is not None:
            headers["Authorization"] = f"Bearer {token}"
        return httpx.Client(base_url=self.url, headers=headers, timeout=30, **kwargs)

    def login(self, username: str, password: str, **extra: str) -> str:
        """An access token from the password grant (raises unless 201)."""
        with self.client() as http:
            response = http.post(
                "/api/auth/oauth_password",
                data={
                    "grant_type": "password",
                    "username": username,
                    "password": password,
                    **extra,
                },
            )
        assert response.status_code == 201, response.text
        return response.json()["access_token"]  # type: ignore[no-any-return]

    @property
    def admin_password(self) -> str:
        return self.settings.admin_password.get_secret_value()  # type: ignore[no-any-return]

    @property
    def admin_token(self) -> str:
        if self._admin_token is None:
            self._admin_token = self.login("admin", self.admin_password)
        return self._admin_token

    def admin(self) -> httpx.Client:
        return self.client(self.admin_token)


def wait_until_ready(
    process: subprocess.Popen, base_url: str, output: Callable[[], str], timeout: float = 60
) -> None:
    """Poll ``/ready`` of a ``meadowlark serve`` process until it answers 200; fail with the
    process's ``output()`` if it exits first or ``timeout`` seconds pass."""
    deadline = time.monotonic() + timeout
    while True:
        assert process.poll() is None, output()
        try:
            if httpx.get(f"{base_url}/ready", timeout=2).status_code == 200:
                return
        except httpx.TransportError:
            pass
        assert time.monotonic() < deadline, f"{base_url} not ready in {timeout} s:\n{output()}"
        time.sleep(0.1)
