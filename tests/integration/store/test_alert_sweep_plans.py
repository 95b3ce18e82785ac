"""The no-contact sweep's queries use indexes on SQLite (``EXPLAIN QUERY PLAN``) and
PostgreSQL (``EXPLAIN`` with sequential scans priced out): the silent devices are a range
of ``ix_devices_last_contact_time``, whatever the fleet's size."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime
from typing import Any

import pytest
from sqlalchemy import event

from meadowlark.core.alerts import heard_from_again, silent_devices
from meadowlark.store.alert_models import AlertRule
from meadowlark.store.db import Database
from meadowlark.store.migrate import upgrade_to_head

CUTOFF = datetime(2026, 12, 1, tzinfo=UTC)


def _rule(group_id: str | None) -> AlertRule:
    return AlertRule(
        id="r" * 24,
        domain_id="/root/acme/",
        group_id=group_id,
        kind="noContact",
        no_contact_minutes=5,
    )


def _plan(url: str, statement: Any) -> list[str]:
    async def main() -> list[str]:
        db = Database(url)
        lines: list[str] = []
        sqlite = db.is_sqlite

        def explain(conn, cursor, sql, parameters, context, executemany):
            return ("EXPLAIN QUERY PLAN " if sqlite else "EXPLAIN ") + sql, parameters

        def collect(conn, cursor, sql, parameters, context, executemany):
            lines.extend(str(row[-1] if sqlite else row[0]) for row in cursor.fetchall())

        try:
            await upgrade_to_head(db.engine)
            async with db.engine.connect() as connection:
                if not sqlite:
                    await connection.exec_driver_sql("SET enable_seqscan = off")
                sync_engine = db.engine.sync_engine
                event.listen(sync_engine, "before_cursor_execute", explain, retval=True)
                event.listen(sync_engine, "after_cursor_execute", collect)
                try:
                    await connection.execute(statement)
                finally:
                    event.remove(sync_engine, "before_cursor_execute", explain)
                    event.remove(sync_engine, "after_cursor_execute", collect)
                await connection.rollback()
        finally:
            await db.dispose()
        return lines

    return asyncio.run(main())


@pytest.mark.parametrize("group_id", [None, "fleet"])
def test_silent_devices_are_an_index_range(backend, database_url, tmp_path, group_id):
    url = database_url or f"sqlite+aiosqlite:///{tmp_path / 'plans.db'}"
    plan = _plan(url, silent_devices(_rule(group_id), CUTOFF))
    text = "\n".join(plan)
    assert "ix_devices_last_contact_time" in text, plan
    assert "open_key" in text, plan
    if backend == "sqlite":
        assert not [line for line in plan if line.startswith("SCAN devices")], plan
    else:
        assert "Seq Scan" not in text, plan


def test_heard_from_again_starts_from_the_rules_open_alerts(backend, database_url, tmp_path):
    url = database_url or f"sqlite+aiosqlite:///{tmp_path / 'plans.db'}"
    plan = _plan(url, heard_from_again(_rule(None), CUTOFF))
    text = "\n".join(plan)
    assert "ix_alerts_rule_state" in text or "ix_devices_last_contact_time" in text, plan
    assert "Seq Scan" not in text and not [line for line in plan if line.startswith("SCAN")], plan
