"""Shared fixtures: settings on a temporary data dir, database backends, a real server.

Backends: SQLite always; PostgreSQL too when ``MEADOWLARK_TEST_POSTGRES_URL`` names a
server (``postgresql+psycopg://user:pw@host:5432/maintenance_db``). Every test module
that uses a backend gets a fresh database of its own (a file in a temporary folder, or
``CREATE DATABASE meadowlark_test_<random>`` dropped afterwards).

The server fixtures run the real ASGI app under uvicorn on 127.0.0.1 with an ephemeral
port, in a background thread with its own event loop; tests talk HTTP to it.
"""

from __future__ import annotations

import asyncio
import json
import os
import re
import secrets
import socket
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest

from live_server import Server

POSTGRES_URL_ENV = "MEADOWLARK_TEST_POSTGRES_URL"
ADMIN_PASSWORD = "Admin-Test-Pa55word!"
SECRET_KEY = "test-signing-key-0123456789abcdef0123456789abcdef"
USER_PASSWORD = "User-Test-Pa55word!"
# Throttling is tested on servers of its own; everywhere else it must never interfere.
NO_THROTTLE = {
    "login_failures_per_account": 1_000_000,
    "login_failures_per_ip": 1_000_000,
    "login_window_seconds": 300,
}


def pytest_configure(config: pytest.Config) -> None:
    # Deployment settings of the machine must not leak into the settings under test.
    for name in list(os.environ):
        if name.startswith("MEADOWLARK_") and not name.startswith("MEADOWLARK_TEST_"):
            del os.environ[name]


# -- settings ------------------------------------------------------------------------------


def make_settings(data_dir: Path, *, database_url: str | None = None, **overrides: Any):
    """``Settings`` for a server under test: own data dir, fixed admin password and key."""
    from meadowlark.config import Settings

    values: dict[str, Any] = {
        "data_dir": data_dir,
        "database_url": database_url,
        "admin_password": ADMIN_PASSWORD,
        "secret_key": SECRET_KEY,
        "http": "127.0.0.1:0",
        "rate_limits": dict(NO_THROTTLE),
    }
    values.update(overrides)
    return Settings(**values)


@pytest.fixture
def settings(tmp_path: Path):
    """Settings on a temporary SQLite data dir."""
    return make_settings(tmp_path / "data")


# -- database backends --------------------------------------------------------------------


def postgres_url() -> str | None:
    return os.environ.get(POSTGRES_URL_ENV) or None


def _psycopg_params(url: str) -> dict[str, Any]:
    from sqlalchemy.engine import make_url

    parsed = make_url(url)
    return {
        "host": parsed.host or "127.0.0.1",
        "port": parsed.port or 5432,
        "user": parsed.username,
        "password": parsed.password,
        "dbname": parsed.database or "postgres",
    }


@contextmanager
def fresh_postgres_database(maintenance_url: str) -> Iterator[str]:
    """A new, empty PostgreSQL database for the duration of the block; its async URL."""
    import psycopg
    from sqlalchemy.engine import make_url

    name = f"meadowlark_test_{secrets.token_hex(6)}"
    params = _psycopg_params(maintenance_url)
    with psycopg.connect(**params, autocommit=True) as connection:
        connection.execute(f'CREATE DATABASE "{name}"')
    try:
        yield (
            make_url(maintenance_url)
            .set(drivername="postgresql+psycopg", database=name)
            .render_as_string(hide_password=False)
        )
    finally:
        _drop_database(params, name)


def _drop_database(params: dict[str, Any], name: str) -> None:
    """DROP ... WITH (FORCE) ends our sessions, but not an autovacuum worker the server
    started on the database after a busy test (superuser-owned): wait for it to finish."""
    import psycopg

    deadline = time.monotonic() + 30
    while True:
        try:
            with psycopg.connect(**params, autocommit=True) as connection:
                connection.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
            return
        except psycopg.errors.InsufficientPrivilege:
            if time.monotonic() > deadline:
                raise
            time.sleep(0.5)


BACKENDS = [
    "sqlite",
    pytest.param(
        "postgres",
        marks=[
            pytest.mark.postgres,
            pytest.mark.skipif(postgres_url() is None, reason=f"{POSTGRES_URL_ENV} not set"),
        ],
    ),
]


@pytest.fixture(scope="module", params=BACKENDS)
def backend(request: pytest.FixtureRequest) -> str:
    return request.param  # type: ignore[no-any-return]


@pytest.fixture(scope="module")
def database_url(backend: str) -> Iterator[str | None]:
    """``None`` for SQLite (the file in the data dir), else a fresh PostgreSQL database."""
    if backend == "sqlite":
        yield None
        return
    url = postgres_url()
    assert url is not None
    with fresh_postgres_database(url) as database:
        yield database


# -- the real server ------------------------------------------------------------------------


def _free_socket() -> socket.socket:
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    # Accepted connections inherit it. asyncio sets it itself only where the listening
    # socket was made with proto=IPPROTO_TCP (loop.create_server, as `meadowlark serve`
    # uses it); without it, every response body waits ~40 ms for a delayed ACK.
    sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    sock.bind(("127.0.0.1", 0))
    sock.listen(128)
    sock.set_inheritable(True)
    return sock


@contextmanager
def running_server(settings: Any) -> Iterator[Server]:
    """uvicorn serving ``create_app(Runtime.from_settings(settings))`` in a thread."""
    import uvicorn

    from meadowlark.api.app import create_app
    from meadowlark.logging import configure_logging
    from meadowlark.runtime import Runtime

    configure_logging("warning")
    runtime = Runtime.from_settings(settings)
    app = create_app(runtime)
    config = uvicorn.Config(
        app, log_level="warning", access_log=False, lifespan="on", timeout_graceful_shutdown=5
    )
    server = uvicorn.Server(config)
    sock = _free_socket()
    port = sock.getsockname()[1]
    failure: list[BaseException] = []

    def serve() -> None:
        try:
            asyncio.run(server.serve(sockets=[sock]))
        except BaseException as exc:  # reported to the test below
            failure.append(exc)

    thread = threading.Thread(target=serve, name=f"uvicorn-{port}", daemon=True)
    thread.start()
    deadline = time.monotonic() + 60
    while not server.started:
        if failure or not thread.is_alive() or time.monotonic() > deadline:
            sock.close()
            raise RuntimeError(f"server did not start: {failure!r}")
        time.sleep(0.02)
    try:
        yield Server(url=f"http://127.0.0.1:{port}", settings=settings, runtime=runtime)
    finally:
        server.should_exit = True
        thread.join(timeout=60)
        sock.close()
        assert not thread.is_alive(), "server thread did not stop"
        assert not failure, failure


@pytest.fixture(scope="module")
def server_factory(
    tmp_path_factory: pytest.TempPathFactory, database_url: str | None
) -> Iterator[Callable[..., Server]]:
    """Start further servers on this module's database with other settings."""
    from contextlib import ExitStack

    with ExitStack() as stack:

        def start(**overrides: Any) -> Server:
            data_dir = overrides.pop("data_dir", None) or tmp_path_factory.mktemp("data")
            settings = make_settings(data_dir, database_url=database_url, **overrides)
            return stack.enter_context(running_server(settings))

        yield start


@pytest.fixture(scope="module")
def server(server_factory: Callable[..., Server]) -> Server:
    """One server per module (and backend) with default settings and no throttling."""
    return server_factory()


# -- builders -------------------------------------------------------------------------------


def _check(response: httpx.Response, *statuses: int) -> httpx.Response:
    assert response.status_code in statuses, (response.status_code, response.text)
    return response


@dataclass
class Given:
    """Builds users, domains and tokens on a server through its REST API (as admin)."""

    server: Server

    def domain(
        self, domain_id: str | None = None, description: str = "", *, token: str | None = None
    ) -> str:
        domain_id = domain_id or f"/root/d{secrets.token_hex(4)}/"
        with self.server.client(token or self.server.admin_token) as http:
            response = _check(
                http.post(
                    "/api/coiotedm/v3/domains", json={"id": domain_id, "description": description}
                ),
                201,
            )
        return response.json()["result"]  # type: ignore[no-any-return]

    def user(
        self,
        login: str | None = None,
        *,
        domain: str = "/root/",
        password: str = USER_PASSWORD,
        roles: list[str] | None = None,
        permissions: list[str] | None = None,
        account_type: str = "developer",
        email: str = "",
        token: str | None = None,
    ) -> str:
        login = login or f"user-{secrets.token_hex(4)}"
        body = {
            "login": login,
            "password": password,
            "domain": domain,
            "email": email,
            "emailVerified": True,
            "tosAccepted": True,
            "roles": roles or [],
            "permissions": permissions or [],
            "accountType": account_type,
        }
        with self.server.client(token or self.server.admin_token) as http:
            _check(http.post("/api/coiotedm/v3/users", json=body), 201)
        return login

    def token(self, login: str, password: str = USER_PASSWORD) -> str:
        return self.server.login(login, password)


@pytest.fixture(scope="module")
def given(server: Server) -> Given:
    return Given(server)


@pytest.fixture(scope="module")
def given_domain(given: Given) -> Callable[..., str]:
    return given.domain


@pytest.fixture(scope="module")
def given_user(given: Given) -> Callable[..., str]:
    return given.user


@pytest.fixture(scope="module")
def token_for(given: Given) -> Callable[..., str]:
    return given.token


def assert_error_body(response: httpx.Response, status: int) -> dict[str, Any]:
    """The response has ``status`` and the ``{"error","message","code","requestId"}``
    body, whose ``requestId`` is the response's ``X-Request-Id``."""
    assert response.status_code == status, (response.status_code, response.text)
    body = response.json()
    assert isinstance(body, dict), body
    assert set(body) == {"error", "message", "code", "requestId"}, body
    assert body["requestId"] == response.headers["x-request-id"], body
    assert isinstance(body["error"], str) and body["error"]
    assert isinstance(body["message"], str) and body["message"]
    assert isinstance(body["code"], int)
    return body  # type: ignore[no-any-return]


@pytest.fixture(scope="session")
def error_body() -> Callable[[httpx.Response, int], dict[str, Any]]:
    """``error_body(response, status)`` asserts the status and the error body shape."""
    return assert_error_body


# -- the seed documents ----------------------------------------------------------------------

SEEDS_DIR = Path(__file__).resolve().parents[2] / "shared" / "seeds"
COIOTE_ACCESS_SEED = "000_f258278a6e673821.txt"
MONOGOTO_AUTH_SEED = "003_11c3b6250e138b34.txt"
_ENDPOINT_LINE = re.compile(r"^\s*•\s+((?:GET|POST|PUT|PATCH|DELETE) \S+)\s*$")


def read_seed(name: str) -> str:
    path = SEEDS_DIR / name
    if not path.is_file():
        pytest.fail(f"seed document {path} is missing (shared/seeds beside the repository)")
    return path.read_text(encoding="utf-8")


def parse_developer_endpoints(text: str) -> list[str]:
    """The bulleted endpoint list of the Coiote access document's Permissions section."""
    section = text.split("following set of API endpoints", 1)[1]
    return [m.group(1) for line in section.splitlines() if (m := _ENDPOINT_LINE.match(line))]


def parse_auth_example(text: str) -> dict[str, Any]:
    """The first example response of the Monogoto /Auth document (a JSON object)."""
    start = text.index('{\n"token"')
    example, _ = json.JSONDecoder().raw_decode(text[start:])
    return example  # type: ignore[no-any-return]


@pytest.fixture(scope="session")
def seed_developer_endpoints() -> list[str]:
    return parse_developer_endpoints(read_seed(COIOTE_ACCESS_SEED))


@pytest.fixture(scope="session")
def seed_auth_example() -> dict[str, Any]:
    return parse_auth_example(read_seed(MONOGOTO_AUTH_SEED))


@pytest.fixture(scope="session")
def settings_for() -> Callable[..., Any]:
    """``settings_for(data_dir, database_url=None, **overrides)``: test ``Settings``."""
    return make_settings


@pytest.fixture(scope="session")
def given_on() -> Callable[[Server], Given]:
    """``given_on(server)``: the builders for another server than the module's."""
    return Given


@pytest.fixture(scope="session")
def serve() -> Callable[[Any], Any]:
    """``with serve(settings) as server:`` runs a server on any settings."""
    return running_server
