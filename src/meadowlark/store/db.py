"""Async engine and session factory for SQLite (embedded default) and PostgreSQL."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any, Generic, TypeVar, cast

from sqlalchemy import event, text
from sqlalchemy.engine import CursorResult, Result, make_url
from sqlalchemy.ext.asyncio import (
    AsyncEngine,
    AsyncSession,
    async_sessionmaker,
    create_async_engine,
)

from meadowlark.store.hot_reads import HotReads

T = TypeVar("T")


def _sqlite_pragmas(dbapi_connection: Any, _record: Any) -> None:
    cursor = dbapi_connection.cursor()
    cursor.execute("PRAGMA journal_mode=WAL")
    cursor.execute("PRAGMA synchronous=NORMAL")
    cursor.execute("PRAGMA foreign_keys=ON")
    cursor.execute("PRAGMA busy_timeout=5000")
    cursor.close()


def create_engine(url: str) -> AsyncEngine:
    """An engine for ``url``; SQLite gets WAL, foreign keys and a busy timeout."""
    parsed = make_url(url)
    if parsed.get_backend_name() == "sqlite":
        if parsed.database and parsed.database != ":memory:":
            Path(parsed.database).parent.mkdir(parents=True, exist_ok=True)
        engine = create_async_engine(url, connect_args={"timeout": 30})
        event.listen(engine.sync_engine, "connect", _sqlite_pragmas)
        return engine
    return create_async_engine(url, pool_size=10, max_overflow=20, pool_pre_ping=True)


def rows_affected(result: Result[Any]) -> int:
    """The rows an UPDATE or DELETE touched. ``session.execute`` is typed as returning a
    ``Result``, which has no ``rowcount``; for those statements it is a ``CursorResult``."""
    return cast(CursorResult[Any], result).rowcount


class Database:
    """Owns the engine and hands out sessions (one per unit of work)."""

    def __init__(self, url: str) -> None:
        self.url = url
        self.engine = create_engine(url)
        self.sessionmaker = async_sessionmaker(self.engine, expire_on_commit=False)
        self.hot_reads = HotReads(self.engine)

    @property
    def is_sqlite(self) -> bool:
        return self.engine.dialect.name == "sqlite"

    @asynccontextmanager
    async def session(self) -> AsyncIterator[AsyncSession]:
        async with self.sessionmaker() as session:
            yield session

    @asynccontextmanager
    async def transaction(self) -> AsyncIterator[AsyncSession]:
        async with self.sessionmaker() as session, session.begin():
            yield session

    async def ping(self) -> None:
        """One round trip to the database; raises when it does not answer."""
        async with self.sessionmaker() as session:
            await session.execute(text("SELECT 1"))

    async def dispose(self) -> None:
        await self.hot_reads.close()
        await self.engine.dispose()


class SharedQuery(Generic[T]):
    """One query answering everyone who asks while it waits to run (single flight).

    A caller always gets the result of a run that started after it asked, so the answer
    is as fresh as a query of its own; callers arriving while a run is under way share
    the next one. Under load this turns a query per event into a query per round trip.
    """

    def __init__(self, query: Callable[[], Awaitable[T]]) -> None:
        self._query = query
        self._waiting: asyncio.Future[T] | None = None
        self._runner: asyncio.Task[None] | None = None

    async def __call__(self) -> T:
        if self._waiting is None:
            loop = asyncio.get_running_loop()
            self._waiting = loop.create_future()
            if self._runner is None:
                self._runner = loop.create_task(self._run(), name="shared-query")
        return await asyncio.shield(self._waiting)

    async def _run(self) -> None:
        try:
            while self._waiting is not None:
                future, self._waiting = self._waiting, None
                try:
                    future.set_result(await self._query())
                except Exception as exc:
                    future.set_exception(exc)
                    future.exception()  # retrieved: every caller may have gone meanwhile
        finally:
            self._runner = None
