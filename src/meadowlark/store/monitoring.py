"""Monitoring samples in the store: the batched writer, page and aggregate queries, and
retention.

Samples are written like cached values (``store.devices.BatchWriter``): the hot path
only appends to a buffer, and a background task writes the buffer every
``flush_interval`` seconds, or as soon as it holds ``batch_size`` samples, in one
multi-row INSERT per batch.

On PostgreSQL ``monitoring_samples`` is range-partitioned by ``at_ms``: one partition per
UTC day, named ``monitoring_samples_pYYYYMMDD``. ``SampleRetention`` creates the
partitions from the retention cutoff to ``partitions_ahead`` days after today and drops
those wholly older than the cutoff; the writer drops samples outside that window (a
partition must exist for every row). On SQLite, expired samples are deleted in batches.

Aggregates are computed by the database: buckets are ``(at_ms - start - 1) / interval``
in integer arithmetic, so bucket ``k`` covers ``(start + k*interval, start +
(k+1)*interval]`` (the time range's start is exclusive, its end inclusive).
"""

from __future__ import annotations

import asyncio
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from typing import Any

import structlog
from sqlalchemy import Select, and_, func, or_, select, text
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncSession

from meadowlark.lwm2m.node import ResourceType
from meadowlark.lwm2m.path import LwM2mPath
from meadowlark.server.values import CachedValue, value_to_json
from meadowlark.store.coiote_models import GroupMembership
from meadowlark.store.db import Database, rows_affected
from meadowlark.store.device_models import Device
from meadowlark.store.devices import _DriverStatement
from meadowlark.store.monitoring_models import MonitoringSample

_log = structlog.get_logger("meadowlark.monitoring")

_SAMPLES = MonitoringSample.__table__
DAY_MS = 86_400_000
_PARTITION = re.compile(r"^monitoring_samples_p(\d{8})$")
_COLUMNS = ("device_id", "path", "at_ms", "numeric_value", "text_value", "type", "value")
_NUMERIC_TYPES = (ResourceType.INTEGER, ResourceType.UNSIGNED_INTEGER, ResourceType.FLOAT)


EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
_MS = timedelta(milliseconds=1)


def epoch_ms(at: datetime) -> int:
    """Whole milliseconds since the epoch, in exact integer arithmetic."""
    return (at - EPOCH) // _MS


def from_epoch_ms(at_ms: int) -> datetime:
    return EPOCH + at_ms * _MS


def sample_columns(value: CachedValue) -> tuple[float | None, str | None, str, Any]:
    """(numeric value, textual value, type, value as the value cache stores it when the
    first two do not say it already)."""
    raw = value.value
    kind = value.type
    if kind in _NUMERIC_TYPES and isinstance(raw, int | float) and not isinstance(raw, bool):
        exact = isinstance(raw, float) or -(2**53) <= raw <= 2**53
        return float(raw), None, kind.value, None if exact else raw
    if isinstance(raw, bool):
        return None, "true" if raw else "false", kind.value, None
    if isinstance(raw, str):
        return None, raw, kind.value, None
    stored = value_to_json(kind, raw)
    if stored is None:
        return None, None, kind.value, None
    return None, str(stored), kind.value, stored


def sample_value(kind: str, numeric: float | None, textual: str | None, stored: Any) -> Any:
    """The value as the value cache stores it, from a sample's columns."""
    if stored is not None:
        return stored
    if numeric is not None:
        whole = kind in (ResourceType.INTEGER.value, ResourceType.UNSIGNED_INTEGER.value)
        return int(numeric) if whole else numeric
    if kind == ResourceType.BOOLEAN.value and textual is not None:
        return textual == "true"
    return textual


class SampleWriter:
    """Buffers samples and writes them in batches (one INSERT per batch)."""

    def __init__(
        self,
        db: Database,
        *,
        batch_size: int,
        flush_interval: float,
        max_buffered: int,
        window: SampleWindow,
    ) -> None:
        self._db = db
        self._batch_size = batch_size
        self._interval = flush_interval
        self._max_buffered = max_buffered
        self._window = window
        self._buffer: list[tuple[str, LwM2mPath, CachedValue]] = []
        self._wakeup = asyncio.Event()
        self._task: asyncio.Task[None] | None = None
        self._idle = asyncio.Event()
        self._idle.set()
        insert = (sqlite if db.is_sqlite else postgresql).insert(_SAMPLES).on_conflict_do_nothing()
        self._insert = _DriverStatement(insert, db.engine.dialect, _COLUMNS, many=True)
        self.dropped = 0
        """Samples dropped: outside the retention window, or beyond ``max_buffered``."""

    @property
    def buffered_count(self) -> int:
        """Samples waiting for their batch."""
        return len(self._buffer)

    def add(self, device_id: str, values: Mapping[LwM2mPath, CachedValue]) -> None:
        buffer = self._buffer
        for path, value in values.items():
            buffer.append((device_id, path, value))
        if len(buffer) >= self._batch_size:
            self._wakeup.set()
            if len(buffer) > self._max_buffered:
                excess = len(buffer) - self._max_buffered
                del buffer[:excess]
                self.dropped += excess
                _log.warning("monitoring_samples_dropped", samples=excess, reason="backlog")
        elif len(buffer) == len(values):  # the first samples since the last flush
            self._wakeup.set()

    def start(self) -> None:
        if self._task is None:
            self._task = asyncio.get_running_loop().create_task(self._run(), name="samples")

    async def stop(self) -> None:
        task, self._task = self._task, None
        if task is not None:
            task.cancel()
            await asyncio.gather(task, return_exceptions=True)
        await self.flush()

    async def drained(self) -> None:
        """Wait until everything buffered before this call is written (tests, bench)."""
        while self._buffer or not self._idle.is_set():
            self._wakeup.set()
            await asyncio.sleep(self._interval / 4)

    async def flush(self) -> None:
        while self._buffer:
            batch = self._buffer[: self._batch_size]
            del self._buffer[: self._batch_size]
            self._idle.clear()
            try:
                await self._write(batch)
            except Exception:  # keep ingesting; these samples are lost, and said so
                self.dropped += len(batch)
                _log.exception("monitoring_flush_failed", samples=len(batch))
            finally:
                self._idle.set()

    async def _run(self) -> None:
        while True:
            await self._wakeup.wait()
            if len(self._buffer) < self._batch_size:
                await asyncio.sleep(self._interval)
            self._wakeup.clear()
            await self.flush()

    async def _write(self, batch: Sequence[tuple[str, LwM2mPath, CachedValue]]) -> None:
        oldest, horizon = self._window.accepted()
        insert = self._insert
        rows = []
        for device_id, path, value in batch:
            at_ms = epoch_ms(value.updated_at)
            if not oldest <= at_ms < horizon:
                self.dropped += 1
                continue
            numeric, textual, kind, stored = sample_columns(value)
            rows.append(insert.row(device_id, str(path), at_ms, numeric, textual, kind, stored))
        if not rows:
            return
        try:
            async with self._db.transaction() as session:
                await insert.run(session, rows)
        except IntegrityError:  # a device deleted meanwhile: write the others' samples
            async with self._db.transaction() as session:
                wanted = {row[0] if isinstance(row, tuple) else row["device_id"] for row in rows}
                existing = set(
                    (await session.scalars(select(Device.id).where(Device.id.in_(wanted)))).all()
                )
                kept = [
                    row
                    for row in rows
                    if (row[0] if isinstance(row, tuple) else row["device_id"]) in existing
                ]
                self.dropped += len(rows) - len(kept)
                if kept:
                    await insert.run(session, kept)


class SampleWindow:
    """The sample times the store takes: from the retention cutoff (midnight UTC,
    ``retention_days`` ago) to the end of the last partition made ahead."""

    def __init__(self, retention_days: int, days_ahead: int) -> None:
        self.retention_days = retention_days
        self.days_ahead = days_ahead

    def days(self, today: date | None = None) -> tuple[date, date]:
        """First and last day kept."""
        today = today or datetime.now(UTC).date()
        return today - timedelta(days=self.retention_days), today + timedelta(days=self.days_ahead)

    def accepted(self) -> tuple[int, int]:
        first, last = self.days()
        return _day_start_ms(first), _day_start_ms(last + timedelta(days=1))


def _day_start_ms(day: date) -> int:
    return epoch_ms(datetime(day.year, day.month, day.day, tzinfo=UTC))


class SampleRetention:
    """Drops expired samples; on PostgreSQL also keeps the daily partitions in place."""

    def __init__(self, db: Database, window: SampleWindow, delete_batch: int) -> None:
        self._db = db
        self._window = window
        self._delete_batch = delete_batch

    async def run(self, today: date | None = None) -> int:
        """One round; the number of partitions dropped (PostgreSQL) or rows deleted."""
        first, last = self._window.days(today)
        if self._db.is_sqlite:
            return await self._delete_expired(_day_start_ms(first))
        await self.ensure_partitions(first, last)
        return await self._drop_partitions_before(first)

    async def ensure_partitions(self, first: date, last: date) -> None:
        day = first
        while day <= last:
            name = f"monitoring_samples_p{day:%Y%m%d}"
            start = _day_start_ms(day)
            statement = (
                f"CREATE TABLE IF NOT EXISTS {name} PARTITION OF monitoring_samples "
                f"FOR VALUES FROM ({start}) TO ({start + DAY_MS})"
            )
            try:
                async with self._db.transaction() as session:
                    await session.execute(text(statement))
            except Exception as exc:  # another node created it meanwhile
                _log.debug("monitoring_partition_exists", partition=name, error=str(exc))
            day += timedelta(days=1)

    async def partitions(self) -> list[str]:
        async with self._db.session() as session:
            rows = await session.execute(
                text(
                    "SELECT child.relname FROM pg_inherits "
                    "JOIN pg_class parent ON parent.oid = pg_inherits.inhparent "
                    "JOIN pg_class child ON child.oid = pg_inherits.inhrelid "
                    "WHERE parent.relname = 'monitoring_samples' ORDER BY child.relname"
                )
            )
            return [row[0] for row in rows]

    async def _drop_partitions_before(self, first: date) -> int:
        dropped = 0
        for name in await self.partitions():
            match = _PARTITION.match(name)
            if match is None or datetime.strptime(match[1], "%Y%m%d").date() >= first:  # noqa: DTZ007 - a bare date
                continue
            async with self._db.transaction() as session:
                await session.execute(text(f"DROP TABLE IF EXISTS {name}"))
            dropped += 1
            _log.info("monitoring_partition_dropped", partition=name)
        return dropped

    async def _delete_expired(self, cutoff_ms: int) -> int:
        """Per device resource, along the primary key, ``delete_batch`` rows at a time."""
        async with self._db.session() as session:
            series = (
                await session.execute(
                    select(MonitoringSample.device_id, MonitoringSample.path).distinct()
                )
            ).all()
        deleted = 0
        for device_id, path in series:
            while True:
                async with self._db.transaction() as session:
                    result = await session.execute(
                        text(
                            "DELETE FROM monitoring_samples WHERE device_id = :device "
                            "AND path = :path AND at_ms IN (SELECT at_ms FROM "
                            "monitoring_samples WHERE device_id = :device AND path = :path "
                            "AND at_ms < :cutoff ORDER BY at_ms LIMIT :batch)"
                        ),
                        {
                            "device": device_id,
                            "path": path,
                            "cutoff": cutoff_ms,
                            "batch": self._delete_batch,
                        },
                    )
                count = rows_affected(result) or 0
                deleted += count
                await asyncio.sleep(0)  # let the server breathe between batches
                if count < self._delete_batch:
                    break
        return deleted


# --- queries -----------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Sample:
    device_id: str
    path: str
    at_ms: int
    value: Any


def _in_range(start_ms: int, end_ms: int) -> Any:
    return and_(MonitoringSample.at_ms > start_ms, MonitoringSample.at_ms <= end_ms)


async def samples_after(
    session: AsyncSession,
    device_id: str,
    paths: Sequence[str],
    after: tuple[int, str | None],
    end_ms: int,
    limit: int,
) -> list[Sample]:
    """Up to ``limit`` samples of the device's ``paths`` after the key ``after`` (time,
    path; path None: after every sample of that time) and at or before ``end_ms``, oldest
    first (ties by path)."""
    after_ms, after_path = after
    later = MonitoringSample.at_ms > after_ms
    if after_path is not None:
        later = or_(
            later, and_(MonitoringSample.at_ms == after_ms, MonitoringSample.path > after_path)
        )
    rows = await session.execute(
        select(
            MonitoringSample.at_ms,
            MonitoringSample.path,
            MonitoringSample.type,
            MonitoringSample.numeric_value,
            MonitoringSample.text_value,
            MonitoringSample.value,
        )
        .where(
            MonitoringSample.device_id == device_id,
            MonitoringSample.path.in_(list(paths)),
            later,
            MonitoringSample.at_ms <= end_ms,
        )
        .order_by(MonitoringSample.at_ms, MonitoringSample.path)
        .limit(limit)
    )
    return [
        Sample(device_id, path, at_ms, sample_value(kind, numeric, textual, stored))
        for at_ms, path, kind, numeric, textual, stored in rows
    ]


def _group_devices(group_id: str) -> Any:
    """Devices in the group or one of its sub-groups."""
    return (
        select(GroupMembership.device_id)
        .where(
            or_(
                GroupMembership.group_id == group_id,
                GroupMembership.group_id.startswith(group_id + ".", autoescape=True),
            )
        )
        .distinct()
    )


def _bucket(start_ms: int, interval_ms: int) -> Any:
    return ((MonitoringSample.at_ms - (start_ms + 1)) // interval_ms).label("bucket")


def _aggregate_base(group_id: str, path: str, start_ms: int, end_ms: int) -> Any:
    return (
        MonitoringSample.device_id.in_(_group_devices(group_id)),
        MonitoringSample.path == path,
        _in_range(start_ms, end_ms),
    )


def numeric_aggregates_query(
    group_id: str, path: str, start_ms: int, end_ms: int, interval_ms: int
) -> Select[Any]:
    bucket = _bucket(start_ms, interval_ms)
    return (
        select(
            bucket,
            func.min(MonitoringSample.numeric_value),
            func.max(MonitoringSample.numeric_value),
            func.avg(MonitoringSample.numeric_value),
            func.count(MonitoringSample.numeric_value),
        )
        .where(
            *_aggregate_base(group_id, path, start_ms, end_ms),
            MonitoringSample.numeric_value.is_not(None),
        )
        .group_by(bucket)
        .order_by(bucket)
    )


def textual_aggregates_query(
    group_id: str, path: str, start_ms: int, end_ms: int, interval_ms: int
) -> Select[Any]:
    bucket = _bucket(start_ms, interval_ms)
    return (
        select(bucket, MonitoringSample.text_value, func.count())
        .where(
            *_aggregate_base(group_id, path, start_ms, end_ms),
            MonitoringSample.text_value.is_not(None),
        )
        .group_by(bucket, MonitoringSample.text_value)
        .order_by(bucket, MonitoringSample.text_value)
    )
