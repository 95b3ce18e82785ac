"""TOTP two-factor authentication on both surfaces (pyotp as the authenticator app)."""

from __future__ import annotations

import base64

import pyotp

PASSWORD = "User-Test-Pa55word!"


def _oauth(http, login, **extra):
    return http.post(
        "/api/auth/oauth_password",
        data={"grant_type": "password", "username": login, "password": PASSWORD, **extra},
    )


def _console(http, login, **extra):
    return http.post("/Auth", json={"UserName": login, "Password": PASSWORD, **extra})


def test_enrol_confirm_login_recover_disable(server, given_user, token_for, error_body):
    login = given_user()
    token = token_for(login)
    with server.client(token) as http:
        enrolment = http.post("/api/auth/2fa/enroll")
        assert enrolment.status_code == 200, enrolment.text
        secret = enrolment.json()["secret"]
        assert enrolment.json()["otpauthUri"].startswith("otpauth://totp/")
        totp = pyotp.TOTP(secret)
        # Not active until confirmed: login without a code still works.
        with server.client() as anon:
            assert _oauth(anon, login).status_code == 201
        error_body(http.post("/api/auth/2fa/confirm", json={"code": "000000"}), 400)
        confirmed = http.post("/api/auth/2fa/confirm", json={"code": totp.now()})
        assert confirmed.status_code == 200, confirmed.text
        codes = confirmed.json()["recoveryCodes"]
        assert len(codes) == 10
        error_body(http.post("/api/auth/2fa/enroll"), 400)  # already on
        assert http.get(f"/api/coiotedm/v3/users/{login}").json()["twoFactorAuthentication"]

    with server.client() as http:
        error_body(_oauth(http, login), 401)
        error_body(_oauth(http, login, otp="123456"), 401)
        missing = _console(http, login)
        assert missing.status_code == 401 and missing.text.startswith("Access denied")
        assert _console(http, login, TwoFactorCode="123456").status_code == 401
        raw = base64.b64encode(f"{login}:{PASSWORD}".encode()).decode()
        error_body(http.get("/api/auth/me", headers={"Authorization": f"Basic {raw}"}), 401)

        assert _oauth(http, login, otp=totp.now()).status_code == 201
        assert _oauth(http, login, totp=totp.now()).status_code == 201
        console = _console(http, login, TwoFactorCode=totp.now())
        assert console.status_code == 200, console.text
        assert console.json()["AccountSettings"]["TwoFactorAuthentication"] is True
        with_header = http.post(
            "/api/auth/oauth_password",
            data={"username": login, "password": PASSWORD},
            headers={"X-Meadowlark-OTP": totp.now()},
        )
        assert with_header.status_code == 201

        # A recovery code works exactly once, on either surface.
        assert _oauth(http, login, otp=codes[0]).status_code == 201
        error_body(_oauth(http, login, otp=codes[0]), 401)
        assert _console(http, login, TwoFactorCode=codes[1]).status_code == 200
        assert _console(http, login, TwoFactorCode=codes[1]).status_code == 401

    with server.client(token) as http:
        error_body(http.post("/api/auth/2fa/recovery-codes", json={"code": "000000"}), 403)
        fresh = http.post("/api/auth/2fa/recovery-codes", json={"code": totp.now()})
        assert fresh.status_code == 200
        new_codes = fresh.json()["recoveryCodes"]
    with server.client() as http:
        error_body(_oauth(http, login, otp=codes[2]), 401)  # old codes were replaced
        assert _oauth(http, login, otp=new_codes[0]).status_code == 201

    with server.client(token) as http:
        error_body(http.request("DELETE", "/api/auth/2fa", json={"code": "000000"}), 403)
        assert http.request("DELETE", "/api/auth/2fa", json={"code": totp.now()}).status_code == 204
        error_body(http.request("DELETE", "/api/auth/2fa", json={"code": totp.now()}), 400)
    with server.client() as http:
        assert _oauth(http, login).status_code == 201
        assert _console(http, login).json()["AccountSettings"]["TwoFactorAuthentication"] is False


def test_confirm_without_enrolment_is_400(server, given_user, token_for, error_body):
    with server.client(token_for(given_user())) as http:
        error_body(http.post("/api/auth/2fa/confirm", json={"code": "123456"}), 400)
        error_body(http.post("/api/auth/2fa/recovery-codes", json={"code": "123456"}), 400)
