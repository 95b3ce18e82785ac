"""The SQL device stores on SQLite and PostgreSQL: group-committed Registers, Updates and
De-registers, and the batch writer's values and contact times."""

from __future__ import annotations

import asyncio
from dataclasses import replace
from datetime import UTC, datetime, timedelta

from sqlalchemy import select

from meadowlark.lwm2m.codec.link_format import parse_registration_links
from meadowlark.lwm2m.node import ObjectLink, ResourceType
from meadowlark.lwm2m.path import LwM2mPath
from meadowlark.server.registration import Registration, new_registration_id
from meadowlark.server.security import Admission
from meadowlark.server.transport import Peer
from meadowlark.server.values import CachedValue
from meadowlark.store.db import Database
from meadowlark.store.device_models import Device, ResourceValue
from meadowlark.store.devices import SqlDeviceStores
from meadowlark.store.migrate import upgrade_to_head
from meadowlark.store.models import Domain

DOMAIN = "/root/"
NOW = datetime(2026, 11, 30, 12, tzinfo=UTC)
OBJECTS = parse_registration_links(b"</1/0>,</3/0>")


def _registration(endpoint: str, port: int, lifetime: int = 300) -> Registration:
    return Registration(
        registration_id=new_registration_id(),
        endpoint=endpoint,
        lwm2m_version="1.1",
        binding="U",
        lifetime=lifetime,
        queue_mode=False,
        sms_number=None,
        objects=OBJECTS,
        peer=Peer("127.0.0.1", port),
        registered_at=NOW,
        last_update=NOW,
    )


def _run(url: str, work) -> object:
    async def main() -> object:
        db = Database(url)
        try:
            await upgrade_to_head(db.engine)
            async with db.transaction() as session:
                if await session.get(Domain, DOMAIN) is None:
                    session.add(Domain(id=DOMAIN, customer_id="c-root", organization_id="o-root"))
            stores = SqlDeviceStores(db, DOMAIN, flush_interval=0.05)
            stores.start()
            try:
                return await work(db, stores)
            finally:
                await stores.stop()
        finally:
            await db.dispose()

    return asyncio.run(main())


async def _rows(db: Database, endpoints: list[str]) -> dict[str, Device]:
    async with db.session() as session:
        found = await session.scalars(select(Device).where(Device.endpoint_name.in_(endpoints)))
        return {device.endpoint_name: device for device in found}


def test_registrations_updates_and_deregistrations_commit_in_order(database_url, tmp_path):
    url = database_url or f"sqlite+aiosqlite:///{tmp_path / 'batches.db'}"

    async def work(db: Database, stores: SqlDeviceStores) -> None:
        registry = stores.devices
        first = [_registration(f"batch-{n}", 40000 + n) for n in range(300)]
        assert await asyncio.gather(*(registry.admit_registration(r) for r in first)) == [
            Admission.ALLOWED
        ] * len(first)
        again = _registration("batch-1", 41001)
        updated = replace(first[2], lifetime=900)
        # In one batch: an Update and a De-register of the first registrations, and a new
        # Register of batch-1 that a late De-register of its old registration must not undo.
        await asyncio.gather(
            registry.admit_registration(again),
            registry.record_update(updated),
            registry.record_deregistration(first[0], NOW),
            registry.record_deregistration(first[1], NOW),
            registry.record_update(first[1]),
        )
        rows = await _rows(db, [r.endpoint for r in first])
        assert len(rows) == 300
        assert rows["batch-0"].registration_id is None
        assert (rows["batch-1"].registration_id, rows["batch-1"].port) == (
            again.registration_id,
            41001,
        )
        assert (rows["batch-2"].registration_id, rows["batch-2"].lifetime) == (
            first[2].registration_id,
            900,
        )
        assert all(rows[r.endpoint].registration_id == r.registration_id for r in first[3:])

    _run(url, work)


def test_values_are_served_before_and_after_they_are_written(database_url, tmp_path):
    url = database_url or f"sqlite+aiosqlite:///{tmp_path / 'values.db'}"
    model, serial = LwM2mPath(3, 0, 1), LwM2mPath(3, 0, 2)
    temperature = LwM2mPath(3303, 0, 5700)

    async def work(db: Database, stores: SqlDeviceStores) -> None:
        registrations = [_registration(f"values-{n}", 42000 + n) for n in range(3)]
        await asyncio.gather(*(stores.devices.admit_registration(r) for r in registrations))
        for n, registration in enumerate(registrations):
            values = {temperature: CachedValue(ResourceType.FLOAT, 20.0 + n, NOW)}
            if n < 2:  # two devices report their model, one of them its serial number too
                values[model] = CachedValue(ResourceType.STRING, f"model-{n}", NOW)
            if n == 0:
                values[serial] = CachedValue(ResourceType.STRING, "serial-0", NOW)
            stores.values.put(registration.endpoint, values)
        pending = await stores.values.get("values-0", LwM2mPath(3))
        assert {path: value.value for path, value in pending.items()} == {
            model: "model-0",
            serial: "serial-0",
        }
        later = NOW + timedelta(seconds=5)
        stores.devices.record_contact("values-2", later)
        await stores.writer.flush()
        stored = await stores.values.get("values-1")
        assert {path: value.value for path, value in stored.items()} == {
            temperature: 21.0,
            model: "model-1",
        }
        rows = await _rows(db, [r.endpoint for r in registrations])
        assert (rows["values-0"].model_name, rows["values-0"].serial_number) == (
            "model-0",
            "serial-0",
        )
        assert (rows["values-1"].model_name, rows["values-1"].serial_number) == ("model-1", None)
        assert rows["values-2"].model_name is None
        assert rows["values-2"].last_contact_time == later

    _run(url, work)


def test_written_values_of_every_type_read_back_unchanged(database_url, tmp_path):
    """The prepared value upsert converts each type as the engine would (JSON, UTC times)
    and a second write of a path replaces the first."""
    url = database_url or f"sqlite+aiosqlite:///{tmp_path / 'types.db'}"
    written = {
        LwM2mPath(3303, 0, 5700): CachedValue(ResourceType.FLOAT, -12.5, NOW),
        LwM2mPath(3, 0, 9): CachedValue(ResourceType.INTEGER, 2**40, NOW),
        LwM2mPath(3, 0, 0): CachedValue(ResourceType.STRING, 'Zürich "quoted" ✓', NOW),
        LwM2mPath(3, 0, 13): CachedValue(ResourceType.TIME, NOW.replace(microsecond=0), NOW),
        LwM2mPath(3, 0, 16): CachedValue(ResourceType.BOOLEAN, True, NOW),
        LwM2mPath(3, 0, 7, 1): CachedValue(ResourceType.OPAQUE, b"\x00\xff", NOW),
        LwM2mPath(3, 0, 11, 0): CachedValue(ResourceType.OBJLNK, ObjectLink(3, 0), NOW),
        LwM2mPath(3, 0, 14): CachedValue(ResourceType.STRING, None, NOW),
    }
    later = NOW + timedelta(seconds=1)

    async def work(db: Database, stores: SqlDeviceStores) -> None:
        registration = _registration("types-0", 42100)
        await stores.devices.admit_registration(registration)
        stores.values.put(
            "types-0", {LwM2mPath(3303, 0, 5700): CachedValue(ResourceType.FLOAT, 1.0, NOW)}
        )
        await stores.writer.flush()
        stores.values.put("types-0", written)
        stores.values.put(
            "types-0", {LwM2mPath(3303, 0, 5700): CachedValue(ResourceType.FLOAT, 7.25, later)}
        )
        await stores.writer.flush()
        stored = await stores.values.get("types-0")
        expected = {
            **written,
            LwM2mPath(3303, 0, 5700): CachedValue(ResourceType.FLOAT, 7.25, later),
        }
        assert {path: (v.type, v.value, v.updated_at) for path, v in stored.items()} == {
            path: (v.type, v.value, v.updated_at) for path, v in expected.items()
        }

    _run(url, work)


def test_a_flush_of_more_rows_than_one_statement_takes_writes_them_all(database_url, tmp_path):
    """On SQLite a flush writes values and contact times many rows to a statement, in
    chunks: every row of every chunk arrives, each device's own."""
    url = database_url or f"sqlite+aiosqlite:///{tmp_path / 'chunks.db'}"
    devices = 450

    async def work(db: Database, stores: SqlDeviceStores) -> None:
        registrations = [_registration(f"chunk-{n}", 43000 + n) for n in range(devices)]
        await asyncio.gather(*(stores.devices.admit_registration(r) for r in registrations))
        for n, registration in enumerate(registrations):
            values = {
                LwM2mPath(3303, 0, 5700): CachedValue(ResourceType.FLOAT, n + 0.5, NOW),
                LwM2mPath(3303, 0, 5701): CachedValue(ResourceType.STRING, f"C{n}", NOW),
            }
            stores.values.put(registration.endpoint, values)
            stores.devices.record_contact(registration.endpoint, NOW + timedelta(seconds=n))
        await stores.writer.flush()
        async with db.session() as session:
            stored = await session.execute(
                select(Device.endpoint_name, ResourceValue.path, ResourceValue.value)
                .join(ResourceValue, ResourceValue.device_id == Device.id)
                .where(Device.endpoint_name.like("chunk-%"))
            )
            found = {(endpoint, path): value for endpoint, path, value in stored}
        expected = {}
        for n in range(devices):
            expected[f"chunk-{n}", "/3303/0/5700"] = n + 0.5
            expected[f"chunk-{n}", "/3303/0/5701"] = f"C{n}"
        assert found == expected
        rows = await _rows(db, [r.endpoint for r in registrations])
        assert {endpoint: row.last_contact_time for endpoint, row in rows.items()} == {
            f"chunk-{n}": NOW + timedelta(seconds=n) for n in range(devices)
        }

    _run(url, work)
