"""Signed access tokens (JWT) and opaque secrets (refresh, personal API tokens).

Opaque secrets look like ``<prefix>_<id>_<secret>``: the id finds the row, the secret is
compared in constant time against its stored SHA-256 digest.
"""

from __future__ import annotations

import hashlib
import hmac
import math
import secrets
import uuid
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

import jwt

ISSUER = "meadowlark"
ALGORITHM = "HS256"
API_TOKEN_PREFIX = "mlk"  # noqa: S105 - a prefix, not a secret
REFRESH_TOKEN_PREFIX = "mlr"  # noqa: S105


class InvalidTokenError(Exception):
    """The token is malformed, forged or expired."""


@dataclass(frozen=True, slots=True)
class AccessClaims:
    user_id: str
    session_id: str
    generation: int
    expires_at: datetime


def issue_access_token(
    *, key: str, user_id: str, session_id: str, generation: int, now: datetime, lifetime: int
) -> str:
    payload = {
        "iss": ISSUER,
        "sub": user_id,
        "sid": session_id,
        "gen": generation,
        "iat": int(now.timestamp()),
        "exp": math.ceil((now + timedelta(seconds=lifetime)).timestamp()),
        "jti": uuid.uuid4().hex,
    }
    return jwt.encode(payload, key, algorithm=ALGORITHM)


def decode_access_token(token: str, *, key: str) -> AccessClaims:
    try:
        payload = jwt.decode(
            token,
            key,
            algorithms=[ALGORITHM],
            issuer=ISSUER,
            options={"require": ["exp", "sub", "sid", "gen", "iss"]},
        )
        return AccessClaims(
            user_id=str(payload["sub"]),
            session_id=str(payload["sid"]),
            generation=int(payload["gen"]),
            expires_at=datetime.fromtimestamp(int(payload["exp"]), UTC),
        )
    except (jwt.PyJWTError, ValueError, TypeError) as exc:
        raise InvalidTokenError(str(exc)) from exc


class ClaimsCache:
    """Remembers verified claims per token string, so a token's signature is checked once.

    Expiry is checked on every use; the cache holds at most ``size`` tokens.
    """

    def __init__(self, key: str, size: int = 50_000) -> None:
        self._key = key
        self._size = size
        self._verified: dict[str, AccessClaims] = {}

    def decode(self, token: str) -> AccessClaims:
        claims = self._verified.get(token)
        if claims is None:
            claims = decode_access_token(token, key=self._key)
            if len(self._verified) >= self._size:
                self._verified.clear()
            self._verified[token] = claims
        if claims.expires_at <= datetime.now(UTC):
            self._verified.pop(token, None)
            raise InvalidTokenError("token expired")
        return claims


def digest(secret: str) -> str:
    return hashlib.sha256(secret.encode()).hexdigest()


def new_opaque_token(prefix: str) -> tuple[str, str, str]:
    """A fresh ``(token, id, digest_of_secret)``; only the digest is stored."""
    token_id = secrets.token_hex(8)
    secret = secrets.token_urlsafe(32)
    return f"{prefix}_{token_id}_{secret}", token_id, digest(secret)


def split_opaque_token(token: str, prefix: str) -> tuple[str, str] | None:
    """``(id, secret)`` of a well-formed opaque token with ``prefix``, else ``None``."""
    parts = token.split("_", 2)
    if len(parts) != 3 or parts[0] != prefix or len(parts[1]) != 16 or not parts[2]:
        return None
    return parts[1], parts[2]


def secret_matches(secret: str, stored_digest: str) -> bool:
    return hmac.compare_digest(digest(secret), stored_digest)
