"""Roles belong to a domain: siblings never see them, built-ins are read-only, and a role
is held only by users of its own subtree (regression for the outside test's finding that
an admin of one domain could read, rewrite and delete another domain's roles)."""

from __future__ import annotations

import secrets

import pytest

ROLES = "/api/admin/roles"


@pytest.fixture(scope="module")
def tenants(given):
    """Two sibling domains with an administrator each, and a subdomain of the first."""
    a, b = given.domain(f"/root/ra{secrets.token_hex(3)}/"), given.domain()
    a_child = given.domain(f"{a}child/")
    admin_a = given.token(given.user(domain=a, account_type="admin"))
    admin_b = given.token(given.user(domain=b, account_type="admin"))
    admin_child = given.token(given.user(domain=a_child, account_type="admin"))
    return {"a": a, "b": b, "a_child": a_child, "A": admin_a, "B": admin_b, "C": admin_child}


def _create(server, token, name=None, permissions=("GET devices",), **extra):
    body = {"name": name or f"r-{secrets.token_hex(4)}", "permissions": list(permissions), **extra}
    with server.client(token) as http:
        return http.post(ROLES, json=body)


def _role_names(server, token):
    with server.client(token) as http:
        response = http.get(ROLES)
    assert response.status_code == 200, response.text
    return {role["name"]: role for role in response.json()}


def test_a_sibling_domain_cannot_read_change_or_delete_a_role(server, tenants, error_body):
    created = _create(server, tenants["B"])
    assert created.status_code == 201, created.text
    role = created.json()
    assert role["domain"] == tenants["b"] and role["builtin"] is False
    with server.client(tenants["A"]) as http:
        answers = {
            "get": http.get(f"{ROLES}/{role['id']}"),
            "put": http.put(f"{ROLES}/{role['id']}", json={"permissions": ["GET domains"]}),
            "delete": http.delete(f"{ROLES}/{role['id']}"),
        }
        missing = {
            "get": http.get(f"{ROLES}/UserProfileId_none"),
            "put": http.put(f"{ROLES}/UserProfileId_none", json={"permissions": ["GET domains"]}),
            "delete": http.delete(f"{ROLES}/UserProfileId_none"),
        }
    for method, answer in answers.items():  # the same answer as for a role that never was
        assert error_body(answer, 404)["code"] == error_body(missing[method], 404)["code"]
    assert role["name"] not in _role_names(server, tenants["A"])
    # Nothing changed: the owner still sees it exactly as created.
    with server.client(tenants["B"]) as http:
        assert http.get(f"{ROLES}/{role['id']}").json() == role
    assert role["name"] in _role_names(server, tenants["B"])


def test_built_in_roles_are_visible_everywhere_and_read_only(server, tenants, error_body):
    for token in (tenants["A"], server.admin_token):
        names = _role_names(server, token)
        assert {"Admin", "Developer", "Monitor"} <= set(names)
        monitor = names["Monitor"]
        assert monitor["builtin"] is True and monitor["domain"] is None
        with server.client(token) as http:
            error_body(http.put(f"{ROLES}/{monitor['id']}", json={"permissions": []}), 403)
            error_body(http.delete(f"{ROLES}/{monitor['id']}"), 403)
            assert http.get(f"{ROLES}/{monitor['id']}").json() == monitor


def test_a_parent_role_is_visible_below_but_changed_only_where_it_belongs(
    server, tenants, error_body
):
    parent_role = _create(server, tenants["A"]).json()
    child_role = _create(server, tenants["C"]).json()
    assert child_role["domain"] == tenants["a_child"]
    with server.client(tenants["C"]) as http:
        assert http.get(f"{ROLES}/{parent_role['id']}").status_code == 200
        error_body(
            http.put(f"{ROLES}/{parent_role['id']}", json={"permissions": ["GET domains"]}), 403
        )
        error_body(http.delete(f"{ROLES}/{parent_role['id']}"), 403)
    with server.client(tenants["A"]) as http:  # the parent manages its subdomain's roles
        changed = http.put(f"{ROLES}/{child_role['id']}", json={"permissions": ["GET domains"]})
        assert changed.status_code == 200 and changed.json()["permissions"] == ["GET domains"]
    assert child_role["name"] in _role_names(server, tenants["A"])
    assert child_role["name"] not in _role_names(server, tenants["B"])


def test_role_names_are_unique_along_a_line_of_domains_but_free_across_siblings(
    server, tenants, error_body
):
    name = f"Operators-{secrets.token_hex(3)}"
    assert _create(server, tenants["A"], name).status_code == 201
    assert _create(server, tenants["B"], name).status_code == 201  # a sibling: no clash
    error_body(_create(server, tenants["C"], name), 409)  # below an owner of the name
    error_body(_create(server, tenants["A"], "Monitor"), 409)  # a built-in name
    child_only = f"Child-{secrets.token_hex(3)}"
    assert _create(server, tenants["C"], child_only).status_code == 201
    error_body(_create(server, tenants["A"], child_only), 409)  # above an owner of the name


def test_a_role_is_held_only_by_users_its_domain_can_see(
    server, given, tenants, token_for, error_body
):
    name = f"Readers-{secrets.token_hex(3)}"
    root_made = _create(server, server.admin_token, name, ["GET domains"], domain=tenants["b"])
    assert root_made.status_code == 201 and root_made.json()["domain"] == tenants["b"]
    user_a = given.user(domain=tenants["a"], roles=["Monitor"])
    with server.admin() as http:
        # Even the root administrator cannot give a user of /a/ a role owned by /b/.
        error_body(
            http.patch(f"/api/coiotedm/v3/users/{user_a}", json={"roles": [name]}),
            400,
        )
        error_body(
            http.post(
                "/api/coiotedm/v3/users",
                json={
                    "login": f"u{secrets.token_hex(4)}",
                    "password": "User-Test-Pa55word!",
                    "domain": tenants["a"],
                    "roles": [name],
                },
            ),
            400,
        )
    # A's administrator cannot name B's role either, and A's own role works for A's users.
    with server.client(tenants["A"]) as http:
        error_body(http.patch(f"/api/coiotedm/v3/users/{user_a}", json={"roles": [name]}), 400)
    own = _create(server, tenants["A"], permissions=["GET domains"]).json()
    with server.client(tenants["A"]) as http:
        response = http.patch(f"/api/coiotedm/v3/users/{user_a}", json={"roles": [own["name"]]})
        assert response.status_code == 204, response.text
    with server.client(token_for(user_a)) as http:
        assert "GET domains" in http.get("/api/auth/me").json()["permissions"]


def test_moving_a_user_re_checks_the_roles_it_keeps(server, given, tenants, error_body):
    role = _create(server, tenants["A"], permissions=["GET domains"]).json()
    login = given.user(domain=tenants["a"], roles=[role["name"]])
    with server.admin() as http:
        error_body(
            http.patch(f"/api/coiotedm/v3/users/{login}", json={"domain": tenants["b"]}), 400
        )
        assert http.get(f"/api/coiotedm/v3/users/{login}").json()["domain"] == tenants["a"]
        moved = http.patch(
            f"/api/coiotedm/v3/users/{login}", json={"domain": tenants["b"], "roles": ["Monitor"]}
        )
        assert moved.status_code == 204, moved.text


def test_deleting_a_domain_deletes_its_roles(server, given, error_body):
    domain = given.domain()
    login = given.user(domain=domain, account_type="admin")
    role = _create(server, given.token(login)).json()
    with server.admin() as http:
        assert http.delete(f"/api/coiotedm/v3/users/{login}").status_code == 204
        assert http.delete(f"/api/coiotedm/v3/domains{domain}").status_code == 204
        error_body(http.get(f"{ROLES}/{role['id']}"), 404)
