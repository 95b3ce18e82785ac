"""The connectivity event log: one row per state change, registration, refusal, SMS,
ping, IMEI violation and usage record; ``search`` is what ``POST /thing/searchCDR`` runs."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime
from enum import StrEnum
from typing import Any

from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import AsyncSession

from meadowlark.core.domains import in_scope
from meadowlark.core.errors import InvalidInput
from meadowlark.store.connectivity_models import ConnectivityEvent, Thing

MAX_RESULTS = 1000


class DataType(StrEnum):
    STATE_CHANGE = "STATE_CHANGE"
    REGISTRATION = "REGISTRATION"
    DEREGISTRATION = "DEREGISTRATION"
    REGISTRATION_REFUSED = "REGISTRATION_REFUSED"
    IMEI_VIOLATION = "IMEI_VIOLATION"
    MT_SMS = "MT_SMS"
    SMS_DELIVERY = "MT_SMS_DELIVERY"
    """A delivery receipt of an MT SMS (SMPP)."""
    PING = "PING"
    REFRESH = "REFRESH_CONNECTION"
    USAGE = "DATA"


CDR_TYPES = frozenset({DataType.MT_SMS, DataType.USAGE})
"""Data types that are charging records (``MessageType`` ``CDR``); the rest are ``EVENT``."""


def event_row(
    data_type: DataType,
    *,
    domain_id: str,
    message: str,
    thing_id: str | None = None,
    endpoint: str | None = None,
    severity: str = "Info",
    at: datetime | None = None,
    **details: Any,
) -> dict[str, Any]:
    """The column values of one event (for single adds and batched inserts alike)."""
    return {
        "at": at or datetime.now(UTC),
        "domain_id": domain_id,
        "thing_id": thing_id,
        "endpoint": endpoint,
        "data_type": data_type.value,
        "message_type": "CDR" if data_type in CDR_TYPES else "EVENT",
        "severity": severity,
        "message": message,
        "details": details,
    }


def record(session: AsyncSession, data_type: DataType, **fields: Any) -> None:
    """Add an event to the caller's unit of work (committed with it)."""
    session.add(ConnectivityEvent(**event_row(data_type, **fields)))


def record_for(session: AsyncSession, data_type: DataType, thing: Thing, **fields: Any) -> None:
    """``record`` an event of ``thing``: its domain, id and linked endpoint."""
    record(
        session,
        data_type,
        domain_id=thing.domain_id,
        thing_id=thing.id,
        endpoint=thing.device_endpoint,
        **fields,
    )


@dataclass(frozen=True, slots=True)
class CdrQuery:
    thing_ids: tuple[str, ...] | None = None
    """None: every Thing the caller sees."""
    severity: str | None = None
    data_type: str | None = None
    message_type: str | None = None
    since: datetime | None = None
    before: datetime | None = None
    limit: int = 100


def parse_timestamp(text: str, name: str) -> datetime:
    """ISO 8601 (``2025-02-19T09:04:23.000Z``) or epoch milliseconds."""
    value = text.strip()
    try:
        if value.isdigit():
            return datetime.fromtimestamp(int(value) / 1000, UTC)
        parsed = datetime.fromisoformat(value.replace("Z", "+00:00"))
    except (ValueError, OverflowError, OSError):
        raise InvalidInput(f"{name} must be an ISO 8601 time or epoch milliseconds") from None
    return parsed if parsed.tzinfo else parsed.replace(tzinfo=UTC)


async def search(
    session: AsyncSession, scope: str, query: CdrQuery
) -> tuple[int, list[ConnectivityEvent]]:
    """(total matching, newest first up to ``limit``) within the ``scope`` domain subtree."""
    conditions = [in_scope(ConnectivityEvent.domain_id, scope)]
    if query.thing_ids is not None:
        conditions.append(ConnectivityEvent.thing_id.in_(query.thing_ids))
    if query.severity:
        conditions.append(func.lower(ConnectivityEvent.severity) == query.severity.lower())
    if query.data_type:
        conditions.append(ConnectivityEvent.data_type == query.data_type)
    if query.message_type:
        conditions.append(ConnectivityEvent.message_type == query.message_type)
    if query.since:
        conditions.append(ConnectivityEvent.at >= query.since)
    if query.before:
        conditions.append(ConnectivityEvent.at < query.before)
    total = await session.scalar(
        select(func.count()).select_from(ConnectivityEvent).where(*conditions)
    )
    rows = await session.scalars(
        select(ConnectivityEvent)
        .where(*conditions)
        .order_by(ConnectivityEvent.at.desc(), ConnectivityEvent.id.desc())
        .limit(query.limit)
    )
    return int(total or 0), list(rows.all())
