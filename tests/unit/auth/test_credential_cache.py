"""The memory of verified Basic credentials: keyed by HMAC, bounded, short-lived."""

from __future__ import annotations

from meadowlark.auth.credential_cache import VerifiedCredentialCache


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def test_a_remembered_credential_is_found_until_it_expires():
    clock = Clock()
    cache = VerifiedCredentialCache(60, clock=clock)
    cache.remember("alice", "s3cret-pass", user_id="u1", generation=4)
    found = cache.lookup("alice", "s3cret-pass")
    assert found is not None and (found.user_id, found.generation) == ("u1", 4)
    assert cache.lookup("alice", "other-pass") is None
    assert cache.lookup("alice:s3cret", "-pass") is None  # the split between the two matters
    clock.now += 60
    assert cache.lookup("alice", "s3cret-pass") is None
    assert len(cache) == 0


def test_the_password_is_never_kept():
    cache = VerifiedCredentialCache(60)
    password = "Very-Distinctive-Pa55word"
    cache.remember("bob", password, user_id="u2", generation=0)
    keys = list(cache._entries)
    assert all(password.encode() not in key and len(key) == 32 for key in keys)
    # Another process (another random key) cannot recognise the same credential.
    assert VerifiedCredentialCache(60)._digest("bob", password) != keys[0]


def test_forget_and_the_bound_on_entries():
    cache = VerifiedCredentialCache(60, max_entries=3)
    for n in range(5):
        cache.remember(f"user{n}", "pw-pw-pw-pw", user_id=f"u{n}", generation=0)
    assert len(cache) == 3
    assert cache.lookup("user0", "pw-pw-pw-pw") is None  # the oldest went first
    cache.forget("user4", "pw-pw-pw-pw")
    assert cache.lookup("user4", "pw-pw-pw-pw") is None
    assert cache.lookup("user3", "pw-pw-pw-pw") is not None
    # Lone surrogates (valid JSON text) do not break the key derivation.
    cache.remember("x\ud800", "y\udfff-long", user_id="u9", generation=1)
    assert cache.lookup("x\ud800", "y\udfff-long") is not None
