"""PrincipalCache: lifetime, invalidation per user and for all, the epoch guard, size."""

from __future__ import annotations

from meadowlark.auth.principal import Principal
from meadowlark.auth.principal_cache import PrincipalCache


class Clock:
    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


def _principal(user_id: str) -> Principal:
    return Principal(user_id, user_id, "/root/", "developer", frozenset({"GET domains"}), "bearer")


def _cache(ttl: float = 1.0, **kwargs: object) -> tuple[PrincipalCache, Clock]:
    clock = Clock()
    return PrincipalCache(ttl, clock=clock, **kwargs), clock  # type: ignore[arg-type]


def _store(cache: PrincipalCache, key: str, user_id: str, epoch: int | None = None) -> None:
    cache.store(
        key,
        cache.epoch if epoch is None else epoch,
        _principal(user_id),
        generation=0,
        account_expires_at=None,
    )


def test_an_entry_lives_for_the_lifetime_only():
    cache, clock = _cache(ttl=1.0)
    _store(cache, "session:a", "u1")
    clock.now = 0.99
    assert cache.lookup("session:a") is not None
    clock.now = 1.0
    assert cache.lookup("session:a") is None
    assert len(cache) == 0


def test_invalidating_a_user_drops_all_of_its_entries_and_only_those():
    cache, _ = _cache()
    _store(cache, "session:a", "u1")
    _store(cache, "basic:u1", "u1")
    _store(cache, "session:b", "u2")
    cache.invalidate("u1")
    assert cache.lookup("session:a") is None and cache.lookup("basic:u1") is None
    assert cache.lookup("session:b") is not None


def test_invalidating_everyone():
    cache, _ = _cache()
    _store(cache, "session:a", "u1")
    _store(cache, "session:b", "u2")
    cache.invalidate()
    assert len(cache) == 0


def test_a_read_started_before_an_invalidation_is_not_stored():
    cache, _ = _cache()
    epoch = cache.epoch  # a request starts reading the store
    cache.invalidate("u1")  # a revocation commits meanwhile
    _store(cache, "session:a", "u1", epoch)  # the read ends with the old state
    assert cache.lookup("session:a") is None


def test_hooks_hear_local_invalidations_not_signals_from_elsewhere():
    cache, _ = _cache()
    heard: list[str | None] = []
    cache.on_invalidate(heard.append)
    cache.invalidate("u1")
    cache.invalidate()
    cache.invalidate("u2", notify=False)
    assert heard == ["u1", None]


def test_the_oldest_entries_leave_first_when_full():
    cache, _ = _cache(max_entries=2)
    _store(cache, "session:a", "u1")
    _store(cache, "session:b", "u2")
    _store(cache, "session:c", "u3")
    assert cache.lookup("session:a") is None
    assert cache.lookup("session:b") is not None and cache.lookup("session:c") is not None
    cache.invalidate("u1")  # its entry already left: nothing breaks
    assert len(cache) == 2
