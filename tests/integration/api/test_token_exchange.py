"""RFC 8693 token exchange with a configured issuer (shared key), tokens minted by PyJWT."""

from __future__ import annotations

import time

import jwt
import pytest

ISSUER = "https://idp.example.test"
KEY = "idp-shared-key-" + "x" * 40
EXCHANGE = "urn:ietf:params:oauth:grant-type:token-exchange"


@pytest.fixture(scope="module")
def exchanging(server_factory):
    return server_factory(
        token_exchange={"issuer": ISSUER, "shared_key": KEY, "audience": "meadowlark"}
    )


def _subject(login, *, key=KEY, issuer=ISSUER, exp_in=60, audience="meadowlark", **extra):
    claims = {
        "iss": issuer,
        "preferred_username": login,
        "aud": audience,
        "exp": int(time.time()) + exp_in,
        **extra,
    }
    return jwt.encode({k: v for k, v in claims.items() if v is not None}, key, algorithm="HS256")


def _exchange(http, token, path="/api/auth/oauth_password"):
    return http.post(
        path,
        data={
            "grant_type": EXCHANGE,
            "subject_token": token,
            "subject_token_type": "urn:ietf:params:oauth:token-type:jwt",
        },
    )


def test_exchange_maps_the_subject_to_a_user(exchanging, given_on):
    login = given_on(exchanging).user(roles=["Monitor"])
    with exchanging.client() as http:
        response = _exchange(http, _subject(login))
        assert response.status_code == 201, response.text
        body = response.json()
        assert body["issued_token_type"] == "urn:ietf:params:oauth:token-type:access_token"
        assert body["token_type"] == "Bearer" and body["expires_in"] == 300
        me = http.get("/api/auth/me", headers={"Authorization": f"Bearer {body['access_token']}"})
        assert me.json()["login"] == login
        iam = _exchange(http, _subject(login), "/iam/realms/any/protocol/openid-connect/token")
        assert iam.status_code == 200


@pytest.mark.parametrize(
    "change",
    [
        {"key": "another-key-" + "y" * 40},
        {"issuer": "https://evil.example"},
        {"exp_in": -120},
        {"exp_in": None},
        {"audience": "someone-else"},
        {"login": "no-such-user"},
    ],
)
def test_bad_subject_tokens_are_401(exchanging, given_on, change, error_body):
    change = dict(change)  # parameters are shared between the backends
    login = change.pop("login", None) or given_on(exchanging).user()
    if change.get("exp_in", 0) is None:
        token = jwt.encode(
            {"iss": ISSUER, "preferred_username": login, "aud": "meadowlark"},
            KEY,
            algorithm="HS256",
        )
    else:
        token = _subject(login, **change)
    with exchanging.client() as http:
        error_body(_exchange(http, token), 401)


def test_garbage_and_disabled_subjects(exchanging, given_on, error_body):
    login = given_on(exchanging).user()
    with exchanging.admin() as http:
        http.patch(f"/api/coiotedm/v3/users/{login}", json={"userEnabled": False})
    with exchanging.client() as http:
        error_body(_exchange(http, _subject(login)), 401)
        error_body(_exchange(http, "not-a-jwt"), 401)
        error_body(_exchange(http, jwt.encode({"iss": ISSUER}, KEY, algorithm="HS256")), 401)
        error_body(http.post("/api/auth/oauth_password", data={"grant_type": EXCHANGE}), 400)


def test_exchange_is_off_without_an_issuer(server, error_body):
    with server.client() as http:
        error_body(_exchange(http, _subject("admin")), 400)
