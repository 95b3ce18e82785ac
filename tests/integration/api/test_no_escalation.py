"""Class-wide: nobody obtains more than they hold through any route that creates a
credential or grants permissions (users, roles, API tokens, service accounts, sign-up,
token endpoints, token exchange, refresh).

A low-privilege caller holds only what it needs to call each route. Every attempt to come
out with more is refused, and the refusal changes nothing. A route added later that takes
grant-like fields (or is a token/credential endpoint) fails ``test_every_grant_route_is_
attacked`` until it gets an attempt here.
"""

from __future__ import annotations

import secrets
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import jwt
import pytest

PASSWORD = "User-Test-Pa55word!"
ISSUER = "https://idp.escalation.test"
EXCHANGE_KEY = "escalation-shared-key-" + "k" * 40
EXCHANGE = "urn:ietf:params:oauth:grant-type:token-exchange"
COIOTE = "/api/coiotedm/v3"
CALLER_PERMISSIONS = [
    "GET devices",
    "GET users/{id}",
    "POST users",
    "PATCH users/{id}",
    "admin:GET /api/admin/roles",
    "admin:GET /api/admin/roles/{id}",
    "admin:POST /api/admin/roles",
    "admin:PUT /api/admin/roles/{id}",
    "admin:GET /api/admin/service-accounts",
    "admin:POST /api/admin/service-accounts",
    "auth:GET /api/auth/tokens",
    "auth:POST /api/auth/tokens",
]
NOT_HELD = "DELETE devices/{id}"
# Request fields through which a route hands out identities or permissions.
GRANT_FIELDS = {"roles", "permissions", "profile", "accountType", "login", "clientId"}
CREDENTIAL_PATH_WORDS = ("token", "Auth", "signup", "service-accounts", "roles", "users")


@dataclass
class World:
    server: Any
    domain: str
    caller: str
    caller_token: str
    caller_role: str
    domain_admin: str
    weaker: str

    def http(self, token: str | None = None):
        return self.server.client(token or self.caller_token)

    def permissions(self, token: str) -> set[str]:
        with self.server.client(token) as http:
            response = http.get("/api/auth/me")
        assert response.status_code == 200, response.text
        return set(response.json()["permissions"])

    def user_exists(self, login: str) -> bool:
        with self.server.admin() as http:
            return http.get(f"{COIOTE}/users/{login}").status_code == 200


@pytest.fixture(scope="module")
def world(server_factory, given_on) -> World:
    server = server_factory(
        token_exchange={"issuer": ISSUER, "shared_key": EXCHANGE_KEY, "audience": "meadowlark"}
    )
    given = given_on(server)
    domain = given.domain()
    role = f"user-managers-{secrets.token_hex(3)}"
    with server.admin() as http:
        created = http.post(
            "/api/admin/roles",
            json={"name": role, "permissions": CALLER_PERMISSIONS, "domain": domain},
        )
        assert created.status_code == 201, created.text
    caller = given.user(domain=domain, roles=[role])
    return World(
        server=server,
        domain=domain,
        caller=caller,
        caller_token=given.token(caller),
        caller_role=role,
        domain_admin=given.user(domain=domain, account_type="admin"),
        weaker=given.user(domain=domain, roles=["Monitor"], permissions=[]),
    )


def _new_login() -> str:
    return f"esc-{secrets.token_hex(4)}"


def _refused(response, *statuses: int) -> None:
    assert response.status_code in (statuses or (403,)), (response.status_code, response.text)
    assert set(response.json()) == {"error", "message", "code", "requestId"}


# -- the attempts, per route ----------------------------------------------------------------


def create_user_with_more(world: World) -> None:
    for extra in (
        {"roles": ["Admin"]},
        {"permissions": [NOT_HELD]},
        {"accountType": "admin", "roles": [world.caller_role]},
        {"roles": ["Developer"]},  # a Developer holds device permissions the caller lacks
    ):
        login = _new_login()
        body = {"login": login, "password": PASSWORD, "domain": world.domain, **extra}
        with world.http() as http:
            _refused(http.post(f"{COIOTE}/users", json=body))
        assert not world.user_exists(login)


def raise_a_user(world: World) -> None:
    before = world.permissions(world.caller_token)
    with world.http() as http:
        _refused(http.patch(f"{COIOTE}/users/{world.caller}", json={"roles": ["Admin"]}))
        _refused(http.patch(f"{COIOTE}/users/{world.caller}", json={"permissions": [NOT_HELD]}))
        _refused(http.patch(f"{COIOTE}/users/{world.weaker}", json={"roles": ["Admin"]}))
        # Taking over a stronger account (to log in as it) is refused too.
        _refused(http.patch(f"{COIOTE}/users/{world.domain_admin}", json={"password": "x" * 12}))
    assert world.permissions(world.caller_token) == before
    assert NOT_HELD not in world.permissions(world.server.login(world.weaker, PASSWORD))


def create_a_role_with_more(world: World) -> None:
    name = f"esc-role-{secrets.token_hex(3)}"
    with world.http() as http:
        _refused(http.post("/api/admin/roles", json={"name": name, "permissions": [NOT_HELD]}))
        _refused(
            http.post("/api/admin/roles", json={"name": name, "profile": {"Devices": ["delete"]}})
        )
        names = {role["name"] for role in http.get("/api/admin/roles").json()}
    assert name not in names


def widen_a_role(world: World) -> None:
    with world.http() as http:
        own = http.post(
            "/api/admin/roles",
            json={"name": f"esc-own-{secrets.token_hex(3)}", "permissions": ["GET devices"]},
        )
        assert own.status_code == 201, own.text
        role_id = own.json()["id"]
        _refused(http.put(f"/api/admin/roles/{role_id}", json={"permissions": [NOT_HELD]}))
        assert http.get(f"/api/admin/roles/{role_id}").json()["permissions"] == ["GET devices"]
        # The role the caller holds itself, owned above it, cannot be widened from below... or
        # at all by someone without the permissions.
        held = next(
            r for r in http.get("/api/admin/roles").json() if r["name"] == world.caller_role
        )
        _refused(
            http.put(
                f"/api/admin/roles/{held['id']}",
                json={"permissions": [*CALLER_PERMISSIONS, NOT_HELD]},
            )
        )


def api_token_with_more(world: World) -> None:
    with world.http() as http:
        _refused(
            http.post(
                "/api/auth/tokens",
                json={"name": "t", "expiresInDays": 1, "permissions": [NOT_HELD]},
            )
        )
        names = [t["name"] for t in http.get("/api/auth/tokens").json()]
    assert "t" not in names


def service_account_for_a_stronger_user(world: World) -> None:
    """The outside test's finding: a service account bound to the domain administrator."""
    client_id = f"esc-{secrets.token_hex(4)}"
    body = {"clientId": client_id, "realm": "r", "login": world.domain_admin}
    with world.http() as http:
        _refused(http.post("/api/admin/service-accounts", json=body))
        listed = [a["clientId"] for a in http.get("/api/admin/service-accounts").json()]
    assert client_id not in listed
    # For itself it may; the client then holds exactly the caller's permissions.
    own = {"clientId": f"own-{secrets.token_hex(4)}", "realm": "r", "login": world.caller}
    with world.http() as http:
        created = http.post("/api/admin/service-accounts", json=own)
    assert created.status_code == 201, created.text
    with world.server.client() as http:
        issued = http.post(
            "/iam/realms/r/protocol/openid-connect/token",
            data={
                "grant_type": "client_credentials",
                "client_id": own["clientId"],
                "client_secret": created.json()["clientSecret"],
            },
        )
    assert issued.status_code == 200, issued.text
    token = issued.json()["access_token"]
    assert world.permissions(token) == world.permissions(world.caller_token)
    with world.server.client(token) as http:
        _refused(http.get("/api/admin/users"))


def narrowed_tokens_grant_only_what_they_carry(world: World) -> None:
    """An administrator's API token narrowed to a few permissions is no administrator."""
    admin_token = world.server.login(world.domain_admin, PASSWORD)
    with world.server.client(admin_token) as http:
        narrowed = http.post(
            "/api/auth/tokens",
            json={
                "name": "narrow",
                "expiresInDays": 1,
                "permissions": [
                    "POST users",
                    "admin:POST /api/admin/roles",
                    "admin:POST /api/admin/service-accounts",
                    "auth:POST /api/auth/tokens",
                ],
            },
        )
    assert narrowed.status_code == 201, narrowed.text
    token = narrowed.json()["token"]
    login = _new_login()
    with world.server.client(token) as http:
        for extra in ({"roles": ["Admin"]}, {"accountType": "admin"}):
            body = {"login": login, "password": PASSWORD, "domain": world.domain, **extra}
            _refused(http.post(f"{COIOTE}/users", json=body))
        _refused(http.post("/api/admin/roles", json={"name": login, "permissions": [NOT_HELD]}))
        _refused(
            http.post(
                "/api/admin/service-accounts",
                json={"clientId": login, "realm": "r", "login": world.domain_admin},
            )
        )
        _refused(
            http.post(
                "/api/auth/tokens",
                json={"name": login, "expiresInDays": 1, "permissions": [NOT_HELD]},
            )
        )
    assert not world.user_exists(login)


def sign_up_as_more_than_a_developer(world: World) -> None:
    login = _new_login()
    with world.server.client() as http:
        for extra in ({"accountType": "admin"}, {"roles": ["Admin"]}, {"domain": "/root/"}):
            body = {"login": login, "email": f"{login}@example.com", "password": PASSWORD}
            _refused(http.post("/api/auth/signup", json={**body, **extra}), 400)
        assert not world.user_exists(login)
        created = http.post(
            "/api/auth/signup",
            json={"login": login, "email": f"{login}@example.com", "password": PASSWORD},
        )
    assert created.status_code == 201, created.text
    assert created.json()["accountType"] == "developer"
    assert created.json()["domain"] != "/root/"
    held = world.permissions(world.server.login(login, PASSWORD))
    assert not any(name.startswith("admin:") for name in held)


def token_endpoints_issue_only_what_the_user_holds(world: World) -> None:
    """Password grant, console login and refresh: extra fields change nothing, and a
    refresh after the user lost a permission does not bring it back."""
    expected = world.permissions(world.caller_token)
    with world.server.client() as http:
        grant = http.post(
            "/api/auth/oauth_password",
            data={
                "username": world.caller,
                "password": PASSWORD,
                "scope": "admin",
                "roles": "Admin",
                "accountType": "admin",
            },
        )
        console = http.post(
            "/Auth",
            json={"UserName": world.caller, "Password": PASSWORD, "Role": "UserProfileId_admin"},
        )
    assert grant.status_code == 201 and console.status_code == 200, (grant.text, console.text)
    assert world.permissions(grant.json()["access_token"]) == expected
    assert world.permissions(console.json()["token"]) == expected
    # The user loses a permission; refreshing either session gives the reduced set.
    weaker_login = _new_login()
    with world.server.admin() as admin:
        created = admin.post(
            f"{COIOTE}/users",
            json={
                "login": weaker_login,
                "password": PASSWORD,
                "domain": world.domain,
                "roles": ["Monitor"],
                "permissions": ["PUT devices/{id}", "GET domains"],
            },
        )
        assert created.status_code == 201, created.text
    with world.server.client() as http:
        session = http.post(
            "/api/auth/oauth_password", data={"username": weaker_login, "password": PASSWORD}
        ).json()
        console_session = http.post(
            "/Auth", json={"UserName": weaker_login, "Password": PASSWORD}
        ).json()
    with world.server.admin() as admin:
        assert (
            admin.patch(
                f"{COIOTE}/users/{weaker_login}", json={"permissions": ["GET domains"]}
            ).status_code
            == 204
        )
    with world.server.client() as http:
        refreshed = http.post("/api/auth/refresh", data={"refresh_token": session["refresh_token"]})
        console_refreshed = http.post(
            "/Auth/refresh", json={"refreshToken": console_session["refreshToken"]}
        )
    for response, key in ((refreshed, "access_token"), (console_refreshed, "token")):
        if response.status_code == 200:
            assert "PUT devices/{id}" not in world.permissions(response.json()[key])
        else:  # a permission change may also end the session outright
            assert response.status_code == 401, response.text


def exchange_maps_to_the_subject_only(world: World) -> None:
    claims = {
        "iss": ISSUER,
        "aud": "meadowlark",
        "exp": int(time.time()) + 60,
        "preferred_username": world.caller,
        "roles": ["Admin"],
        "permissions": [NOT_HELD],
        "account_type": "admin",
        "scope": "admin",
    }
    subject = jwt.encode(claims, EXCHANGE_KEY, algorithm="HS256")
    expected = world.permissions(world.caller_token)
    for path, status in (
        ("/api/auth/oauth_password", 201),
        ("/iam/realms/r/protocol/openid-connect/token", 200),
    ):
        with world.server.client() as http:
            issued = http.post(path, data={"grant_type": EXCHANGE, "subject_token": subject})
        assert issued.status_code == status, issued.text
        assert world.permissions(issued.json()["access_token"]) == expected
    # A subject token signed with another key is refused, whatever it claims.
    forged = jwt.encode(claims | {"preferred_username": "admin"}, "x" * 48, algorithm="HS256")
    with world.server.client() as http:
        _refused(
            http.post(
                "/api/auth/oauth_password", data={"grant_type": EXCHANGE, "subject_token": forged}
            ),
            401,
        )


ATTEMPTS: dict[tuple[str, str], Callable[[World], None]] = {
    ("POST", "/api/coiotedm/v3/users"): create_user_with_more,
    ("PATCH", "/api/coiotedm/v3/users/{login}"): raise_a_user,
    ("POST", "/api/admin/roles"): create_a_role_with_more,
    ("PUT", "/api/admin/roles/{role_id}"): widen_a_role,
    ("POST", "/api/auth/tokens"): api_token_with_more,
    ("POST", "/api/admin/service-accounts"): service_account_for_a_stronger_user,
    ("POST", "/api/auth/signup"): sign_up_as_more_than_a_developer,
    ("POST", "/api/auth/oauth_password"): exchange_maps_to_the_subject_only,
    (
        "POST",
        "/iam/realms/{realm}/protocol/openid-connect/token",
    ): exchange_maps_to_the_subject_only,
    ("POST", "/Auth"): token_endpoints_issue_only_what_the_user_holds,
    ("POST", "/Auth/refresh"): token_endpoints_issue_only_what_the_user_holds,
    ("POST", "/api/auth/refresh"): token_endpoints_issue_only_what_the_user_holds,
}
# Credential routes that hand out nothing: listing, deleting and revoking.
NOT_GRANTING = {
    ("DELETE", "/api/auth/tokens/{token_id}"),
    ("DELETE", "/api/admin/roles/{role_id}"),
    ("DELETE", "/api/admin/service-accounts/{client_id}"),
    ("DELETE", "/api/coiotedm/v3/users/{login}"),
    ("POST", "/api/auth/logout"),
    ("PUT", "/api/auth/password"),
    ("POST", "/api/auth/2fa/enroll"),
    ("POST", "/api/auth/2fa/confirm"),
    ("DELETE", "/api/auth/2fa"),
    ("POST", "/api/auth/2fa/recovery-codes"),
}


def _schema_properties(spec: dict[str, Any], schema: dict[str, Any]) -> set[str]:
    if "$ref" in schema:
        name = schema["$ref"].rsplit("/", 1)[-1]
        schema = spec["components"]["schemas"][name]
    names = set(schema.get("properties", {}))
    for option in schema.get("anyOf", []) + schema.get("allOf", []):
        names |= _schema_properties(spec, option)
    return names


def test_every_grant_route_is_attacked(world):
    with world.server.client() as http:
        spec = http.get("/openapi.json").json()
    unattacked = []
    for path, operations in spec["paths"].items():
        for method, operation in operations.items():
            if method.upper() == "GET":
                continue
            key = (method.upper(), path)
            content = operation.get("requestBody", {}).get("content", {})
            fields = set().union(
                *(_schema_properties(spec, c.get("schema", {})) for c in content.values())
            )
            grant_like = bool(fields & GRANT_FIELDS) or any(
                word in path for word in CREDENTIAL_PATH_WORDS
            )
            if grant_like and key not in ATTEMPTS and key not in NOT_GRANTING:
                unattacked.append(key)
    assert unattacked == [], f"grant routes without an escalation attempt: {unattacked}"


@pytest.mark.parametrize("route", sorted(ATTEMPTS), ids=lambda r: f"{r[0]} {r[1]}")
def test_a_low_privilege_caller_obtains_nothing_more(world, route):
    ATTEMPTS[route](world)
