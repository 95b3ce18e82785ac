"""Usage reports: a template names a period; each history entry is a CSV of the usage
recorded for the caller's Things in that period, one row per SIM."""

from __future__ import annotations

import csv
import hashlib
import io
import re
import uuid
from collections.abc import Mapping
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import AsyncSession

from meadowlark.auth.principal import Principal
from meadowlark.connectivity.things import _epoch_ms, _text, visible_things
from meadowlark.core.domains import in_scope
from meadowlark.core.errors import InvalidInput, NotFound
from meadowlark.store.connectivity_models import (
    ReportHistory,
    ReportTemplate,
    Thing,
    ThingUsage,
)

COLUMNS = (
    "Thing Name",
    "IMSI",
    "MSISDN",
    "Roaming Partner",
    "Data",
    "SMS",
    "MO SMS",
    "MT SMS",
    "Voice",
    "MO VOICE",
    "MT VOICE",
    "Total Before Credit",
    "Credit",
    "Total",
    "Data In (bytes)",
    "Data Out (bytes)",
    "Messages In",
    "Messages Out",
)
"""The console's columns, then the exact counters behind ``Data``."""
ROAMING_PARTNER = "Meadowlark LwM2M"
_NAME = re.compile(r"[^A-Za-z0-9_-]+")


def _period(value: Any, name: str) -> datetime:
    if isinstance(value, bool) or not isinstance(value, int | str):
        raise InvalidInput(f"ReportPeriod.{name} must be epoch milliseconds")
    try:
        return datetime.fromtimestamp(int(value) / 1000, UTC)
    except (ValueError, OverflowError, OSError):
        raise InvalidInput(f"ReportPeriod.{name} must be epoch milliseconds") from None


async def create_template(
    session: AsyncSession, principal: Principal, fields: Mapping[str, Any]
) -> ReportTemplate:
    name = _text(fields, "Name")
    if not name:
        raise InvalidInput("Name is required")
    period = fields.get("ReportPeriod")
    if period is None:
        period = {"startDate": fields.get("startDate"), "endDate": fields.get("endDate")}
    if not isinstance(period, dict):
        raise InvalidInput("ReportPeriod must be {startDate, endDate}")
    start, end = (
        _period(period.get("startDate"), "startDate"),
        _period(period.get("endDate"), "endDate"),
    )
    if end <= start:
        raise InvalidInput("ReportPeriod.endDate must be after startDate")
    template = ReportTemplate(
        id=f"ReportTemplateId_{uuid.uuid4()}",
        domain_id=principal.domain_id,
        name=name,
        description=_text(fields, "Description"),
        group_by=_text(fields, "GroupBy", "servingNetwork") or "servingNetwork",
        report_type=_text(fields, "ReportType", "rating") or "rating",
        period_start=start,
        period_end=end,
    )
    session.add(template)
    return template


async def list_templates(session: AsyncSession, principal: Principal) -> list[ReportTemplate]:
    rows = await session.scalars(
        select(ReportTemplate)
        .where(in_scope(ReportTemplate.domain_id, principal.domain_id))
        .order_by(ReportTemplate.created_at)
    )
    return list(rows.all())


def template_body(template: ReportTemplate) -> dict[str, Any]:
    return {
        "ReportTemplateId": template.id,
        "Name": template.name,
        "Description": template.description,
        "GroupBy": template.group_by,
        "ReportType": template.report_type,
        "ReportPeriod": {
            "startDate": _epoch_ms(template.period_start),
            "endDate": _epoch_ms(template.period_end),
        },
        "DateCreated": _epoch_ms(template.created_at),
    }


def _data_with_unit(total: int) -> str:
    for unit, size in (("GB", 1 << 30), ("MB", 1 << 20), ("KB", 1 << 10)):
        if total >= size:
            return f" {total / size:.2f} {unit}"
    return f" {total} B"


async def generate(session: AsyncSession, principal: Principal, template_id: str) -> ReportHistory:
    """Write the report of the template's period now (usage is kept per day)."""
    template = await session.scalar(
        select(ReportTemplate).where(
            ReportTemplate.id == template_id,
            in_scope(ReportTemplate.domain_id, principal.domain_id),
        )
    )
    if template is None:
        raise NotFound(f"report template {template_id[:80]!r} not found")
    totals = (
        select(
            ThingUsage.thing_id,
            func.sum(ThingUsage.bytes_in).label("bytes_in"),
            func.sum(ThingUsage.bytes_out).label("bytes_out"),
            func.sum(ThingUsage.messages_in).label("messages_in"),
            func.sum(ThingUsage.messages_out).label("messages_out"),
            func.sum(ThingUsage.sms_mt).label("sms_mt"),
        )
        .where(
            ThingUsage.day >= template.period_start.date(),
            ThingUsage.day <= template.period_end.date(),
        )
        .group_by(ThingUsage.thing_id)
        .subquery()
    )
    rows = await session.execute(
        select(Thing, totals)
        .join(totals, totals.c.thing_id == Thing.id)
        .where(visible_things(principal))
        .order_by(Thing.name, Thing.id)
    )
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\n")
    writer.writerow(COLUMNS)
    for row in rows:
        thing: Thing = row[0]
        bytes_in, bytes_out = int(row.bytes_in), int(row.bytes_out)
        sms = int(row.sms_mt)
        writer.writerow(
            (
                thing.name,
                thing.imsi,
                thing.msisdn,
                ROAMING_PARTNER,
                _data_with_unit(bytes_in + bytes_out),
                sms,
                0,
                sms,
                0,
                0,
                0,
                0,
                0,
                0,
                bytes_in,
                bytes_out,
                int(row.messages_in),
                int(row.messages_out),
            )
        )
    content = out.getvalue()
    now = datetime.now(UTC)
    digest = hashlib.sha256(f"{template.id}{now.isoformat()}{uuid.uuid4()}".encode()).hexdigest()
    history = ReportHistory(
        id=f"ReportHistoryId_{uuid.uuid4()}",
        template_id=template.id,
        domain_id=template.domain_id,
        csv_path=(
            f"/efs/reports/csv/{now.year}/{now.month}/{now.day}/"
            f"Report_{_NAME.sub('_', template.name)[:60]}_#{digest[:16]}.csv"
        ),
        csv=content,
    )
    session.add(history)
    return history


async def histories(
    session: AsyncSession, principal: Principal, template_id: str | None
) -> list[ReportHistory]:
    statement = select(ReportHistory).where(in_scope(ReportHistory.domain_id, principal.domain_id))
    if template_id:
        statement = statement.where(ReportHistory.template_id == template_id)
    rows = await session.scalars(statement.order_by(ReportHistory.created_at.desc()))
    return list(rows.all())


def history_body(history: ReportHistory) -> dict[str, Any]:
    return {
        "ReportHistoryId": history.id,
        "ReportTemplateId": history.template_id,
        "csvPath": history.csv_path,
        "DateCreated": _epoch_ms(history.created_at),
    }


async def download(session: AsyncSession, principal: Principal, csv_path: str) -> str:
    path = csv_path if csv_path.startswith("/") else "/" + csv_path
    history = await session.scalar(
        select(ReportHistory).where(
            ReportHistory.csv_path == path,
            in_scope(ReportHistory.domain_id, principal.domain_id),
        )
    )
    if history is None:
        raise NotFound(f"report {csv_path[:120]!r} not found")
    return history.csv
