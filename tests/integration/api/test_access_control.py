"""401 vs 403, expiry, immediate revocation, personal API tokens, Basic auth,
service accounts — against the real server over HTTP."""

from __future__ import annotations

import base64
import time
from datetime import UTC, datetime, timedelta

import jwt
import pytest
from sqlalchemy import update

from meadowlark.api.app import iter_api_routes
from meadowlark.auth import permissions as catalog
from meadowlark.auth import tokens
from meadowlark.store.models import ApiToken

PASSWORD = "User-Test-Pa55word!"


def _concrete(path: str) -> str:
    """A request path for a route template (ids that need not exist)."""
    import re

    path = re.sub(r"\{[^}]*:path\}", "root/no-such-domain/", path)
    return re.sub(r"\{[^}]*\}", "no-such-id", path)


@pytest.fixture(scope="module")
def routes(server, tmp_path_factory, settings_for):
    from meadowlark.api.app import create_app
    from meadowlark.runtime import Runtime

    app = create_app(Runtime.from_settings(settings_for(tmp_path_factory.mktemp("r"))))
    found = []
    for route in iter_api_routes(app.routes):
        method = next(iter(route.methods))
        permission = catalog.BY_ROUTE[(method, catalog.normalize_path(route.path))]
        if not permission.public:
            found.append((method, _concrete(route.path), permission))
    assert len(found) > 25
    return found


def _expired_copy(server, token: str) -> str:
    """The same session and user as ``token``, validly signed, expired a minute ago."""
    claims = jwt.decode(token, options={"verify_signature": False})
    return tokens.issue_access_token(
        key=server.settings.signing_key,
        user_id=claims["sub"],
        session_id=claims["sid"],
        generation=claims["gen"],
        now=datetime.now(UTC) - timedelta(seconds=120),
        lifetime=60,
    )


def _basic(login: str, password: str) -> dict[str, str]:
    raw = base64.b64encode(f"{login}:{password}".encode()).decode()
    return {"Authorization": f"Basic {raw}"}


# -- 401 / 403 on every endpoint --------------------------------------------------------


def test_unauthenticated_requests_get_401_on_every_guarded_route(server, routes, error_body):
    bad_headers = {
        "none": {},
        "garbage": {"Authorization": "Bearer not-a-token"},
        "forged": {
            "Authorization": "Bearer "
            + jwt.encode(
                {
                    "iss": "meadowlark",
                    "sub": "x",
                    "sid": "x",
                    "gen": 0,
                    "exp": int(time.time()) + 60,
                },
                "wrong-key-" * 4,
                algorithm="HS256",
            )
        },
        "expired": {"Authorization": "Bearer " + _expired_copy(server, server.admin_token)},
        "unknown api token": {"Authorization": "Bearer mlk_0123456789abcdef_nope"},
        "other scheme": {"Authorization": "Digest abc"},
    }
    with server.client() as http:
        for method, path, _permission in routes:
            for label, headers in bad_headers.items():
                response = http.request(method, path, headers=headers)
                error_body(response, 401)
                assert response.headers.get("www-authenticate", "").startswith("Bearer"), (
                    label,
                    path,
                )


def test_valid_token_without_permission_gets_403_on_every_guarded_route(
    server, routes, given_user, given_role, token_for, error_body
):
    nobody = given_user(roles=[given_role([])])
    token = token_for(nobody)
    with server.client(token) as http:
        checked = 0
        for method, path, permission in routes:
            if permission.self_service:  # everyone holds these (logout would end the session)
                continue
            body = error_body(http.request(method, path), 403)
            checked += 1
            assert permission.name in body["message"]
        assert checked > 20
        assert http.get("/api/auth/me").status_code == 200


def test_each_single_permission_opens_exactly_its_route(server, routes, given_user, token_for):
    login = given_user(permissions=["GET domains"], roles=[])
    # roles=[] gives the default Developer role; narrow with an explicit empty custom role.
    with server.admin() as http:
        role = http.post("/api/admin/roles", json={"name": "empty-" + login, "permissions": []})
        assert role.status_code == 201
        assert (
            http.patch(
                f"/api/coiotedm/v3/users/{login}", json={"roles": ["empty-" + login]}
            ).status_code
            == 204
        )
    with server.client(token_for(login)) as http:
        assert http.get("/api/coiotedm/v3/domains").status_code == 200
        assert http.get("/api/coiotedm/v3/domains/root/").status_code == 403
        assert http.post("/api/coiotedm/v3/domains", json={"id": "/root/x/"}).status_code == 403


# -- expiry ------------------------------------------------------------------------------


def test_token_lifetime_is_honoured(server_factory, error_body):
    short = server_factory(token_lifetime=2)
    with short.client() as http:
        response = http.post(
            "/api/auth/oauth_password", data={"username": "admin", "password": short.admin_password}
        )
        assert response.status_code == 201
        assert response.json()["expires_in"] == 2
        token = response.json()["access_token"]
    with short.client(token) as http:
        assert http.get("/api/auth/me").status_code == 200
        time.sleep(3.2)
        error_body(http.get("/api/auth/me"), 401)


def test_default_lifetime_is_reported(server):
    with server.client() as http:
        response = http.post(
            "/api/auth/oauth_password",
            data={"username": "admin", "password": server.admin_password},
        )
    body = response.json()
    assert response.status_code == 201
    assert body["token_type"] == "Bearer" and body["expires_in"] == 300
    assert response.headers["cache-control"] == "no-store"
    claims = jwt.decode(body["access_token"], options={"verify_signature": False})
    assert 300 <= claims["exp"] - claims["iat"] <= 301  # exp is rounded up


# -- revocation ----------------------------------------------------------------------------


def test_logout_revokes_the_session_at_once(server, given_user, token_for, error_body):
    login = given_user()
    token, other = token_for(login), token_for(login)
    with server.client(token) as http:
        assert http.post("/api/auth/logout").status_code == 204
        error_body(http.get("/api/auth/me"), 401)
        error_body(http.post("/api/auth/logout"), 401)
    with server.client(other) as http:  # another session of the same user lives on
        assert http.get("/api/auth/me").status_code == 200


def test_password_change_by_admin_revokes_every_token(server, given_user, token_for, error_body):
    login = given_user()
    token = token_for(login)
    with server.admin() as http:
        assert (
            http.patch(
                f"/api/coiotedm/v3/users/{login}", json={"password": "Another-Pa55word"}
            ).status_code
            == 204
        )
    with server.client(token) as http:
        error_body(http.get("/api/auth/me"), 401)
    with server.client() as http:
        assert (
            http.post(
                "/api/auth/oauth_password", data={"username": login, "password": PASSWORD}
            ).status_code
            == 401
        )
    assert token_for(login, "Another-Pa55word")


def test_own_password_change_revokes_every_token(server, given_user, token_for, error_body):
    login = given_user()
    token, other = token_for(login), token_for(login)
    with server.client(token) as http:
        wrong = http.put(
            "/api/auth/password",
            json={"currentPassword": "nope-nope", "newPassword": "New-Pa55word!"},
        )
        error_body(wrong, 403)
        short = http.put(
            "/api/auth/password", json={"currentPassword": PASSWORD, "newPassword": "short"}
        )
        error_body(short, 400)
        assert (
            http.put(
                "/api/auth/password",
                json={"currentPassword": PASSWORD, "newPassword": "New-Pa55word!"},
            ).status_code
            == 204
        )
        error_body(http.get("/api/auth/me"), 401)
    with server.client(other) as http:
        error_body(http.get("/api/auth/me"), 401)
    assert token_for(login, "New-Pa55word!")


def test_disabling_a_user_revokes_at_once_and_blocks_login(
    server, given_user, token_for, error_body
):
    login = given_user()
    token = token_for(login)
    with server.admin() as http:
        assert (
            http.patch(f"/api/coiotedm/v3/users/{login}", json={"userEnabled": False}).status_code
            == 204
        )
        assert http.get(f"/api/coiotedm/v3/users/{login}").json()["active"] is False
    with server.client(token) as http:
        error_body(http.get("/api/auth/me"), 401)
    with server.client() as http:
        error_body(
            http.post("/api/auth/oauth_password", data={"username": login, "password": PASSWORD}),
            401,
        )
        error_body(http.get("/api/auth/me", headers=_basic(login, PASSWORD)), 401)
    with server.admin() as http:
        assert (
            http.patch(f"/api/coiotedm/v3/users/{login}", json={"userEnabled": True}).status_code
            == 204
        )
    assert token_for(login)


def test_deleting_a_user_revokes_at_once(server, given_user, token_for, error_body):
    login = given_user()
    token = token_for(login)
    with server.admin() as http:
        assert http.delete(f"/api/coiotedm/v3/users/{login}").status_code == 204
        error_body(http.get(f"/api/coiotedm/v3/users/{login}"), 404)
    with server.client(token) as http:
        error_body(http.get("/api/auth/me"), 401)


def test_admin_cannot_disable_or_delete_itself(server, error_body):
    with server.admin() as http:
        error_body(http.patch("/api/coiotedm/v3/users/admin", json={"userEnabled": False}), 403)
        error_body(http.delete("/api/coiotedm/v3/users/admin"), 403)


# -- personal API tokens -----------------------------------------------------------------


def test_api_token_shown_once_limited_to_subset_and_revocable(
    server, given_user, token_for, store, error_body
):
    login = given_user(roles=["Standard"])
    session_token = token_for(login)
    with server.client(session_token) as http:
        created = http.post(
            "/api/auth/tokens",
            json={"name": "ci", "expiresInDays": 30, "permissions": ["GET domains"]},
        )
        assert created.status_code == 201, created.text
        body = created.json()
        secret = body["token"]
        assert secret.startswith("mlk_") and body["permissions"] == ["GET domains"]
        assert body["revoked"] is False
        listed = http.get("/api/auth/tokens").json()
        assert [t["id"] for t in listed] == [body["id"]]
        assert all("token" not in t for t in listed)
        assert secret not in http.get("/api/auth/tokens").text

    row = store(lambda s: s.get(ApiToken, body["id"]))
    assert row.token_hash != secret and secret not in row.token_hash
    assert tokens.secret_matches(secret.split("_", 2)[2], row.token_hash)

    with server.client(secret) as http:
        assert http.get("/api/coiotedm/v3/domains").status_code == 200
        me = http.get("/api/auth/me").json()
        assert me["via"] == "api_token"
        assert set(me["permissions"]) - catalog.SELF_SERVICE == {"GET domains"}
        error_body(http.get("/api/coiotedm/v3/domains/root/"), 403)  # the owner may, not the token
        error_body(http.post("/api/auth/logout"), 400)
        # A token cannot mint tokens beyond itself: it lacks the API permission.
        error_body(http.post("/api/auth/tokens", json={"name": "x"}), 403)

    with server.client(session_token) as http:
        assert http.get("/api/coiotedm/v3/domains/root/").status_code == 200
        assert http.delete(f"/api/auth/tokens/{body['id']}").status_code == 204
        assert http.get("/api/auth/tokens").json()[0]["revoked"] is True
        error_body(http.delete("/api/auth/tokens/0000000000000000"), 404)
    with server.client(secret) as http:
        error_body(http.get("/api/coiotedm/v3/domains"), 401)


def test_api_token_cannot_exceed_owner_permissions(server, given_user, token_for, error_body):
    login = given_user(roles=["Standard"])
    with server.client(token_for(login)) as http:
        error_body(
            http.post("/api/auth/tokens", json={"name": "x", "permissions": ["POST users"]}), 403
        )
        error_body(
            http.post("/api/auth/tokens", json={"name": "x", "permissions": ["GET no-such"]}), 400
        )
        error_body(http.post("/api/auth/tokens", json={"name": "x", "expiresInDays": 0}), 400)
        everything = http.post("/api/auth/tokens", json={"name": "all"})
        assert everything.status_code == 201
        held = set(http.get("/api/auth/me").json()["permissions"]) - catalog.SELF_SERVICE
        assert set(everything.json()["permissions"]) == held


def test_developer_cannot_create_api_tokens(server, given_user, token_for, error_body):
    with server.client(token_for(given_user())) as http:
        error_body(http.post("/api/auth/tokens", json={"name": "x"}), 403)


def test_api_token_of_another_user_cannot_be_revoked(server, given_user, token_for, error_body):
    owner, other = given_user(roles=["Standard"]), given_user(roles=["Standard"])
    with server.client(token_for(owner)) as http:
        token_id = http.post("/api/auth/tokens", json={"name": "mine"}).json()["id"]
    with server.client(token_for(other)) as http:
        error_body(http.delete(f"/api/auth/tokens/{token_id}"), 404)


def test_expired_api_token_is_refused(server, given_user, token_for, store, error_body):
    with server.client(token_for(given_user(roles=["Standard"]))) as http:
        created = http.post("/api/auth/tokens", json={"name": "old"}).json()

    async def expire(session):
        await session.execute(
            update(ApiToken)
            .where(ApiToken.id == created["id"])
            .values(expires_at=datetime.now(UTC) - timedelta(seconds=1))
        )

    store(expire)
    with server.client(created["token"]) as http:
        error_body(http.get("/api/auth/me"), 401)


def test_api_token_dies_with_its_disabled_owner(server, given_user, token_for, error_body):
    login = given_user(roles=["Standard"])
    with server.client(token_for(login)) as http:
        secret = http.post("/api/auth/tokens", json={"name": "x"}).json()["token"]
    with server.admin() as http:
        http.patch(f"/api/coiotedm/v3/users/{login}", json={"userEnabled": False})
    with server.client(secret) as http:
        error_body(http.get("/api/auth/me"), 401)


# -- Basic auth ----------------------------------------------------------------------------


def test_basic_auth(server, given_user, error_body):
    login = given_user()
    with server.client() as http:
        me = http.get("/api/auth/me", headers=_basic(login, PASSWORD))
        assert me.status_code == 200 and me.json()["via"] == "basic"
        assert (
            http.get("/api/coiotedm/v3/domains", headers=_basic(login, PASSWORD)).status_code == 200
        )
        error_body(http.get("/api/auth/me", headers=_basic(login, "wrong-password")), 401)
        error_body(http.get("/api/auth/me", headers=_basic("nobody", "x")), 401)
        error_body(
            http.post(
                "/api/coiotedm/v3/domains",
                json={"id": "/root/zz/"},
                headers=_basic(login, PASSWORD),
            ),
            403,
        )
        error_body(http.post("/api/auth/logout", headers=_basic(login, PASSWORD)), 400)


@pytest.mark.parametrize(
    "header",
    [
        "Basic",
        "Basic !!!notbase64",
        "Basic " + base64.b64encode(b"nocolon").decode(),
        "Basic " + base64.b64encode(b":pw").decode(),
        "Basic " + base64.b64encode(b"\xff\xfe:x").decode(),
        "Basic YWRtaW4",
        "Bearer",
        "Bearer a b c",
        "Token abc",
        "x" * 9000,
        "Bearer " + "a" * 9000,
    ],
)
def test_malformed_authorization_headers_get_401(server, header, error_body):
    with server.client() as http:
        error_body(http.get("/api/auth/me", headers={"Authorization": header}), 401)


def test_non_ascii_authorization_headers_get_401(server, error_body):
    with server.client() as http:
        for raw in (b"Basic \xe9\xe9", b"Bearer \xe9t\xe9", b"Basic YWRt\xffaW4="):
            error_body(http.get("/api/auth/me", headers={"Authorization": raw}), 401)


# -- service accounts ----------------------------------------------------------------------


def test_service_account_client_credentials_and_deletion(server, given_user, error_body):
    login = given_user()
    with server.admin() as http:
        created = http.post(
            "/api/admin/service-accounts",
            json={"clientId": f"svc-{login}", "realm": "acme", "login": login},
        )
        assert created.status_code == 201, created.text
        secret = created.json()["clientSecret"]
        error_body(
            http.post(
                "/api/admin/service-accounts",
                json={"clientId": f"svc-{login}", "realm": "acme", "login": login},
            ),
            409,
        )
        error_body(
            http.post(
                "/api/admin/service-accounts",
                json={"clientId": "svc-x", "realm": "acme", "login": "no-such-user"},
            ),
            404,
        )
        listed = http.get("/api/admin/service-accounts").json()
        assert {"clientId": f"svc-{login}", "realm": "acme", "login": login}.items() <= next(
            a for a in listed if a["clientId"] == f"svc-{login}"
        ).items()
        assert secret not in http.get("/api/admin/service-accounts").text

    url = "/iam/realms/acme/protocol/openid-connect/token"
    with server.client() as http:
        granted = http.post(
            url,
            data={
                "grant_type": "client_credentials",
                "client_id": f"svc-{login}",
                "client_secret": secret,
            },
        )
        assert granted.status_code == 200, granted.text
        body = granted.json()
        assert body["token_type"] == "Bearer" and body["expires_in"] == 300
        assert "refresh_token" not in body
        raw = base64.b64encode(f"svc-{login}:{secret}".encode()).decode()
        via_basic = http.post(
            url,
            data={"grant_type": "client_credentials"},
            headers={"Authorization": f"Basic {raw}"},
        )
        assert via_basic.status_code == 200
        error_body(
            http.post(
                url,
                data={
                    "grant_type": "client_credentials",
                    "client_id": f"svc-{login}",
                    "client_secret": "nope",
                },
            ),
            401,
        )
        error_body(
            http.post(
                "/iam/realms/other/protocol/openid-connect/token",
                data={
                    "grant_type": "client_credentials",
                    "client_id": f"svc-{login}",
                    "client_secret": secret,
                },
            ),
            401,
        )
        error_body(http.post(url, data={"grant_type": "client_credentials"}), 400)
        error_body(http.post(url, data={"grant_type": "implicit"}), 400)
    token = body["access_token"]
    with server.client(token) as http:
        me = http.get("/api/auth/me").json()
        assert me["login"] == login
    with server.admin() as http:
        assert http.delete(f"/api/admin/service-accounts/svc-{login}").status_code == 204
        error_body(http.delete(f"/api/admin/service-accounts/svc-{login}"), 404)
    with server.client(token) as http:
        error_body(http.get("/api/auth/me"), 401)
    with server.client() as http:
        error_body(
            http.post(
                url,
                data={
                    "grant_type": "client_credentials",
                    "client_id": f"svc-{login}",
                    "client_secret": secret,
                },
            ),
            401,
        )


def test_oauth_password_accepts_a_missing_grant_type_and_refuses_unknown_ones(server, error_body):
    with server.client() as http:
        ok = http.post(
            "/api/auth/oauth_password",
            data={"username": "admin", "password": server.admin_password},
        )
        assert ok.status_code == 201
        assert set(ok.json()) >= {"access_token", "token_type", "expires_in"}
        error_body(
            http.post(
                "/api/auth/oauth_password",
                data={"grant_type": "authorization_code", "username": "admin", "password": "x"},
            ),
            400,
        )
        error_body(http.post("/api/auth/oauth_password", data={"grant_type": "password"}), 400)
        error_body(
            http.post(
                "/api/auth/oauth_password", data={"username": "admin", "password": "wrong-password"}
            ),
            401,
        )
        error_body(
            http.post(
                "/api/auth/oauth_password",
                data={"username": "no-such-user", "password": "wrong-password"},
            ),
            401,
        )
