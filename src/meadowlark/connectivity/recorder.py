"""Batched writes of what the LwM2M side does to Things: usage counted by the transport
and events of registrations, refusals and IMEI violations.

Nothing here writes per datagram or per event: the server's listener and the transport's
``TrafficCounter`` only touch memory, and ``flush`` (every ``interval`` seconds) turns it
into one transaction: usage per Thing and day upserted, events and audit rows inserted.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import Mapping
from datetime import UTC, date, datetime
from typing import Any

import structlog
from sqlalchemy import insert
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.ext.asyncio import AsyncSession

from meadowlark.connectivity import cdr
from meadowlark.connectivity.enforcement import ThingIndex
from meadowlark.server.transport import TrafficCounter
from meadowlark.store.connectivity_models import ConnectivityEvent, ThingUsage
from meadowlark.store.db import Database
from meadowlark.store.models import AuditEvent

_log = structlog.get_logger("meadowlark.connectivity")
USAGE_COLUMNS = ("bytes_in", "bytes_out", "messages_in", "messages_out", "sms_mt")


async def add_usage(
    session: AsyncSession, day: date, usage: Mapping[str, Mapping[str, int]]
) -> None:
    """Add counters to the usage rows of ``day`` (Thing id -> column -> amount)."""
    if not usage:
        return
    dialect = postgresql if session.get_bind().dialect.name == "postgresql" else sqlite
    rows = [
        {"thing_id": thing_id, "day": day, **{c: counts.get(c, 0) for c in USAGE_COLUMNS}}
        for thing_id, counts in usage.items()
    ]
    statement = dialect.insert(ThingUsage).values(rows)
    table = ThingUsage.__table__
    await session.execute(
        statement.on_conflict_do_update(
            index_elements=["thing_id", "day"],
            set_={c: table.c[c] + statement.excluded[c] for c in USAGE_COLUMNS},
        )
    )


class ActivityRecorder:
    UNATTRIBUTED_GRACE = 60.0
    """Seconds traffic from an address no device is registered at is kept for the device
    that registers there next (a Register is counted before it is admitted)."""

    def __init__(
        self, db: Database, index: ThingIndex, traffic: TrafficCounter, interval: float = 1.0
    ) -> None:
        self._db = db
        self._index = index
        self._traffic = traffic
        self._interval = interval
        self._events: list[dict[str, Any]] = []
        self._audit: list[dict[str, Any]] = []
        self._endpoints: dict[tuple[str, int], str] = {}
        """Peer address -> endpoint registered from it (kept until its traffic is in)."""
        self._gone: set[tuple[str, int]] = set()
        self._unattributed: dict[tuple[str, int], tuple[float, list[int]]] = {}
        self._task: asyncio.Task[None] | None = None
        self._lock = asyncio.Lock()

    def seen_at(self, address: tuple[str, int], endpoint: str) -> None:
        self._endpoints[address] = endpoint
        self._gone.discard(address)

    def left(self, address: tuple[str, int]) -> None:
        """The endpoint at ``address`` deregistered: forget it after the next flush."""
        self._gone.add(address)

    def event(self, data_type: cdr.DataType, **fields: Any) -> None:
        self._events.append(cdr.event_row(data_type, **fields))

    def audit(self, event: str, **fields: Any) -> None:
        self._audit.append({"at": datetime.now(UTC), "event": event, **fields})

    def start(self) -> None:
        if self._task is None:
            self._task = asyncio.get_running_loop().create_task(
                self._run(), name="connectivity-recorder"
            )

    async def stop(self) -> None:
        task, self._task = self._task, None
        if task is not None:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task
        await self.flush()

    async def _run(self) -> None:
        while True:
            await asyncio.sleep(self._interval)
            try:
                await self.flush()
            except Exception:  # the store failing must not end the recorder for good
                _log.exception("connectivity_flush_failed")

    async def flush(self) -> None:
        """Write what was counted and recorded since the last flush, in one transaction."""
        async with self._lock:
            usage, domains = self._usage_by_thing()
            events, self._events = self._events, []
            audit, self._audit = self._audit, []
            for thing_id, counts in usage.items():
                row = cdr.event_row(
                    cdr.DataType.USAGE,
                    domain_id=domains[thing_id],
                    thing_id=thing_id,
                    message=(
                        f"in {counts['bytes_in']} B / {counts['messages_in']} messages, "
                        f"out {counts['bytes_out']} B / {counts['messages_out']} messages"
                    ),
                )
                row["details"] = dict(counts)
                events.append(row)
            if not events and not audit:
                return
            async with self._db.transaction() as session:
                await add_usage(session, datetime.now(UTC).date(), usage)
                if events:
                    await session.execute(insert(ConnectivityEvent), events)
                if audit:
                    await session.execute(insert(AuditEvent), audit)

    def _usage_by_thing(self) -> tuple[dict[str, dict[str, int]], dict[str, str]]:
        usage: dict[str, dict[str, int]] = {}
        domains: dict[str, str] = {}
        now = time.monotonic()
        drained = self._traffic.drain()
        for address in drained.keys() | self._unattributed.keys():
            since, carried = self._unattributed.pop(address, (now, [0, 0, 0, 0]))
            new = drained.get(address, (0, 0, 0, 0))
            bytes_in, bytes_out, in_count, out_count = (
                a + b for a, b in zip(carried, new, strict=True)
            )
            endpoint = self._endpoints.get(address)
            if endpoint is None:
                if now - since < self.UNATTRIBUTED_GRACE:
                    self._unattributed[address] = (
                        since,
                        [bytes_in, bytes_out, in_count, out_count],
                    )
                continue
            facts = self._index.for_endpoint(endpoint)
            if facts is None:
                continue
            counts = usage.setdefault(facts.id, dict.fromkeys(USAGE_COLUMNS, 0))
            counts["bytes_in"] += bytes_in
            counts["bytes_out"] += bytes_out
            counts["messages_in"] += in_count
            counts["messages_out"] += out_count
            domains[facts.id] = facts.domain_id
        for address in self._gone:
            self._endpoints.pop(address, None)
        self._gone.clear()
        return usage, domains
