"""Recently verified Basic credentials, so that scripts authenticating every call with
HTTP Basic do not pay (and cannot make us pay) a full Argon2 verification per request.

Entries are keyed by an HMAC of the credential under a random per-process key: neither
the password nor a plain hash of it is kept. An entry names the user and the token
generation it was verified under; the caller re-checks that generation against the
store (as read at most ``PRINCIPAL_CACHE_SECONDS`` ago) on every use, which is the same
revocation signal access tokens use, so a password change, a disabled account or a
domain move invalidates it at once in this process and within that bound on other nodes.
"""

from __future__ import annotations

import hashlib
import hmac
import secrets
import time
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass


@dataclass(frozen=True, slots=True)
class VerifiedCredential:
    user_id: str
    generation: int
    expires_at: float


class VerifiedCredentialCache:
    def __init__(
        self,
        ttl_seconds: float,
        *,
        max_entries: int = 10_000,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._ttl = ttl_seconds
        self._max_entries = max_entries
        self._clock = clock
        self._key = secrets.token_bytes(32)
        self._entries: OrderedDict[bytes, VerifiedCredential] = OrderedDict()

    def _digest(self, login: str, password: str) -> bytes:
        text = f"{len(login)}:{login}:{password}".encode("utf-8", "surrogatepass")
        return hmac.digest(self._key, text, hashlib.sha256)

    def lookup(self, login: str, password: str) -> VerifiedCredential | None:
        key = self._digest(login, password)
        entry = self._entries.get(key)
        if entry is None:
            return None
        if entry.expires_at <= self._clock():
            del self._entries[key]
            return None
        return entry

    def remember(self, login: str, password: str, *, user_id: str, generation: int) -> None:
        key = self._digest(login, password)
        self._entries[key] = VerifiedCredential(user_id, generation, self._clock() + self._ttl)
        self._entries.move_to_end(key)
        while len(self._entries) > self._max_entries:
            self._entries.popitem(last=False)

    def forget(self, login: str, password: str) -> None:
        self._entries.pop(self._digest(login, password), None)

    def __len__(self) -> int:
        return len(self._entries)
