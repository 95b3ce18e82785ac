"""Alerts on the Coiote surface (a Meadowlark family; the reference has none).

Rules (``alerts/rules``) are kept per domain or per group; alerts are listed newest
first with ``hasNext`` paging and acknowledged one by one. Both are scoped to the
caller's domain subtree: a rule by its domain, an alert by its device's domain.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Annotated, Any

from fastapi import APIRouter, Path, Query, Response
from pydantic import BaseModel, ConfigDict, Field

from meadowlark.api.deps import RuntimeDep, SessionDep, require
from meadowlark.auth.principal import Principal
from meadowlark.core import alerts

router = APIRouter(prefix="/api/coiotedm/v3", tags=["alerts"])

RuleId = Annotated[str, Path(max_length=64)]
AlertId = Annotated[str, Path(max_length=64)]


class AlertRuleBody(BaseModel):
    """An alert rule; which fields apply depends on ``type``. On PUT, only the fields
    given change."""

    model_config = ConfigDict(extra="forbid")

    name: str | None = Field(default=None, max_length=255)
    type: str | None = Field(
        default=None, max_length=32, description="noContact, threshold or taskFailed"
    )
    severity: str | None = Field(
        default=None, max_length=32, description="info, warning or critical"
    )
    enabled: bool | None = None
    groupId: str | None = Field(default=None, max_length=255, description="None: the whole domain")
    noContactMinutes: int | None = None
    resourceUrl: str | None = Field(
        default=None, max_length=64, description="/object/instance/resource"
    )
    above: float | None = None
    below: float | None = None
    hysteresis: float | None = None


@router.get("/alerts/rules")
async def list_alert_rules(
    session: SessionDep, principal: Annotated[Principal, require("GET alerts/rules")]
) -> list[dict[str, Any]]:
    """The alert rules of your domain subtree."""
    return [alerts.rule_json(rule) for rule in await alerts.list_rules(session, principal)]


@router.post("/alerts/rules", status_code=201)
async def create_alert_rule(
    body: AlertRuleBody,
    runtime: RuntimeDep,
    session: SessionDep,
    principal: Annotated[Principal, require("POST alerts/rules")],
) -> dict[str, Any]:
    """Create an alert rule for your domain, or for one of its groups (``groupId``)."""
    rule = await alerts.create_rule(session, principal, body.model_dump(exclude_unset=True))
    await session.commit()
    await runtime.alerts.rules_changed()
    return alerts.rule_json(rule)


@router.get("/alerts/rules/{rule_id}")
async def get_alert_rule(
    rule_id: RuleId,
    session: SessionDep,
    principal: Annotated[Principal, require("GET alerts/rules/{id}")],
) -> dict[str, Any]:
    """One alert rule."""
    return alerts.rule_json(await alerts.get_rule(session, principal, rule_id))


@router.put("/alerts/rules/{rule_id}")
async def update_alert_rule(
    rule_id: RuleId,
    body: AlertRuleBody,
    runtime: RuntimeDep,
    session: SessionDep,
    principal: Annotated[Principal, require("PUT alerts/rules/{id}")],
) -> dict[str, Any]:
    """Change an alert rule (the fields given); its open alerts stay open."""
    rule = await alerts.update_rule(
        session, principal, rule_id, body.model_dump(exclude_unset=True)
    )
    await session.commit()
    await runtime.alerts.rules_changed()
    return alerts.rule_json(rule)


@router.delete("/alerts/rules/{rule_id}", status_code=204, response_class=Response)
async def delete_alert_rule(
    rule_id: RuleId,
    runtime: RuntimeDep,
    session: SessionDep,
    principal: Annotated[Principal, require("DELETE alerts/rules/{id}")],
) -> Response:
    """Delete an alert rule and its alerts."""
    await alerts.delete_rule(session, principal, rule_id)
    await session.commit()
    await runtime.alerts.rules_changed()
    return Response(status_code=204)


@router.get("/alerts")
async def list_alerts(
    session: SessionDep,
    principal: Annotated[Principal, require("GET alerts")],
    state: Annotated[
        str | None, Query(max_length=32, description="raised, acknowledged, cleared or open")
    ] = None,
    deviceId: Annotated[str | None, Query(max_length=255)] = None,
    since: Annotated[datetime | None, Query(description="raised at or after (ISO 8601)")] = None,
    limit: Annotated[int, Query(description="1..1000")] = 100,
    pageBookmark: Annotated[str | None, Query(max_length=64)] = None,
) -> dict[str, Any]:
    """Alerts of the devices in your domain, newest first."""
    if since is not None and since.tzinfo is None:
        since = since.replace(tzinfo=UTC)
    page = await alerts.list_alerts(
        session,
        principal,
        state=state,
        device_id=deviceId,
        since=since,
        limit=limit,
        bookmark=pageBookmark,
    )
    return {
        "alerts": [alerts.alert_json(alert) for alert in page.alerts],
        "hasNext": page.next_bookmark is not None,
        "nextPageBookmark": page.next_bookmark,
    }


@router.get("/alerts/{alert_id}")
async def get_alert(
    alert_id: AlertId,
    session: SessionDep,
    principal: Annotated[Principal, require("GET alerts/{id}")],
) -> dict[str, Any]:
    """One alert."""
    return alerts.alert_json(await alerts.get_alert(session, principal, alert_id))


@router.post("/alerts/{alert_id}/acknowledge")
async def acknowledge_alert(
    alert_id: AlertId,
    runtime: RuntimeDep,
    principal: Annotated[Principal, require("POST alerts/{id}/acknowledge")],
) -> dict[str, Any]:
    """Acknowledge a raised alert; it stays open until its condition clears."""
    return alerts.alert_json(await runtime.alerts.acknowledge(principal, alert_id))
