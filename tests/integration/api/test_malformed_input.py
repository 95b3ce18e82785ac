"""Malformed forms, bodies and headers get a 4xx with the error body, never a 5xx;
a bounded schemathesis run against the running server's OpenAPI document."""

from __future__ import annotations

import json
import socket

import pytest

USERS = "/api/coiotedm/v3/users"
DOMAINS = "/api/coiotedm/v3/domains"


@pytest.mark.parametrize(
    ("method", "path", "content", "content_type"),
    [
        ("POST", USERS, b"{", "application/json"),
        ("POST", USERS, b"[1, 2]", "application/json"),
        ("POST", USERS, b'"just a string"', "application/json"),
        ("POST", USERS, b'{"login": 5, "password": [], "domain": {}}', "application/json"),
        (
            "POST",
            USERS,
            b'{"login": "x", "password": "abcdefghij", "domain": "/root/", "unknownField": 1}',
            "application/json",
        ),
        ("POST", USERS, b"\xff\xfe\x00garbage", "application/json"),
        ("POST", USERS, b"[" * 200_000, "application/json"),
        ("POST", USERS, b"login=x", "application/x-www-form-urlencoded"),
        ("PATCH", f"{USERS}/admin", b'{"userEnabled": "maybe"}', "application/json"),
        ("POST", DOMAINS, b'{"id": 42}', "application/json"),
        ("POST", DOMAINS, b'{"id": "/root/../etc/"}', "application/json"),
        ("POST", DOMAINS, b'{"id": "/root/a\\u0000b/"}', "application/json"),
        ("POST", DOMAINS, b'{"id": "/root/a\\nb/"}', "application/json"),
        ("PUT", f"{DOMAINS}/root/", b'{"newDescription": 7}', "application/json"),
        ("POST", "/api/auth/oauth_password", b"\xff\xfe=\xff", "application/x-www-form-urlencoded"),
        ("POST", "/api/auth/oauth_password", b"username", "application/x-www-form-urlencoded"),
        ("POST", "/api/auth/oauth_password", b"{", "application/json"),
        ("POST", "/api/auth/oauth_password", b"[" * 200_000, "application/json"),
        ("POST", "/api/auth/oauth_password", b'{"username": {"$ne": 1}}', "application/json"),
        ("POST", "/api/auth/oauth_password", b"--x\r\n", "multipart/form-data"),
        ("POST", "/api/auth/oauth_password", b"--x\r\n", "multipart/form-data; boundary=x"),
        ("POST", "/Auth", b"[]", "application/json"),
        ("POST", "/Auth", b'{"UserName": ["admin"], "Password": "x"}', "application/json"),
        ("POST", "/Auth", b"\xc3\x28", "application/json"),
        ("POST", "/Auth/refresh", b'{"refreshToken": 12}', "application/json"),
        ("POST", "/api/auth/signup", b'{"login": "a"}', "application/json"),
        (
            "POST",
            "/api/auth/signup",
            b"login=a&email=b&password=c",
            "application/x-www-form-urlencoded",
        ),
        ("POST", "/api/auth/tokens", b'{"name": "x", "expiresInDays": "soon"}', "application/json"),
        (
            "POST",
            "/api/auth/tokens",
            b'{"name": "x", "expiresInDays": 99999999999999999999}',
            "application/json",
        ),
        ("POST", "/api/admin/roles", b'{"name": "x", "profile": ["Users"]}', "application/json"),
        (
            "POST",
            "/iam/realms/r/protocol/openid-connect/token",
            b"grant_type=client_credentials&client_id=%00&client_secret=%00",
            "application/x-www-form-urlencoded",
        ),
    ],
)
def test_malformed_bodies_are_4xx_with_error_body(
    server, method, path, content, content_type, error_body
):
    with server.admin() as http:
        response = http.request(
            method, path, content=content, headers={"content-type": content_type}
        )
    assert 400 <= response.status_code < 500, (response.status_code, response.text)
    if path in ("/Auth", "/Auth/refresh") and response.status_code == 401:
        assert response.text == "Access denied"
    else:
        error_body(response, response.status_code)


@pytest.mark.parametrize(
    ("method", "path"),
    [
        ("GET", f"{USERS}/no-such-user"),
        ("PATCH", f"{USERS}/no-such-user"),
        ("DELETE", f"{USERS}/no-such-user"),
        ("GET", f"{USERS}/%00"),
        ("GET", f"{USERS}/%FF%FE"),
        ("GET", f"{USERS}/" + "x" * 4000),
        ("GET", f"{DOMAINS}/root/no-such/"),
        ("GET", f"{DOMAINS}/..%2F..%2Fetc%2Fpasswd"),
        ("GET", f"{DOMAINS}/root/..%2F..%2F"),
        ("GET", f"{DOMAINS}/root/%2e%2e/"),
        ("GET", f"{DOMAINS}/%2Froot%2Fa%00b%2F"),
        ("DELETE", f"{DOMAINS}/root/"),
        ("GET", f"{DOMAINS}/etc/passwd"),
        ("GET", f"{DOMAINS}/root/a\\b/"),
        ("GET", f"{DOMAINS}/root/" + "a/" * 40),
        ("GET", f"{DOMAINS}?searchCriteria=x"),
        ("GET", f"{USERS}/search/usernames?domain=%00"),
        ("GET", f"{USERS}/search/usernames?username=" + "x" * 300),
        ("GET", f"{USERS}/search/usernames?isActiveOnly=perhaps"),
        ("GET", "/api/admin/audit?limit=0"),
        ("GET", "/api/admin/audit?limit=99999"),
        ("GET", "/api/admin/audit?beforeId=-1"),
        ("GET", "/api/admin/audit?since=yesterday"),
        ("GET", "/api/admin/audit?since=2024-01-01T00:00:00"),
        ("GET", "/api/admin/roles/no-such-role"),
        ("DELETE", "/api/admin/roles/%00"),
        ("DELETE", "/api/admin/service-accounts/no-such"),
        ("DELETE", "/api/auth/tokens/%00"),
        ("GET", "/no/such/route"),
        ("DELETE", "/api/auth/me"),
        ("PUT", DOMAINS),
    ],
)
def test_unknown_ids_and_odd_paths_are_4xx_with_error_body(server, method, path, error_body):
    with server.admin() as http:
        response = http.request(method, path)
    assert 400 <= response.status_code < 500, (response.status_code, response.text)
    error_body(response, response.status_code)


@pytest.mark.parametrize(
    "path",
    [
        "/api/admin/audit?event=%00",
        "/api/admin/users?after=%00",
        f"{USERS}/search/usernames?username=%00",
        f"{USERS}/search/usernames?email=a%00@b.c",
    ],
)
def test_nul_characters_in_queries_are_never_5xx(server, path, error_body):
    """SQLite takes NUL in text, PostgreSQL refuses it: 200 or 400, never 500."""
    with server.admin() as http:
        response = http.get(path)
    assert response.status_code in (200, 400), response.text
    if response.status_code == 400:
        error_body(response, 400)


def test_huge_bodies_are_413(server, error_body):
    big = b'{"login": "' + b"x" * (1024 * 1024 + 10) + b'"}'
    with server.admin() as http:
        error_body(http.post(USERS, content=big, headers={"content-type": "application/json"}), 413)

        def chunks():
            for _ in range(20):
                yield b"x" * 65536

        streamed = http.post(
            "/api/auth/oauth_password",
            content=chunks(),
            headers={"content-type": "application/x-www-form-urlencoded"},
        )
        error_body(streamed, 413)


def _raw_request(server, request: bytes) -> bytes:
    host, port = server.url.removeprefix("http://").split(":")
    with socket.create_connection((host, int(port)), timeout=10) as sock:
        sock.sendall(request)
        response = b""
        while chunk := sock.recv(65536):
            response += chunk
            head, separator, body = response.partition(b"\r\n\r\n")
            if separator and len(body) >= _content_length(head):
                break
    return response


def _content_length(head: bytes) -> int:
    for line in head.split(b"\r\n")[1:]:
        name, _, value = line.partition(b":")
        if name.strip().lower() == b"content-length":
            return int(value)
    return 0


def test_declared_content_length_over_the_limit_is_413_before_reading(server):
    response = _raw_request(
        server,
        (
            b"POST /api/auth/oauth_password HTTP/1.1\r\nHost: x\r\n"
            b"Content-Type: application/x-www-form-urlencoded\r\nContent-Length: 5000000\r\n\r\nab"
        ),
    )
    status_line, _, rest = response.partition(b"\r\n")
    assert status_line.startswith(b"HTTP/1.1 413"), response[:200]
    head, body_bytes = rest.split(b"\r\n\r\n", 1)
    body = json.loads(body_bytes)
    request_id = body.pop("requestId")  # the same id the response header carries
    assert f"x-request-id: {request_id}".encode() in head.lower()
    assert body == {
        "error": "request body too large",
        "message": "request body too large",
        "code": 413,
    }


@pytest.mark.parametrize("value", [b"abc", b"-1", b"1, 2"])
def test_bad_content_length_is_4xx(server, value):
    response = _raw_request(
        server,
        (
            b"POST /api/auth/oauth_password HTTP/1.1\r\nHost: x\r\nContent-Length: "
            + value
            + b"\r\n\r\nusername=a"
        ),
    )
    status = int(response.split(b" ", 2)[1])
    assert 400 <= status < 500, response[:300]


def test_non_utf8_json_string_for_users(server, error_body):
    with server.admin() as http:
        response = http.post(
            USERS,
            content='{"login": "é"}'.encode("latin-1"),
            headers={"content-type": "application/json"},
        )
    error_body(response, 400)


# -- schemathesis -----------------------------------------------------------------------------


def test_schemathesis_finds_no_server_errors(server):
    """Every operation of /openapi.json, up to 4 valid-looking and 3 invalid cases each."""
    import schemathesis
    from hypothesis import HealthCheck, Phase, given, settings
    from hypothesis.errors import Unsatisfiable
    from schemathesis.checks import not_a_server_error

    with server.admin() as http:
        created = http.post("/api/auth/tokens", json={"name": "schemathesis", "expiresInDays": 1})
        assert created.status_code == 201
    # An API token: logout cannot end it, so every case stays authenticated.
    headers = {"Authorization": f"Bearer {created.json()['token']}"}
    schema = schemathesis.openapi.from_url(f"{server.url}/openapi.json")
    operations = [result.ok() for result in schema.get_all_operations()]
    assert len(operations) >= 35
    # Password changes would end the session; event streams never end by themselves.
    skipped = {
        ("PUT", "/api/auth/password"),
        ("GET", "/api/lwm2m/v1/events"),
        ("GET", "/api/coiotedm/v3/events"),
    }
    failures: list[str] = []
    calls = 0
    for operation in operations:
        if (operation.method.upper(), operation.path) in skipped:
            continue
        for mode, examples in (
            (schemathesis.GenerationMode.POSITIVE, 4),
            (schemathesis.GenerationMode.NEGATIVE, 3),
        ):

            @settings(
                max_examples=examples,
                deadline=None,
                derandomize=True,
                database=None,
                phases=[Phase.explicit, Phase.generate],
                suppress_health_check=list(HealthCheck),
            )
            @given(case=operation.as_strategy(generation_mode=mode))
            def check(case) -> None:
                nonlocal calls
                calls += 1
                try:
                    case.call_and_validate(
                        base_url=server.url,
                        headers=headers,
                        checks=[not_a_server_error],
                        timeout=20,
                    )
                except Exception as exc:  # collect, report all operations at once
                    failures.append(f"{case.method} {case.path}: {str(exc)[:800]}")
                    raise

            recorded = len(failures)
            try:
                check()
            except Unsatisfiable:  # nothing to make invalid (an operation without inputs)
                continue
            except Exception:
                if len(failures) == recorded:  # not a server error: a broken test set-up
                    raise
    assert not failures, "\n\n".join(failures)
    assert 150 <= calls <= 7 * len(operations)
