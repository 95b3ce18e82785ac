"""Verified callers, remembered for a moment so that a request costs no database read.

An entry is what a credential (an access token's session, a personal API token, a
verified Basic credential) was found to stand for when the store was last read: the
``Principal``, the token generation it was read under and the account's expiry.

Revocation stays immediate in the process that makes it: every change that can revoke
or narrow a caller (logout, password change, user disabled, deleted, moved or given other
roles or permissions, an API token revoked, a role changed, a service account deleted)
calls ``invalidate`` once its transaction has committed, and entries are dropped at
once. Another process or node learns of it from the store: no entry is used longer
than ``ttl_seconds`` after its read (``PRINCIPAL_CACHE_SECONDS``, 1 s), which bounds how
long a revocation made elsewhere can go unnoticed; a cross-process signal (PostgreSQL
LISTEN/NOTIFY) makes it immediate by calling ``invalidate`` as well, and hooks added
with ``on_invalidate`` learn of local revocations to pass them on.

A read that started before an invalidation is not stored after it (``epoch``), so a
reader racing a revocation cannot put the old state back.
"""

from __future__ import annotations

import time
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime

from meadowlark.auth.principal import Principal

PRINCIPAL_CACHE_SECONDS = 1.0


@dataclass(frozen=True, slots=True)
class CachedPrincipal:
    principal: Principal
    generation: int
    """The user's token generation when read; a credential of another one does not match."""
    account_expires_at: datetime | None
    secret_digest: str | None
    """For personal API tokens: the stored digest the presented secret must match."""
    read_at: float


class PrincipalCache:
    def __init__(
        self,
        ttl_seconds: float = PRINCIPAL_CACHE_SECONDS,
        *,
        max_entries: int = 50_000,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.ttl_seconds = ttl_seconds
        self._max_entries = max_entries
        self._clock = clock
        self._entries: OrderedDict[str, CachedPrincipal] = OrderedDict()
        self._by_user: dict[str, set[str]] = {}
        self._epoch = 0
        self._listeners: list[Callable[[str | None], None]] = []

    @property
    def epoch(self) -> int:
        """Take it before reading the store; pass it to ``store``."""
        return self._epoch

    def lookup(self, key: str) -> CachedPrincipal | None:
        entry = self._entries.get(key)
        if entry is None:
            return None
        if self._clock() - entry.read_at >= self.ttl_seconds:
            self._drop(key)
            return None
        return entry

    def store(
        self,
        key: str,
        epoch: int,
        principal: Principal,
        *,
        generation: int,
        account_expires_at: datetime | None,
        secret_digest: str | None = None,
    ) -> None:
        """Remember ``principal`` unless an invalidation happened since ``epoch``."""
        if epoch != self._epoch:
            return
        self._entries[key] = CachedPrincipal(
            principal, generation, account_expires_at, secret_digest, self._clock()
        )
        self._entries.move_to_end(key)
        self._by_user.setdefault(principal.user_id, set()).add(key)
        while len(self._entries) > self._max_entries:
            self._drop(next(iter(self._entries)))

    def _drop(self, key: str) -> None:
        entry = self._entries.pop(key, None)
        if entry is None:
            return
        keys = self._by_user.get(entry.principal.user_id)
        if keys is not None:
            keys.discard(key)
            if not keys:
                del self._by_user[entry.principal.user_id]

    def invalidate(self, user_id: str | None = None, *, notify: bool = True) -> None:
        """Forget what is known about ``user_id`` (everyone when ``None``).

        Call it after the change is committed. ``notify=False`` is for signals coming from
        other processes, so they are not echoed back to the ``on_invalidate`` hooks.
        """
        self._epoch += 1
        if user_id is None:
            self._entries.clear()
            self._by_user.clear()
        else:
            for key in self._by_user.pop(user_id, ()):
                self._entries.pop(key, None)
        if notify:
            for listener in self._listeners:
                listener(user_id)

    def on_invalidate(self, listener: Callable[[str | None], None]) -> None:
        """Call ``listener(user_id or None)`` on every local invalidation."""
        self._listeners.append(listener)

    def __len__(self) -> int:
        return len(self._entries)
