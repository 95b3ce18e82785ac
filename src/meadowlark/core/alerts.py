"""Alert rules and the alerts they raise, per domain or per group.

Three kinds of rule:

- ``noContact``: a device has not contacted the server for ``noContactMinutes``. A
  periodic sweep (one node of a deployment runs it, under a lease) finds such devices
  with one indexed range query on ``devices.last_contact_time`` per rule, and clears
  the alerts of devices heard from again. Devices never heard from are not swept.
- ``threshold``: a numeric resource (``resourceUrl``, ``/o/i/r``) goes above ``above``
  or below ``below``; the alert clears once the value is back past the threshold by
  ``hysteresis``. Values are checked as they reach the value cache (notifications,
  Send, reads) against an in-memory index of the rules by path, reloaded when rules
  change here or on another node.
- ``taskFailed``: a task run (a firmware update too) ended in failure or timeout; the
  device's next successful run clears it.

An alert goes raised -> acknowledged (REST) -> cleared; a rule has at most one open
(raised or acknowledged) alert per device, and a cleared one can be followed by a new
one. Each transition is audited and published on the ``EventBus`` as a device event
(``ALERT_RAISED``, ``ALERT_ACKNOWLEDGED``, ``ALERT_CLEARED``).
"""

from __future__ import annotations

import asyncio
import math
import secrets
import time
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from enum import StrEnum
from typing import Any

import structlog
from sqlalchemy import exists, insert, literal, select, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncSession

from meadowlark.auth.principal import Principal
from meadowlark.core import audit
from meadowlark.core.domains import in_scope
from meadowlark.core.errors import Conflict, InvalidInput, NotFound
from meadowlark.core.events import EventBus, EventKind
from meadowlark.core.groups import get_group
from meadowlark.core.tasks.engine import FAILURE, SUCCESS, TIMEOUT, FinishedRun
from meadowlark.lwm2m.path import ROOT, InvalidPathError, LwM2mPath
from meadowlark.server.ports import ValueCache
from meadowlark.server.values import CachedValue
from meadowlark.store.alert_models import Alert, AlertRule
from meadowlark.store.coiote_models import GroupMembership
from meadowlark.store.db import Database, rows_affected
from meadowlark.store.device_models import Device

_log = structlog.get_logger("meadowlark.alerts")

NO_CONTACT = "noContact"
THRESHOLD = "threshold"
TASK_FAILED = "taskFailed"
KINDS = (NO_CONTACT, THRESHOLD, TASK_FAILED)
SEVERITIES = ("info", "warning", "critical")
MAX_NO_CONTACT_MINUTES = 525_600
"""A year."""
RULES_TOPIC = "alert_rules"
"""The cluster topic on which rule changes are announced."""
SWEEP_BATCH = 500
MAX_PENDING_CHECKS = 10_000
CHECK_BATCH = 500
"""Queued checks taken together, and ids per ``IN`` list of their lookups."""
MAX_PAGE = 1000
STATE_TTL = 60.0
"""Seconds a node trusts what it knows of a device (its domain and groups) and of a
(rule, device) pair's open alert, on the path of incoming values."""


class AlertState(StrEnum):
    RAISED = "raised"
    ACKNOWLEDGED = "acknowledged"
    CLEARED = "cleared"


OPEN_STATES = (AlertState.RAISED.value, AlertState.ACKNOWLEDGED.value)


class Transition(StrEnum):
    RAISE = "raise"
    CLEAR = "clear"


# --- rules: validation and the threshold index ------------------------------------------------


def _invalid(message: str, code: int = 4000) -> InvalidInput:
    return InvalidInput(message, code=code)


def parse_resource_url(text: str) -> LwM2mPath:
    """An ``/o/i/r`` (or ``/o/i/r/ri``) URL; 400 with code 4003 otherwise."""
    try:
        path = LwM2mPath.parse(text)
    except InvalidPathError:
        path = ROOT
    if not text.startswith("/") or path.resource_id is None:
        raise _invalid(
            f"invalid resource URL {text[:80]!r}: expected /object/instance/resource", 4003
        )
    return path


def _finite(name: str, value: Any) -> float | None:
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise _invalid(f"{name} must be a number")
    if not math.isfinite(value):
        raise _invalid(f"{name} must be a finite number")
    return float(value)


def validated_rule_fields(body: Mapping[str, Any]) -> dict[str, Any]:
    """The columns of a rule described by ``body`` (the REST shape); 4000/4003 if invalid."""
    kind = body.get("type")
    if kind not in KINDS:
        raise _invalid(f"unknown rule type {str(kind)[:40]!r}; known: {', '.join(KINDS)}")
    name = body.get("name")
    if not isinstance(name, str) or not name.strip() or len(name) > 255:
        raise _invalid("name must be 1 to 255 characters")
    severity = body.get("severity") or "warning"
    if severity not in SEVERITIES:
        raise _invalid(f"unknown severity {str(severity)[:40]!r}; known: {', '.join(SEVERITIES)}")
    enabled = body.get("enabled", True)
    if not isinstance(enabled, bool):
        raise _invalid("enabled must be true or false")
    fields: dict[str, Any] = {
        "kind": kind,
        "name": name,
        "severity": severity,
        "enabled": enabled,
        "no_contact_minutes": None,
        "resource_url": None,
        "above": None,
        "below": None,
        "hysteresis": 0.0,
    }
    if kind == NO_CONTACT:
        minutes = body.get("noContactMinutes")
        if (
            isinstance(minutes, bool)
            or not isinstance(minutes, int)
            or not 1 <= minutes <= MAX_NO_CONTACT_MINUTES
        ):
            raise _invalid(f"noContactMinutes must be a whole number 1..{MAX_NO_CONTACT_MINUTES}")
        fields["no_contact_minutes"] = minutes
    elif kind == THRESHOLD:
        url = body.get("resourceUrl")
        if not isinstance(url, str):
            raise _invalid("a threshold rule needs resourceUrl (/object/instance/resource)", 4003)
        fields["resource_url"] = str(parse_resource_url(url))
        above, below = _finite("above", body.get("above")), _finite("below", body.get("below"))
        hysteresis = _finite("hysteresis", body.get("hysteresis")) or 0.0
        if above is None and below is None:
            raise _invalid("a threshold rule needs above, below or both")
        if hysteresis < 0:
            raise _invalid("hysteresis must not be negative")
        if above is not None and below is not None and below >= above:
            raise _invalid("below must be less than above")
        fields.update(above=above, below=below, hysteresis=hysteresis)
    return fields


@dataclass(frozen=True, slots=True)
class ThresholdRule:
    """What the value path needs of a threshold rule (a snapshot of its row)."""

    id: str
    domain_id: str
    group_id: str | None
    severity: str
    path: LwM2mPath
    above: float | None
    below: float | None
    hysteresis: float

    def transition(self, is_open: bool, value: float) -> Transition | None:
        """Raise when the value crosses a threshold; clear only once it is back inside by
        the hysteresis margin; otherwise stay as is."""
        if not is_open:
            if (self.above is not None and value > self.above) or (
                self.below is not None and value < self.below
            ):
                return Transition.RAISE
            return None
        back_below = self.above is None or value <= self.above - self.hysteresis
        back_above = self.below is None or value >= self.below + self.hysteresis
        return Transition.CLEAR if back_below and back_above else None

    def describe(self, value: float) -> str:
        if self.above is not None and value > self.above:
            return f"{self.path} = {value:g} is above {self.above:g}"
        if self.below is not None and value < self.below:
            return f"{self.path} = {value:g} is below {self.below:g}"
        return f"{self.path} = {value:g} is back within the thresholds"

    @classmethod
    def of(cls, row: AlertRule) -> ThresholdRule:
        assert row.resource_url is not None
        return cls(
            row.id,
            row.domain_id,
            row.group_id,
            row.severity,
            LwM2mPath.parse(row.resource_url),
            row.above,
            row.below,
            row.hysteresis,
        )


class ThresholdIndex:
    """Enabled threshold rules by the path they watch."""

    def __init__(self, rules: list[ThresholdRule] | None = None) -> None:
        by_path: dict[LwM2mPath, list[ThresholdRule]] = {}
        for rule in rules or []:
            by_path.setdefault(rule.path, []).append(rule)
        self._by_path = {path: tuple(found) for path, found in by_path.items()}
        self.paths = frozenset(self._by_path)
        self.objects = frozenset(path.object_id for path in self._by_path)
        """Object ids with a rule: an int test turns most values away before a path hash."""

    def __bool__(self) -> bool:
        return bool(self._by_path)

    def rules_for(self, path: LwM2mPath) -> tuple[ThresholdRule, ...]:
        return self._by_path.get(path, ())


def numeric(value: Any) -> float | None:
    """A cached value as a number, None for booleans, text and the like."""
    if isinstance(value, bool) or not isinstance(value, int | float):
        return None
    number = float(value)
    return number if math.isfinite(number) else None


# --- REST shapes ----------------------------------------------------------------------------


def _iso(at: datetime | None) -> str | None:
    return None if at is None else at.isoformat().replace("+00:00", "Z")


def rule_json(rule: AlertRule) -> dict[str, Any]:
    body: dict[str, Any] = {
        "id": rule.id,
        "name": rule.name,
        "type": rule.kind,
        "severity": rule.severity,
        "enabled": rule.enabled,
        "domain": rule.domain_id,
        "groupId": rule.group_id,
        "creationTime": _iso(rule.created_at),
        "updateTime": _iso(rule.updated_at),
    }
    if rule.kind == NO_CONTACT:
        body["noContactMinutes"] = rule.no_contact_minutes
    elif rule.kind == THRESHOLD:
        body.update(
            resourceUrl=rule.resource_url,
            above=rule.above,
            below=rule.below,
            hysteresis=rule.hysteresis,
        )
    return body


def alert_json(alert: Alert) -> dict[str, Any]:
    return {
        "id": alert.id,
        "ruleId": alert.rule_id,
        "deviceId": alert.device_id,
        "domain": alert.domain_id,
        "state": alert.state,
        "severity": alert.severity,
        "message": alert.message,
        "value": alert.value,
        "raisedAt": _iso(alert.raised_at),
        "acknowledgedAt": _iso(alert.acknowledged_at),
        "acknowledgedBy": alert.acknowledged_by,
        "clearedAt": _iso(alert.cleared_at),
    }


def new_alert_id() -> str:
    """24 hex digits: the time in ms, then randomness (newest first = descending)."""
    return f"{int(time.time() * 1000):012x}{secrets.token_hex(6)}"


# --- rule CRUD (in the caller's unit of work) ---------------------------------------------------


async def _group_domain(session: AsyncSession, principal: Principal, group_id: Any) -> str:
    if not isinstance(group_id, str):
        raise _invalid("groupId must be a group id")
    group = await get_group(session, principal, group_id)
    return group.domain_id


async def create_rule(
    session: AsyncSession, principal: Principal, body: Mapping[str, Any]
) -> AlertRule:
    fields = validated_rule_fields(body)
    group_id = body.get("groupId")
    domain_id = principal.domain_id
    if group_id is not None:
        domain_id = await _group_domain(session, principal, group_id)
    now = datetime.now(UTC)
    rule = AlertRule(
        id=secrets.token_hex(12),
        domain_id=domain_id,
        group_id=group_id,
        created_at=now,
        updated_at=now,
        **fields,
    )
    session.add(rule)
    audit.record(
        session,
        "alert.rule_created",
        actor=principal.login,
        subject=rule.id,
        domain_id=domain_id,
        type=rule.kind,
    )
    return rule


async def list_rules(session: AsyncSession, principal: Principal) -> list[AlertRule]:
    rows = await session.scalars(
        select(AlertRule)
        .where(in_scope(AlertRule.domain_id, principal.domain_id))
        .order_by(AlertRule.created_at, AlertRule.id)
    )
    return list(rows.all())


async def get_rule(session: AsyncSession, principal: Principal, rule_id: str) -> AlertRule:
    rule = await session.scalar(
        select(AlertRule).where(
            AlertRule.id == rule_id, in_scope(AlertRule.domain_id, principal.domain_id)
        )
    )
    if rule is None:
        raise NotFound(f"alert rule {rule_id[:64]!r} not found", code=4040)
    return rule


async def update_rule(
    session: AsyncSession, principal: Principal, rule_id: str, changes: Mapping[str, Any]
) -> AlertRule:
    """Change the fields given; the rule as a whole must stay valid."""
    rule = await get_rule(session, principal, rule_id)
    merged = {**rule_json(rule), **changes}
    fields = validated_rule_fields(merged)
    group_id = merged.get("groupId")
    if group_id != rule.group_id:
        if group_id is not None:  # without a group, the rule keeps its domain: never wider
            rule.domain_id = await _group_domain(session, principal, group_id)
        rule.group_id = group_id
    for name, value in fields.items():
        setattr(rule, name, value)
    rule.updated_at = datetime.now(UTC)
    audit.record(
        session,
        "alert.rule_updated",
        actor=principal.login,
        subject=rule.id,
        domain_id=rule.domain_id,
    )
    return rule


async def delete_rule(session: AsyncSession, principal: Principal, rule_id: str) -> None:
    """Delete a rule and its alerts."""
    rule = await get_rule(session, principal, rule_id)
    await session.delete(rule)
    audit.record(
        session,
        "alert.rule_deleted",
        actor=principal.login,
        subject=rule.id,
        domain_id=rule.domain_id,
    )


# --- alert queries ----------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class AlertPage:
    alerts: list[Alert]
    next_bookmark: str | None


async def list_alerts(
    session: AsyncSession,
    principal: Principal,
    *,
    state: str | None = None,
    device_id: str | None = None,
    since: datetime | None = None,
    limit: int = 100,
    bookmark: str | None = None,
) -> AlertPage:
    """Newest first, ``limit`` at a time; ``bookmark`` is the last id of the previous page."""
    if not 1 <= limit <= MAX_PAGE:
        raise _invalid(f"limit must be 1..{MAX_PAGE}", 4001)
    statement = select(Alert).where(in_scope(Alert.domain_id, principal.domain_id))
    if state == "open":
        statement = statement.where(Alert.state.in_(OPEN_STATES))
    elif state is not None:
        if state not in {s.value for s in AlertState}:
            raise _invalid(
                f"unknown state {state[:40]!r}; known: raised, acknowledged, cleared, open"
            )
        statement = statement.where(Alert.state == state)
    if device_id is not None:
        statement = statement.where(Alert.device_id == device_id)
    if since is not None:
        statement = statement.where(Alert.raised_at >= since)
    if bookmark is not None:
        statement = statement.where(Alert.id < bookmark)
    rows = list((await session.scalars(statement.order_by(Alert.id.desc()).limit(limit + 1))).all())
    more = len(rows) > limit
    rows = rows[:limit]
    return AlertPage(rows, rows[-1].id if more else None)


async def get_alert(session: AsyncSession, principal: Principal, alert_id: str) -> Alert:
    alert = await session.scalar(
        select(Alert).where(Alert.id == alert_id, in_scope(Alert.domain_id, principal.domain_id))
    )
    if alert is None:
        raise NotFound(f"alert {alert_id[:64]!r} not found", code=4040)
    return alert


# --- the service: raising, clearing, acknowledging --------------------------------------------


@dataclass(frozen=True, slots=True)
class _ValueCheck:
    """Values of one device that some threshold rule watches, as they arrived."""

    endpoint: str
    values: Mapping[LwM2mPath, CachedValue]


@dataclass(frozen=True, slots=True)
class _Target:
    """A device an alert is about."""

    device_id: str
    endpoint: str
    domain_id: str


class AlertService:
    """Raises and clears alerts from incoming values, task outcomes and the sweep."""

    def __init__(self, db: Database, events: EventBus, sweep_interval: float = 30.0) -> None:
        self._db = db
        self._events = events
        self.sweep_interval = sweep_interval
        self.index = ThresholdIndex()
        self._open: dict[tuple[str, str], tuple[bool, float]] = {}
        """(rule id, device id) -> (an open alert exists, when this node learnt it). Trusted
        for ``STATE_TTL`` seconds: a device whose registration moved to another node
        and back may have had its alert cleared there meanwhile."""
        self._checks: asyncio.Queue[_ValueCheck | Callable[[], Awaitable[None]]] = asyncio.Queue(
            MAX_PENDING_CHECKS
        )
        self._devices: dict[str, tuple[tuple[_Target, set[str]] | None, float]] = {}
        """Endpoint -> (the device and its groups, None if unknown; when looked up)."""
        self._worker: asyncio.Task[None] | None = None
        self._reloads: set[asyncio.Task[None]] = set()
        self._change_listeners: list[Callable[[Any], None]] = []

    async def start(self) -> None:
        await self.reload_rules()
        if self._worker is None:
            self._worker = asyncio.get_running_loop().create_task(self._work(), name="alerts")

    async def stop(self) -> None:
        worker, self._worker = self._worker, None
        for task in [worker, *self._reloads]:
            if task is not None:
                task.cancel()
        await asyncio.gather(*(t for t in [worker, *self._reloads] if t), return_exceptions=True)

    async def idle(self) -> None:
        """Wait until every queued check has run (tests)."""
        await self._checks.join()

    # --- rule changes ------------------------------------------------------------------------

    async def reload_rules(self) -> None:
        async with self._db.session() as session:
            rows = await session.scalars(
                select(AlertRule).where(AlertRule.kind == THRESHOLD, AlertRule.enabled.is_(True))
            )
            self.index = ThresholdIndex([ThresholdRule.of(row) for row in rows])
        self._open.clear()
        self._devices.clear()

    def on_rules_changed(self, listener: Callable[[Any], None]) -> None:
        """``listener(None)`` is told of each rule change made on this node (cluster)."""
        self._change_listeners.append(listener)

    async def rules_changed(self) -> None:
        """A rule was created, changed or deleted here: reload, and tell the other nodes."""
        await self.reload_rules()
        for listener in self._change_listeners:
            listener(None)

    def rules_changed_elsewhere(self, _key: Any = None) -> None:
        task = asyncio.get_running_loop().create_task(self.reload_rules())
        self._reloads.add(task)
        task.add_done_callback(self._reloads.discard)

    # --- inputs ------------------------------------------------------------------------------

    def values_seen(self, endpoint: str, values: Mapping[LwM2mPath, CachedValue]) -> None:
        """Values reached the cache: queue a check of those some threshold rule watches."""
        index = self.index
        objects = index.objects
        if not objects:
            return
        watched: dict[LwM2mPath, CachedValue] | None = None
        for path, value in values.items():
            if path.object_id in objects and path in index.paths:
                if watched is None:
                    watched = {}
                watched[path] = value
        if watched:
            found = watched
            self._enqueue(_ValueCheck(endpoint, found))

    def task_finished(self, run: FinishedRun) -> None:
        if run.status in (FAILURE, TIMEOUT, SUCCESS):
            self._enqueue(lambda: self._check_task(run))

    def _enqueue(self, check: _ValueCheck | Callable[[], Awaitable[None]]) -> None:
        try:
            self._checks.put_nowait(check)
        except asyncio.QueueFull:
            _log.warning("alert_checks_dropped", pending=MAX_PENDING_CHECKS)

    async def _work(self) -> None:
        """Take the queued checks in batches: the devices and open alerts that values of a
        batch need are looked up with one query each."""
        while True:
            batch = [await self._checks.get()]
            while len(batch) < CHECK_BATCH and not self._checks.empty():
                batch.append(self._checks.get_nowait())
            try:
                values = [check for check in batch if isinstance(check, _ValueCheck)]
                if values:
                    await self._check_values(values)
                for check in batch:
                    if not isinstance(check, _ValueCheck):
                        await check()
            except Exception:  # one failed batch must not stop the others
                _log.exception("alert_check_failed")
            finally:
                for _ in batch:
                    self._checks.task_done()

    async def _target(
        self, session: AsyncSession, device_id: str
    ) -> tuple[_Target, set[str]] | None:
        """The device and its groups."""
        row = (
            await session.execute(
                select(Device.id, Device.endpoint_name, Device.domain_id).where(
                    Device.id == device_id
                )
            )
        ).first()
        if row is None:
            return None
        groups = await session.scalars(
            select(GroupMembership.group_id).where(GroupMembership.device_id == row.id)
        )
        return _Target(row.id, row.endpoint_name, row.domain_id), set(groups.all())

    async def _devices_of(
        self, session: AsyncSession, endpoints: set[str]
    ) -> dict[str, tuple[_Target, set[str]] | None]:
        """The devices (and their groups) of ``endpoints``, each looked up at most once per
        ``STATE_TTL``."""
        now = time.monotonic()
        found: dict[str, tuple[_Target, set[str]] | None] = {}
        missing = []
        for endpoint in endpoints:
            cached = self._devices.get(endpoint)
            if cached is not None and cached[1] >= now - STATE_TTL:
                found[endpoint] = cached[0]
            else:
                missing.append(endpoint)
        for start in range(0, len(missing), CHECK_BATCH):
            chunk = missing[start : start + CHECK_BATCH]
            rows = (
                await session.execute(
                    select(Device.id, Device.endpoint_name, Device.domain_id).where(
                        Device.endpoint_name.in_(chunk)
                    )
                )
            ).all()
            groups: dict[str, set[str]] = {row.id: set() for row in rows}
            if rows:
                memberships = await session.execute(
                    select(GroupMembership.device_id, GroupMembership.group_id).where(
                        GroupMembership.device_id.in_(list(groups))
                    )
                )
                for device_id, group_id in memberships:
                    groups[device_id].add(group_id)
            targets = {
                row.endpoint_name: (
                    _Target(row.id, row.endpoint_name, row.domain_id),
                    groups[row.id],
                )
                for row in rows
            }
            for endpoint in chunk:
                found[endpoint] = targets.get(endpoint)
                self._devices[endpoint] = (found[endpoint], now)
        return found

    async def _check_values(self, checks: list[_ValueCheck]) -> None:
        """Compare the values with the rules watching them, in order of arrival."""
        async with self._db.session() as session:
            devices = await self._devices_of(session, {check.endpoint for check in checks})
            comparisons: list[tuple[_Target, ThresholdRule, float]] = []
            for check in checks:
                found = devices.get(check.endpoint)
                if found is None:
                    continue
                target, groups = found
                comparisons.extend(
                    (target, rule, number)
                    for path, cached in check.values.items()
                    if (number := numeric(cached.value)) is not None
                    for rule in self.index.rules_for(path)
                    if target.domain_id.startswith(rule.domain_id)
                    and (rule.group_id is None or rule.group_id in groups)
                )
            known_since = time.monotonic() - STATE_TTL
            unknown = {
                f"{rule.id}/{target.device_id}": (rule.id, target.device_id)
                for target, rule, _ in comparisons
                if self._open.get((rule.id, target.device_id), (False, -math.inf))[1] < known_since
            }
            keys = list(unknown)
            for start in range(0, len(keys), CHECK_BATCH):
                chunk = keys[start : start + CHECK_BATCH]
                open_keys = set(
                    (
                        await session.scalars(
                            select(Alert.open_key).where(Alert.open_key.in_(chunk))
                        )
                    ).all()
                )
                for key in chunk:
                    self._remember(*unknown[key], key in open_keys)
        for target, rule, number in comparisons:
            is_open = self._open.get((rule.id, target.device_id), (False, 0.0))[0]
            transition = rule.transition(is_open, number)
            if transition is Transition.RAISE:
                await self.raise_alert(
                    rule.id, rule.severity, target, rule.describe(number), number
                )
            elif transition is Transition.CLEAR:
                await self.clear_alert(rule.id, target, rule.describe(number), number)

    async def _check_task(self, run: FinishedRun) -> None:
        async with self._db.session() as session:
            found = await self._target(session, run.device_id)
            if found is None:
                return
            target, groups = found
            rules = list(
                (
                    await session.scalars(
                        select(AlertRule).where(
                            AlertRule.kind == TASK_FAILED, AlertRule.enabled.is_(True)
                        )
                    )
                ).all()
            )
        firmware = any(p.get("name") == "newFirmwareVersion" for p in run.properties)
        what = "firmware update" if firmware else "task"
        for rule in rules:
            if not target.domain_id.startswith(rule.domain_id) or (
                rule.group_id is not None and rule.group_id not in groups
            ):
                continue
            if run.status == SUCCESS:
                await self.clear_alert(rule.id, target, f"task {run.task_id} succeeded", None)
            else:
                message = f"{what} {run.task_id} ended in {run.status}: {run.summary}"
                await self.raise_alert(rule.id, rule.severity, target, message[:2000], run.status)

    # --- transitions ---------------------------------------------------------------------------

    def _remember(self, rule_id: str, device_id: str, is_open: bool) -> None:
        self._open[(rule_id, device_id)] = (is_open, time.monotonic())

    async def raise_alert(
        self, rule_id: str, severity: str, target: _Target, message: str, value: Any
    ) -> Alert | None:
        """A new raised alert, or None when the rule has an open one for the device."""
        now = datetime.now(UTC)
        alert = Alert(
            id=new_alert_id(),
            rule_id=rule_id,
            device_id=target.device_id,
            domain_id=target.domain_id,
            state=AlertState.RAISED.value,
            severity=severity,
            message=message,
            value=value,
            open_key=f"{rule_id}/{target.device_id}",
            raised_at=now,
        )
        try:
            async with self._db.transaction() as session:
                session.add(alert)
                self._audit(session, "alert.raised", alert, None)
        except IntegrityError:  # open already (raised elsewhere), or rule/device just deleted
            self._remember(rule_id, target.device_id, True)
            return None
        self._remember(rule_id, target.device_id, True)
        self._publish(EventKind.ALERT_RAISED, target.endpoint, alert)
        return alert

    async def clear_alert(
        self, rule_id: str, target: _Target, message: str, value: Any
    ) -> Alert | None:
        """Clear the rule's open alert of the device, if it has one."""
        key = f"{rule_id}/{target.device_id}"
        now = datetime.now(UTC)
        async with self._db.transaction() as session:
            alert = await session.scalar(select(Alert).where(Alert.open_key == key))
            if alert is not None:
                cleared = await session.execute(
                    update(Alert)
                    .where(Alert.id == alert.id, Alert.open_key == key)
                    .values(state=AlertState.CLEARED.value, open_key=None, cleared_at=now)
                    .execution_options(synchronize_session=False)
                )
                if not rows_affected(cleared):
                    alert = None
                else:
                    self._audit(session, "alert.cleared", alert, None, reason=message)
        self._remember(rule_id, target.device_id, False)
        if alert is None:
            return None
        alert.state, alert.open_key, alert.cleared_at = AlertState.CLEARED.value, None, now
        self._publish(EventKind.ALERT_CLEARED, target.endpoint, alert, message=message, value=value)
        return alert

    async def acknowledge(self, principal: Principal, alert_id: str) -> Alert:
        """Acknowledge a raised alert of the caller's domain; 409 if not raised."""
        now = datetime.now(UTC)
        async with self._db.transaction() as session:
            alert = await get_alert(session, principal, alert_id)
            if alert.state != AlertState.RAISED.value:
                raise Conflict(f"alert {alert_id!r} is {alert.state}, not raised")
            done = await session.execute(
                update(Alert)
                .where(Alert.id == alert.id, Alert.state == AlertState.RAISED.value)
                .values(
                    state=AlertState.ACKNOWLEDGED.value,
                    acknowledged_at=now,
                    acknowledged_by=principal.login,
                )
                .execution_options(synchronize_session=False)
            )
            if not rows_affected(done):
                raise Conflict(f"alert {alert_id!r} is no longer raised")
            endpoint = await session.scalar(
                select(Device.endpoint_name).where(Device.id == alert.device_id)
            )
            self._audit(session, "alert.acknowledged", alert, principal.login)
        alert.state = AlertState.ACKNOWLEDGED.value
        alert.acknowledged_at, alert.acknowledged_by = now, principal.login
        self._publish(EventKind.ALERT_ACKNOWLEDGED, endpoint or alert.device_id, alert)
        return alert

    def _audit(
        self, session: AsyncSession, event: str, alert: Alert, actor: str | None, **extra: Any
    ) -> None:
        audit.record(
            session,
            event,
            actor=actor,
            subject=alert.device_id,
            domain_id=alert.domain_id,
            alertId=alert.id,
            ruleId=alert.rule_id,
            severity=alert.severity,
            **extra,
        )

    def _publish(self, kind: EventKind, endpoint: str, alert: Alert, **override: Any) -> None:
        details = {
            "alertId": alert.id,
            "ruleId": alert.rule_id,
            "deviceId": alert.device_id,
            "severity": alert.severity,
            "message": alert.message,
            "value": alert.value,
            "state": alert.state,
            **override,
        }
        self._events.publish_known(kind, endpoint, alert.domain_id, alert=details)

    # --- the no-contact sweep -----------------------------------------------------------------

    async def sweep_forever(self) -> None:
        """The singleton duty: sweep every ``sweep_interval`` seconds."""
        while True:
            try:
                await self.sweep()
            except Exception:  # retried at the next round
                _log.exception("alert_sweep_failed")
            await asyncio.sleep(self.sweep_interval)

    async def sweep(self, now: datetime | None = None) -> None:
        now = now or datetime.now(UTC)
        async with self._db.session() as session:
            rules = list(
                (
                    await session.scalars(
                        select(AlertRule).where(
                            AlertRule.kind == NO_CONTACT, AlertRule.enabled.is_(True)
                        )
                    )
                ).all()
            )
        for rule in rules:
            assert rule.no_contact_minutes is not None
            cutoff = now - timedelta(minutes=rule.no_contact_minutes)
            await self._raise_silent(rule, cutoff)
            await self._clear_heard_from(rule, cutoff)

    async def _raise_silent(self, rule: AlertRule, cutoff: datetime) -> None:
        minutes = rule.no_contact_minutes
        while True:
            statement = silent_devices(rule, cutoff)
            async with self._db.session() as session:
                rows = (await session.execute(statement)).all()
            if not rows:
                return
            now = datetime.now(UTC)
            alerts = [
                Alert(
                    id=new_alert_id(),
                    rule_id=rule.id,
                    device_id=row.id,
                    domain_id=row.domain_id,
                    state=AlertState.RAISED.value,
                    severity=rule.severity,
                    message=f"no contact for {minutes} minutes "
                    f"(last contact {_iso(row.last_contact_time)})",
                    value=_iso(row.last_contact_time),
                    open_key=f"{rule.id}/{row.id}",
                    raised_at=now,
                )
                for row in rows
            ]
            endpoints = {row.id: row.endpoint_name for row in rows}
            try:
                async with self._db.transaction() as session:
                    await session.execute(insert(Alert), [_alert_row(alert) for alert in alerts])
                    for alert in alerts:
                        self._audit(session, "alert.raised", alert, None)
            except IntegrityError:  # raced with a change of the rule or a device: one by one
                raised = [
                    await self.raise_alert(
                        rule.id,
                        rule.severity,
                        _Target(row.id, row.endpoint_name, row.domain_id),
                        alert.message,
                        alert.value,
                    )
                    for alert, row in zip(alerts, rows, strict=True)
                ]
                if not any(raised):  # the rule is gone: the same rows would come back
                    return
            else:
                for alert in alerts:
                    self._publish(EventKind.ALERT_RAISED, endpoints[alert.device_id], alert)
            if len(rows) < SWEEP_BATCH:
                return

    async def _clear_heard_from(self, rule: AlertRule, cutoff: datetime) -> None:
        statement = heard_from_again(rule, cutoff)
        async with self._db.session() as session:
            rows = (await session.execute(statement)).all()
        for row in rows:
            await self.clear_alert(
                rule.id,
                _Target(row.device_id, row.endpoint_name, row.domain_id),
                f"contact again at {_iso(row.last_contact_time)}",
                _iso(row.last_contact_time),
            )


def _in_rule_scope(statement: Any, rule: AlertRule) -> Any:
    statement = statement.where(in_scope(Device.domain_id, rule.domain_id))
    if rule.group_id is not None:
        statement = statement.where(
            exists().where(
                GroupMembership.device_id == Device.id,
                GroupMembership.group_id == rule.group_id,
            )
        )
    return statement


def silent_devices(rule: AlertRule, cutoff: datetime) -> Any:
    """Devices of ``rule`` last heard from before ``cutoff`` without an open alert of it: a
    range of the ``last_contact_time`` index, each checked by the unique ``open_key``."""
    return _in_rule_scope(
        select(Device.id, Device.endpoint_name, Device.domain_id, Device.last_contact_time)
        .where(
            Device.last_contact_time < cutoff,
            ~exists().where(Alert.open_key == literal(f"{rule.id}/") + Device.id),
        )
        .limit(SWEEP_BATCH),
        rule,
    )


def heard_from_again(rule: AlertRule, cutoff: datetime) -> Any:
    """The open alerts of ``rule`` whose device was heard from since ``cutoff``."""
    return (
        select(Alert.device_id, Device.endpoint_name, Alert.domain_id, Device.last_contact_time)
        .join(Device, Device.id == Alert.device_id)
        .where(
            Alert.rule_id == rule.id,
            Alert.state.in_(OPEN_STATES),
            Device.last_contact_time >= cutoff,
        )
    )


def _alert_row(alert: Alert) -> dict[str, Any]:
    return {column.key: getattr(alert, column.key) for column in Alert.__table__.columns}


class AlertingValueCache:
    """A ``ValueCache`` that also shows every value it is given to the alert rules."""

    def __init__(self, inner: ValueCache, alerts: AlertService) -> None:
        self._inner = inner
        self._alerts = alerts

    def put(self, endpoint: str, values: Mapping[LwM2mPath, CachedValue]) -> None:
        self._inner.put(endpoint, values)
        self._alerts.values_seen(endpoint, values)

    async def get(self, endpoint: str, prefix: LwM2mPath = ROOT) -> dict[LwM2mPath, CachedValue]:
        return await self._inner.get(endpoint, prefix)
