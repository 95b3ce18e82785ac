"""Scripts that authenticate every call with HTTP Basic (as Coiote clients and vendor
sample scripts do) keep working under the default login throttling, without an Argon2
verification per call; failures still lock, and revocation applies at once."""

from __future__ import annotations

import base64
import time

import pytest

from meadowlark.core import identity

PASSWORD = "User-Test-Pa55word!"
DEFAULT_LIMITS = {
    "login_failures_per_account": 5,
    "login_failures_per_ip": 30,
    "login_window_seconds": 300,
}


def _basic(login: str, password: str) -> dict[str, str]:
    raw = base64.b64encode(f"{login}:{password}".encode()).decode()
    return {"Authorization": f"Basic {raw}"}


@pytest.fixture(scope="module")
def throttled(server_factory):
    """A server with the default login throttling (the module's server has none)."""
    return server_factory(rate_limits=DEFAULT_LIMITS)


@pytest.fixture
def argon2_verifications(monkeypatch):
    """Counts full password verifications made by the identity service."""
    calls = []
    original = identity.verify_password

    async def counting(password, stored):
        calls.append(password)
        return await original(password, stored)

    monkeypatch.setattr(identity, "verify_password", counting)
    return calls


def test_two_hundred_basic_calls_in_a_minute_all_succeed_with_one_verification(
    throttled, given_on, argon2_verifications
):
    login = given_on(throttled).user(roles=["Developer"])
    argon2_verifications.clear()
    started = time.monotonic()
    with throttled.client(headers=_basic(login, PASSWORD)) as http:
        statuses = [http.get("/api/coiotedm/v3/domains").status_code for _ in range(200)]
    assert time.monotonic() - started < 60
    assert statuses == [200] * 200
    assert len(argon2_verifications) == 1


def test_failures_still_lock_the_account_and_the_address(throttled, given_on, error_body):
    victim = given_on(throttled).user()
    with throttled.client() as http:
        for _ in range(5):
            error_body(http.get("/api/auth/me", headers=_basic(victim, "wrong-password")), 401)
        locked = http.get("/api/auth/me", headers=_basic(victim, PASSWORD))
        error_body(locked, 429)
        assert int(locked.headers["retry-after"]) >= 1


def test_failures_from_one_address_lock_it(server_factory, given_on, error_body):
    limited = server_factory(rate_limits={**DEFAULT_LIMITS, "login_failures_per_ip": 3})
    user = given_on(limited).user()
    with limited.client() as http:
        for i in range(3):
            error_body(http.get("/api/auth/me", headers=_basic(f"ghost-{i}", "nope-nope")), 401)
        error_body(http.get("/api/auth/me", headers=_basic(user, PASSWORD)), 429)


def test_a_password_change_makes_the_remembered_credential_fail_at_once(
    throttled, given_on, error_body
):
    login = given_on(throttled).user()
    with throttled.client(headers=_basic(login, PASSWORD)) as http:
        assert http.get("/api/auth/me").status_code == 200  # now remembered
        changed = http.put(
            "/api/auth/password",
            json={"currentPassword": PASSWORD, "newPassword": "Brand-New-Pa55"},
        )
        assert changed.status_code == 204, changed.text
        error_body(http.get("/api/auth/me"), 401)
    with throttled.client(headers=_basic(login, "Brand-New-Pa55")) as http:
        assert http.get("/api/auth/me").status_code == 200


def test_disabling_or_moving_an_account_applies_to_remembered_credentials(
    throttled, given_on, error_body
):
    given = given_on(throttled)
    other_domain = given.domain()
    login = given.user(roles=["Developer"])
    with throttled.client(headers=_basic(login, PASSWORD)) as http:
        assert http.get("/api/auth/me").json()["domain"] == "/root/"
        with throttled.admin() as admin:
            moved = admin.patch(f"/api/coiotedm/v3/users/{login}", json={"domain": other_domain})
            assert moved.status_code == 204, moved.text
        assert http.get("/api/auth/me").json()["domain"] == other_domain
        with throttled.admin() as admin:
            disabled = admin.patch(f"/api/coiotedm/v3/users/{login}", json={"userEnabled": False})
            assert disabled.status_code == 204
        error_body(http.get("/api/auth/me"), 401)


def test_revocation_reaches_a_credential_remembered_by_another_node(
    throttled, server_factory, given_on, error_body
):
    """Two servers on one database: node 2 changes the password, node 1 refuses at once."""
    node_2 = server_factory(data_dir=throttled.settings.data_dir, rate_limits=DEFAULT_LIMITS)
    login = given_on(throttled).user()
    with throttled.client(headers=_basic(login, PASSWORD)) as node_1:
        assert node_1.get("/api/auth/me").status_code == 200
        with node_2.admin() as admin:
            changed = admin.patch(
                f"/api/coiotedm/v3/users/{login}", json={"password": "Other-Node-Pa55"}
            )
            assert changed.status_code == 204, changed.text
        error_body(node_1.get("/api/auth/me"), 401)
