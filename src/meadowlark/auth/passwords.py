"""Argon2 password hashing, run off the event loop."""

from __future__ import annotations

import asyncio
from functools import cache

from pwdlib import PasswordHash
from pwdlib.hashers.argon2 import Argon2Hasher

_hasher = PasswordHash((Argon2Hasher(),))


@cache
def _dummy_hash() -> str:
    return _hasher.hash("a password no account has")


async def hash_password(password: str) -> str:
    return await asyncio.to_thread(_hasher.hash, password)


async def verify_password(password: str, password_hash: str | None) -> tuple[bool, str | None]:
    """Check ``password``; returns (valid, replacement hash if parameters are outdated).

    With ``password_hash=None`` (unknown user) a dummy hash is checked so that the reply
    takes as long as for a real account.
    """
    if password_hash is None:
        await asyncio.to_thread(_hasher.verify_and_update, password, _dummy_hash())
        return False, None
    try:
        return await asyncio.to_thread(_hasher.verify_and_update, password, password_hash)
    except Exception:  # a corrupt stored hash must read as "wrong password", not a 500
        return False, None
