from __future__ import annotations

import time

import pyotp

from meadowlark.auth import totp


def test_codes_of_the_current_and_adjacent_steps_are_accepted():
    secret = totp.new_secret()
    generator = pyotp.TOTP(secret)
    now = time.time()
    assert totp.verify_code(secret, generator.at(now))
    assert totp.verify_code(secret, generator.at(now - 30))
    assert totp.verify_code(secret, " " + generator.at(now)[:3] + " " + generator.at(now)[3:])
    assert not totp.verify_code(secret, generator.at(now - 120))


def test_malformed_codes_are_refused():
    secret = totp.new_secret()
    for code in ("", "12345", "1234567", "abcdef", "１２３４５６", "12345\n"):
        assert not totp.verify_code(secret, code)


def test_provisioning_uri_and_recovery_codes():
    uri = totp.provisioning_uri(totp.new_secret(), "bob@example.com")
    assert uri.startswith("otpauth://totp/Meadowlark:bob%40example.com?")
    assert "issuer=Meadowlark" in uri
    codes = totp.new_recovery_codes()
    assert len(codes) == totp.RECOVERY_CODE_COUNT == len(set(codes))
    assert all(len(code) == 17 and code[8] == "-" for code in codes)
