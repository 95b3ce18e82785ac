"""HotReads: the same rows as the engine gives, and every commit seen at once."""

from __future__ import annotations

import asyncio
import sqlite3
import threading
from datetime import UTC, datetime

from sqlalchemy import bindparam, insert, select

from meadowlark.store.coiote_models import Group, GroupMembership
from meadowlark.store.db import Database
from meadowlark.store.device_models import Device
from meadowlark.store.hot_reads import prefix_values, starts_with
from meadowlark.store.migrate import upgrade_to_head
from meadowlark.store.models import Domain

DEVICE = select(Device.id, Device.properties, Device.blacklisted, Device.creation_time).where(
    Device.id == bindparam("id"), starts_with(Device.domain_id, "scope")
)


def _url(database_url, tmp_path) -> str:
    return database_url or f"sqlite+aiosqlite:///{tmp_path / 'hot.db'}"


def test_rows_match_the_engine_and_commits_are_seen_at_once(database_url, tmp_path):
    async def main() -> None:
        db = Database(_url(database_url, tmp_path))
        try:
            await upgrade_to_head(db.engine)
            values = {"id": "hot-1", **prefix_values("scope", "/root/")}
            assert await db.hot_reads.rows((DEVICE, values)) == [[]]
            now = datetime.now(UTC)
            async with db.transaction() as session:
                session.add(Domain(id="/root/", customer_id="c-hot", organization_id="o-hot"))
                await session.flush()
                await session.execute(
                    insert(Device),
                    [{"id": "hot-1", "endpoint_name": "hot-1", "domain_id": "/root/",
                      "properties": {"site": "7"}, "blacklisted": True, "creation_time": now}],
                )  # fmt: skip
            [rows] = await db.hot_reads.rows((DEVICE, values))
            async with db.engine.connect() as connection:
                expected = list(await connection.execute(DEVICE, values))
            assert rows == expected
            [row] = rows
            assert row.properties == {"site": "7"} and row.blacklisted is True
            assert row.creation_time == now and row.creation_time.tzinfo is not None
            # Tenancy: a prefix only matches at the start, and wildcards are plain text.
            for scope in ("/root/acme/", "/", "root/", "/r%/", "/root_"):
                [found] = await db.hot_reads.rows(
                    (DEVICE, {**values, **prefix_values("scope", scope)})
                )
                assert (found != []) == "/root/".startswith(scope), scope
        finally:
            await db.dispose()

    asyncio.run(main())


def test_several_reads_in_one_call(database_url, tmp_path):
    async def main() -> None:
        db = Database(_url(database_url, tmp_path))
        try:
            await upgrade_to_head(db.engine)
            async with db.transaction() as session:
                session.add(Domain(id="/two/", customer_id="c-two", organization_id="o-two"))
                await session.flush()
                session.add(Device(id="two-1", endpoint_name="two-1", domain_id="/two/"))
                session.add(Group(id="g-1", domain_id="/two/"))
                await session.flush()
                session.add(GroupMembership(device_id="two-1", group_id="g-1"))
            groups = select(GroupMembership.group_id).where(
                GroupMembership.device_id == bindparam("id")
            )
            values = {"id": "two-1", **prefix_values("scope", "/two/")}
            devices, memberships = await db.hot_reads.rows((DEVICE, values), (groups, values))
            assert [row.id for row in devices] == ["two-1"]
            assert [row.group_id for row in memberships] == ["g-1"]
        finally:
            await db.dispose()

    asyncio.run(main())


def test_inline_reads_equal_the_others(database_url, tmp_path):
    async def main() -> None:
        db = Database(_url(database_url, tmp_path))
        try:
            await upgrade_to_head(db.engine)
            values = {"id": "two-1", **prefix_values("scope", "/two/")}
            async with db.transaction() as session:
                if await session.get(Domain, "/two/") is None:
                    session.add(Domain(id="/two/", customer_id="c-two", organization_id="o-two"))
                    await session.flush()
                    session.add(Device(id="two-1", endpoint_name="two-1", domain_id="/two/"))
            assert await db.hot_reads.rows((DEVICE, values), inline=True) == (
                await db.hot_reads.rows((DEVICE, values))
            )
        finally:
            await db.dispose()

    asyncio.run(main())


def test_an_inline_read_waits_off_the_loop_while_the_file_is_locked(tmp_path):
    """SQLite only (inline reads exist for its file): with a rollback journal (not WAL) a
    writer's lock makes readers busy: the read on the event loop gives up at once and
    waits for the lock on the reader thread."""
    path = tmp_path / "locked.db"

    async def main() -> None:
        db = Database(f"sqlite+aiosqlite:///{path}")
        try:
            await upgrade_to_head(db.engine)
            await db.engine.dispose()  # no pooled connection keeps the WAL alive
            with sqlite3.connect(path) as setup:
                setup.execute("PRAGMA journal_mode=DELETE")
            writer = sqlite3.connect(path, isolation_level=None, check_same_thread=False)
            writer.execute("BEGIN EXCLUSIVE")
            threading.Timer(0.3, writer.execute, ("COMMIT",)).start()
            ticks = 0

            async def tick() -> None:
                nonlocal ticks
                while True:
                    await asyncio.sleep(0.01)
                    ticks += 1

            ticker = asyncio.create_task(tick())
            values = {"id": "none", **prefix_values("scope", "/")}
            assert await db.hot_reads.rows((DEVICE, values), inline=True) == [[]]
            ticker.cancel()
            assert ticks >= 10  # the loop ran on while the read waited for the lock
            writer.close()
        finally:
            await db.dispose()

    asyncio.run(main())
