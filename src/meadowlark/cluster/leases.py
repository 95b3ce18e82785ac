"""Singleton duties: exactly one node of a deployment runs them at a time.

On PostgreSQL the holder is whoever holds a session-level advisory lock on a dedicated
connection; if that node dies its connection closes and the lock is free at once. On
SQLite (the workers of one host) the holder is recorded in ``cluster_leases`` with an
expiry it renews; a dead holder's lease runs out after ``ttl`` seconds. Every node tries
again every ``ttl / 3`` seconds, so a duty moves within about one ``ttl``.
"""

from __future__ import annotations

import asyncio
import zlib
from collections.abc import Awaitable, Callable, Coroutine
from datetime import UTC, datetime, timedelta
from typing import Any

import structlog
from sqlalchemy import insert, or_, update
from sqlalchemy.engine import make_url
from sqlalchemy.exc import IntegrityError

from meadowlark.store.cluster_models import ClusterLease
from meadowlark.store.db import Database, rows_affected

_log = structlog.get_logger("meadowlark.cluster")

Duty = Callable[[], Coroutine[Any, Any, None]]
"""Runs while the lease is held; cancelled when it is lost or the node stops."""


def advisory_key(name: str) -> int:
    """A stable 32-bit key for ``pg_advisory_lock`` from a lease name."""
    return zlib.crc32(f"meadowlark:{name}".encode())


class Lease:
    def __init__(self, db: Database, name: str, holder: str, duty: Duty, ttl: float = 15.0):
        self.name = name
        self.holder = holder
        self.held = False
        self._db = db
        self._duty = duty
        self._ttl = ttl
        self._task: asyncio.Task[None] | None = None
        self._connection: Any = None

    def start(self) -> None:
        self._task = asyncio.get_running_loop().create_task(self._run(), name=f"lease-{self.name}")

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            await asyncio.gather(self._task, return_exceptions=True)
            self._task = None
        await self._release()

    async def _run(self) -> None:
        duty: asyncio.Task[None] | None = None
        try:
            while True:
                try:
                    held = await self._try()
                except Exception as exc:  # the store is away: not the holder meanwhile
                    _log.warning("lease_check_failed", lease=self.name, error=str(exc))
                    held = False
                    await self._release()
                if held and duty is None:
                    _log.info("lease_gained", lease=self.name, holder=self.holder)
                    duty = asyncio.get_running_loop().create_task(self._duty())
                elif not held and duty is not None:
                    _log.warning("lease_lost", lease=self.name, holder=self.holder)
                    duty.cancel()
                    await asyncio.gather(duty, return_exceptions=True)
                    duty = None
                self.held = held
                await asyncio.sleep(self._ttl / 3)
        finally:
            self.held = False
            if duty is not None:
                duty.cancel()
                await asyncio.gather(duty, return_exceptions=True)

    async def _try(self) -> bool:
        if self._db.is_sqlite:
            return await self._renew_row()
        return await self._hold_advisory_lock()

    async def _hold_advisory_lock(self) -> bool:
        import psycopg

        if self._connection is not None:
            try:
                await self._connection.execute("SELECT 1")
                return True
            except psycopg.Error:
                await self._release()
        conninfo = (
            make_url(self._db.url)
            .set(drivername="postgresql")
            .render_as_string(hide_password=False)
        )
        connection = await psycopg.AsyncConnection.connect(conninfo, autocommit=True)
        cursor = await connection.execute(
            "SELECT pg_try_advisory_lock(%s)", (advisory_key(self.name),)
        )
        row = await cursor.fetchone()
        if row is not None and row[0]:
            self._connection = connection
            return True
        await connection.close()
        return False

    async def _renew_row(self) -> bool:
        now = datetime.now(UTC)
        until = now + timedelta(seconds=self._ttl)
        async with self._db.transaction() as session:
            renewed = await session.execute(
                update(ClusterLease)
                .where(
                    ClusterLease.name == self.name,
                    or_(ClusterLease.holder == self.holder, ClusterLease.expires_at < now),
                )
                .values(holder=self.holder, expires_at=until)
            )
            if rows_affected(renewed):
                return True
        try:
            async with self._db.transaction() as session:
                await session.execute(
                    insert(ClusterLease).values(
                        name=self.name, holder=self.holder, expires_at=until
                    )
                )
            return True
        except IntegrityError:  # someone else holds it
            return False

    async def _release(self) -> None:
        connection, self._connection = self._connection, None
        if connection is not None:
            try:
                await connection.close()
            except Exception:  # closing a broken connection: nothing left to release
                _log.debug("lease_connection_close_failed", lease=self.name)
        elif self.held and self._db.is_sqlite:
            try:
                async with self._db.transaction() as session:
                    await session.execute(
                        update(ClusterLease)
                        .where(ClusterLease.name == self.name, ClusterLease.holder == self.holder)
                        .values(expires_at=datetime.now(UTC))
                    )
            except Exception:  # the store is away: the lease runs out by itself
                _log.warning("lease_release_failed", lease=self.name)
        self.held = False


async def with_migration_lock(db: Database, work: Callable[[], Awaitable[Any]]) -> Any:
    """Run ``work`` (the schema upgrade and first administrator at start) while no other
    node runs it: a blocking advisory lock on PostgreSQL. On SQLite the supervisor of
    ``serve --workers`` prepares the store before it starts the workers."""
    if db.is_sqlite:
        return await work()
    import psycopg

    conninfo = make_url(db.url).set(drivername="postgresql").render_as_string(hide_password=False)
    async with await psycopg.AsyncConnection.connect(conninfo, autocommit=True) as connection:
        await connection.execute("SELECT pg_advisory_lock(%s)", (advisory_key("migrations"),))
        try:
            return await work()
        finally:
            await connection.execute("SELECT pg_advisory_unlock(%s)", (advisory_key("migrations"),))
