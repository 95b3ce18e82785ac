"""Brute-force throttling (per account, per address) and the audit log."""

from __future__ import annotations

PASSWORD = "User-Test-Pa55word!"


def _login(http, username, password):
    return http.post("/api/auth/oauth_password", data={"username": username, "password": password})


def test_per_account_throttling(server_factory, given_on, error_body):
    limited = server_factory(
        rate_limits={
            "login_failures_per_account": 3,
            "login_failures_per_ip": 1000,
            "login_window_seconds": 300,
        }
    )
    given = given_on(limited)
    victim, bystander = given.user(), given.user()
    with limited.client() as http:
        for _ in range(3):
            error_body(_login(http, victim, "wrong-password"), 401)
        throttled = _login(http, victim, PASSWORD)  # even the right password now waits
        error_body(throttled, 429)
        assert 1 <= int(throttled.headers["retry-after"]) <= 300
        error_body(_login(http, victim.upper(), "wrong-password"), 429)  # case-insensitive key
        console = http.post("/Auth", json={"UserName": victim, "Password": PASSWORD})
        error_body(console, 429)
        assert "retry-after" in console.headers
        assert _login(http, bystander, PASSWORD).status_code == 201
        # Unknown accounts are throttled the same way (no account enumeration).
        for _ in range(3):
            error_body(_login(http, "ghost-user", "wrong-password"), 401)
        error_body(_login(http, "ghost-user", "wrong-password"), 429)
    # Basic auth shares the account counter.
    import base64

    raw = base64.b64encode(f"{victim}:{PASSWORD}".encode()).decode()
    with limited.client() as http:
        error_body(http.get("/api/auth/me", headers={"Authorization": f"Basic {raw}"}), 429)


def test_successful_login_resets_the_account_counter(server_factory, given_on):
    limited = server_factory(
        rate_limits={
            "login_failures_per_account": 3,
            "login_failures_per_ip": 1000,
            "login_window_seconds": 300,
        }
    )
    login = given_on(limited).user()
    with limited.client() as http:
        for _ in range(2):
            assert _login(http, login, "wrong-password").status_code == 401
        assert _login(http, login, PASSWORD).status_code == 201
        for _ in range(2):
            assert _login(http, login, "wrong-password").status_code == 401
        assert _login(http, login, PASSWORD).status_code == 201


def test_per_address_throttling(server_factory, error_body):
    limited = server_factory(
        rate_limits={
            "login_failures_per_account": 1000,
            "login_failures_per_ip": 4,
            "login_window_seconds": 300,
        }
    )
    with limited.client() as http:
        for i in range(4):
            error_body(_login(http, f"someone-{i}", "wrong-password"), 401)
        throttled = _login(http, "someone-else", "wrong-password")
        error_body(throttled, 429)
        assert int(throttled.headers["retry-after"]) >= 1
        error_body(_login(http, "admin", limited.admin_password), 429)
        error_body(
            http.post(
                "/iam/realms/r/protocol/openid-connect/token",
                data={"grant_type": "client_credentials", "client_id": "c", "client_secret": "s"},
            ),
            429,
        )


# -- audit log -------------------------------------------------------------------------------


def _events(server, **query):
    with server.admin() as http:
        response = http.get("/api/admin/audit", params={"limit": 1000, **query})
    assert response.status_code == 200, response.text
    return response.json()


def test_audit_records_logins_tokens_and_permission_changes(
    server, given_user, token_for, error_body
):
    login = given_user(roles=["Standard"])
    with server.client() as http:
        assert _login(http, login, "wrong-password").status_code == 401
        assert _login(http, "nobody-at-all", "wrong-password").status_code == 401
    token = token_for(login)
    with server.client(token) as http:
        api_token = http.post("/api/auth/tokens", json={"name": "audited"}).json()
        assert http.delete(f"/api/auth/tokens/{api_token['id']}").status_code == 204
    with server.admin() as http:
        assert (
            http.patch(f"/api/coiotedm/v3/users/{login}", json={"roles": ["Monitor"]}).status_code
            == 204
        )
        assert (
            http.patch(f"/api/coiotedm/v3/users/{login}", json={"userEnabled": False}).status_code
            == 204
        )
    with server.client(token) as http:
        http.post("/api/auth/logout")

    failures = [e for e in _events(server, event="login.failed") if e["actor"] == login]
    assert failures and failures[0]["details"]["reason"] == "bad_credentials"
    assert failures[0]["clientIp"] == "127.0.0.1"
    assert any(e["actor"] == "nobody-at-all" for e in _events(server, event="login.failed"))
    issued = [e for e in _events(server, event="token.issued") if e["actor"] == login]
    assert issued and issued[0]["details"]["grant"] == "password"
    assert [
        e["details"]["token_id"]
        for e in _events(server, event="api_token.created")
        if e["actor"] == login
    ] == [api_token["id"]]
    assert [
        e["details"]["token_id"]
        for e in _events(server, event="api_token.revoked")
        if e["actor"] == login
    ] == [api_token["id"]]
    changed = [e for e in _events(server, event="permissions.changed") if e["subject"] == login]
    assert (
        changed and changed[0]["details"]["roles"] == ["Monitor"] and changed[0]["actor"] == "admin"
    )
    revoked = [e for e in _events(server, event="token.revoked") if e["subject"] == login]
    assert revoked and revoked[0]["details"]["reason"] == "user_disabled"

    everything = _events(server)
    ids = [e["id"] for e in everything]
    assert ids == sorted(ids, reverse=True)  # newest first
    page = _events(server, beforeId=ids[0], limit=2)
    assert [e["id"] for e in page] == ids[1:3]
    for event in everything:  # secrets never reach the audit log
        text = str(event)
        assert PASSWORD not in text and api_token["token"] not in text and token not in text
    assert _events(server, actor=login)
    with server.admin() as http:
        error_body(http.get("/api/admin/audit", params={"since": "2024-01-01T00:00:00"}), 400)
        assert (
            http.get("/api/admin/audit", params={"since": "2024-01-01T00:00:00Z"}).status_code
            == 200
        )


def test_developers_cannot_read_the_audit_log(server, given_user, token_for, error_body):
    with server.client(token_for(given_user())) as http:
        error_body(http.get("/api/admin/audit"), 403)


def test_domain_admins_see_only_their_subtree(
    server, given_domain, given_user, given_role, token_for
):
    domain = given_domain()
    auditor = given_user(domain=domain, roles=[given_role(["admin:GET /api/admin/audit"])])
    with server.client(token_for(auditor)) as http:
        events = http.get("/api/admin/audit", params={"limit": 1000}).json()
    assert events and all(e["domain"] and e["domain"].startswith(domain) for e in events)
