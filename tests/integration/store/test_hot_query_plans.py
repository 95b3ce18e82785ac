"""The queries a Register, Update, notification or device moment runs use an index,
on SQLite (``EXPLAIN QUERY PLAN``) and PostgreSQL (``EXPLAIN`` with sequential scans
priced out, so the plan shows whether an index *can* serve the query on any table size).

Each statement is run as the code runs it (same statement object, real parameters); a
cursor hook turns it into its EXPLAIN on the way to the driver.
"""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import event, or_, select

from meadowlark.core.observations import ANY_CONFIGURED
from meadowlark.core.tasks.engine import PENDING_WORK, SCHEDULED
from meadowlark.store.coiote_models import GroupMembership, ObservationConfig
from meadowlark.store.db import Database
from meadowlark.store.device_models import Device, QueuedRequestRow, ResourceValue
from meadowlark.store.devices import (
    ADMISSION_ROWS,
    DEREGISTER_ROW,
    IDS_BY_ENDPOINT,
    UPDATE_BY_ID,
    UPDATE_CONTACT,
    UPDATE_REGISTRATION,
)
from meadowlark.store.migrate import upgrade_to_head
from meadowlark.store.task_models import TaskRow, TaskRun

NOW = datetime(2026, 11, 30, tzinfo=UTC)
ENDPOINTS = ["plan-a", "plan-b", "plan-c"]

HOT_QUERIES: dict[str, tuple[Any, dict[str, Any]]] = {
    # Register, Update, De-register (store/devices.py, group commit)
    "admission rows": (ADMISSION_ROWS, {"endpoints": ENDPOINTS}),
    "admitted device update": (UPDATE_BY_ID, {"device_key": "plan-a", "last_register_time": NOW}),
    "registration update": (
        UPDATE_REGISTRATION,
        {"endpoint": "plan-a", "current_registration": "r1", "lifetime": 60},
    ),
    "deregistration": (DEREGISTER_ROW, {"endpoint": "plan-a", "current_registration": "r1"}),
    # batch writer: contact times, value cache, device ids
    "contact time": (UPDATE_CONTACT, {"device_key": "plan-a", "contact_at": NOW}),
    "device ids": (IDS_BY_ENDPOINT, {"endpoints": ENDPOINTS}),
    "cached values": (
        select(ResourceValue).where(
            ResourceValue.device_id == "plan-a",
            (ResourceValue.path == "/3/0") | ResourceValue.path.startswith("/3/0/"),
        ),
        {},
    ),
    # queue mode (SqlRequestQueue.pending and expire)
    "pending requests": (
        select(QueuedRequestRow)
        .where(
            QueuedRequestRow.device_id == "plan-a",
            QueuedRequestRow.state == "pending",
            QueuedRequestRow.expires_at > NOW,
        )
        .order_by(QueuedRequestRow.created_at),
        {},
    ),
    "expired requests": (
        select(QueuedRequestRow.id).where(
            QueuedRequestRow.state == "pending", QueuedRequestRow.expires_at <= NOW
        ),
        {},
    ),
    # a device's moment (core/tasks/engine.py) and its observations (core/observations.py)
    "pending work": (PENDING_WORK, {}),
    "device by endpoint": (select(Device).where(Device.endpoint_name == "plan-a"), {}),
    "memberships": (
        select(GroupMembership.group_id).where(GroupMembership.device_id == "plan-a"),
        {},
    ),
    "next run": (
        select(TaskRun, TaskRow)
        .join(TaskRow, TaskRow.id == TaskRun.task_id)
        .where(
            TaskRun.device_id == "plan-a",
            TaskRun.status == SCHEDULED,
            TaskRow.is_active.is_(True),
        )
        .order_by(TaskRun.id)
        .limit(1),
        {},
    ),
    "any observation configured": (ANY_CONFIGURED, {}),
    "wanted observations": (
        select(ObservationConfig).where(
            or_(
                (ObservationConfig.target_kind == "device")
                & (ObservationConfig.target_id == "plan-a"),
                (ObservationConfig.target_kind == "group")
                & ObservationConfig.target_id.in_(["fleet", "fleet.a"]),
            )
        ),
        {},
    ),
}


def _plans(url: str) -> dict[str, list[str]]:
    async def main() -> dict[str, list[str]]:
        db = Database(url)
        plans: dict[str, list[str]] = {}
        current: list[str] = []
        sqlite = db.is_sqlite

        def explain(conn, cursor, statement, parameters, context, executemany):
            prefix = "EXPLAIN QUERY PLAN " if sqlite else "EXPLAIN "
            return prefix + statement, parameters

        def collect(conn, cursor, statement, parameters, context, executemany):
            current.extend(str(row[-1] if sqlite else row[0]) for row in cursor.fetchall())

        try:
            await upgrade_to_head(db.engine)
            async with db.engine.connect() as connection:
                if not sqlite:
                    await connection.exec_driver_sql("SET enable_seqscan = off")
                sync_engine = db.engine.sync_engine
                event.listen(sync_engine, "before_cursor_execute", explain, retval=True)
                event.listen(sync_engine, "after_cursor_execute", collect)
                try:
                    for name, (statement, params) in HOT_QUERIES.items():
                        current.clear()
                        await connection.execute(statement, params)
                        plans[name] = list(current)
                finally:
                    event.remove(sync_engine, "before_cursor_execute", explain)
                    event.remove(sync_engine, "after_cursor_execute", collect)
                await connection.rollback()
        finally:
            await db.dispose()
        return plans

    return asyncio.run(main())


def _full_scans(backend: str, plan: list[str]) -> list[str]:
    if backend == "sqlite":
        # SEARCH uses an index; SCAN reads a whole table unless it is the constant row
        # of a bare SELECT, or an EXISTS over a covering index (stops at its first entry).
        return [
            line
            for line in plan
            if line.startswith("SCAN")
            and line != "SCAN CONSTANT ROW"
            and "USING COVERING INDEX" not in line
        ]
    return [line for line in plan if "Seq Scan" in line]


def test_every_hot_query_uses_an_index(backend, database_url, tmp_path):
    url = database_url or f"sqlite+aiosqlite:///{tmp_path / 'plans.db'}"
    plans = _plans(url)
    assert plans.keys() == HOT_QUERIES.keys()
    for name, plan in plans.items():
        assert plan, f"{name}: no plan"
        assert _full_scans(backend, plan) == [], f"{name}: {plan}"
        assert any("Index" in line or "INDEX" in line or "PRIMARY KEY" in line for line in plan), (
            f"{name} uses no index: {plan}"
        )


def test_a_missing_index_is_caught(tmp_path):
    """The check is not vacuous: a query on an unindexed column shows a full scan."""
    url = f"sqlite+aiosqlite:///{tmp_path / 'scan.db'}"
    HOT_QUERIES["unindexed"] = (select(Device.id).where(Device.model_name == "x"), {})
    try:
        plans = _plans(url)
    finally:
        del HOT_QUERIES["unindexed"]
    assert _full_scans("sqlite", plans["unindexed"]) == ["SCAN devices"]
