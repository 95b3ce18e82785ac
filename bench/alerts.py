"""Alerts at 100,000 devices on SQLite: the no-contact sweep and the value path's tap.

Figures, each against a baseline measured in the same run:

- sweep: one ``AlertService.sweep`` of a ``noContact`` rule over 100,000 devices, 1% of
  them silent, in steady state (their alerts raised by an earlier sweep), against the
  Python loop the sweep avoids (fetch every device's last contact, compare in Python);
  the first sweep, which raises the 1,000 alerts, is shown too;
- threshold checks per second of values that cross nothing, the device remembered,
  against the first value of each device (its domain, groups, open alert looked up);
- tap: ``AlertingValueCache.put`` of a notification's value, with threshold rules on
  other paths, against the bare in-memory value cache's ``put``.

``python -m bench alerts`` (or ``python -m bench.alerts``).
"""

from __future__ import annotations

import asyncio
import tempfile
import time
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path

from sqlalchemy import func, insert, select

from meadowlark.core.alerts import AlertingValueCache, AlertService, ThresholdIndex, ThresholdRule
from meadowlark.core.events import EventBus
from meadowlark.lwm2m.node import ResourceType
from meadowlark.lwm2m.path import LwM2mPath
from meadowlark.server.ports import InMemoryValueCache
from meadowlark.server.values import CachedValue
from meadowlark.store.alert_models import Alert, AlertRule
from meadowlark.store.db import Database
from meadowlark.store.device_models import Device
from meadowlark.store.devices import SqlDeviceStores
from meadowlark.store.migrate import upgrade_to_head
from meadowlark.store.models import Domain

CHUNK = 5_000
SILENT_EVERY = 100
SAMPLES = 200_000
CHECKED_DEVICES = 2_000


async def _no_domain(_endpoint: str) -> str | None:
    return None


async def _fill(db: Database, devices: int, now: datetime) -> None:
    await upgrade_to_head(db.engine)
    async with db.transaction() as session:
        session.add(Domain(id="/root/", customer_id="c", organization_id="o"))
    async with db.transaction() as session:
        session.add(
            AlertRule(
                id="bench-rule",
                domain_id="/root/",
                name="silent",
                kind="noContact",
                severity="warning",
                enabled=True,
                no_contact_minutes=10,
                hysteresis=0.0,
                created_at=now,
                updated_at=now,
            )
        )
    for start in range(0, devices, CHUNK):
        rows = [
            {
                "id": f"urn:dev:al-{n:07d}",
                "endpoint_name": f"urn:dev:al-{n:07d}",
                "domain_id": "/root/",
                "creation_time": now,
                "last_contact_time": now
                - (timedelta(hours=1) if n % SILENT_EVERY == 0 else timedelta(seconds=n % 300)),
            }
            for n in range(start, min(start + CHUNK, devices))
        ]
        async with db.transaction() as session:
            await session.execute(insert(Device), rows)


async def _threshold_checks(
    db: Database, alerts: AlertService, now: datetime
) -> tuple[float, float]:
    """Checks per second of notified values against a threshold rule they do not cross:
    the first value of each device (its domain, groups and open alert looked up) and the
    next ones (remembered)."""
    async with db.transaction() as session:
        session.add(
            AlertRule(
                id="bench-threshold",
                domain_id="/root/",
                name="hot",
                kind="threshold",
                severity="warning",
                enabled=True,
                resource_url="/3303/0/5700",
                above=1000.0,
                hysteresis=0.0,
                created_at=now,
                updated_at=now,
            )
        )
    await alerts.start()
    sensor = LwM2mPath(3303, 0, 5700)
    value = {sensor: CachedValue(ResourceType.FLOAT, 21.5, now)}
    endpoints = [f"urn:dev:al-{n:07d}" for n in range(1, CHECKED_DEVICES * 7, 7)]
    rates = []
    for _ in range(2):
        began = time.perf_counter()
        for endpoint in endpoints:
            alerts.values_seen(endpoint, value)
        await alerts.idle()
        rates.append(len(endpoints) / (time.perf_counter() - began))
    await alerts.stop()
    return rates[0], rates[1]


def _per_call_us(work: Callable[[], object], calls: int) -> float:
    start = time.perf_counter()
    for _ in range(calls):
        work()
    return (time.perf_counter() - start) / calls * 1e6


async def _measure(devices: int, duration: float) -> dict[str, float]:
    now = datetime.now(UTC)
    rounds = max(3, int(duration))
    with tempfile.TemporaryDirectory() as folder:
        db = Database(f"sqlite+aiosqlite:///{Path(folder) / 'bench.db'}")
        try:
            await _fill(db, devices, now)
            alerts = AlertService(db, EventBus(_no_domain))
            began = time.perf_counter()
            await alerts.sweep(now)
            first = time.perf_counter() - began
            async with db.session() as session:
                raised = await session.scalar(select(func.count()).select_from(Alert))
            assert raised == devices // SILENT_EVERY, raised

            async def steady() -> float:
                began = time.perf_counter()
                await alerts.sweep(now)
                return time.perf_counter() - began

            async def python_loop() -> float:
                began = time.perf_counter()
                cutoff = now - timedelta(minutes=10)
                async with db.session() as session:
                    rows = (
                        await session.execute(select(Device.id, Device.last_contact_time))
                    ).all()
                silent = [row.id for row in rows if row.last_contact_time < cutoff]
                assert len(silent) == devices // SILENT_EVERY
                return time.perf_counter() - began

            sweep = min([await steady() for _ in range(rounds)])
            loop = min([await python_loop() for _ in range(rounds)])
            cold, warm = await _threshold_checks(db, alerts, now)
        finally:
            await db.dispose()

    sensor = LwM2mPath(3303, 0, 5700)
    value = {sensor: CachedValue(ResourceType.FLOAT, 21.5, now)}
    bare = InMemoryValueCache()
    tapped_service = AlertService(Database("sqlite+aiosqlite://"), EventBus(_no_domain))
    tapped_service.index = ThresholdIndex(
        [
            ThresholdRule(f"r{n}", "/root/", None, "info", LwM2mPath(3, 0, n), 1.0, None, 0.0)
            for n in range(20)
        ]
    )
    tapped = AlertingValueCache(InMemoryValueCache(), tapped_service)
    plain_us = min(_per_call_us(lambda: bare.put("ep", value), SAMPLES) for _ in range(3))
    tap_us = min(_per_call_us(lambda: tapped.put("ep", value), SAMPLES) for _ in range(3))
    store_db = Database("sqlite+aiosqlite://")
    stored = SqlDeviceStores(store_db, "/root/").values  # the server's cache, writer idle
    stored_tapped = AlertingValueCache(SqlDeviceStores(store_db, "/root/").values, tapped_service)
    store_us = min(_per_call_us(lambda: stored.put("ep", value), SAMPLES) for _ in range(3))
    store_tap_us = min(
        _per_call_us(lambda: stored_tapped.put("ep", value), SAMPLES) for _ in range(3)
    )
    await tapped_service.stop()
    await store_db.dispose()

    print(f"Alerts, {devices} devices on SQLite, 1 in {SILENT_EVERY} silent (best of {rounds})")
    print(
        f"  sweep (steady) {sweep * 1000:8.1f} ms   Python loop over every device "
        f"{loop * 1000:8.1f} ms   ratio {sweep / loop:5.3f}x"
        f"   (first sweep, raising {devices // SILENT_EVERY} alerts: {first * 1000:.0f} ms)"
    )
    print(
        f"  threshold checks (no crossing) {warm:8.0f}/s with the device remembered, "
        f"{cold:6.0f}/s looking it up   ratio {warm / cold:5.1f}x"
    )
    print(
        f"  value tap      {tap_us:8.3f} us   bare value cache put {plain_us:8.3f} us"
        f"   ratio {tap_us / plain_us:5.2f}x   (20 threshold rules on other objects)"
    )
    print(
        f"  tap on the SQL value cache {store_tap_us:8.3f} us   its bare put {store_us:8.3f} us"
        f"   ratio {store_tap_us / store_us:5.2f}x"
    )
    return {
        "devices": devices,
        "sweep_s": sweep,
        "first_sweep_s": first,
        "python_loop_s": loop,
        "threshold_checks_per_s": warm,
        "threshold_checks_cold_per_s": cold,
        "tap_us": tap_us,
        "bare_put_us": plain_us,
        "sql_cache_tap_us": store_tap_us,
        "sql_cache_put_us": store_us,
    }


def run(duration: float = 5.0, devices: int = 100_000) -> dict[str, float]:
    return asyncio.run(_measure(devices, duration))


if __name__ == "__main__":
    run()
