"""The cache of verified callers against every way a caller is revoked or narrowed.

Each test first uses the credential (so its caller is cached), then revokes it and uses
it again at once. The module's server keeps cached callers for an hour, so a revocation
path that forgot to invalidate the cache fails its test instead of passing after the
usual 1 s bound. The last tests check that bound itself, for changes made by another
process, and the invalidation entry point for cross-process signals.
"""

from __future__ import annotations

import base64
import time
from collections.abc import Callable

import pyotp
import pytest
from sqlalchemy import update

from meadowlark.auth.principal_cache import PRINCIPAL_CACHE_SECONDS
from meadowlark.core.roles import CACHE_SECONDS as ROLE_CACHE_SECONDS
from meadowlark.store.models import AuthSession, Role

PASSWORD = "User-Test-Pa55word!"
LONG = 3600.0


@pytest.fixture(scope="module")
def server(server_factory):
    started = server_factory()
    started.runtime.identity.principals.ttl_seconds = LONG
    return started


@pytest.fixture
def bound(server):
    """Run one test with the shipped cache lifetime, as other processes see it."""
    server.runtime.identity.principals.ttl_seconds = PRINCIPAL_CACHE_SECONDS
    yield PRINCIPAL_CACHE_SECONDS
    server.runtime.identity.principals.ttl_seconds = LONG


def _basic(login: str, password: str = PASSWORD) -> dict[str, str]:
    return {"Authorization": "Basic " + base64.b64encode(f"{login}:{password}".encode()).decode()}


def _me(server, token: str | None = None, headers: dict[str, str] | None = None) -> int:
    with server.client(token) as http:
        return http.get("/api/auth/me", headers=headers or {}).status_code


def _patch_user(server, login: str, body: dict) -> None:
    with server.admin() as http:
        response = http.patch(f"/api/coiotedm/v3/users/{login}", json=body)
    assert response.status_code == 204, response.text


def _warm(check: Callable[[], int], expected: int = 200) -> None:
    assert check() == expected
    assert check() == expected  # the second answer comes from the cache


def test_logout(server, given_user, token_for):
    token = token_for(given_user())
    _warm(lambda: _me(server, token))
    with server.client(token) as http:
        assert http.post("/api/auth/logout").status_code == 204
    assert _me(server, token) == 401


def test_own_password_change(server, given_user, token_for):
    login = given_user()
    token = token_for(login)
    _warm(lambda: _me(server, token))
    _warm(lambda: _me(server, headers=_basic(login)))
    with server.client(token) as http:
        changed = http.put(
            "/api/auth/password",
            json={"currentPassword": PASSWORD, "newPassword": "New-Pa55word!"},
        )
    assert changed.status_code == 204, changed.text
    assert _me(server, token) == 401
    assert _me(server, headers=_basic(login)) == 401


def test_password_set_by_an_administrator(server, given_user, token_for):
    login = given_user()
    token = token_for(login)
    _warm(lambda: _me(server, token))
    _warm(lambda: _me(server, headers=_basic(login)))
    _patch_user(server, login, {"password": "Another-Pa55word"})
    assert _me(server, token) == 401
    assert _me(server, headers=_basic(login)) == 401


def test_user_disabled(server, given_user, token_for):
    login = given_user(roles=["Standard"])
    token = token_for(login)
    with server.client(token) as http:
        api_token = http.post("/api/auth/tokens", json={"name": "t", "expiresInDays": 1})
    assert api_token.status_code == 201, api_token.text
    secret = api_token.json()["token"]
    for check in (
        lambda: _me(server, token),
        lambda: _me(server, secret),
        lambda: _me(server, headers=_basic(login)),
    ):
        _warm(check)
    _patch_user(server, login, {"userEnabled": False})
    assert _me(server, token) == 401
    assert _me(server, secret) == 401
    assert _me(server, headers=_basic(login)) == 401


def test_user_deleted(server, given_user, token_for):
    login = given_user()
    token = token_for(login)
    _warm(lambda: _me(server, token))
    _warm(lambda: _me(server, headers=_basic(login)))
    with server.admin() as http:
        assert http.delete(f"/api/coiotedm/v3/users/{login}").status_code == 204
    assert _me(server, token) == 401
    assert _me(server, headers=_basic(login)) == 401


def test_user_moved_to_another_domain(server, given_domain, given_user, token_for):
    login = given_user(domain=given_domain())
    token = token_for(login)
    _warm(lambda: _me(server, token))
    _patch_user(server, login, {"domain": given_domain()})
    assert _me(server, token) == 401


def test_user_permissions_changed(server, given_user, given_role, token_for):
    login = given_user(roles=[given_role(["GET devices"])], permissions=["GET domains"])
    token = token_for(login)

    def domains() -> int:
        with server.client(token) as http:
            return http.get("/api/coiotedm/v3/domains").status_code

    _warm(domains)
    _patch_user(server, login, {"permissions": ["GET devices"]})
    assert domains() == 403


def test_user_roles_changed(server, given_user, given_role, token_for):
    narrower = given_role(["GET devices"])  # created first: creating a role clears the cache
    login = given_user(roles=[given_role(["GET domains"])])
    token = token_for(login)

    def domains() -> int:
        with server.client(token) as http:
            return http.get("/api/coiotedm/v3/domains").status_code

    _warm(domains)
    _patch_user(server, login, {"roles": [narrower]})
    assert domains() == 403


def test_role_permissions_changed(server, given_user, given_role, token_for):
    role = given_role(["GET domains"])
    token = token_for(given_user(roles=[role]))

    def domains() -> int:
        with server.client(token) as http:
            return http.get("/api/coiotedm/v3/domains").status_code

    _warm(domains)
    with server.admin() as http:
        role_id = next(r["id"] for r in http.get("/api/admin/roles").json() if r["name"] == role)
        changed = http.put(f"/api/admin/roles/{role_id}", json={"permissions": ["GET devices"]})
    assert changed.status_code == 200, changed.text
    assert domains() == 403


def test_api_token_revoked(server, given_user, token_for):
    token = token_for(given_user(roles=["Standard"]))
    with server.client(token) as http:
        created = http.post("/api/auth/tokens", json={"name": "t", "expiresInDays": 1})
    assert created.status_code == 201, created.text
    secret, token_id = created.json()["token"], created.json()["id"]
    _warm(lambda: _me(server, secret))
    with server.client(token) as http:
        assert http.delete(f"/api/auth/tokens/{token_id}").status_code == 204
    assert _me(server, secret) == 401
    assert _me(server, token) == 200  # the owner's session is not concerned


def test_refresh_token_reuse_revokes_the_session(server, given_user):
    login = given_user()
    with server.client() as http:
        issued = http.post(
            "/api/auth/oauth_password", data={"username": login, "password": PASSWORD}
        ).json()
        refresh = issued["refresh_token"]
        assert http.post("/api/auth/refresh", data={"refresh_token": refresh}).status_code == 200
    _warm(lambda: _me(server, issued["access_token"]))
    with server.client() as http:  # the spent refresh token again: the session is revoked
        assert http.post("/api/auth/refresh", data={"refresh_token": refresh}).status_code == 401
    assert _me(server, issued["access_token"]) == 401


def test_service_account_deleted(server, given_user):
    login = given_user()
    client_id = f"svc-{login}"
    with server.admin() as http:
        created = http.post(
            "/api/admin/service-accounts",
            json={"clientId": client_id, "realm": "acme", "login": login},
        )
    assert created.status_code == 201, created.text
    with server.client() as http:
        token = http.post(
            "/iam/realms/acme/protocol/openid-connect/token",
            data={
                "grant_type": "client_credentials",
                "client_id": client_id,
                "client_secret": created.json()["clientSecret"],
            },
        ).json()["access_token"]
    _warm(lambda: _me(server, token))
    with server.admin() as http:
        assert http.delete(f"/api/admin/service-accounts/{client_id}").status_code == 204
    assert _me(server, token) == 401


def test_two_factor_enabled_ends_basic_credentials(server, given_user, token_for):
    login = given_user()
    token = token_for(login)
    _warm(lambda: _me(server, headers=_basic(login)))
    with server.client(token) as http:
        secret = http.post("/api/auth/2fa/enroll").json()["secret"]
        confirmed = http.post("/api/auth/2fa/confirm", json={"code": pyotp.TOTP(secret).now()})
    assert confirmed.status_code == 200, confirmed.text
    assert _me(server, headers=_basic(login)) == 401


# -- changes made by another process -------------------------------------------------------


def _revoke_sessions_elsewhere(store, user_id: str) -> None:
    """What a logout handled by another worker or node leaves in the shared store."""

    async def revoke(session) -> None:
        await session.execute(
            update(AuthSession)
            .where(AuthSession.user_id == user_id)
            .values(revoked_at=AuthSession.created_at)
        )

    store(revoke)


def _user_id(server, token: str) -> str:
    with server.client(token) as http:
        return http.get("/api/auth/me").json()["userId"]  # type: ignore[no-any-return]


def test_revocation_elsewhere_takes_effect_within_the_bound(
    server, given_user, token_for, store, bound
):
    token = token_for(given_user())
    user_id = _user_id(server, token)
    _warm(lambda: _me(server, token))
    _revoke_sessions_elsewhere(store, user_id)
    time.sleep(bound + 0.1)
    assert _me(server, token) == 401


def test_invalidation_signal_takes_effect_at_once(server, given_user, token_for, store):
    token = token_for(given_user())
    user_id = _user_id(server, token)
    _warm(lambda: _me(server, token))
    _revoke_sessions_elsewhere(store, user_id)
    assert _me(server, token) == 200  # cached: this process was told nothing yet
    server.runtime.identity.invalidate_principals(user_id)
    assert _me(server, token) == 401


def test_role_changed_elsewhere_takes_effect_within_the_bound(
    server, given_user, given_role, token_for, store, bound
):
    role = given_role(["GET domains"])
    token = token_for(given_user(roles=[role]))

    def domains() -> int:
        with server.client(token) as http:
            return http.get("/api/coiotedm/v3/domains").status_code

    _warm(domains)

    async def narrow(session) -> None:
        await session.execute(
            update(Role).where(Role.name == role).values(permissions=["GET devices"])
        )

    store(narrow)
    time.sleep(bound + ROLE_CACHE_SECONDS + 0.1)
    assert domains() == 403


def test_local_revocations_reach_the_hooks(server, given_user, token_for):
    heard: list[str | None] = []
    server.runtime.identity.principals.on_invalidate(heard.append)
    token = token_for(given_user())
    user_id = _user_id(server, token)
    with server.client(token) as http:
        assert http.post("/api/auth/logout").status_code == 204
    assert user_id in heard
