"""One DTLS identity per device, enforced by the store (migration 0015) on SQLite and
PostgreSQL: duplicates written before it are resolved deterministically, and a racing
write of a taken identity gets the API's 4xx answer, not a database error."""

from __future__ import annotations

import asyncio
import logging
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from alembic import command
from sqlalchemy import insert, select, text

from meadowlark.auth import permissions as catalog
from meadowlark.auth.principal import Principal
from meadowlark.core import devices
from meadowlark.core.errors import InvalidInput
from meadowlark.core.secret_box import PSK_PURPOSE, SecretBox, derive_key
from meadowlark.store.db import Database
from meadowlark.store.device_models import Device
from meadowlark.store.migrate import alembic_config, upgrade_to_head
from meadowlark.store.models import Domain

SYSTEM = Principal(
    user_id="system",
    login="system",
    domain_id="/root/",
    account_type="admin",
    permissions=catalog.ALL,
    via="test",
)
BOX = SecretBox(derive_key("unique-identity-test-" + "k" * 30, PSK_PURPOSE))
KEY = {"HexadecimalPsk": "00112233445566778899aabbccddeeff"}


def _url(database_url: str | None, tmp_path: Any) -> str:
    return database_url or f"sqlite+aiosqlite:///{tmp_path / 'identities.db'}"


def _upgrade(connection: Any, revision: str, url: str) -> None:
    config = alembic_config(url)
    config.attributes["connection"] = connection
    command.upgrade(config, revision)


def test_the_migration_keeps_the_oldest_devices_identity_and_disables_the_others(
    database_url, tmp_path, caplog
):
    url = _url(database_url, tmp_path)
    start = datetime(2026, 1, 1, tzinfo=UTC)

    async def main() -> dict[str, tuple[str | None, str | None, str]]:
        db = Database(url)
        try:
            async with db.engine.begin() as connection:
                await connection.run_sync(_upgrade, "0010", url)
            async with db.transaction() as session:
                session.add(Domain(id="/root/", customer_id="c", organization_id="o"))
            rows = [
                ("b-newer", "shared", "psk", start + timedelta(days=2)),
                ("c-oldest", "shared", "psk", start),
                ("a-same-age", "shared", "psk", start + timedelta(days=2)),
                ("own", "own-identity", "psk", start + timedelta(days=5)),
                ("plain", None, "nosec", start),
            ]
            async with db.transaction() as session:
                await session.execute(
                    insert(Device),
                    [
                        dict(
                            id=device_id,
                            endpoint_name=device_id,
                            domain_id="/root/",
                            security_mode=mode,
                            dtls_identity=identity,
                            dtls_psk=None if identity is None else f"sealed-{device_id}",
                            creation_time=created,
                        )
                        for device_id, identity, mode, created in rows
                    ],
                )
            with caplog.at_level(logging.WARNING, logger="meadowlark.migrations"):
                await upgrade_to_head(db.engine)
            async with db.session() as session:
                found = await session.execute(
                    select(Device.id, Device.dtls_identity, Device.dtls_psk, Device.security_mode)
                )
                return {row[0]: (row[1], row[2], row[3]) for row in found}
        finally:
            await db.dispose()

    after = asyncio.run(main())
    assert after["c-oldest"] == ("shared", "sealed-c-oldest", "psk")
    assert after["a-same-age"] == (None, None, "psk")  # same age: the smaller id goes first
    assert after["b-newer"] == (None, None, "psk")
    assert after["own"] == ("own-identity", "sealed-own", "psk")
    assert after["plain"] == (None, None, "nosec")
    logged = [r.getMessage() for r in caplog.records if r.name == "meadowlark.migrations"]
    assert len(logged) == 2
    assert all("'shared'" in line and "'c-oldest'" in line for line in logged)
    assert not any("sealed-" in line for line in logged)  # never a key


@pytest.fixture
def migrated(database_url, tmp_path) -> str:
    url = _url(database_url, tmp_path)

    async def main() -> None:
        db = Database(url)
        try:
            await upgrade_to_head(db.engine)
            async with db.transaction() as session:
                if await session.get(Domain, "/root/") is None:
                    session.add(Domain(id="/root/", customer_id="c", organization_id="o"))
        finally:
            await db.dispose()

    asyncio.run(main())
    return url


def test_the_store_refuses_a_second_device_with_the_same_identity(migrated):
    async def main() -> None:
        db = Database(migrated)
        try:
            async with db.transaction() as session:
                await devices.create_device(
                    session,
                    SYSTEM,
                    devices.NewDevice(endpoint_name="first", dtls_identity="dup", dtls_psk=KEY),
                    psk_box=BOX,
                )
            with pytest.raises(Exception, match="(?i)unique|duplicate"):
                async with db.transaction() as session:
                    await session.execute(
                        text(
                            "INSERT INTO devices (id, endpoint_name, domain_id, friendly_name,"
                            " description, properties, blacklisted, management_enabled,"
                            " connector_type, security_mode, dtls_identity, creation_time,"
                            " queue_mode) VALUES ('second', 'second', '/root/', '', '', '{}',"
                            " false, true, 'lwm2m', 'psk', 'dup', :now, false)"
                        ),
                        {"now": datetime.now(UTC)},
                    )
        finally:
            await db.dispose()

    asyncio.run(main())


def test_two_racing_creates_of_one_identity_give_one_device_and_one_4xx(migrated, monkeypatch):
    """Both requests pass the API's check before either writes: the store's index
    decides, and the loser gets the check's InvalidInput (400), not a database error."""
    original = devices._require_identity_free

    async def main() -> list[Any]:
        both_checked = asyncio.Event()
        waiting = 0

        async def check_then_wait(session: Any, identity: Any, device_id: str) -> None:
            nonlocal waiting
            await original(session, identity, device_id)
            waiting += 1
            if waiting == 2:
                both_checked.set()
            await asyncio.wait_for(both_checked.wait(), 10)

        monkeypatch.setattr(devices, "_require_identity_free", check_then_wait)
        db = Database(migrated)

        async def create(endpoint: str) -> str:
            async with db.transaction() as session:
                await devices.create_device(
                    session,
                    SYSTEM,
                    devices.NewDevice(endpoint_name=endpoint, dtls_identity="raced", dtls_psk=KEY),
                    psk_box=BOX,
                )
            return endpoint

        try:
            results = await asyncio.gather(
                create("racer-1"), create("racer-2"), return_exceptions=True
            )
            async with db.session() as session:
                holders = (
                    await session.scalars(select(Device.id).where(Device.dtls_identity == "raced"))
                ).all()
            return [results, holders]
        finally:
            await db.dispose()

    results, holders = asyncio.run(main())
    winners = [r for r in results if isinstance(r, str)]
    losers = [r for r in results if not isinstance(r, str)]
    assert len(winners) == 1 and holders == winners, results
    assert len(losers) == 1 and isinstance(losers[0], InvalidInput), results
    assert "already used by another device" in str(losers[0])
