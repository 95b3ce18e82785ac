"""Gauges of what one process holds in memory, sampled every few seconds.

In ``serve --workers N`` a scrape reaches one worker, which cannot look into the
others' memory: each worker writes its own figures (``livesum`` gauges, see
``meadowlark.metrics``) on a timer, and the scraped one samples itself once more first.
The deployment-wide count of queued requests comes from the store.
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass

import structlog
from sqlalchemy import func, select
from sqlalchemy.pool import QueuePool

from meadowlark import metrics
from meadowlark.core.event_handlers.outbox import HandlerOutbox
from meadowlark.core.events import EventBus
from meadowlark.server.operations import QueuedRequestState
from meadowlark.server.service import LwM2mServer
from meadowlark.store.db import Database
from meadowlark.store.device_models import QueuedRequestRow
from meadowlark.store.devices import SqlDeviceStores
from meadowlark.store.monitoring import SampleWriter

_log = structlog.get_logger("meadowlark.metrics")

_PENDING = metrics.BATCHED_WRITES_PENDING
_VALUES = _PENDING.labels("values")
_CONTACTS = _PENDING.labels("contacts")
_REGISTRATIONS = _PENDING.labels("registrations")
_OUTBOX = _PENDING.labels("event_outbox")
_SAMPLES = _PENDING.labels("monitoring_samples")
_COUNT_QUEUED = (
    select(func.count())
    .select_from(QueuedRequestRow)
    .where(QueuedRequestRow.state == QueuedRequestState.PENDING.value)
)


@dataclass
class NodeGauges:
    """Writes this process's gauges: at once with ``sample``, and every ``interval``
    seconds between ``start`` and ``stop``."""

    db: Database
    lwm2m: LwM2mServer
    device_stores: SqlDeviceStores
    events: EventBus
    handler_outbox: HandlerOutbox
    samples: SampleWriter
    interval: float = 5.0
    _task: asyncio.Task[None] | None = None

    def sample(self) -> None:
        """Set the in-memory gauges now (no I/O)."""
        metrics.REGISTERED_DEVICES.set(self.lwm2m.registrations.held())
        metrics.AWAKE_DEVICES.set(self.lwm2m.queue_mode.awake_count)
        writer = self.device_stores.writer
        _VALUES.set(writer.pending_values_count)
        _CONTACTS.set(writer.pending_contacts_count)
        _REGISTRATIONS.set(self.device_stores.devices.waiting_count)
        _OUTBOX.set(self.handler_outbox.pending_count)
        _SAMPLES.set(self.samples.buffered_count)
        metrics.SSE_SUBSCRIBERS.set(self.events.subscriber_count)
        pool = self.db.engine.pool
        metrics.DB_POOL_CHECKED_OUT.set(pool.checkedout() if isinstance(pool, QueuePool) else 0)
        metrics.DB_POOL_SIZE.set(pool.size() if isinstance(pool, QueuePool) else 0)

    async def sample_store(self) -> None:
        """Set the gauges that come from the store (one COUNT)."""
        async with self.db.session() as session:
            metrics.QUEUED_REQUESTS.set(await session.scalar(_COUNT_QUEUED) or 0)

    def start(self) -> None:
        if self._task is None:
            self._task = asyncio.get_running_loop().create_task(self._run(), name="gauges")

    async def stop(self) -> None:
        task, self._task = self._task, None
        if task is not None:
            task.cancel()
            await asyncio.gather(task, return_exceptions=True)

    async def _run(self) -> None:
        while True:
            self.sample()
            try:
                await self.sample_store()
            except Exception:  # a store that is away now is reported by /ready, not here
                _log.warning("queued_requests_not_counted")
            await asyncio.sleep(self.interval)
