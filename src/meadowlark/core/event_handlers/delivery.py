"""Delivery of outbox rows to the handlers' receivers, at least once, in order per device.

Each worker process runs one ``HandlerDelivery``. It claims the head row (the oldest) of
each (handler, device) queue whose turn has come, by setting ``claimed_until`` in one
conditional UPDATE, so several processes or nodes never send the same row at once and a
device's next row waits until its head is gone: one delivery in flight per device and
handler, in order. A claimed row whose worker died is free again when its claim runs out.

A row is deleted only after its receiver took it. A failure is retried with exponential
backoff and jitter (``retry_initial`` doubling up to ``retry_max``), and the handler
itself backs off: while it fails, only one probe row of it is in flight. A row still
failing ``give_up_after`` seconds after its first failure, or refused for good by the
receiver (a 4xx other than 408/425/429), is a failed delivery: it is dropped and counted.
``FAILURES_BEFORE_DISABLE`` failed deliveries in a row disable the handler, audited as
``event_handler.disabled``; a passing test re-enables it and its queued rows resume.
"""

from __future__ import annotations

import asyncio
import random
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

import structlog
from sqlalchemy import delete, func, or_, select, update

from meadowlark import metrics
from meadowlark.config import EventHandlerSettings
from meadowlark.core import audit
from meadowlark.core.event_handlers.connectors import Connector, DeliveryFailed, make_connector
from meadowlark.core.event_handlers.http11 import Http11Pool
from meadowlark.core.event_handlers.outbox import ActiveHandler, HandlerOutbox
from meadowlark.core.event_handlers.rules import (
    FAILURES_BEFORE_DISABLE,
    Event,
    filter_of,
    retry_delay,
    sample_event,
)
from meadowlark.core.event_handlers.service import open_connection, open_signing_secret
from meadowlark.core.secret_box import SealError, SecretBox
from meadowlark.store.db import Database
from meadowlark.store.event_handler_models import EventHandlerRow, EventOutboxRow
from meadowlark.store.models import UtcDateTime

_log = structlog.get_logger("meadowlark.event_handlers")
_OUTBOX = EventOutboxRow.__table__
_HANDLERS_REFRESH = 2.0
_ROWS_PER_QUEUE = 50
"""Rows of one device queue a worker claims at once (sent one after the other)."""


@dataclass
class _Handler:
    row_version: datetime
    kind: str
    connector: Connector
    failing: bool = False
    """Its last delivery failed: one probe row at a time until one succeeds."""
    retry_at: float = 0.0
    failures: int = 0
    inflight: int = 0


@dataclass
class _Claimed:
    id: int
    handler_id: str
    endpoint: str
    payload: Event
    attempts: int
    first_failed_at: datetime | None
    created_at: datetime


@dataclass
class _Results:
    delivered: list[int] = field(default_factory=list)
    succeeded_handlers: set[str] = field(default_factory=set)


class HandlerDelivery:
    def __init__(
        self,
        db: Database,
        box: SecretBox,
        outbox: HandlerOutbox,
        options: EventHandlerSettings,
        *,
        rng: random.Random | None = None,
    ) -> None:
        self._db = db
        self._box = box
        self._outbox = outbox
        self.options = options
        self._rng = rng or random.Random()  # noqa: S311 - jitter, not secrecy
        self._handlers: dict[str, _Handler] = {}
        self._inflight: set[asyncio.Task[None]] = set()
        self._results = _Results()
        self._wake = asyncio.Event()
        self._runner: asyncio.Task[None] | None = None
        self._client: Http11Pool | None = None
        self._loaded_at = -1e9
        self._lease_seconds = options.request_timeout * 2 + 10
        """How long a claim holds (a dead worker's rows are free again after it)."""
        self.on_disabled: Callable[[str, str], None] | None = None
        """Told ``(handler id, reason)`` when this process disables a handler."""

    # --- life ----------------------------------------------------------------------------

    @property
    def client(self) -> Http11Pool:
        if self._client is None:
            self._client = Http11Pool(self.options.request_timeout, self.options.concurrency)
        return self._client

    async def start(self) -> None:
        await self.refresh()
        self._outbox.after_flush = self.notify
        self._outbox.start()
        if self._runner is None:
            self._runner = asyncio.get_running_loop().create_task(
                self._run(), name="event-handler-delivery"
            )

    async def stop(self) -> None:
        if self._runner is not None:
            self._runner.cancel()
            await asyncio.gather(self._runner, return_exceptions=True)
            self._runner = None
        for task in list(self._inflight):
            task.cancel()
        await asyncio.gather(*self._inflight, return_exceptions=True)
        await self._outbox.stop()
        try:
            await self._apply_results()
        except Exception:  # rows not deleted are delivered again: at least once
            _log.warning("event_delivery_final_results_lost")
        for handler in self._handlers.values():
            await handler.connector.close()
        self._handlers.clear()
        if self._client is not None:
            await self._client.close()
            self._client = None

    def notify(self) -> None:
        self._wake.set()

    async def changed(self) -> None:
        """Handlers were changed through this process: reload them now (other processes
        see the change at their next reload, within ``_HANDLERS_REFRESH`` seconds)."""
        if self._runner is not None:
            await self.refresh()
            self._wake.set()

    # --- handlers ------------------------------------------------------------------------

    async def refresh(self) -> None:
        """Load the handlers, (re)build connectors of changed ones, tell the outbox."""
        async with self._db.session() as session:
            rows = list(await session.scalars(select(EventHandlerRow)))
        active: list[ActiveHandler] = []
        seen = set()
        for row in rows:
            seen.add(row.id)
            if not row.enabled:
                continue
            current = self._handlers.get(row.id)
            if current is None or current.row_version != row.updated_at:
                try:
                    connector = make_connector(
                        row.type,
                        open_connection(self._box, row),
                        open_signing_secret(self._box, row),
                        client=self.client,
                        timeout=self.options.request_timeout,
                        block_private=self.options.block_private_targets,
                    )
                except SealError:
                    _log.error("event_handler_secrets_unreadable", handler=row.id)
                    continue
                if current is not None:
                    await current.connector.close()
                self._handlers[row.id] = _Handler(row.updated_at, row.type, connector)
            active.append(ActiveHandler(row.id, row.domain_id, filter_of(row.filter)))
        enabled = {handler.id for handler in active}
        for gone in set(self._handlers) - enabled:
            handler = self._handlers.pop(gone)
            if handler.inflight == 0:
                await handler.connector.close()
        self._outbox.set_handlers(active)
        self._loaded_at = asyncio.get_running_loop().time()

    # --- the loop ------------------------------------------------------------------------

    async def _run(self) -> None:
        loop = asyncio.get_running_loop()
        while True:
            self._wake.clear()
            try:
                if loop.time() - self._loaded_at > _HANDLERS_REFRESH:
                    await self.refresh()
                await self._apply_results()
                claimed = await self._claim(self.options.concurrency - len(self._inflight))
            except Exception:  # the store is away: try again shortly
                _log.exception("event_delivery_round_failed")
                claimed = []
                await asyncio.sleep(self.options.poll_interval)
            # The rows' claim must outlast their sending: a queue stops in time and gives
            # back what it could not send (a dead worker's rows are free within a lease).
            send_until = loop.time() + self._lease_seconds - self.options.request_timeout - 2
            for queue in claimed:
                handler = self._handlers[queue[0].handler_id]
                handler.inflight += 1
                task = loop.create_task(self._deliver(handler, queue, send_until))
                self._inflight.add(task)
                task.add_done_callback(self._done)
            if claimed:
                continue
            try:
                await asyncio.wait_for(self._wake.wait(), self.options.poll_interval)
            except TimeoutError:
                pass

    def _done(self, task: asyncio.Task[None]) -> None:
        self._inflight.discard(task)
        self._wake.set()

    async def _claim(self, room: int) -> list[list[_Claimed]]:
        """Up to ``room`` device queues, each the first rows of one (handler, device)
        queue whose head is due and unclaimed; a failing handler gets one probe row."""
        if room <= 0:
            return []
        now_mono = asyncio.get_running_loop().time()
        healthy = [h for h, s in self._handlers.items() if not s.failing]
        probing = [
            h
            for h, s in self._handlers.items()
            if s.failing and s.inflight == 0 and s.retry_at <= now_mono
        ]
        now = datetime.now(UTC)
        chosen: list[tuple[int, str, str]] = []
        async with self._db.session() as session:
            if healthy:
                chosen += await self._due_rows(session, healthy, now, room, _ROWS_PER_QUEUE)
            for handler_id in probing:
                chosen += await self._due_rows(session, [handler_id], now, 1, 1)
        if not chosen:
            return []
        lease = now + timedelta(seconds=self._lease_seconds)
        async with self._db.transaction() as session:
            result = await session.execute(
                update(_OUTBOX)
                .where(
                    _OUTBOX.c.id.in_([row_id for row_id, _, _ in chosen]),
                    or_(_OUTBOX.c.claimed_until.is_(None), _OUTBOX.c.claimed_until < now),
                )
                .values(claimed_until=lease)
                .returning(
                    _OUTBOX.c.id,
                    _OUTBOX.c.handler_id,
                    _OUTBOX.c.endpoint,
                    _OUTBOX.c.payload,
                    _OUTBOX.c.attempts,
                    _OUTBOX.c.first_failed_at,
                    _OUTBOX.c.created_at,
                )
            )
            got = {row.id: _Claimed(*row) for row in result.all()}
        # Keep of each queue only the unbroken run from the head chosen: a row another
        # worker claimed meanwhile ends the run, and the rest goes back.
        queues: dict[tuple[str, str], list[_Claimed]] = {}
        broken: set[tuple[str, str]] = set()
        released: list[int] = []
        for row_id, handler_id, endpoint in chosen:
            key = (handler_id, endpoint)
            claimed = got.get(row_id)
            if claimed is None or key in broken or handler_id not in self._handlers:
                broken.add(key)
                if claimed is not None:
                    released.append(row_id)
                continue
            queues.setdefault(key, []).append(claimed)
        if released:
            await self._release(released)
        return list(queues.values())

    async def _give_back(self, rows: list[_Claimed]) -> None:
        if rows:
            try:
                await self._release([row.id for row in rows])
            except Exception:  # their claim runs out by itself
                _log.warning("event_delivery_release_failed", rows=len(rows))

    async def _release(self, row_ids: list[int]) -> None:
        async with self._db.transaction() as session:
            await session.execute(
                update(_OUTBOX).where(_OUTBOX.c.id.in_(row_ids)).values(claimed_until=None)
            )

    async def _due_rows(
        self, session: Any, handler_ids: list[str], now: datetime, queues: int, per_queue: int
    ) -> list[tuple[int, str, str]]:
        """The first ``per_queue`` rows of up to ``queues`` (handler, device) queues whose
        head (oldest row) is due and not claimed, oldest first."""
        queue_key = (_OUTBOX.c.handler_id, _OUTBOX.c.endpoint)
        queue_order = _OUTBOX.c.id
        ranked = (
            select(
                _OUTBOX.c.id,
                _OUTBOX.c.handler_id,
                _OUTBOX.c.endpoint,
                func.row_number()
                .over(partition_by=queue_key, order_by=queue_order)
                .label("position"),
                func.first_value(_OUTBOX.c.id)
                .over(partition_by=queue_key, order_by=queue_order)
                .label("head"),
                func.first_value(_OUTBOX.c.next_attempt_at, type_=UtcDateTime())
                .over(partition_by=queue_key, order_by=queue_order)
                .label("head_due"),
                func.first_value(_OUTBOX.c.claimed_until, type_=UtcDateTime())
                .over(partition_by=queue_key, order_by=queue_order)
                .label("head_claimed"),
            )
            .where(_OUTBOX.c.handler_id.in_(handler_ids))
            .subquery()
        )
        heads = (
            select(ranked.c.head)
            .where(
                ranked.c.position == 1,
                ranked.c.head_due <= now,
                or_(ranked.c.head_claimed.is_(None), ranked.c.head_claimed < now),
            )
            .order_by(ranked.c.head)
            .limit(queues)
        )
        query = (
            select(ranked.c.id, ranked.c.handler_id, ranked.c.endpoint)
            .where(ranked.c.head.in_(heads), ranked.c.position <= per_queue)
            .order_by(ranked.c.head, ranked.c.position)
        )
        return [(row.id, row.handler_id, row.endpoint) for row in await session.execute(query)]

    async def _deliver(self, handler: _Handler, queue: list[_Claimed], send_until: float) -> None:
        """One device queue's rows, in order; a failure, or the claim running short,
        gives the rest back."""
        loop = asyncio.get_running_loop()
        try:
            for position, row in enumerate(queue):
                if loop.time() > send_until:
                    await self._give_back(queue[position:])
                    return
                try:
                    await handler.connector.send(row.payload, str(row.id))
                except Exception as exc:
                    failure = (
                        exc
                        if isinstance(exc, DeliveryFailed)
                        else DeliveryFailed(f"{type(exc).__name__}: {exc}")
                    )
                    if not isinstance(exc, DeliveryFailed):
                        _log.exception("event_delivery_crashed", handler=row.handler_id)
                    metrics.EVENT_DELIVERIES.inc(handler.kind, "failed")
                    await self._failed(handler, row, failure)
                    await self._give_back(queue[position + 1 :])
                    return
                handler.failing = False
                handler.failures = 0
                metrics.EVENT_DELIVERIES.inc(handler.kind, "delivered")
                lag = (datetime.now(UTC) - row.created_at).total_seconds()
                metrics.EVENT_DELIVERY_LAG.observe(max(lag, 0.0), handler.kind)
                self._results.delivered.append(row.id)
                self._results.succeeded_handlers.add(row.handler_id)
        finally:
            handler.inflight -= 1

    async def _failed(self, handler: _Handler, row: _Claimed, failure: DeliveryFailed) -> None:
        now = datetime.now(UTC)
        attempts = row.attempts + 1
        first_failed = row.first_failed_at or now
        handler.failing = True
        handler.failures += 1
        delay = retry_delay(
            handler.failures, self.options.retry_initial, self.options.retry_max, self._rng
        )
        handler.retry_at = asyncio.get_running_loop().time() + delay
        given_up = not failure.retryable or (
            (now - first_failed).total_seconds() >= self.options.give_up_after
        )
        _log.info(
            "event_not_delivered",
            handler=row.handler_id,
            endpoint=row.endpoint,
            attempts=attempts,
            error=failure.message,
            given_up=given_up,
        )
        try:
            async with self._db.transaction() as session:
                if given_up:
                    await session.execute(delete(_OUTBOX).where(_OUTBOX.c.id == row.id))
                    await self._count_failed_delivery(session, row.handler_id, failure.message)
                else:
                    await session.execute(
                        update(_OUTBOX)
                        .where(_OUTBOX.c.id == row.id)
                        .values(
                            attempts=attempts,
                            first_failed_at=first_failed,
                            last_error=failure.message,
                            claimed_until=None,
                            next_attempt_at=now + timedelta(seconds=delay),
                        )
                    )
        except Exception:  # the claim runs out and the row is tried again
            _log.exception("event_delivery_state_not_saved", handler=row.handler_id)

    async def _count_failed_delivery(self, session: Any, handler_id: str, error: str) -> None:
        await session.execute(
            update(EventHandlerRow)
            .where(EventHandlerRow.id == handler_id)
            .values(consecutive_failures=EventHandlerRow.consecutive_failures + 1)
        )
        row = await session.get(EventHandlerRow, handler_id)
        if row is None or not row.enabled or row.consecutive_failures < FAILURES_BEFORE_DISABLE:
            return
        reason = f"{row.consecutive_failures} failed deliveries in a row; last: {error}"
        row.enabled = False
        row.disabled_reason = reason[:1000]
        audit.record(
            session,
            "event_handler.disabled",
            subject=handler_id,
            domain_id=row.domain_id,
            reason=reason[:500],
        )
        _log.warning("event_handler_disabled", handler=handler_id, reason=reason)
        self._loaded_at = -1e9
        if self.on_disabled is not None:
            self.on_disabled(handler_id, reason)

    async def _apply_results(self) -> None:
        """Delete what was delivered; a handler that delivered counts no failures."""
        results, self._results = self._results, _Results()
        if not results.delivered:
            return
        try:
            async with self._db.transaction() as session:
                await session.execute(delete(_OUTBOX).where(_OUTBOX.c.id.in_(results.delivered)))
                await session.execute(
                    update(EventHandlerRow)
                    .where(
                        EventHandlerRow.id.in_(results.succeeded_handlers),
                        EventHandlerRow.consecutive_failures > 0,
                    )
                    .values(consecutive_failures=0)
                )
        except Exception:
            self._results.delivered[:0] = results.delivered
            self._results.succeeded_handlers |= results.succeeded_handlers
            raise

    # --- tests ---------------------------------------------------------------------------

    async def test(self, kind: str, config: dict[str, Any], secret: str) -> tuple[bool, str]:
        """Send a sample event with a fresh connector: ``(successful, message)``."""
        connector = make_connector(
            kind,
            config,
            secret,
            client=self.client,
            timeout=self.options.request_timeout,
            block_private=self.options.block_private_targets,
        )
        event = {**sample_event(), "timestamp": int(datetime.now(UTC).timestamp() * 1000)}
        try:
            await connector.send(event, "test")
        except DeliveryFailed as failure:
            return False, failure.message
        finally:
            await connector.close()
        return True, "delivered"
