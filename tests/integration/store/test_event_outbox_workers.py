"""Two delivery workers on one outbox (the workers of ``serve --workers 2``, or two nodes),
on SQLite and PostgreSQL: every row is delivered once, each device's rows in order."""

from __future__ import annotations

import asyncio
import secrets
from collections import defaultdict
from datetime import UTC, datetime

from sqlalchemy import func, insert, select

from meadowlark.config import EventHandlerSettings
from meadowlark.core.domains import new_domain
from meadowlark.core.event_handlers.delivery import HandlerDelivery
from meadowlark.core.event_handlers.outbox import HandlerOutbox
from meadowlark.core.event_handlers.service import HANDLER_PURPOSE, seal_connection
from meadowlark.core.secret_box import SecretBox, derive_key
from meadowlark.store.db import Database
from meadowlark.store.event_handler_models import EventHandlerRow, EventOutboxRow
from meadowlark.store.migrate import upgrade_to_head
from meadowlark.store.models import Domain
from webhook_receiver import WebhookReceiver

DEVICES = 6
PER_DEVICE = 40
OPTIONS = EventHandlerSettings(
    retry_initial=0.05, retry_max=0.2, poll_interval=0.05, concurrency=4, request_timeout=5
)


async def _prepare(url: str, box: SecretBox, receiver_url: str) -> str:
    db = Database(url)
    try:
        await upgrade_to_head(db.engine)
        handler_id = secrets.token_hex(12)
        now = datetime.now(UTC)
        async with db.transaction() as session:
            if await session.get(Domain, "/root/") is None:
                session.add(new_domain("/root/"))
                await session.flush()
            session.add(
                EventHandlerRow(
                    id=handler_id,
                    domain_id="/root/",
                    type="webhook",
                    name="both workers",
                    description="",
                    enabled=True,
                    filter={"type": "telemetry", "lwm2mUrls": ["/3303"]},
                    connection=seal_connection(
                        box,
                        handler_id,
                        "webhook",
                        {
                            "uri": receiver_url,
                            "method": "post",
                            "format": "generic",
                            "additionalHeaders": {},
                            "bodyTemplate": None,
                            "auth": None,
                        },
                    ),
                    signing_secret=box.seal(b"secret", f"{handler_id}:signing"),
                    consecutive_failures=0,
                    disabled_reason="",
                )
            )
            await session.flush()
            rows = [
                {
                    "handler_id": handler_id,
                    "endpoint": f"dev-{device}",
                    "payload": {"endpointName": f"dev-{device}", "value": seq},
                    "attempts": 0,
                    "next_attempt_at": now,
                    "last_error": "",
                    "created_at": now,
                }
                for seq in range(PER_DEVICE)
                for device in range(DEVICES)
            ]
            await session.execute(insert(EventOutboxRow), rows)
        return handler_id
    finally:
        await db.dispose()


async def _run_two_workers(url: str, box: SecretBox, receiver: WebhookReceiver) -> int:
    databases = [Database(url), Database(url)]
    workers = [
        HandlerDelivery(db, box, HandlerOutbox(db, lambda _ep: "/root/"), OPTIONS)
        for db in databases
    ]
    try:
        for worker in workers:
            await worker.start()
        deadline = asyncio.get_running_loop().time() + 60
        while len(receiver.received) < DEVICES * PER_DEVICE:
            assert asyncio.get_running_loop().time() < deadline, len(receiver.received)
            await asyncio.sleep(0.1)
        await asyncio.sleep(0.5)  # let the workers delete what they delivered
    finally:
        for worker in workers:
            await worker.stop()
    async with databases[0].session() as session:
        left = await session.scalar(select(func.count()).select_from(EventOutboxRow))
    for db in databases:
        await db.dispose()
    return int(left or 0)


def test_two_workers_deliver_every_row_once_and_in_order_per_device(tmp_path, database_url):
    url = database_url or f"sqlite+aiosqlite:///{tmp_path / 'outbox.db'}"
    box = SecretBox(derive_key("test key", HANDLER_PURPOSE))
    receiver = WebhookReceiver(delay=0.002).start()
    try:
        asyncio.run(_prepare(url, box, receiver.url))
        left = asyncio.run(_run_two_workers(url, box, receiver))
    finally:
        receiver.stop()
    assert left == 0
    by_device: dict[str, list[int]] = defaultdict(list)
    for body in receiver.bodies():
        by_device[body["endpointName"]].append(body["value"])
    assert len(by_device) == DEVICES
    for values in by_device.values():
        assert values == list(range(PER_DEVICE))  # once each, in order
