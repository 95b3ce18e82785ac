"""Time-based one-time passwords (RFC 6238) and recovery codes."""

from __future__ import annotations

import secrets

import pyotp

ISSUER_NAME = "Meadowlark"
RECOVERY_CODE_COUNT = 10


def new_secret() -> str:
    return pyotp.random_base32()


def provisioning_uri(secret: str, login: str) -> str:
    return pyotp.TOTP(secret).provisioning_uri(name=login, issuer_name=ISSUER_NAME)


def verify_code(secret: str, code: str) -> bool:
    """Accept the current code and the one before/after it (clock drift of one step)."""
    normalized = code.strip().replace(" ", "")
    if not normalized.isdigit() or len(normalized) != 6:
        return False
    return pyotp.TOTP(secret).verify(normalized, valid_window=1)


def new_recovery_codes() -> list[str]:
    return [f"{secrets.token_hex(4)}-{secrets.token_hex(4)}" for _ in range(RECOVERY_CODE_COUNT)]
