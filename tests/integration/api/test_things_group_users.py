"""A user limited to Things groups (the console's ``ThingsGroupIds``), set through the
Coiote users API: validated against what the caller and the user's domain see, shown by
``GET users/{login}`` and ``POST /Auth``, applied to tokens already handed out, and never
widened by a caller that is itself limited to groups."""

from __future__ import annotations

import secrets

import pytest

from meadowlark.connectivity.identifiers import with_check_digit

USERS = "/api/coiotedm/v3/users"
PASSWORD = "User-Test-Pa55word!"
USER_ADMIN = ["POST users", "PATCH users/{id}", "GET users/{id}", "DELETE users/{id}"]


def _iccid(n: int) -> str:
    return with_check_digit(f"8944{n:014d}")


@pytest.fixture(scope="module")
def world(server, given):
    """Domain A with groups g1/g2 and a Thing in each; its subdomain; sibling B with gB."""
    tag = secrets.token_hex(3)
    a = given.domain(f"/root/tga{tag}/")
    a_child = given.domain(f"{a}child/")
    b = given.domain(f"/root/tgb{tag}/")
    ca_a = given.token(given.user(f"ca-a-{tag}", domain=a, roles=["Customer Admin"]))
    ca_b = given.token(given.user(f"ca-b-{tag}", domain=b, roles=["Customer Admin"]))
    groups, things = {}, {}
    base = secrets.randbelow(10**9) * 10
    for n, (token, name) in enumerate([(ca_a, "g1"), (ca_a, "g2"), (ca_b, "gB")]):
        with server.client(token) as http:
            created = http.post("/thingsgroup", json={"ThingsGroupName": name})
            assert created.status_code == 201, created.text
            groups[name] = created.json()["ThingsGroupId"]
            thing = http.post(
                "/thing", json={"ICCID": _iccid(base + n), "ThingsGroupId": groups[name]}
            )
            assert thing.status_code == 201, thing.text
            things[name] = thing.json()["ThingId"]
    admin_a = given.token(
        given.user(f"adm-a-{tag}", domain=a, roles=["Customer Admin"], permissions=USER_ADMIN)
    )
    return {"tag": tag, "a": a, "a_child": a_child, "b": b, "groups": groups,
            "things": things, "admin_a": admin_a, "ca_a": ca_a}  # fmt: skip


def _new_user(server, token, domain, **extra):
    login = f"u-{secrets.token_hex(4)}"
    body = {"login": login, "password": PASSWORD, "domain": domain,
            "roles": ["Customer Admin"], **extra}  # fmt: skip
    with server.client(token) as http:
        return login, http.post(USERS, json=body)


def _visible(server, token, things):
    with server.client(token) as http:
        return {
            name for name, tid in things.items() if http.get(f"/thing/{tid}").status_code == 200
        }


def test_set_at_creation_shown_and_applied(server, given, world):
    g1 = world["groups"]["g1"]
    login, created = _new_user(server, world["admin_a"], world["a"], thingsGroupIds=[g1])
    assert created.status_code == 201, created.text
    with server.client(world["admin_a"]) as http:
        assert http.get(f"{USERS}/{login}").json()["thingsGroupIds"] == [g1]
    with server.client() as http:
        auth = http.post("/Auth", json={"UserName": login, "Password": PASSWORD}).json()
    assert auth["ThingsGroupIds"] == [g1]
    assert _visible(server, auth["token"], world["things"]) == {"g1"}
    with server.client(auth["token"]) as http:
        listed = http.get("/thingsgroups").json()
    assert [g["ThingsGroupId"] for g in listed] == [g1]


def test_a_patch_applies_at_once_to_tokens_in_hand(server, given, world):
    groups = world["groups"]
    login, created = _new_user(server, world["admin_a"], world["a"])
    assert created.status_code == 201, created.text
    token = given.token(login)
    assert _visible(server, token, world["things"]) == {"g1", "g2"}
    with server.client(world["admin_a"]) as http:
        patched = http.patch(f"{USERS}/{login}", json={"thingsGroupIds": [groups["g2"]]})
        assert patched.status_code == 204, patched.text
        assert _visible(server, token, world["things"]) == {"g2"}
        # Other changes leave the groups alone; an empty list lifts the limit.
        assert http.patch(f"{USERS}/{login}", json={"emailVerified": True}).status_code == 204
        assert http.get(f"{USERS}/{login}").json()["thingsGroupIds"] == [groups["g2"]]
        assert http.patch(f"{USERS}/{login}", json={"thingsGroupIds": []}).status_code == 204
    assert _visible(server, token, world["things"]) == {"g1", "g2"}


def test_groups_the_caller_or_the_user_domain_cannot_see_are_unknown(server, world, error_body):
    groups = world["groups"]
    cases = [
        (world["a"], ["ThingsGroupId_nope"]),  # does not exist
        (world["a"], [groups["gB"]]),  # a sibling domain's
        (world["a_child"], [groups["g1"]]),  # above the user's domain
    ]
    for domain, ids in cases:
        _, created = _new_user(server, world["admin_a"], domain, thingsGroupIds=ids)
        assert error_body(created, 404)["code"] == 4041, (domain, ids)
    login, created = _new_user(server, world["admin_a"], world["a"])
    with server.client(world["admin_a"]) as http:
        for ids in (["ThingsGroupId_nope"], [groups["g1"], groups["gB"]]):
            error_body(http.patch(f"{USERS}/{login}", json={"thingsGroupIds": ids}), 404)
        for bad in ("g1", [""], [1], ["x" * 200], ["g"] * 101):
            answer = http.patch(f"{USERS}/{login}", json={"thingsGroupIds": bad})
            assert 400 <= answer.status_code < 500, (bad, answer.status_code)
            assert set(answer.json()) >= {"error", "message", "code"}
        # Moving the user under its groups' domain keeps them only if they stay visible.
        assert (
            http.patch(f"{USERS}/{login}", json={"thingsGroupIds": [groups["g1"]]}).status_code
            == 204
        )
        error_body(http.patch(f"{USERS}/{login}", json={"domain": world["a_child"]}), 404)
        assert http.get(f"{USERS}/{login}").json()["domain"] == world["a"]


def test_a_limited_caller_never_widens(server, given, world, error_body):
    groups = world["groups"]
    limited_login, created = _new_user(
        server, world["admin_a"], world["a"], permissions=USER_ADMIN, thingsGroupIds=[groups["g1"]]
    )
    assert created.status_code == 201, created.text
    limited = given.token(limited_login)
    # Unlimited or another group: refused; a subset of its own: fine.
    _, unlimited = _new_user(server, limited, world["a"])
    error_body(unlimited, 403)
    _, other = _new_user(server, limited, world["a"], thingsGroupIds=[groups["g2"]])
    error_body(other, 404)
    same_login, same = _new_user(server, limited, world["a"], thingsGroupIds=[groups["g1"]])
    assert same.status_code == 201, same.text
    with server.client(limited) as http:
        error_body(http.patch(f"{USERS}/{same_login}", json={"thingsGroupIds": []}), 403)
        error_body(
            http.patch(f"{USERS}/{same_login}", json={"thingsGroupIds": [groups["g2"]]}), 404
        )
        # Its own limit is not its own to change.
        error_body(http.patch(f"{USERS}/{limited_login}", json={"thingsGroupIds": []}), 403)
        # An account seeing more than it does is not its to manage.
        wide_login, wide = _new_user(server, world["admin_a"], world["a"])
        assert wide.status_code == 201
        error_body(http.patch(f"{USERS}/{wide_login}", json={"emailVerified": True}), 403)
        error_body(http.delete(f"{USERS}/{wide_login}"), 403)
    with server.client(world["admin_a"]) as http:
        assert http.get(f"{USERS}/{same_login}").json()["thingsGroupIds"] == [groups["g1"]]
