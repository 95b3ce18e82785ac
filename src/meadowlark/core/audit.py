"""Append-only audit trail of security-relevant events (never holds secrets)."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from meadowlark.store.models import AuditEvent


def record(
    session: AsyncSession,
    event: str,
    *,
    actor: str | None = None,
    subject: str | None = None,
    domain_id: str | None = None,
    client_ip: str | None = None,
    **details: Any,
) -> None:
    """Add an audit row to the caller's unit of work (committed with it)."""
    session.add(
        AuditEvent(
            event=event,
            actor=actor,
            subject=subject,
            domain_id=domain_id,
            client_ip=client_ip,
            details=details,
        )
    )


async def query(
    session: AsyncSession,
    *,
    scope: str,
    event: str | None = None,
    actor: str | None = None,
    since: datetime | None = None,
    limit: int = 100,
    before_id: int | None = None,
) -> list[AuditEvent]:
    """Newest first, limited to the ``scope`` domain subtree (all events for ``/root/``)."""
    statement = select(AuditEvent).order_by(AuditEvent.id.desc()).limit(limit)
    if scope != "/root/":
        statement = statement.where(AuditEvent.domain_id.startswith(scope, autoescape=True))
    if event:
        statement = statement.where(AuditEvent.event == event)
    if actor:
        statement = statement.where(AuditEvent.actor == actor)
    if since:
        statement = statement.where(AuditEvent.at >= since)
    if before_id:
        statement = statement.where(AuditEvent.id < before_id)
    return list((await session.scalars(statement)).all())
