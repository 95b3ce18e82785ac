"""``PskKeyring`` semantics: the Mapping protocol, changes applied at commit (identities
swapped, taken over, removed), listeners isolated from each other, other stores' and
rolled-back sessions ignored."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from typing import Any

import pytest
from sqlalchemy import text

from meadowlark.store.db import Database
from meadowlark.store.psk_keyring import PskKeyring, note_psk_change


class Opener:
    """Sealed values are ``sealed:<key>`` bound to nothing; ``bad`` does not open."""

    def open(self, sealed: str, context: str) -> bytes:
        if not sealed.startswith("sealed:"):
            raise ValueError("does not open")
        return sealed.removeprefix("sealed:").encode()


def run(tmp_path, work: Callable[[Database, PskKeyring], Awaitable[Any]]) -> Any:
    async def main() -> Any:
        db = Database(f"sqlite+aiosqlite:///{tmp_path / 'k.db'}")
        keyring = PskKeyring(db, Opener())
        keyring.attach()
        try:
            return await work(db, keyring)
        finally:
            await keyring.stop()
            await db.dispose()

    return asyncio.run(main())


async def commit(db: Database, *changes: tuple[str, str | None, str | None]) -> None:
    async with db.session() as session:
        for device_id, identity, sealed in changes:
            note_psk_change(session, device_id, identity, sealed)
        await session.commit()


def test_the_mapping_protocol(tmp_path):
    async def work(db: Database, keyring: PskKeyring) -> None:
        await commit(db, ("d1", "alice", "sealed:k1"), ("d2", "bob", "sealed:k2"))
        assert dict(keyring) == {"alice": b"k1", "bob": b"k2"}
        assert len(keyring) == 2 and sorted(keyring) == ["alice", "bob"]
        assert "alice" in keyring and "carol" not in keyring and 1 not in keyring
        assert keyring.get("carol") is None and keyring.get("carol", b"x") == b"x"
        with pytest.raises(KeyError):
            keyring["carol"]

    run(tmp_path, work)


def test_identities_swapped_taken_over_and_removed(tmp_path):
    async def work(db: Database, keyring: PskKeyring) -> None:
        changed: list[str] = []
        keyring.on_change(changed.append)
        await commit(db, ("d1", "alice", "sealed:k1"), ("d2", "bob", "sealed:k2"))
        assert changed == []

        await commit(db, ("d1", "bob", "sealed:k3"), ("d2", "alice", "sealed:k4"))
        assert dict(keyring) == {"bob": b"k3", "alice": b"k4"}
        assert keyring.device_of("bob") == "d1" and keyring.device_of("alice") == "d2"
        assert sorted(changed) == ["alice", "bob"]

        changed.clear()
        await commit(db, ("d3", "bob", "sealed:k5"))  # d1's change not seen yet
        assert keyring.device_of("bob") == "d3" and changed == ["bob"]
        await commit(db, ("d1", None, None))  # d1 no longer owns anything
        assert keyring["bob"] == b"k5" and changed == ["bob"]

        await commit(db, ("d2", None, None))
        assert "alice" not in keyring and changed == ["bob", "alice"]
        await commit(db, ("d3", "bob", "sealed:k5"))  # the same again: no change
        assert changed == ["bob", "alice"]

    run(tmp_path, work)


def test_a_broken_listener_does_not_stop_the_others(tmp_path):
    async def work(db: Database, keyring: PskKeyring) -> None:
        heard: list[str] = []

        def broken(_: str) -> None:
            raise RuntimeError("listener bug")

        keyring.on_change(broken)
        keyring.on_change(heard.append)
        keyring.on_local_change(broken)
        await commit(db, ("d1", "alice", "sealed:k1"))
        await commit(db, ("d1", "alice", "sealed:k2"))
        assert heard == ["alice"] and keyring["alice"] == b"k2"

    run(tmp_path, work)


def test_other_stores_rolled_back_and_detached_sessions_are_ignored(tmp_path):
    async def work(db: Database, keyring: PskKeyring) -> None:
        other = Database(f"sqlite+aiosqlite:///{tmp_path / 'other.db'}")
        try:
            await commit(other, ("d1", "alice", "sealed:k1"))
        finally:
            await other.dispose()
        assert "alice" not in keyring

        async with db.session() as session:
            await session.execute(text("SELECT 1"))  # the change's unit of work
            note_psk_change(session, "d2", "bob", "sealed:k2")
            await session.rollback()
            await session.commit()
        assert "bob" not in keyring

        await keyring.stop()
        await commit(db, ("d3", "carol", "sealed:k3"))
        assert "carol" not in keyring

    run(tmp_path, work)


def test_a_key_that_does_not_open_is_a_missing_key(tmp_path):
    async def work(db: Database, keyring: PskKeyring) -> None:
        await commit(db, ("d1", "alice", "bad"))
        assert "alice" in keyring  # known, but no key for a handshake
        with pytest.raises(KeyError):
            keyring["alice"]
        assert keyring.get("alice") is None

    run(tmp_path, work)
