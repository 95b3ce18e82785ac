"""Monitoring samples in the store: daily partitions and their retention on PostgreSQL,
batched deletes on SQLite, and the batched writer's window."""

from __future__ import annotations

import asyncio
from datetime import UTC, date, datetime, timedelta

from sqlalchemy import func, insert, select

from meadowlark.lwm2m.node import ResourceType
from meadowlark.lwm2m.path import LwM2mPath
from meadowlark.server.values import CachedValue
from meadowlark.store.db import Database
from meadowlark.store.device_models import Device
from meadowlark.store.migrate import upgrade_to_head
from meadowlark.store.models import Domain
from meadowlark.store.monitoring import (
    SampleRetention,
    SampleWindow,
    SampleWriter,
    epoch_ms,
)
from meadowlark.store.monitoring_models import MonitoringSample

TODAY = datetime.now(UTC).date()


def _url(database_url, tmp_path):
    return database_url or f"sqlite+aiosqlite:///{tmp_path / 'samples.db'}"


def _midnight(day: date) -> int:
    return epoch_ms(datetime(day.year, day.month, day.day, tzinfo=UTC))


async def _prepared(url: str, device_id: str) -> Database:
    db = Database(url)
    await upgrade_to_head(db.engine)
    async with db.transaction() as session:
        if await session.get(Domain, "/root/") is None:
            session.add(Domain(id="/root/", customer_id="c-root", organization_id="o-root"))
            await session.flush()
        session.add(Device(id=device_id, endpoint_name=device_id, domain_id="/root/"))
    return db


async def _count(db: Database) -> int:
    async with db.session() as session:
        return int(await session.scalar(select(func.count()).select_from(MonitoringSample)))


def _rows(device_id: str, times: list[int]) -> list[dict]:
    return [
        {
            "device_id": device_id,
            "path": "/3303/0/5700",
            "at_ms": at,
            "numeric_value": 1.0,
            "type": "Float",
            "value": 1.0,
        }
        for at in times
    ]


def test_retention_drops_what_is_older_than_the_retention_days(database_url, tmp_path):
    window = SampleWindow(retention_days=7, days_ahead=2)
    old_day, kept_day = TODAY - timedelta(days=9), TODAY - timedelta(days=3)

    async def main():
        db = await _prepared(_url(database_url, tmp_path), "kept")
        retention = SampleRetention(db, window, delete_batch=5)
        try:
            await retention.run()
            if not db.is_sqlite:  # as if made back when that day was within the window
                await retention.ensure_partitions(old_day, old_day)
            old = [_midnight(old_day) + n for n in range(12)]
            kept = [_midnight(kept_day) + n for n in range(3)]
            async with db.transaction() as session:
                await session.execute(insert(MonitoringSample), _rows("kept", old + kept))
            partitions_before = [] if db.is_sqlite else await retention.partitions()
            outcome = await retention.run()
            partitions_after = [] if db.is_sqlite else await retention.partitions()
            return outcome, await _count(db), partitions_before, partitions_after, db.is_sqlite
        finally:
            await db.dispose()

    outcome, remaining, before, after, is_sqlite = asyncio.run(main())
    assert remaining == 3
    if is_sqlite:
        assert outcome == 12  # deleted in batches of 5: 5, 5, 2
        return
    first = TODAY - timedelta(days=7)
    wanted = [f"monitoring_samples_p{first + timedelta(days=n):%Y%m%d}" for n in range(10)]
    assert f"monitoring_samples_p{old_day:%Y%m%d}" in before
    assert outcome == 1
    assert after == wanted  # the retention window and two days ahead, one table a day


def test_writer_batches_and_drops_samples_outside_the_window(database_url, tmp_path):
    window = SampleWindow(retention_days=2, days_ahead=1)

    async def main():
        db = await _prepared(_url(database_url, tmp_path), "sampled")
        await SampleRetention(db, window, 100).run()
        writer = SampleWriter(
            db, batch_size=3, flush_interval=0.01, max_buffered=1000, window=window
        )
        writer.start()
        try:
            now = datetime.now(UTC)

            def at(offset: timedelta, value: object, kind: ResourceType) -> CachedValue:
                return CachedValue(kind, value, now + offset)

            writer.add(
                "sampled", {LwM2mPath(3303, 0, 5700): at(timedelta(0), 21.5, ResourceType.FLOAT)}
            )
            writer.add(
                "sampled", {LwM2mPath(3303, 0, 5750): at(timedelta(0), "busy", ResourceType.STRING)}
            )
            writer.add("sampled", {LwM2mPath(3, 0, 9): at(timedelta(0), 80, ResourceType.INTEGER)})
            writer.add(
                "sampled", {LwM2mPath(3, 0, 10): at(timedelta(0), True, ResourceType.BOOLEAN)}
            )
            writer.add(
                "sampled", {LwM2mPath(5, 0, 0): at(timedelta(0), b"\0\1", ResourceType.OPAQUE)}
            )
            writer.add(
                "sampled", {LwM2mPath(3, 0, 11): at(-timedelta(days=5), 1, ResourceType.INTEGER)}
            )
            writer.add(
                "sampled", {LwM2mPath(3, 0, 12): at(timedelta(days=5), 1, ResourceType.INTEGER)}
            )
            writer.add("gone", {LwM2mPath(3, 0, 13): at(timedelta(0), 1, ResourceType.INTEGER)})
            await writer.drained()
            async with db.session() as session:
                rows = (
                    await session.execute(
                        select(
                            MonitoringSample.path,
                            MonitoringSample.numeric_value,
                            MonitoringSample.text_value,
                            MonitoringSample.value,
                        )
                        .where(MonitoringSample.device_id == "sampled")
                        .order_by(MonitoringSample.path)
                    )
                ).all()
            return [tuple(row) for row in rows], writer.dropped
        finally:
            await writer.stop()
            await db.dispose()

    rows, dropped = asyncio.run(main())
    # the value column only where the other two do not say it (Opaque here, as base64)
    assert rows == [
        ("/3/0/10", None, "true", None),
        ("/3/0/9", 80.0, None, None),
        ("/3303/0/5700", 21.5, None, None),
        ("/3303/0/5750", None, "busy", None),
        ("/5/0/0", None, "AAE=", "AAE="),
    ]
    assert dropped == 3  # too old, too far ahead, and a device that does not exist
