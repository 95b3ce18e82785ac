"""Delivery of task reports to callback URLs, from the outbox table.

Each finished run of a task with a callback leaves one outbox row (written in the same
transaction as the report). ``CallbackSender`` POSTs it as JSON, signed::

    X-Meadowlark-Timestamp: <unix seconds>
    X-Meadowlark-Signature: sha256=<hex HMAC-SHA256 of "<timestamp>." + body, key = secret>
    X-Meadowlark-Delivery: <delivery id>  (the same on every retry)

and retries on any failure with exponential backoff until a 2xx answer or
``max_attempts``. A row is claimed before sending (its next attempt moved past the
request timeout), so several nodes never send the same delivery at once.
"""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import json
import time
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
import structlog
from sqlalchemy import select, update

from meadowlark.store.db import Database, rows_affected
from meadowlark.store.task_models import CallbackDelivery, TaskRun

_log = structlog.get_logger("meadowlark.tasks.callbacks")

SIGNATURE_HEADER = "X-Meadowlark-Signature"
TIMESTAMP_HEADER = "X-Meadowlark-Timestamp"
DELIVERY_HEADER = "X-Meadowlark-Delivery"


@dataclass(frozen=True, slots=True)
class CallbackOptions:
    request_timeout: float = 5.0
    retry_initial: float = 1.0
    retry_max: float = 300.0
    max_attempts: int = 20
    poll_interval: float = 1.0
    concurrency: int = 8
    batch: int = 100


def iso(moment: datetime | None) -> str | None:
    if moment is None:
        return None
    return moment.astimezone(UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


def report_payload(run: TaskRun) -> dict[str, Any]:
    """A finished run as a Coiote ``TaskReport``."""
    return {
        "taskId": run.task_id,
        "deviceId": run.device_id,
        "status": run.status,
        "startTime": iso(run.start_time or run.created_at),
        "finishTime": iso(run.finish_time or run.last_update_time),
        "lastUpdateTime": iso(run.last_update_time),
        "summary": run.summary,
        "blocking": False,
        "properties": list(run.properties or []),
    }


def signature(secret: str, timestamp: str, body: bytes) -> str:
    digest = hmac.new(secret.encode(), timestamp.encode() + b"." + body, hashlib.sha256)
    return "sha256=" + digest.hexdigest()


def _now() -> datetime:
    return datetime.now(UTC)


class CallbackSender:
    def __init__(self, db: Database, options: CallbackOptions | None = None) -> None:
        self._db = db
        self.options = options or CallbackOptions()
        self._wake = asyncio.Event()
        self._runner: asyncio.Task[None] | None = None
        self._stopping = False
        self._client: httpx.AsyncClient | None = None

    def start(self) -> None:
        if self._runner is None:
            self._client = httpx.AsyncClient(timeout=self.options.request_timeout)
            self._runner = asyncio.get_running_loop().create_task(
                self._run(), name="task-callbacks"
            )

    async def stop(self) -> None:
        self._stopping = True
        if self._runner is not None:
            self._runner.cancel()
            await asyncio.gather(self._runner, return_exceptions=True)
            self._runner = None
        if self._client is not None:
            await self._client.aclose()
            self._client = None

    def notify(self) -> None:
        self._wake.set()

    async def _run(self) -> None:
        while not self._stopping:
            self._wake.clear()
            try:
                busy = await self.deliver_due()
            except Exception:  # a failing store must not end deliveries for good
                if self._stopping:
                    return
                _log.exception("callback_delivery_failed")
                busy = False
            if busy:
                continue
            try:
                await asyncio.wait_for(self._wake.wait(), self.options.poll_interval)
            except TimeoutError:
                pass

    async def deliver_due(self) -> bool:
        """Send the due deliveries; True when a full batch was found (more may be due)."""
        now = _now()
        async with self._db.session() as session:
            due = list(
                await session.scalars(
                    select(CallbackDelivery)
                    .where(
                        CallbackDelivery.delivered_at.is_(None),
                        CallbackDelivery.gave_up.is_(False),
                        CallbackDelivery.next_attempt_at <= now,
                    )
                    .order_by(CallbackDelivery.next_attempt_at, CallbackDelivery.id)
                    .limit(self.options.batch)
                )
            )
        limit = asyncio.Semaphore(self.options.concurrency)

        async def one(delivery: CallbackDelivery) -> None:
            async with limit:
                await self._deliver(delivery)

        await asyncio.gather(*(one(delivery) for delivery in due))
        return len(due) == self.options.batch

    async def _deliver(self, delivery: CallbackDelivery) -> None:
        lease = _now() + timedelta(seconds=self.options.request_timeout * 2)
        async with self._db.transaction() as session:
            claimed = await session.execute(
                update(CallbackDelivery)
                .where(
                    CallbackDelivery.id == delivery.id,
                    CallbackDelivery.next_attempt_at == delivery.next_attempt_at,
                    CallbackDelivery.delivered_at.is_(None),
                )
                .values(next_attempt_at=lease)
            )
            if rows_affected(claimed) != 1:
                return
        body = json.dumps(delivery.payload, separators=(",", ":")).encode()
        timestamp = str(int(time.time()))
        headers = {
            "Content-Type": "application/json",
            TIMESTAMP_HEADER: timestamp,
            SIGNATURE_HEADER: signature(delivery.secret, timestamp, body),
            DELIVERY_HEADER: str(delivery.id),
        }
        error = ""
        assert self._client is not None
        try:
            response = await self._client.post(delivery.url, content=body, headers=headers)
            if not 200 <= response.status_code < 300:
                error = f"answered {response.status_code}"
        except httpx.HTTPError as exc:
            error = f"{type(exc).__name__}: {exc}"[:500]
        attempts = delivery.attempts + 1
        values: dict[str, Any] = {"attempts": attempts, "last_error": error}
        if not error:
            values["delivered_at"] = _now()
        elif attempts >= self.options.max_attempts:
            values["gave_up"] = True
            _log.warning("callback_given_up", task_id=delivery.task_id, delivery=delivery.id)
        else:
            delay = min(self.options.retry_initial * 2 ** (attempts - 1), self.options.retry_max)
            values["next_attempt_at"] = _now() + timedelta(seconds=delay)
        async with self._db.transaction() as session:
            await session.execute(
                update(CallbackDelivery).where(CallbackDelivery.id == delivery.id).values(**values)
            )
        if error:
            _log.info(
                "callback_not_delivered",
                task_id=delivery.task_id,
                delivery=delivery.id,
                attempts=attempts,
                error=error,
            )
