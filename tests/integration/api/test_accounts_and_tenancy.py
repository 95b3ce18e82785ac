"""Sign-up, account permission sets, domain tenancy, the Monitor profile, grants."""

from __future__ import annotations

import secrets

import pytest

from meadowlark.auth import permissions as catalog

PASSWORD = "User-Test-Pa55word!"


def _signup(http, login, email=None, password=PASSWORD):
    return http.post(
        "/api/auth/signup",
        json={"login": login, "email": email or f"{login}@example.com", "password": password},
    )


# -- sign-up and the Developer permission set ----------------------------------------------


def test_signup_creates_a_developer_with_exactly_the_seed_permissions(
    server, token_for, seed_developer_endpoints
):
    login = f"dev{secrets.token_hex(3)}"
    with server.client() as http:
        response = _signup(http, login)
    assert response.status_code == 201, response.text
    body = response.json()
    assert body["accountType"] == "developer"
    assert body["domain"] == f"/root/{login}/"
    assert body["emailVerified"] is False
    assert "password" not in body
    with server.client(token_for(login)) as http:
        me = http.get("/api/auth/me").json()
        assert me["accountType"] == "developer" and me["domain"] == f"/root/{login}/"
        granted = set(me["permissions"])
        assert granted - catalog.SELF_SERVICE == set(seed_developer_endpoints)
        assert len(granted - catalog.SELF_SERVICE) == 47
        assert http.get("/api/coiotedm/v3/domains").json() == [f"/root/{login}/"]
        assert http.get(f"/api/coiotedm/v3/domains/root/{login}/").status_code == 200
        assert http.get(f"/api/coiotedm/v3/users/{login}").json()["roles"] == ["Developer"]


def test_business_and_developer_accounts_created_by_admin_hold_the_seed_list(
    server, given_user, given_domain, token_for, seed_developer_endpoints
):
    domain = given_domain()
    for account_type in ("business", "developer"):
        login = given_user(domain=domain, account_type=account_type)
        with server.client(token_for(login)) as http:
            me = http.get("/api/auth/me").json()
        assert me["accountType"] == account_type
        assert set(me["permissions"]) - catalog.SELF_SERVICE == set(seed_developer_endpoints)


def test_admin_holds_everything(server):
    with server.admin() as http:
        me = http.get("/api/auth/me").json()
    assert set(me["permissions"]) == catalog.GRANTABLE | catalog.SELF_SERVICE


def test_signup_refuses_duplicates_and_bad_input(server, error_body):
    login = f"dup{secrets.token_hex(3)}"
    with server.client() as http:
        assert _signup(http, login).status_code == 201
        error_body(_signup(http, login), 409)
        error_body(_signup(http, "admin"), 409)
        error_body(_signup(http, "bad login"), 400)
        error_body(_signup(http, f"x{login}", email="not-an-email"), 400)
        error_body(_signup(http, f"y{login}", password="short"), 400)
        error_body(http.post("/api/auth/signup", json={"login": "z", "email": "z@x.io"}), 400)
        error_body(
            http.post(
                "/api/auth/signup",
                json={
                    "login": "z",
                    "email": "z@x.io",
                    "password": PASSWORD,
                    "accountType": "admin",
                },
            ),
            400,
        )


def test_signups_with_colliding_slugs_get_distinct_domains(server):
    base = f"Slug{secrets.token_hex(3)}"
    with server.client() as http:
        first = _signup(http, base).json()["domain"]
        second = _signup(http, base.lower()).json()["domain"]
    assert first == f"/root/{base.lower()}/" and second != first
    assert second.startswith(f"/root/{base.lower()}-")


def test_signup_disabled_is_403(server_factory, error_body):
    closed = server_factory(signup=False)
    with closed.client() as http:
        error_body(_signup(http, f"closed{secrets.token_hex(3)}"), 403)


def test_signup_page_is_html(server):
    with server.client() as http:
        response = http.get("/signup")
    assert response.status_code == 200
    assert response.headers["content-type"].startswith("text/html")
    assert "<form" in response.text and "/api/auth/signup" in response.text


# -- tenancy ---------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def tenants(server, given_domain, given_user, token_for):
    """Two sibling domains (names that LIKE would confuse) with a user each."""
    tag = secrets.token_hex(3)
    a = given_domain(f"/root/t{tag}_a/")
    b = given_domain(f"/root/t{tag}xa/")  # "_" is a LIKE wildcard: must not match
    a_child = given_domain(f"/root/t{tag}_a/east/")
    search = [
        "GET users/search/usernames",
        "PATCH users/{id}",
        "DELETE users/{id}",
        "POST users",
        "PUT domains/{id}",
        "DELETE domains/{id}",
        "POST domains",
    ]
    user_a = given_user(f"ua{tag}", domain=a, permissions=search, email=f"ua{tag}@example.com")
    user_a_child = given_user(f"uac{tag}", domain=a_child)
    user_b = given_user(f"ub{tag}", domain=b, email=f"ub{tag}@example.com")
    return {
        "a": a,
        "b": b,
        "a_child": a_child,
        "user_a": user_a,
        "user_b": user_b,
        "user_a_child": user_a_child,
        "token_a": token_for(user_a),
        "token_b": token_for(user_b),
    }


def test_users_see_only_their_subtree_of_domains(server, tenants, error_body):
    with server.client(tenants["token_a"]) as http:
        assert http.get("/api/coiotedm/v3/domains").json() == [tenants["a"], tenants["a_child"]]
        assert http.get(f"/api/coiotedm/v3/domains{tenants['a_child']}").status_code == 200
        error_body(http.get(f"/api/coiotedm/v3/domains{tenants['b']}"), 404)
        error_body(http.get("/api/coiotedm/v3/domains/root/"), 404)
        error_body(
            http.put(f"/api/coiotedm/v3/domains{tenants['b']}", json={"newDescription": "mine"}),
            404,
        )
        error_body(http.delete(f"/api/coiotedm/v3/domains{tenants['b']}"), 404)
        error_body(http.post("/api/coiotedm/v3/domains", json={"id": tenants["b"] + "sub/"}), 403)
        error_body(http.post("/api/coiotedm/v3/domains", json={"id": "/root/escape/"}), 403)
        error_body(http.delete(f"/api/coiotedm/v3/domains{tenants['a']}"), 403)  # own domain
    with server.client(tenants["token_b"]) as http:
        assert http.get("/api/coiotedm/v3/domains").json() == [tenants["b"]]
        error_body(http.get(f"/api/coiotedm/v3/domains{tenants['a']}"), 404)


def test_users_of_other_domains_are_invisible(server, tenants, error_body):
    with server.client(tenants["token_a"]) as http:
        assert http.get(f"/api/coiotedm/v3/users/{tenants['user_a_child']}").status_code == 200
        error_body(http.get(f"/api/coiotedm/v3/users/{tenants['user_b']}"), 404)
        error_body(http.get("/api/coiotedm/v3/users/admin"), 404)
        error_body(
            http.patch(f"/api/coiotedm/v3/users/{tenants['user_b']}", json={"userEnabled": False}),
            404,
        )
        error_body(http.delete(f"/api/coiotedm/v3/users/{tenants['user_b']}"), 404)
        error_body(
            http.post(
                "/api/coiotedm/v3/users",
                json={
                    "login": f"x{tenants['user_a']}",
                    "password": PASSWORD,
                    "domain": tenants["b"],
                    "roles": ["Developer"],
                },
            ),
            404,
        )
        error_body(
            http.patch(
                f"/api/coiotedm/v3/users/{tenants['user_a_child']}", json={"domain": tenants["b"]}
            ),
            404,
        )
    with server.client(tenants["token_b"]) as http:
        error_body(http.get(f"/api/coiotedm/v3/users/{tenants['user_a']}"), 404)


def test_username_search_is_scoped_to_the_subtree(server, tenants):
    with server.client(tenants["token_a"]) as http:
        search = lambda **q: http.get("/api/coiotedm/v3/users/search/usernames", params=q)  # noqa: E731
        everyone = search().json()
        assert set(everyone) == {tenants["user_a"], tenants["user_a_child"]}
        assert search(domain=tenants["b"]).json() == []
        assert search(username=tenants["user_b"]).json() == []
        assert search(email=f"{tenants['user_b']}@example.com").json() == []
        assert search(email=f"{tenants['user_a'].upper()}@EXAMPLE.COM").json() == [
            tenants["user_a"]
        ]
        assert search(domain=tenants["a_child"]).json() == [tenants["user_a_child"]]
        assert search(username="%").json() == []  # LIKE wildcards are literal
        assert search(username="_").json() == []
        assert search(domain="../etc").status_code == 400
    with server.admin() as http:
        found = http.get(
            "/api/coiotedm/v3/users/search/usernames", params={"username": tenants["user_b"][:8]}
        ).json()
        assert tenants["user_b"] in found


def test_domain_admin_manages_its_own_subtree(server, tenants, error_body):
    with server.client(tenants["token_a"]) as http:
        sub = tenants["a"] + f"s{secrets.token_hex(2)}/"
        assert http.post("/api/coiotedm/v3/domains", json={"id": sub}).status_code == 201
        error_body(http.post("/api/coiotedm/v3/domains", json={"id": sub}), 409)
        assert (
            http.put(f"/api/coiotedm/v3/domains{sub}", json={"newDescription": "hello"}).status_code
            == 204
        )
        assert http.get(f"/api/coiotedm/v3/domains{sub}").json() == {
            "id": sub,
            "description": "hello",
        }
        error_body(http.delete(f"/api/coiotedm/v3/domains{tenants['a_child']}"), 409)  # has a user
        assert http.delete(f"/api/coiotedm/v3/domains{sub}").status_code == 204
        error_body(http.get(f"/api/coiotedm/v3/domains{sub}"), 404)


# -- grants ----------------------------------------------------------------------------------


def test_nobody_grants_what_they_do_not_hold(
    server, given_domain, given_user, given_role, token_for, error_body
):
    domain = given_domain()
    manager_role = given_role(
        ["POST users", "GET users/{id}", "PATCH users/{id}", "DELETE users/{id}", "GET domains"]
    )
    manager = given_user(domain=domain, roles=[manager_role])
    peer = given_user(domain=domain, roles=["Monitor"])
    with server.client(token_for(manager)) as http:
        new = {"login": f"n{secrets.token_hex(3)}", "password": PASSWORD, "domain": domain}
        error_body(http.post("/api/coiotedm/v3/users", json={**new, "roles": ["Admin"]}), 403)
        error_body(
            http.post(
                "/api/coiotedm/v3/users", json={**new, "permissions": ["DELETE devices/{id}"]}
            ),
            403,
        )
        error_body(
            http.post(
                "/api/coiotedm/v3/users",
                json={**new, "accountType": "admin", "roles": [manager_role]},
            ),
            403,
        )
        # The account type's default role is a grant too: a Developer holds 47 permissions.
        error_body(http.post("/api/coiotedm/v3/users", json=new), 403)
        error_body(
            http.post("/api/coiotedm/v3/users", json={**new, "roles": ["no-such-role"]}), 400
        )
        error_body(
            http.post(
                "/api/coiotedm/v3/users",
                json={**new, "roles": [manager_role], "permissions": ["GET no-such"]},
            ),
            400,
        )
        assert (
            http.post("/api/coiotedm/v3/users", json={**new, "roles": [manager_role]}).status_code
            == 201
        )
        error_body(
            http.patch(f"/api/coiotedm/v3/users/{new['login']}", json={"roles": ["Admin"]}), 403
        )
        # A more powerful peer (Monitor sees more than the manager) cannot be taken over.
        error_body(
            http.patch(f"/api/coiotedm/v3/users/{peer}", json={"password": "Taken-Over-Pa55"}), 403
        )
        error_body(http.delete(f"/api/coiotedm/v3/users/{peer}"), 403)
        assert (
            http.patch(
                f"/api/coiotedm/v3/users/{new['login']}", json={"userEnabled": False}
            ).status_code
            == 204
        )


def test_extra_permissions_per_user_and_permission_changes_apply_at_once(
    server, given_user, token_for
):
    login = given_user(roles=["Monitor"])
    token = token_for(login)
    with server.client(token) as http:
        assert http.post("/api/coiotedm/v3/domains", json={"id": "/root/pc1/"}).status_code == 403
    with server.admin() as http:
        assert (
            http.patch(
                f"/api/coiotedm/v3/users/{login}", json={"permissions": ["POST domains"]}
            ).status_code
            == 204
        )
        user = http.get(f"/api/coiotedm/v3/users/{login}").json()
        assert user["permissions"] == ["POST domains"] and user["roles"] == ["Monitor"]
    with server.client(token) as http:
        assert (
            http.post(
                "/api/coiotedm/v3/domains", json={"id": f"/root/pc{secrets.token_hex(3)}/"}
            ).status_code
            == 201
        )


def test_get_user_never_returns_a_password_or_hash(server, given_user):
    login = given_user()
    with server.admin() as http:
        response = http.get(f"/api/coiotedm/v3/users/{login}")
        listed = http.get("/api/admin/users", params={"limit": 1000})
    body = response.json()
    assert body["password"] == ""
    for text in (response.text, listed.text):
        assert "$argon2" not in text and PASSWORD not in text
    assert "totpSecret" not in body and "passwordHash" not in body
    assert body["login"] == login and body["active"] is True
    assert body["roles"] == ["Developer"] and body["superUser"] is False


# -- the Monitor profile ------------------------------------------------------------------


def test_monitor_reads_but_changes_nothing(server, given_user, given_domain, token_for, error_body):
    domain = given_domain()
    monitor = given_user(domain=domain, roles=["Monitor"])
    victim = given_user(domain=domain)
    with server.client(token_for(monitor)) as http:
        assert http.get(f"/api/coiotedm/v3/users/{victim}").status_code == 200
        assert http.get("/api/coiotedm/v3/domains").json() == [domain]
        assert http.get(f"/api/coiotedm/v3/domains{domain}").status_code == 200
        assert http.get("/api/coiotedm/v3/users/search/usernames").status_code == 200
        writes = [
            (
                "POST",
                "/api/coiotedm/v3/users",
                {"login": "m1", "password": PASSWORD, "domain": domain},
            ),
            ("PATCH", f"/api/coiotedm/v3/users/{victim}", {"userEnabled": False}),
            ("DELETE", f"/api/coiotedm/v3/users/{victim}", None),
            ("POST", "/api/coiotedm/v3/domains", {"id": domain + "x/"}),
            ("PUT", f"/api/coiotedm/v3/domains{domain}", {"newDescription": "x"}),
            ("DELETE", f"/api/coiotedm/v3/domains{domain}", None),
            ("POST", "/api/admin/roles", {"name": "m", "permissions": []}),
            ("PUT", "/api/admin/roles/UserProfileId_monitor", {"permissions": []}),
            ("DELETE", "/api/admin/roles/UserProfileId_monitor", None),
            (
                "POST",
                "/api/admin/service-accounts",
                {"clientId": "m", "realm": "r", "login": victim},
            ),
            ("DELETE", "/api/admin/service-accounts/m", None),
            ("POST", "/api/auth/tokens", {"name": "m"}),
        ]
        for method, path, body in writes:
            error_body(http.request(method, path, json=body), 403)
    with server.admin() as http:
        assert http.get(f"/api/coiotedm/v3/users/{victim}").json()["active"] is True


def test_builtin_and_custom_roles(server, error_body):
    with server.admin() as http:
        roles = {r["name"]: r for r in http.get("/api/admin/roles").json()}
        assert {
            "Admin",
            "Developer",
            "Business",
            "Standard",
            "Group",
            "Monitor",
            "API user",
        } <= set(roles)
        assert roles["Group"]["thingsGroupScoped"] is True
        assert roles["Monitor"]["profile"] == catalog.collapse_to_profile(
            roles["Monitor"]["permissions"]
        )
        custom = http.post(
            "/api/admin/roles",
            json={
                "name": f"custom-{secrets.token_hex(3)}",
                "profile": {"Users": ["view"]},
                "permissions": ["GET domains"],
            },
        )
        assert custom.status_code == 201, custom.text
        role = custom.json()
        assert set(role["permissions"]) == catalog.expand_profile({"Users": ["view"]}) | {
            "GET domains"
        }
        assert role["profile"]["Users"] == ["view"]
        error_body(http.post("/api/admin/roles", json={"name": role["name"]}), 409)
        error_body(
            http.post("/api/admin/roles", json={"name": "x", "profile": {"Nope": ["view"]}}), 400
        )
        error_body(http.put("/api/admin/roles/UserProfileId_admin", json={"permissions": []}), 403)
        error_body(http.delete("/api/admin/roles/UserProfileId_developer"), 403)
        updated = http.put(f"/api/admin/roles/{role['id']}", json={"permissions": ["GET devices"]})
        assert updated.json()["permissions"] == ["GET devices"]
        assert int(updated.json()["cas"]) > int(role["cas"])
        assert http.delete(f"/api/admin/roles/{role['id']}").status_code == 204
        error_body(http.get(f"/api/admin/roles/{role['id']}"), 404)
