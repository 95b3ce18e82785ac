"""The no-contact sweep on the real store (SQLite and PostgreSQL): who is swept (silent
devices of the rule's domain subtree or group; not the ones never heard from), one open
alert per rule and device, clearing on contact, a new alert after a cleared one, and a
sweep whose rule was deleted meanwhile ending at once."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime, timedelta

from sqlalchemy import select, update

from meadowlark.core.alerts import AlertService
from meadowlark.core.events import EventBus, EventFilter
from meadowlark.store.alert_models import Alert, AlertRule
from meadowlark.store.coiote_models import Group, GroupMembership
from meadowlark.store.db import Database
from meadowlark.store.device_models import Device
from meadowlark.store.migrate import upgrade_to_head
from meadowlark.store.models import Domain

NOW = datetime(2026, 12, 1, 12, 0, tzinfo=UTC)
SILENT = NOW - timedelta(minutes=30)
RECENT = NOW - timedelta(minutes=1)


async def _no_lookup(_endpoint: str) -> str | None:
    return None


def _rule(rule_id: str, domain_id: str, group_id: str | None = None) -> AlertRule:
    return AlertRule(
        id=rule_id,
        domain_id=domain_id,
        group_id=group_id,
        name=rule_id,
        kind="noContact",
        severity="warning",
        enabled=True,
        no_contact_minutes=10,
        hysteresis=0.0,
        created_at=NOW,
        updated_at=NOW,
    )


async def _open(db: Database) -> set[tuple[str, str, str]]:
    async with db.session() as session:
        rows = await session.scalars(select(Alert))
        return {(a.rule_id, a.device_id, a.state) for a in rows}


def test_no_contact_sweep(backend, database_url, tmp_path):
    url = database_url or f"sqlite+aiosqlite:///{tmp_path / 'sweep.db'}"

    async def main() -> None:
        db = Database(url)
        try:
            await upgrade_to_head(db.engine)
            async with db.transaction() as session:
                for domain in ("/root/", "/root/acme/", "/root/other/"):
                    session.add(Domain(id=domain, customer_id=domain, organization_id=domain))
            devices = {
                "acme-silent": ("/root/acme/", SILENT),
                "acme-member": ("/root/acme/", SILENT),
                "acme-recent": ("/root/acme/", RECENT),
                "acme-never": ("/root/acme/", None),
                "other-silent": ("/root/other/", SILENT),
            }
            async with db.transaction() as session:
                session.add(Group(id="acme-fleet", domain_id="/root/acme/"))
                for name, (domain, contact) in devices.items():
                    session.add(
                        Device(
                            id=name, endpoint_name=name, domain_id=domain, last_contact_time=contact
                        )
                    )
            async with db.transaction() as session:
                session.add(GroupMembership(device_id="acme-member", group_id="acme-fleet"))
                session.add(_rule("domain-rule", "/root/acme/"))
                session.add(_rule("group-rule", "/root/acme/", "acme-fleet"))

            bus = EventBus(_no_lookup)
            feed = bus.subscribe(EventFilter("/root/"))
            alerts = AlertService(db, bus)
            await alerts.sweep(NOW)
            raised = {
                ("domain-rule", "acme-silent", "raised"),
                ("domain-rule", "acme-member", "raised"),
                ("group-rule", "acme-member", "raised"),
            }
            assert await _open(db) == raised
            await alerts.sweep(NOW)  # nothing new: one open alert per rule and device
            assert await _open(db) == raised
            events = [await asyncio.wait_for(feed.__anext__(), 1) for _ in range(3)]
            assert {(e.alert["ruleId"], e.endpoint) for e in events} == {
                (rule, device) for rule, device, _ in raised
            }

            async with db.transaction() as session:
                await session.execute(
                    update(Device).where(Device.id == "acme-member").values(last_contact_time=NOW)
                )
            await alerts.sweep(NOW)
            assert await _open(db) == {
                ("domain-rule", "acme-silent", "raised"),
                ("domain-rule", "acme-member", "cleared"),
                ("group-rule", "acme-member", "cleared"),
            }
            later = NOW + timedelta(minutes=20)  # silent again: new alerts beside the cleared
            await alerts.sweep(later)
            async with db.session() as session:
                member = [
                    (a.rule_id, a.state)
                    for a in await session.scalars(
                        select(Alert).where(Alert.device_id == "acme-member")
                    )
                ]
            assert sorted(member) == [
                ("domain-rule", "cleared"),
                ("domain-rule", "raised"),
                ("group-rule", "cleared"),
                ("group-rule", "raised"),
            ]

            # A rule deleted while its sweep runs: the sweep ends, nothing is raised.
            await asyncio.wait_for(
                alerts._raise_silent(_rule("deleted-rule", "/root/other/"), NOW), 10
            )
            assert not [a for a in await _open(db) if a[0] == "deleted-rule"]
            await alerts.stop()
        finally:
            await db.dispose()

    asyncio.run(main())
