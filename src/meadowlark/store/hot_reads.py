"""Hot read queries (one device, the caller's account) without a trip through threads.

Through SQLAlchemy's aiosqlite driver a single SELECT costs about five hand-offs between
the event loop and the connection's thread (cursor, execute, fetch, close, the pool's
rollback), and each hand-off waits for the GIL, longer when the CPU is busy. On SQLite,
``HotReads`` keeps connections of its own, with ``query_only`` set (they can only read)
and in autocommit mode (each statement sees every transaction committed before it
started, in this process or another one):

- ``inline`` reads run on the event loop itself: indexed reads of a few rows (a
  device, a caller's account: microseconds), or of rows the caller then handles one by
  one on the loop anyway (a page of registrations), which costs it more than reading
  them. WAL readers never wait for writers; in the rare case SQLite answers "busy" (at
  once: the timeout is 0), the read goes to the thread below;
- other reads run whole (every statement and the conversion of the rows) in one
  hand-off to a thread of their own, so a long result never holds up the loop.

On PostgreSQL (asynchronous I/O, no thread) the reads go through the engine: one round
trip per statement.

Statements are SQLAlchemy Core selects built once at import time with ``bindparam``
placeholders; they are compiled once for the engine's dialect, and the rows come back
with the same Python values the engine would give (UTC datetimes, decoded JSON, bools).
"""

from __future__ import annotations

import asyncio
import sqlite3
from collections import namedtuple
from collections.abc import Callable, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any

from sqlalchemy import ColumnElement, ColumnExpressionArgument, Select, bindparam, func
from sqlalchemy.engine import Dialect
from sqlalchemy.ext.asyncio import AsyncEngine

Row = Any
"""A row: indexable like a tuple, columns also as attributes (``row.id``)."""
_Processor = Callable[[Any], Any] | None


def starts_with(column: ColumnExpressionArgument[str], name: str) -> ColumnElement[bool]:
    """``column`` starts with the parameter ``name`` (a string), which ``prefix_values``
    binds. Unlike ``LIKE ?``, which SQLite prepares again for every new pattern on an
    indexed column, this costs nothing over the row read itself."""
    return func.substr(column, 1, bindparam(f"{name}_length")) == bindparam(name)


def prefix_values(name: str, prefix: str) -> dict[str, Any]:
    return {name: prefix, f"{name}_length": len(prefix)}


@dataclass(frozen=True, slots=True)
class _Compiled:
    sql: str
    parameters: tuple[tuple[str, _Processor], ...]
    fixed: Mapping[str, Any]
    """Values of the statement's own literals (``substr(x, 1, ...)``'s ``1``)."""
    results: tuple[_Processor, ...]
    row_type: Any
    """A named tuple of the selected columns."""

    def bind(self, values: Mapping[str, Any]) -> list[Any]:
        bound = []
        for name, process in self.parameters:
            value = self.fixed[name] if name in self.fixed else values[name]
            bound.append(value if process is None else process(value))
        return bound

    def convert(self, rows: Sequence[tuple[Any, ...]]) -> list[Row]:
        make, processors = self.row_type._make, self.results
        return [
            make(value if p is None else p(value) for value, p in zip(row, processors, strict=True))
            for row in rows
        ]


def _compile(statement: Select, dialect: Dialect) -> _Compiled:
    compiled = statement.compile(dialect=dialect)
    names = compiled.positiontup or ()
    parameters = tuple(
        (name, compiled.binds[name].type.dialect_impl(dialect).bind_processor(dialect))
        for name in names
    )
    results = tuple(
        column.type.dialect_impl(dialect).result_processor(dialect, None)
        for column in statement.selected_columns
    )
    fixed = {
        name: compiled.binds[name].effective_value
        for name in names
        if not compiled.binds[name].required
    }
    # The columns are known at run time only; mypy takes namedtuple() fields as literals only.
    columns = statement.selected_columns.keys()
    row_type = namedtuple("Row", columns, rename=True)  # type: ignore[misc]  # noqa: PYI024
    return _Compiled(str(compiled), parameters, fixed, results, row_type)


class HotReads:
    """Runs prepared Core selects: see the module docstring."""

    def __init__(self, engine: AsyncEngine) -> None:
        self._engine = engine
        url = engine.url
        self._sqlite_path = (
            url.database
            if url.get_backend_name() == "sqlite" and url.database not in (None, "", ":memory:")
            else None
        )
        self._compiled: dict[Select, _Compiled] = {}
        self._executor: ThreadPoolExecutor | None = None
        self._connection: sqlite3.Connection | None = None
        self._loop_connection: sqlite3.Connection | None = None

    async def rows(
        self, *reads: tuple[Select, Mapping[str, Any]], inline: bool = False
    ) -> list[list[Row]]:
        """The rows of each ``(statement, parameters)``; ``inline``: read on the event
        loop (see the module docstring)."""
        if self._sqlite_path is None:
            async with self._engine.connect() as connection:
                return [
                    list(await connection.execute(statement, dict(values)))
                    for statement, values in reads
                ]
        prepared = [(self._prepare(statement), values) for statement, values in reads]
        if inline:
            if self._loop_connection is None:
                self._loop_connection = self._connect(timeout=0)
            try:
                return _read(self._loop_connection, prepared)
            except sqlite3.OperationalError as exc:
                if exc.sqlite_errorcode & 0xFF not in (sqlite3.SQLITE_BUSY, sqlite3.SQLITE_LOCKED):
                    raise
        if self._executor is None:
            self._executor = ThreadPoolExecutor(1, thread_name_prefix="meadowlark-hot-reads")
        loop = asyncio.get_running_loop()
        return await loop.run_in_executor(self._executor, self._run, prepared)

    def _prepare(self, statement: Select) -> _Compiled:
        compiled = self._compiled.get(statement)
        if compiled is None:
            compiled = self._compiled[statement] = _compile(statement, self._engine.dialect)
        return compiled

    def _connect(self, *, timeout: float) -> sqlite3.Connection:
        assert self._sqlite_path is not None
        connection = sqlite3.connect(
            self._sqlite_path, isolation_level=None, timeout=timeout, check_same_thread=False
        )
        connection.execute("PRAGMA query_only = ON")
        return connection

    def _run(self, prepared: list[tuple[_Compiled, Mapping[str, Any]]]) -> list[list[Row]]:
        """On the reader thread."""
        if self._connection is None:
            self._connection = self._connect(timeout=30)
        return _read(self._connection, prepared)

    async def close(self) -> None:
        if self._loop_connection is not None:
            self._loop_connection.close()
            self._loop_connection = None
        executor, self._executor = self._executor, None
        if executor is None:
            return
        await asyncio.get_running_loop().run_in_executor(executor, self._close_connection)
        executor.shutdown(wait=False)

    def _close_connection(self) -> None:
        if self._connection is not None:
            self._connection.close()
            self._connection = None


def _read(
    connection: sqlite3.Connection, prepared: list[tuple[_Compiled, Mapping[str, Any]]]
) -> list[list[Row]]:
    return [
        compiled.convert(connection.execute(compiled.sql, compiled.bind(values)).fetchall())
        for compiled, values in prepared
    ]
