"""The DTLS keyring on SQLite and PostgreSQL: loading, lookups, and staying current with
changes made here (at commit), on other nodes (notices) and by anyone (re-reads); PSKs
sealed at rest, and stored ones sealed at startup."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from typing import Any

import pytest
from sqlalchemy import insert, select
from sqlalchemy.exc import IntegrityError
from structlog.testing import CapturingLogger

from meadowlark.auth import permissions as catalog
from meadowlark.auth.principal import Principal
from meadowlark.core import devices
from meadowlark.core.secret_box import PSK_PURPOSE, SecretBox, derive_key
from meadowlark.store import psk_keyring
from meadowlark.store.db import Database
from meadowlark.store.device_models import Device
from meadowlark.store.migrate import upgrade_to_head
from meadowlark.store.models import AuditEvent
from meadowlark.store.psk_keyring import PskKeyring

SYSTEM = Principal(
    user_id="system",
    login="system",
    domain_id="/root/",
    account_type="admin",
    permissions=catalog.ALL,
    via="test",
)
BOX = SecretBox(derive_key("keyring-test-secret-" + "k" * 30, PSK_PURPOSE))
OTHER_BOX = SecretBox(derive_key("another-server-secret-" + "o" * 30, PSK_PURPOSE))


@pytest.fixture(scope="module")
def url(database_url, tmp_path_factory) -> str:
    if database_url:
        return database_url  # type: ignore[no-any-return]
    return f"sqlite+aiosqlite:///{tmp_path_factory.mktemp('keyring') / 'm.db'}"


@pytest.fixture(scope="module", autouse=True)
def migrated(url):
    async def main() -> None:
        db = Database(url)
        try:
            await upgrade_to_head(db.engine)
            from meadowlark.store.models import Domain

            async with db.transaction() as session:
                if await session.get(Domain, "/root/") is None:
                    session.add(Domain(id="/root/", customer_id="c", organization_id="o"))
        finally:
            await db.dispose()

    asyncio.run(main())


_counter = iter(range(1_000_000))


def name(prefix: str) -> str:
    return f"{prefix}-{next(_counter)}-{id(_counter) % 9973}"


def run(url: str, work: Callable[[Database], Awaitable[Any]]) -> Any:
    async def main() -> Any:
        db = Database(url)
        try:
            return await work(db)
        finally:
            await db.dispose()

    return asyncio.run(main())


async def create(db: Database, endpoint: str, identity: str | None, key: bytes | None) -> None:
    async with db.session() as session:
        await devices.create_device(
            session,
            SYSTEM,
            devices.NewDevice(
                endpoint_name=endpoint,
                security_mode="psk" if identity else "nosec",
                dtls_identity=identity,
                dtls_psk=None if key is None else {"HexadecimalPsk": key.hex()},
            ),
            psk_box=BOX,
        )
        await session.commit()


async def change(db: Database, endpoint: str, **fields: Any) -> devices.DeviceUpdate:
    async with db.session() as session:
        update = await devices.update_device(
            session, SYSTEM, endpoint, devices.DeviceChanges(**fields), psk_box=BOX
        )
        await session.commit()
        return update


async def remove(db: Database, endpoint: str) -> None:
    async with db.session() as session:
        await devices.delete_device(session, SYSTEM, endpoint)
        await session.commit()


def test_loads_every_psk_device_and_opens_keys_on_lookup(url):
    first, second, plain = name("dev"), name("dev"), name("nosec")

    async def work(db: Database) -> None:
        await create(db, first, f"id-{first}", b"\x01" * 16)
        await create(db, second, f"id-{second}", b"secret key")
        await create(db, plain, None, None)
        keyring = PskKeyring(db, BOX)
        await keyring.start()
        try:
            assert keyring[f"id-{first}"] == b"\x01" * 16
            assert keyring[f"id-{second}"] == b"secret key"
            assert keyring.device_of(f"id-{first}") == first
            assert f"id-{first}" in keyring and "nobody" not in keyring
            with pytest.raises(KeyError):
                keyring["nobody"]
            assert keyring.get("nobody") is None
            assert {f"id-{first}", f"id-{second}"} <= set(keyring)
            assert not any(identity.startswith("id-nosec") for identity in keyring)
        finally:
            await keyring.stop()

    run(url, work)


def test_changes_committed_here_apply_at_commit_and_report_old_identities(url):
    endpoint, other = name("rot"), name("rot")
    identity = f"id-{endpoint}"

    async def work(db: Database) -> None:
        keyring = PskKeyring(db, BOX)
        await keyring.start()
        changed: list[str] = []
        announced: list[str] = []
        keyring.on_change(changed.append)
        keyring.on_local_change(announced.append)
        try:
            await create(db, endpoint, identity, b"k1")
            assert keyring[identity] == b"k1" and changed == [] and announced == [endpoint]

            # rotation: a device update; the registration made with the old key must end
            update = await change(db, endpoint, dtls_psk={"PlainTextPsk": "k2"})
            assert update.barred and keyring[identity] == b"k2" and changed == [identity]

            # the same key again is no change at all
            update = await change(db, endpoint, dtls_psk={"HexadecimalPsk": b"k2".hex()})
            assert not update.barred and changed == [identity]

            # another identity: the old one is gone
            await change(db, endpoint, dtls_identity=f"{identity}-b")
            assert identity not in keyring and keyring[f"{identity}-b"] == b"k2"
            assert changed == [identity, identity]

            # the freed identity may go to another device
            await create(db, other, identity, b"k3")
            assert keyring[identity] == b"k3" and keyring.device_of(identity) == other

            # no longer a PSK device, then deleted
            await change(db, other, security_mode="nosec", dtls_identity=None)
            assert identity not in keyring and changed[-1] == identity
            await remove(db, endpoint)
            assert f"{identity}-b" not in keyring and changed[-1] == f"{identity}-b"
            assert announced == [endpoint, endpoint, endpoint, other, other, endpoint]
        finally:
            await keyring.stop()

        async with db.session() as session:
            audited = (
                await session.scalars(
                    select(AuditEvent).where(
                        AuditEvent.event == "device.security_changed",
                        AuditEvent.subject == endpoint,
                    )
                )
            ).all()
        assert [event.details["keyChanged"] for event in audited] == [True, False]
        assert all("k2" not in str(event.details) for event in audited)

    run(url, work)


def test_a_rolled_back_change_is_not_applied(url):
    endpoint = name("rb")

    async def work(db: Database) -> None:
        await create(db, endpoint, f"id-{endpoint}", b"old")
        keyring = PskKeyring(db, BOX)
        await keyring.start()
        try:
            async with db.session() as session:
                await devices.update_device(
                    session,
                    SYSTEM,
                    endpoint,
                    devices.DeviceChanges(dtls_psk={"PlainTextPsk": "new"}),
                    psk_box=BOX,
                )
                await session.rollback()
            assert keyring[f"id-{endpoint}"] == b"old"
            await create(db, name("after"), f"id-after-{endpoint}", b"x")  # later commits
            assert keyring[f"id-{endpoint}"] == b"old"
        finally:
            await keyring.stop()

    run(url, work)


def test_other_nodes_follow_through_notices_and_re_reads(url):
    endpoint, late = name("node"), name("node")
    identity = f"id-{endpoint}"

    async def work(db: Database) -> None:
        other_db = Database(url)  # another node: its own engine, so commits here don't reach it
        other = PskKeyring(other_db, BOX)
        changed: list[str] = []
        other.on_change(changed.append)
        try:
            await create(db, endpoint, identity, b"v1")
            await other.start()
            assert other[identity] == b"v1"
            await change(db, endpoint, dtls_psk={"PlainTextPsk": "v2"})
            assert other[identity] == b"v1"  # not told yet
            other.refresh(endpoint)  # the cluster notice
            await other.refreshed()
            assert other[identity] == b"v2" and changed == [identity]

            await create(db, late, f"id-{late}", b"v3")
            await remove(db, endpoint)
            await other.load()  # the periodic re-read
            assert other[f"id-{late}"] == b"v3" and identity not in other
            assert changed == [identity, identity]
        finally:
            await other.stop()
            await other_db.dispose()

    run(url, work)


def test_a_key_that_does_not_open_fails_closed_and_is_logged_once_without_it(url, monkeypatch):
    endpoint = name("wrong")
    identity = f"id-{endpoint}"
    key = b"\xaa\xbb\xcc\xdd" * 4
    captured = CapturingLogger()
    monkeypatch.setattr(psk_keyring, "_log", captured)

    async def work(db: Database) -> None:
        await create(db, endpoint, identity, key)
        keyring = PskKeyring(db, OTHER_BOX)  # started with another MEADOWLARK_SECRET_KEY
        await keyring.start()
        try:
            for _ in range(3):
                with pytest.raises(KeyError):
                    keyring[identity]
            assert keyring.get(identity) is None
        finally:
            await keyring.stop()
        health = await psk_keyring.check_stored_psks(db, OTHER_BOX)
        assert endpoint in health.unreadable
        assert endpoint not in (await psk_keyring.check_stored_psks(db, BOX)).unreadable

    run(url, work)
    errors = [call for call in captured.calls if call.method_name == "error"]
    assert errors[0].args == ("psks_unreadable_at_start",)
    assert errors[0].kwargs["unreadable"] >= 1
    assert len(errors) == 2 and errors[1].kwargs["device"] == endpoint
    assert key.hex() not in repr(captured.calls) and "aabbccdd" not in repr(captured.calls)


def test_stored_keys_in_clear_are_sealed_once_at_startup(url, monkeypatch):
    monkeypatch.setattr(psk_keyring, "SEAL_BATCH", 3)  # several batches
    endpoints = [name("legacy") for _ in range(7)]

    async def work(db: Database) -> None:
        async with db.transaction() as session:
            await session.execute(
                insert(Device),
                [
                    {
                        "id": endpoint,
                        "endpoint_name": endpoint,
                        "domain_id": "/root/",
                        "security_mode": "psk",
                        "dtls_identity": f"id-{endpoint}",
                        "dtls_psk": f"{index:02x}" * 16,
                    }
                    for index, endpoint in enumerate(endpoints)
                ],
            )
        assert await psk_keyring.seal_stored_psks(db, BOX) == len(endpoints)
        assert await psk_keyring.seal_stored_psks(db, BOX) == 0
        async with db.session() as session:
            stored = dict(
                (
                    await session.execute(
                        select(Device.id, Device.dtls_psk).where(Device.id.in_(endpoints))
                    )
                ).all()
            )
        for index, endpoint in enumerate(endpoints):
            assert stored[endpoint].startswith("enc1:")
            assert BOX.open(stored[endpoint], endpoint) == bytes([index]) * 16
        keyring = PskKeyring(db, BOX)
        await keyring.load()
        assert keyring[f"id-{endpoints[3]}"] == b"\x03" * 16

    run(url, work)


def test_a_second_device_cannot_take_an_identity_so_the_first_keeps_authenticating(url):
    """Two writes raced past the API's check: the store's unique index (migration 0015)
    refuses the second, and the keyring keeps the first device's key."""
    first, second = name("twin"), name("twin")
    shared = f"id-shared-{first}"

    async def work(db: Database) -> None:
        await create(db, first, shared, b"one")
        keyring = PskKeyring(db, BOX)
        await keyring.load()
        changed: list[str] = []
        keyring.on_change(changed.append)
        with pytest.raises(IntegrityError):
            async with db.transaction() as session:
                await session.execute(
                    insert(Device).values(
                        id=second,
                        endpoint_name=second,
                        domain_id="/root/",
                        security_mode="psk",
                        dtls_identity=shared,
                        dtls_psk=BOX.seal(b"two", second),
                    )
                )
        await keyring.load()
        assert keyring[shared] == b"one" and changed == []

    run(url, work)
