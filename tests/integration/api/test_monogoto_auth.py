"""Monogoto console ``POST /Auth`` against the seed example (seed 003), refresh rotation."""

from __future__ import annotations

import pytest

from meadowlark.auth import permissions as catalog

JSON_TYPES = {
    str: "string",
    bool: "boolean",
    int: "integer",
    float: "number",
    list: "array",
    dict: "object",
    type(None): "null",
}


def _json_type(value):
    return JSON_TYPES[type(value)]


def _assert_same_shape(example, actual, where="$"):
    """Every key of ``example`` is in ``actual`` with the same JSON type (recursively);
    the permission map's keys are data, so only its value shape is compared."""
    assert _json_type(actual) == _json_type(example), (where, actual)
    if isinstance(example, dict):
        if where.endswith(".Permissions"):
            for resource, actions in actual.items():
                assert isinstance(resource, str) and isinstance(actions, list)
                assert set(actions) <= {"view", "edit", "delete"}, (resource, actions)
            return
        missing = set(example) - set(actual)
        assert not missing, f"{where}: missing keys {sorted(missing)}"
        for key, value in example.items():
            _assert_same_shape(value, actual[key], f"{where}.{key}")
    elif isinstance(example, list) and example and actual:
        for item in actual:
            _assert_same_shape(example[0], item, f"{where}[]")


def test_the_seed_example_parses(seed_auth_example):
    assert list(seed_auth_example) == [
        "token",
        "refreshToken",
        "CustomerId",
        "UserId",
        "UserName",
        "Role",
        "Realm",
        "OrganizationId",
        "AccountSettings",
        "ThingsGroupIds",
        "UserProfile",
    ]
    assert set(seed_auth_example["UserProfile"]) == {
        "Permissions",
        "DateCreated",
        "Name",
        "Realm",
        "Type",
        "UserProfileId",
        "DateModified",
        "cas",
    }
    assert seed_auth_example["AccountSettings"] == {"TwoFactorAuthentication": False}


@pytest.mark.parametrize("encoding", ["json", "form"])
def test_auth_returns_every_key_of_the_seed(server, given_user, encoding, seed_auth_example):
    login = given_user(roles=["Standard"])
    credentials = {"UserName": login, "Password": "User-Test-Pa55word!"}
    with server.client() as http:
        response = (
            http.post("/Auth", json=credentials)
            if encoding == "json"
            else http.post("/Auth", data=credentials)
        )
    assert response.status_code == 200, response.text
    assert response.headers["cache-control"] == "no-store"
    body = response.json()
    _assert_same_shape(seed_auth_example, body)
    assert body["UserName"] == login
    assert body["AccountSettings"]["TwoFactorAuthentication"] is False
    assert body["ThingsGroupIds"] == []
    profile = body["UserProfile"]
    assert profile["Name"] == "Standard" and profile["Type"] == "USER_PROFILE"
    assert body["Role"] == profile["UserProfileId"] == "UserProfileId_standard"
    assert body["Realm"] == profile["Realm"] == "customer"
    assert body["CustomerId"].startswith("cid_")
    assert body["OrganizationId"].startswith("OrganizationId_")
    assert body["UserId"].startswith("UserId_")
    assert int(profile["cas"]) >= 1
    assert profile["DateModified"] >= profile["DateCreated"] > 1_500_000_000_000


def test_same_rights_on_both_surfaces(server, given_user, token_for):
    login = given_user(roles=["Monitor"])
    with server.client() as http:
        console = http.post(
            "/Auth", json={"UserName": login, "Password": "User-Test-Pa55word!"}
        ).json()
    with server.client(console["token"]) as http:
        via_console = set(http.get("/api/auth/me").json()["permissions"])
        assert http.get("/api/coiotedm/v3/domains").status_code == 200
        assert http.post("/api/coiotedm/v3/domains", json={"id": "/root/m/"}).status_code == 403
    with server.client(token_for(login)) as http:
        via_oauth = set(http.get("/api/auth/me").json()["permissions"])
    assert via_console == via_oauth
    assert console["UserProfile"]["Permissions"] == catalog.collapse_to_profile(via_oauth)


@pytest.mark.parametrize(
    "credentials",
    [
        {"UserName": "admin", "Password": "wrong-password"},
        {"UserName": "no-such-user", "Password": "whatever-pw"},
    ],
)
def test_bad_credentials_are_access_denied(server, credentials):
    with server.client() as http:
        for response in (
            http.post("/Auth", json=credentials),
            http.post("/Auth", data=credentials),
        ):
            assert response.status_code == 401
            assert response.text == "Access denied"


def test_missing_fields_are_400(server, error_body):
    with server.client() as http:
        error_body(http.post("/Auth", json={"UserName": "admin"}), 400)
        error_body(http.post("/Auth", json=["UserName", "admin"]), 400)
        error_body(
            http.post("/Auth", content=b"{", headers={"content-type": "application/json"}), 400
        )


def test_refresh_rotation_and_reuse_detection(server, given_user, error_body):
    login = given_user()
    with server.client() as http:
        first = http.post(
            "/Auth", json={"UserName": login, "Password": "User-Test-Pa55word!"}
        ).json()
        second = http.post("/Auth/refresh", json={"refreshToken": first["refreshToken"]})
        assert second.status_code == 200, second.text
        second = second.json()
        assert second["token"] != first["token"]
        assert second["refreshToken"] != first["refreshToken"]
        assert second["UserName"] == login
        # The OAuth surface rotates the same family.
        third = http.post("/api/auth/refresh", data={"refresh_token": second["refreshToken"]})
        assert third.status_code == 200 and third.json()["token_type"] == "Bearer"
        third = third.json()
        assert (
            http.get(
                "/api/auth/me", headers={"Authorization": f"Bearer {third['access_token']}"}
            ).status_code
            == 200
        )

        reuse = http.post("/Auth/refresh", json={"refreshToken": first["refreshToken"]})
        assert reuse.status_code == 401 and reuse.text == "Access denied"
        # The whole family is revoked: access tokens and the newest refresh token.
        for token in (first["token"], second["token"], third["access_token"]):
            error_body(http.get("/api/auth/me", headers={"Authorization": f"Bearer {token}"}), 401)
        error_body(
            http.post("/api/auth/refresh", data={"refresh_token": third["refresh_token"]}), 401
        )

        assert http.post("/Auth/refresh", json={"refreshToken": "garbage"}).status_code == 401
        assert (
            http.post(
                "/Auth/refresh", json={"refreshToken": "mlr_0123456789abcdef_nope"}
            ).status_code
            == 401
        )
        error_body(http.post("/Auth/refresh", json={}), 400)


def test_oauth_login_refresh_token_and_logout_ends_the_family(server, given_user, error_body):
    login = given_user()
    with server.client() as http:
        issued = http.post(
            "/api/auth/oauth_password", data={"username": login, "password": "User-Test-Pa55word!"}
        ).json()
        assert issued["refresh_token"].startswith("mlr_")
        assert (
            http.post(
                "/api/auth/logout", headers={"Authorization": f"Bearer {issued['access_token']}"}
            ).status_code
            == 204
        )
        error_body(
            http.post("/api/auth/refresh", json={"refreshToken": issued["refresh_token"]}), 401
        )


def test_password_change_kills_refresh_tokens(server, given_user, error_body):
    login = given_user()
    with server.client() as http:
        issued = http.post(
            "/Auth", json={"UserName": login, "Password": "User-Test-Pa55word!"}
        ).json()
    with server.admin() as http:
        http.patch(f"/api/coiotedm/v3/users/{login}", json={"password": "Changed-Pa55word"})
    with server.client() as http:
        assert (
            http.post("/Auth/refresh", json={"refreshToken": issued["refreshToken"]}).status_code
            == 401
        )
