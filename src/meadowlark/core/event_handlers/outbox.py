"""From device events to outbox rows: one row per event and handler that selects it.

``HandlerOutbox`` listens to the LwM2M server (telemetry: every value that reaches the
value cache, i.e. Notify, Send and the answers to server Reads; first registrations),
to the ``EventBus`` (its ``sink``: alert events and any other lifecycle event published
there) and to ``lifecycle`` calls (devices created, updated or deleted). Matching is in
memory against the enabled handlers ``HandlerDelivery`` loads; rows are written in
batches every ``flush_interval`` by one task, so the paths that publish never wait for
the store. Rows not yet written are lost if the process dies within that interval;
everything written is delivered at least once.
"""

from __future__ import annotations

import asyncio
import base64
import dataclasses
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import structlog
from sqlalchemy import insert, select, update
from sqlalchemy.exc import IntegrityError

from meadowlark.core.event_handlers.rules import (
    LIFECYCLE_TYPES,
    TELEMETRY,
    Event,
    HandlerFilter,
    kind_key,
)
from meadowlark.core.events import DeviceEvent
from meadowlark.lwm2m.node import (
    LwM2mObject,
    MultiResource,
    Node,
    ObjectInstance,
    ResourceInstance,
    SingleResource,
)
from meadowlark.lwm2m.path import LwM2mPath
from meadowlark.server.context import ServerListener
from meadowlark.server.registration import Registration
from meadowlark.store.db import Database, rows_affected
from meadowlark.store.device_models import Device
from meadowlark.store.event_handler_models import EventHandlerRow, EventOutboxRow

_log = structlog.get_logger("meadowlark.event_handlers")

FIRST_REGISTRATION = "deviceFirstRegistration"
FIRMWARE_OBJECT = 5
MAX_PENDING = 200_000
"""Rows kept in memory while the store is away; beyond that the oldest are dropped."""
_KNOWN = {kind_key(name): name for name in LIFECYCLE_TYPES}


@dataclass(frozen=True, slots=True)
class ActiveHandler:
    id: str
    domain_id: str
    filter: HandlerFilter


def epoch_ms(moment: datetime) -> int:
    return int(moment.timestamp() * 1000)


def json_value(value: Any) -> Any:
    if isinstance(value, bool | int | float | str) or value is None:
        return value
    if isinstance(value, bytes):
        return base64.b64encode(value).decode("ascii")
    if isinstance(value, datetime):
        return int(value.timestamp())
    return str(value)


def leaves(path: LwM2mPath, node: Node) -> list[tuple[LwM2mPath, Any]]:
    """Every value under ``node`` (at ``path``) by resource or resource-instance path."""
    if isinstance(node, SingleResource):
        return [(path, node.value)]
    if isinstance(node, ResourceInstance):
        return [(path, node.value)]
    if isinstance(node, MultiResource):
        return [(path.child(i), value) for i, value in sorted(node.instances.items())]
    if isinstance(node, ObjectInstance):
        return [
            leaf
            for rid, resource in sorted(node.resources.items())
            for leaf in leaves(path.child(rid), resource)
        ]
    if isinstance(node, LwM2mObject):
        return [
            leaf
            for iid, instance in sorted(node.instances.items())
            for leaf in leaves(path.child(iid), instance)
        ]
    return []


def event_details(event: DeviceEvent) -> dict[str, Any]:
    """The fields of a bus event (an alert's) that are plain data, for the payload."""
    details: dict[str, Any] = {}
    for field in dataclasses.fields(event):
        if field.name in ("kind", "endpoint", "domain_id", "at", "registration"):
            continue
        value = getattr(event, field.name)
        if isinstance(value, Mapping):
            if value and all(isinstance(key, str) for key in value):
                details[field.name] = {k: json_value(v) for k, v in value.items()}
        elif value not in (None, "", (), False):
            details[field.name] = json_value(value)
    return details


class HandlerOutbox(ServerListener):
    def __init__(
        self, db: Database, domain_of: Callable[[str], str], *, flush_interval: float = 0.05
    ) -> None:
        self._db = db
        self._domain_of = domain_of
        self._flush_interval = flush_interval
        self._telemetry: list[ActiveHandler] = []
        self._lifecycle: list[ActiveHandler] = []
        self._pending: list[dict[str, Any]] = []
        self._first_registrations: list[tuple[str, str, datetime]] = []
        self._wake = asyncio.Event()
        self._writer: asyncio.Task[None] | None = None
        self.after_flush: Callable[[], None] | None = None
        """Told after each batch is written (wakes this process's delivery)."""

    @property
    def pending_count(self) -> int:
        """Outbox rows waiting for their batch."""
        return len(self._pending)

    # --- which handlers ----------------------------------------------------------------

    def set_handlers(self, handlers: list[ActiveHandler]) -> None:
        self._telemetry = [h for h in handlers if h.filter.type == TELEMETRY]
        self._lifecycle = [h for h in handlers if h.filter.type != TELEMETRY]

    def listens(self) -> bool:
        """Some enabled handler selects lifecycle events (the EventBus asks)."""
        return bool(self._lifecycle)

    # --- sources -----------------------------------------------------------------------

    def on_values_cached(self, registration: Registration, nodes: Mapping[LwM2mPath, Node]) -> None:
        if not self._telemetry:
            return
        endpoint = registration.endpoint
        domain_id = self._domain_of(endpoint)
        handlers = [h for h in self._telemetry if domain_id.startswith(h.domain_id)]
        if not handlers:
            return
        timestamp = epoch_ms(datetime.now(UTC))
        for path, node in nodes.items():
            for leaf_path, value in leaves(path, node):
                selected = [h for h in handlers if h.filter.selects_path(leaf_path)]
                if not selected:
                    continue
                event = {
                    "eventType": TELEMETRY,
                    "endpointName": endpoint,
                    "domainId": domain_id,
                    "url": str(leaf_path),
                    "value": json_value(value),
                    "timestamp": timestamp,
                }
                self._add(selected, endpoint, event)

    def on_registered(self, registration: Registration, replaced: Registration | None) -> None:
        if any(h.filter.selects_kind(FIRST_REGISTRATION) for h in self._lifecycle):
            self._first_registrations.append(
                (registration.endpoint, self._domain_of(registration.endpoint), datetime.now(UTC))
            )
            self._wake.set()

    def on_written(self, registration: Registration, paths: tuple[LwM2mPath, ...]) -> None:
        """A Write the device accepted; writes to the Firmware Update object (/5) are part
        of an update, told as ``deviceUpdatedViaFota`` when it succeeds."""
        urls = [str(path) for path in paths if path.object_id != FIRMWARE_OBJECT]
        if urls and self._lifecycle:
            endpoint = registration.endpoint
            self.lifecycle(
                "deviceUpdatedViaWrite", endpoint, self._domain_of(endpoint), {"urls": urls}
            )

    def lifecycle(
        self,
        kind: str,
        endpoint: str,
        domain_id: str,
        details: Mapping[str, Any] | None = None,
        at: datetime | None = None,
    ) -> None:
        """A lifecycle event (``deviceCreated``...) of a device in ``domain_id``."""
        name = _KNOWN.get(kind_key(kind))
        if name is None:
            return
        selected = [
            h
            for h in self._lifecycle
            if h.filter.selects_kind(name) and domain_id.startswith(h.domain_id)
        ]
        if not selected:
            return
        event: Event = {
            "eventType": name,
            "endpointName": endpoint,
            "domainId": domain_id,
            "url": None,
            "value": None,
            "timestamp": epoch_ms(at or datetime.now(UTC)),
        }
        if details:
            event["details"] = dict(details)
        self._add(selected, endpoint, event)

    def on_bus_event(self, event: DeviceEvent) -> None:
        """The ``EventBus`` sink: events of a lifecycle type (alerts) go to the outbox."""
        kind = getattr(event.kind, "value", event.kind)
        self.lifecycle(str(kind), event.endpoint, event.domain_id, event_details(event), event.at)

    def _add(self, handlers: list[ActiveHandler], endpoint: str, event: Event) -> None:
        now = datetime.now(UTC)
        for handler in handlers:
            self._pending.append(
                {
                    "handler_id": handler.id,
                    "endpoint": endpoint,
                    "payload": event,
                    "attempts": 0,
                    "next_attempt_at": now,
                    "last_error": "",
                    "created_at": now,
                }
            )
        if len(self._pending) > MAX_PENDING:
            dropped = len(self._pending) - MAX_PENDING
            del self._pending[:dropped]
            _log.error("event_outbox_overflow", dropped=dropped)
        self._wake.set()

    # --- writing -----------------------------------------------------------------------

    def start(self) -> None:
        if self._writer is None:
            self._writer = asyncio.get_running_loop().create_task(
                self._run(), name="event-outbox-writer"
            )

    async def stop(self) -> None:
        if self._writer is not None:
            self._writer.cancel()
            await asyncio.gather(self._writer, return_exceptions=True)
            self._writer = None
        try:
            await self.flush()
        except Exception:  # the store is away at shutdown: those events are lost
            _log.exception("event_outbox_final_flush_failed", rows=len(self._pending))

    async def _run(self) -> None:
        while True:
            await self._wake.wait()
            self._wake.clear()
            await asyncio.sleep(self._flush_interval)
            try:
                await self.flush()
            except Exception:  # kept in memory and tried again with the next batch
                _log.exception("event_outbox_flush_failed", rows=len(self._pending))
                await asyncio.sleep(1.0)
                self._wake.set()

    async def flush(self) -> int:
        """Write what is pending; the number of rows written."""
        firsts, self._first_registrations = self._first_registrations, []
        if firsts:
            try:
                await self._first_registration_events(firsts)
            except Exception:
                self._first_registrations[:0] = firsts
                raise
        rows, self._pending = self._pending, []
        if not rows:
            return 0
        try:
            await self._insert(rows)
        except IntegrityError:  # a handler was deleted meanwhile: drop its rows
            async with self._db.session() as session:
                known = set(await session.scalars(select(EventHandlerRow.id)))
            rows = [row for row in rows if row["handler_id"] in known]
            if rows:
                await self._insert(rows)
        except Exception:
            self._pending[:0] = rows
            raise
        if self.after_flush is not None:
            self.after_flush()
        return len(rows)

    async def _insert(self, rows: list[dict[str, Any]]) -> None:
        async with self._db.transaction() as session:
            await session.execute(insert(EventOutboxRow), rows)

    async def _first_registration_events(self, firsts: list[tuple[str, str, datetime]]) -> None:
        """Which Registers were a device's first: its ``first_register_time`` was unset
        (and is set now) or was set by this very Register (a device created by it)."""
        for endpoint, domain_id, at in firsts:
            async with self._db.transaction() as session:
                marked = await session.execute(
                    update(Device)
                    .where(Device.endpoint_name == endpoint, Device.first_register_time.is_(None))
                    .values(first_register_time=at)
                )
                first = bool(rows_affected(marked))
                if not first:
                    row = (
                        await session.execute(
                            select(Device.first_register_time, Device.last_register_time).where(
                                Device.endpoint_name == endpoint
                            )
                        )
                    ).first()
                    first = row is not None and row[0] is not None and row[0] == row[1]
            if first:
                self.lifecycle(FIRST_REGISTRATION, endpoint, domain_id, at=at)
