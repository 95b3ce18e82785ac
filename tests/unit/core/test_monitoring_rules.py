"""Monitoring's pure parts: URL and range checks, cursors, the sampling decision, bucket
math (run by SQLite in memory: the same SQL the store runs)."""

from __future__ import annotations

import asyncio
from datetime import UTC, date, datetime, timedelta

import pytest

from meadowlark.core.errors import InvalidInput
from meadowlark.core.monitoring import (
    ALL,
    Cursors,
    Settings,
    check_limit,
    iso_ms,
    parse_monitored_url,
    parse_time,
    time_range,
)
from meadowlark.store.monitoring import SampleWindow, epoch_ms, from_epoch_ms


def _code(call, *args) -> int | None:
    with pytest.raises(InvalidInput) as caught:
        call(*args)
    return caught.value.code


def test_monitored_urls_name_a_resource_of_objects_1_to_65534():
    assert parse_monitored_url("/3303/0/5700") == "/3303/0/5700"
    assert parse_monitored_url("3303/0/5700/") == "/3303/0/5700"
    assert parse_monitored_url("/3/0/7/1") == "/3/0/7/1"
    for bad in ("/3303", "/3303/0", "/a/b/c", "/1/2/3/4/5", "/3/0/65536", ""):
        assert _code(parse_monitored_url, bad) == 4003
    assert _code(parse_monitored_url, "/0/0/3") == 4042
    assert _code(parse_monitored_url, "/65535/0/1") == 4042


def test_limits_and_time_ranges():
    assert check_limit(1) == 1 and check_limit(2048) == 2048
    for bad in (0, -1, 2049, 5000):
        assert _code(check_limit, bad) == 4001
    assert time_range("1000", "1000") == (1000, 1000)
    assert time_range("1970-01-01T00:00:01Z", "2000") == (1000, 2000)
    assert _code(time_range, "2000", "1000") == 4000
    assert _code(time_range, None, "1000") == 4000
    assert _code(time_range, "yesterday", None) == 4000
    assert _code(parse_time, str(2**60), "t") == 4000


def test_millisecond_times_round_trip_exactly():
    for at_ms in (0, 1, 1_764_552_545_123, 1_764_552_545_999):
        assert epoch_ms(from_epoch_ms(at_ms)) == at_ms
        assert parse_time(iso_ms(at_ms), "t") == at_ms
    at = datetime(2026, 12, 1, 1, 2, 3, 456_999, tzinfo=UTC)
    assert epoch_ms(at) % 1000 == 456  # floored, never rounded up into the next ms


def test_cursors_are_signed_and_bound_to_the_key():
    cursors = Cursors("key one")
    state = {"n": "m", "d": "dev", "t": 5, "p": "/3/0/1", "e": 9, "l": 2}
    token = cursors.encode(state)
    assert cursors.decode(token) == state
    assert _code(Cursors("key two").decode, token) == 4000
    tampered = token[:-2] + ("A" if token[-2] != "A" else "B") + token[-1]
    assert _code(cursors.decode, tampered) == 4000
    assert _code(cursors.decode, "not a cursor!") == 4000


def test_device_setting_wins_then_the_nearest_group_then_configurations():
    settings = Settings(
        devices={"off": False, "on": True},
        groups={"a": True, "a.b": False},
        configured={"a.b": frozenset({"/3303/0/5700"}), "x": frozenset({"/3/0/9"})},
    )
    assert settings.selection("on", ["a.b.c"]) == ALL
    assert settings.selection("any", ["a"]) == ALL
    assert settings.selection("any", ["a.c"]) == ALL
    # a.b disables monitoring below it; its configuration still samples its resource
    assert settings.selection("any", ["a.b.c"]) == frozenset({"/3303/0/5700"})
    assert settings.selection("off", ["a"]) is None
    assert settings.selection("any", ["x", "y"]) == frozenset({"/3/0/9"})
    assert settings.selection("any", []) is None
    assert not Settings({}, {"g": False}, {}).any
    assert Settings({}, {}, {"g": frozenset({"/1/0/1"})}).any


def test_the_window_runs_from_the_retention_cutoff_to_the_days_made_ahead():
    window = SampleWindow(retention_days=30, days_ahead=3)
    first, last = window.days(date(2026, 12, 1))
    assert first == date(2026, 11, 1) and last == date(2026, 12, 4)
    oldest, horizon = window.accepted()
    today = datetime.now(UTC).date()
    assert from_epoch_ms(oldest).date() == today - timedelta(days=30)
    assert from_epoch_ms(horizon).date() == today + timedelta(days=4)


def test_buckets_cover_exclusive_start_to_inclusive_end_in_sql():
    """Bucket k holds (start + k*interval, start + (k+1)*interval]: checked on the SQL the
    store runs, in SQLite."""
    from sqlalchemy import insert

    from meadowlark.store.coiote_models import Group, GroupMembership
    from meadowlark.store.db import Database
    from meadowlark.store.device_models import Device
    from meadowlark.store.models import Base, Domain
    from meadowlark.store.monitoring import numeric_aggregates_query
    from meadowlark.store.monitoring_models import MonitoringSample

    async def main() -> list[tuple[int, float, float, float, int]]:
        db = Database("sqlite+aiosqlite:///:memory:")
        try:
            async with db.engine.begin() as connection:
                await connection.run_sync(Base.metadata.create_all)
            async with db.transaction() as session:
                session.add(Domain(id="/root/", customer_id="c", organization_id="o"))
                await session.flush()
                session.add(Device(id="d", endpoint_name="d", domain_id="/root/"))
                session.add(Group(id="g", domain_id="/root/"))
                await session.flush()
                session.add(GroupMembership(device_id="d", group_id="g"))
                await session.flush()
                await session.execute(
                    insert(MonitoringSample),
                    [
                        {
                            "device_id": "d",
                            "path": "/1/0/1",
                            "at_ms": at,
                            "numeric_value": v,
                            "type": "Float",
                            "value": v,
                        }
                        for at, v in [
                            (100, 9.0),
                            (101, 1.0),
                            (110, 2.0),
                            (111, 3.0),
                            (130, 4.0),
                            (131, 5.0),
                        ]
                    ],
                )
            async with db.session() as session:
                rows = await session.execute(numeric_aggregates_query("g", "/1/0/1", 100, 130, 10))
                return [tuple(row) for row in rows]
        finally:
            await db.dispose()

    rows = asyncio.run(main())
    # at 100 is the (exclusive) start, 131 is past the (inclusive) end
    assert rows == [(0, 1.0, 2.0, 1.5, 2), (1, 3.0, 3.0, 3.0, 1), (2, 4.0, 4.0, 4.0, 1)]


def test_the_index_decides_from_memory_and_forgets_what_a_change_touches():
    """Values of a device not looked up yet wait for the lookup; a change of settings is
    announced (to the other nodes) and reloads them; a device's change forgets it."""
    from meadowlark.core.monitoring import MonitoredValueCache, MonitoringIndex
    from meadowlark.lwm2m.node import ResourceType
    from meadowlark.lwm2m.path import LwM2mPath
    from meadowlark.server.ports import InMemoryValueCache
    from meadowlark.server.values import CachedValue

    class Writer:
        def __init__(self) -> None:
            self.samples: list[tuple[str, LwM2mPath]] = []

        def add(self, device_id, values) -> None:
            self.samples.extend((device_id, path) for path in values)

    class Index(MonitoringIndex):
        lookups = 0

        async def load(self) -> None:
            self.settings = Settings({}, {"g": True}, {})
            self.active = True
            self._selections.clear()

        async def _look_up(self, endpoint: str) -> None:
            Index.lookups += 1
            self._devices[endpoint] = ("dev-1", ("g.sub",))
            for values in self._waiting.pop(endpoint, []):
                self.deliver(endpoint, values)

    async def main() -> None:
        index = Index(db=None)  # type: ignore[arg-type]
        announced: list[object] = []
        index.on_local_change(announced.append)
        writer = Writer()
        cache = MonitoredValueCache(InMemoryValueCache(), index, writer)  # type: ignore[arg-type]
        now = datetime.now(UTC)
        values = {
            LwM2mPath(3303, 0, 5700): CachedValue(ResourceType.FLOAT, 1.5, now),
            LwM2mPath(0, 0, 3): CachedValue(ResourceType.OPAQUE, b"key", now),
        }
        cache.put("ep", values)  # nothing monitored yet: not even looked up
        assert writer.samples == [] and Index.lookups == 0
        index.changed(None)
        await index.settled()
        assert announced == [None]
        cache.put("ep", values)
        await asyncio.sleep(0)
        await asyncio.gather(*index._lookups)
        assert writer.samples == [("dev-1", LwM2mPath(3303, 0, 5700))]  # never object 0
        cache.put("ep", values)  # decided from memory now
        assert Index.lookups == 1 and len(writer.samples) == 2
        index.apply("dev-1")  # its groups changed on another node
        assert index.selection("ep") is False

    asyncio.run(main())


def test_sample_columns_round_trip_to_the_cached_form():
    from meadowlark.lwm2m.node import ObjectLink, ResourceType
    from meadowlark.server.values import CachedValue, value_to_json
    from meadowlark.store.monitoring import sample_columns, sample_value

    now = datetime.now(UTC)
    for kind, value in [
        (ResourceType.INTEGER, -7),
        (ResourceType.UNSIGNED_INTEGER, 2**40),
        (ResourceType.INTEGER, 2**62 + 1),
        (ResourceType.FLOAT, 21.5),
        (ResourceType.BOOLEAN, False),
        (ResourceType.STRING, "idle"),
        (ResourceType.OPAQUE, b"\x00\xff"),
        (ResourceType.TIME, now.replace(microsecond=0)),
        (ResourceType.OBJLNK, ObjectLink(3, 0)),
    ]:
        numeric, textual, type_name, stored = sample_columns(CachedValue(kind, value, now))
        assert sample_value(type_name, numeric, textual, stored) == value_to_json(kind, value)
