"""SIM cards ("Things"): inventory, lifecycle, IMEI lock, the link to an LwM2M device and
the actions on it (ping, SMS, registration update).

Every query is limited to the caller's domain subtree and, for a user with
``ThingsGroupIds``, to those groups: anything else answers like a Thing that does not
exist. ``ThingsSensitiveData`` guards IMSI and MSISDN (seen with ``view``, changed with
``edit``).
"""

from __future__ import annotations

import csv
import io
import secrets
import time
import uuid
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import and_, func, select, update
from sqlalchemy.ext.asyncio import AsyncSession

from meadowlark.auth import permissions as catalog
from meadowlark.auth.principal import Principal
from meadowlark.connectivity import cdr
from meadowlark.connectivity.enforcement import ThingFacts, ThingIndex
from meadowlark.connectivity.identifiers import (
    iccid_of,
    thing_id,
    validate_iccid,
    validate_imei,
    validate_imsi,
    validate_msisdn,
)
from meadowlark.connectivity.recorder import add_usage
from meadowlark.connectivity.sms import DeliveryReceipt, OutgoingSms, SmsGateway
from meadowlark.connectivity.states import ThingState, check_transition, parse_state
from meadowlark.core import audit
from meadowlark.core.domains import in_scope
from meadowlark.core.errors import Conflict, Forbidden, InvalidInput, NotFound, ServiceError
from meadowlark.lwm2m.path import LwM2mPath
from meadowlark.server.errors import Lwm2mServerError, RequestQueuedError
from meadowlark.server.service import LwM2mServer
from meadowlark.store.connectivity_models import (
    ConnectivityEvent,
    Thing,
    ThingsGroup,
    ThingTag,
    ThingUsage,
)
from meadowlark.store.db import Database, rows_affected
from meadowlark.store.device_models import Device
from meadowlark.store.models import Domain

MAX_PAGE = 50
STALE_CAS = 4092
DUPLICATE = 4093
NOT_CONNECTED = 4094
MAX_TEXT = 255
MAX_SMS = 1000
REGISTRATION_UPDATE_TRIGGER = LwM2mPath(1, 0, 8)
SORTABLE = {
    "ThingName": Thing.name,
    "ThingId": Thing.id,
    "ExternalUniqueId": Thing.iccid,
    "ICCID": Thing.iccid,
    "State": Thing.state,
    "IMEI": Thing.imei,
    "DateCreated": Thing.created_at,
    "DateModified": Thing.modified_at,
}
FILTERABLE = {
    "ThingName": Thing.name,
    "ThingId": Thing.id,
    "ExternalUniqueId": Thing.iccid,
    "ICCID": Thing.iccid,
    "State": Thing.state,
    "IMEI": Thing.imei,
    "ThingsGroupId": Thing.group_id,
    "IMSI": Thing.imsi,
    "MSISDN": Thing.msisdn,
}
SENSITIVE_FIELDS = frozenset({"IMSI", "MSISDN"})


def _epoch_ms(value: datetime | None) -> int | None:
    return None if value is None else int(value.timestamp() * 1000)


def _text(fields: Mapping[str, Any], name: str, default: str = "") -> str:
    value = fields.get(name, default)
    if value is None:
        return default
    if not isinstance(value, str):
        raise InvalidInput(f"{name} must be a string")
    if len(value) > MAX_TEXT:
        raise InvalidInput(f"{name} is longer than {MAX_TEXT} characters")
    return value.strip()


def _flag(fields: Mapping[str, Any], name: str) -> bool | None:
    value = fields.get(name)
    if value is None or isinstance(value, bool):
        return value
    if isinstance(value, str) and value.lower() in ("true", "false", "1", "0"):
        return value.lower() in ("true", "1")
    raise InvalidInput(f"{name} must be true or false")


def parse_tags(value: Any) -> list[str]:
    """Tags as a list, or as one string separated by ``;``, ``|`` or ``,``."""
    if value is None or value == "":
        return []
    if isinstance(value, str):
        for separator in ";|":
            value = value.replace(separator, ",")
        items: Iterable[Any] = value.split(",")
    elif isinstance(value, list):
        items = value
    else:
        raise InvalidInput("Tags must be a list of names")
    tags = []
    for item in items:
        if not isinstance(item, str) or len(item) > 128:
            raise InvalidInput("each tag must be a name of up to 128 characters")
        if item.strip() and item.strip() not in tags:
            tags.append(item.strip())
    if len(tags) > 32:
        raise InvalidInput("at most 32 tags per Thing")
    return tags


def visible_things(principal: Principal) -> Any:
    """SQL condition: Things of the caller's subtree (and of its groups, if it has any)."""
    condition = in_scope(Thing.domain_id, principal.domain_id)
    if principal.things_group_ids:
        condition = and_(condition, Thing.group_id.in_(principal.things_group_ids))
    return condition


def visible_groups(principal: Principal) -> Any:
    condition = in_scope(ThingsGroup.domain_id, principal.domain_id)
    if principal.things_group_ids:
        condition = and_(condition, ThingsGroup.id.in_(principal.things_group_ids))
    return condition


def require_apikey(principal: Principal, customer_id: str, apikey: str | None) -> None:
    """The console's ``apikey: <CustomerId>`` header: absent 401, another customer's 403."""
    from meadowlark.core.errors import NotAuthenticated

    if not apikey:
        raise NotAuthenticated("the apikey header (your CustomerId) is required")
    if not secrets.compare_digest(apikey.encode(), customer_id.encode()):
        raise Forbidden("the apikey header does not match your CustomerId")


@dataclass(frozen=True, slots=True)
class NewThing:
    iccid: str
    name: str = ""
    description: str = ""
    imsi: str = ""
    msisdn: str = ""
    imei: str = ""
    group: str = ""
    """A group id, or a group's name (CSV imports name it)."""
    tags: tuple[str, ...] = ()

    @classmethod
    def from_fields(cls, fields: Mapping[str, Any]) -> NewThing:
        """From ``ICCID``/``IMSI``/... (console names) or ``iccid``/``name``/... (CSV)."""

        def pick(*names: str) -> str:
            for name in names:
                if fields.get(name) not in (None, ""):
                    return _text(fields, name)
            return ""

        raw_iccid = pick("ICCID", "iccid", "ExternalUniqueId")
        if not raw_iccid:
            raise InvalidInput("ICCID is required")
        return cls(
            iccid=validate_iccid(raw_iccid),
            name=pick("ThingName", "name", "Name"),
            description=pick("ThingDescription", "description"),
            imsi=validate_imsi(pick("IMSI", "imsi")),
            msisdn=validate_msisdn(pick("MSISDN", "msisdn")),
            imei=validate_imei(pick("IMEI", "imei")),
            group=pick("ThingsGroupId", "group", "Group"),
            tags=tuple(parse_tags(fields.get("Tags", fields.get("tags")))),
        )


@dataclass
class ImportResult:
    row: int
    iccid: str
    thing_id: str | None = None
    failure: ServiceError | None = None

    @property
    def error(self) -> str | None:
        return None if self.failure is None else self.failure.message


@dataclass
class ImportReport:
    results: list[ImportResult] = field(default_factory=list)

    @property
    def imported(self) -> int:
        return sum(1 for r in self.results if r.error is None)

    @property
    def failed(self) -> int:
        return len(self.results) - self.imported


@dataclass(frozen=True, slots=True)
class ThingPage:
    things: list[Thing]
    usage: dict[str, dict[str, int]]
    domains: dict[str, Domain]


class ThingService:
    """The connectivity services of one node, on its database and LwM2M server."""

    def __init__(
        self, db: Database, index: ThingIndex, lwm2m: LwM2mServer, sms: SmsGateway
    ) -> None:
        self.db = db
        self.index = index
        self.lwm2m = lwm2m
        self.sms = sms
        sms.receipts_to(self.record_receipt)

    # --- reading -------------------------------------------------------------------------

    async def get(self, session: AsyncSession, principal: Principal, thing_ref: str) -> Thing:
        iccid = iccid_of(thing_ref)
        thing = None
        if iccid is not None:
            thing = await session.scalar(
                select(Thing).where(Thing.id == thing_id(iccid), visible_things(principal))
            )
        if thing is None:
            raise NotFound(f"Thing {thing_ref[:80]!r} not found")
        return thing

    async def page(
        self,
        session: AsyncSession,
        principal: Principal,
        *,
        limit: int,
        offset: int,
        sort: Sequence[tuple[str, bool]],
        filters: Mapping[str, str],
    ) -> ThingPage:
        if not 1 <= limit <= MAX_PAGE:
            raise InvalidInput(f"limit must be 1..{MAX_PAGE}")
        if offset < 0:
            raise InvalidInput("offset must not be negative")
        statement = select(Thing).where(visible_things(principal))
        for name, value in filters.items():
            if name == "Tag":
                statement = statement.where(Thing.tags.contains(value))
                continue
            column = FILTERABLE.get(name)
            if column is None:
                raise InvalidInput(f"cannot filter by {name[:40]!r}")
            if name in SENSITIVE_FIELDS and not principal.can(catalog.SENSITIVE_VIEW):
                raise Forbidden(f"filtering by {name} needs ThingsSensitiveData view")
            statement = statement.where(column == value)
        order = []
        for name, descending in sort:
            sort_column = SORTABLE.get(name)
            if sort_column is None:
                raise InvalidInput(f"cannot sort by {name[:40]!r}")
            order.append(sort_column.desc() if descending else sort_column.asc())
        statement = statement.order_by(*order, Thing.id).limit(limit).offset(offset)
        things = list((await session.scalars(statement)).all())
        return ThingPage(
            things,
            await self.usage_totals(session, [t.id for t in things]),
            await self._domains(session, {t.domain_id for t in things}),
        )

    async def usage_totals(
        self, session: AsyncSession, thing_ids: Sequence[str]
    ) -> dict[str, dict[str, int]]:
        if not thing_ids:
            return {}
        rows = await session.execute(
            select(
                ThingUsage.thing_id,
                func.sum(ThingUsage.bytes_in),
                func.sum(ThingUsage.bytes_out),
                func.sum(ThingUsage.messages_in),
                func.sum(ThingUsage.messages_out),
                func.sum(ThingUsage.sms_mt),
            )
            .where(ThingUsage.thing_id.in_(thing_ids))
            .group_by(ThingUsage.thing_id)
        )
        keys = ("bytes_in", "bytes_out", "messages_in", "messages_out", "sms_mt")
        return {row[0]: dict(zip(keys, map(int, row[1:]), strict=True)) for row in rows}

    async def _domains(self, session: AsyncSession, ids: Iterable[str]) -> dict[str, Domain]:
        wanted = set(ids)
        if not wanted:
            return {}
        rows = await session.scalars(select(Domain).where(Domain.id.in_(wanted)))
        return {domain.id: domain for domain in rows.all()}

    async def body(
        self, session: AsyncSession, principal: Principal, thing: Thing
    ) -> dict[str, Any]:
        usage = await self.usage_totals(session, [thing.id])
        domains = await self._domains(session, [thing.domain_id])
        return await self.public(principal, thing, usage.get(thing.id), domains[thing.domain_id])

    async def public(
        self,
        principal: Principal,
        thing: Thing,
        usage: Mapping[str, int] | None,
        domain: Domain,
    ) -> dict[str, Any]:
        """The console's Thing object (IMSI/MSISDN only with ThingsSensitiveData view)."""
        usage = usage or {}
        registration = (
            await self.lwm2m.get_registration(thing.device_endpoint)
            if thing.device_endpoint
            else None
        )
        body: dict[str, Any] = {
            "Type": "ThingId",
            "ThingId": thing.id,
            "ThingName": thing.name,
            "ThingDescription": thing.description,
            "ExternalUniqueId": thing.iccid,
            "ExternalUniqueType": "ICCID",
            "CustomerId": domain.customer_id,
            "OrganizationId": domain.organization_id,
            "ThingsGroupId": thing.group_id or "",
            "IMEI": thing.imei,
            "MasterIMEI": thing.master_imei,
            "LockMasterImei": thing.lock_master_imei,
            "State": thing.state,
            "Tags": list(thing.tags),
            "ThingTags": list(thing.tags),
            "DeviceEndpoint": thing.device_endpoint or "",
            "IPs": [{"IP": registration.peer.host, "IPvType": _ip_version(registration.peer.host)}]
            if registration
            else [],
            "ActualUsage": {
                "Data_": usage.get("bytes_in", 0) + usage.get("bytes_out", 0),
                "DataIn_": usage.get("bytes_in", 0),
                "DataOut_": usage.get("bytes_out", 0),
                "Messages_": usage.get("messages_in", 0) + usage.get("messages_out", 0),
                "MO_SMS_CDR_": 0,
                "MT_SMS_CDR_": usage.get("sms_mt", 0),
                "Voice_": 0,
                "Alarm": 0,
            },
            "DateCreated": _epoch_ms(thing.created_at),
            "DateModified": _epoch_ms(thing.modified_at),
            "cas": str(thing.cas),
        }
        if principal.can(catalog.SENSITIVE_VIEW):
            body.update(IMSI=thing.imsi, ActiveMobileSubscriber=thing.imsi, MSISDN=thing.msisdn)
        return body

    # --- inventory -----------------------------------------------------------------------

    def _check_sensitive(self, principal: Principal, new: NewThing) -> None:
        if (new.imsi or new.msisdn) and not principal.can(catalog.SENSITIVE_EDIT):
            raise Forbidden("setting IMSI or MSISDN needs ThingsSensitiveData edit")

    async def _group_for(
        self, session: AsyncSession, principal: Principal, ref: str
    ) -> ThingsGroup | None:
        if not ref:
            if principal.things_group_ids:
                raise InvalidInput("name one of your Things groups")
            return None
        group = await session.scalar(
            select(ThingsGroup)
            .where(visible_groups(principal), (ThingsGroup.id == ref) | (ThingsGroup.name == ref))
            .order_by(ThingsGroup.id)
            .limit(1)
        )
        if group is None:
            raise InvalidInput(f"unknown Things group {ref[:80]!r}")
        return group

    async def create(self, principal: Principal, new: NewThing) -> Thing:
        report = await self.import_things(principal, [new])
        failure = report.results[0].failure
        if failure is not None:
            raise failure
        async with self.db.session() as session:
            return await self.get(session, principal, thing_id(new.iccid))

    async def import_things(
        self,
        principal: Principal,
        rows: Sequence[NewThing | InvalidInput],
        *,
        first_row: int = 1,
        progress: Callable[[int], None] | None = None,
        chunk: int = 500,
    ) -> ImportReport:
        """Create Things row by row in chunks of one transaction each; a row is created
        whole or reported with its error (bad values, duplicates, unknown groups)."""
        report = ImportReport()
        seen: set[str] = set()
        for start in range(0, len(rows), chunk):
            part = rows[start : start + chunk]
            async with self.db.transaction() as session:
                wanted = [r.iccid for r in part if isinstance(r, NewThing)]
                existing = set(
                    (
                        await session.scalars(select(Thing.iccid).where(Thing.iccid.in_(wanted)))
                    ).all()
                )
                created: list[Thing] = []
                for offset, row in enumerate(part):
                    number = first_row + start + offset
                    if isinstance(row, InvalidInput):
                        report.results.append(ImportResult(number, "", failure=row))
                        continue
                    result = ImportResult(number, row.iccid)
                    report.results.append(result)
                    try:
                        if row.iccid in existing or row.iccid in seen:
                            raise Conflict(
                                f"a Thing with ICCID {row.iccid} already exists", code=DUPLICATE
                            )
                        self._check_sensitive(principal, row)
                        group = await self._group_for(session, principal, row.group)
                        await self._ensure_tags(session, principal.domain_id, row.tags)
                    except (InvalidInput, Conflict, Forbidden) as exc:
                        result.failure = exc
                        continue
                    thing = Thing(
                        id=thing_id(row.iccid),
                        iccid=row.iccid,
                        domain_id=principal.domain_id,
                        name=row.name or f"ICCID {row.iccid}",
                        description=row.description,
                        imsi=row.imsi,
                        msisdn=row.msisdn,
                        imei=row.imei,
                        state=ThingState.PROVISIONED.value,
                        group_id=group.id if group else None,
                        tags=list(row.tags),
                    )
                    session.add(thing)
                    created.append(thing)
                    seen.add(row.iccid)
                    result.thing_id = thing.id
                if created:
                    audit.record(
                        session,
                        "thing.imported" if len(rows) > 1 else "thing.created",
                        actor=principal.login,
                        domain_id=principal.domain_id,
                        count=len(created),
                    )
            for thing in created:
                self.index.put(ThingFacts.of(thing))
            if progress is not None:
                progress(len(part))
        return report

    async def _ensure_tags(
        self, session: AsyncSession, domain_id: str, names: Iterable[str]
    ) -> None:
        wanted = set(names)
        if not wanted:
            return
        known = set(
            (
                await session.scalars(
                    select(ThingTag.name).where(
                        ThingTag.domain_id == domain_id, ThingTag.name.in_(wanted)
                    )
                )
            ).all()
        )
        for name in sorted(wanted - known):
            session.add(ThingTag(id=f"TagId_{uuid.uuid4()}", domain_id=domain_id, name=name))
        await session.flush()

    async def update(self, principal: Principal, fields: Mapping[str, Any]) -> Thing:
        """``PUT /thing/update``: the current ``cas`` or 409, and nothing changes."""
        cas_text = fields.get("cas")
        if cas_text in (None, ""):
            raise InvalidInput("cas is required (read it with GET /thing/{ThingId})")
        try:
            cas = int(str(cas_text))
        except ValueError:
            raise InvalidInput("cas must be a number") from None
        ref = _text(fields, "ThingId")
        if not ref:
            raise InvalidInput("ThingId is required")
        async with self.db.transaction() as session:
            thing = await self.get(session, principal, ref)
            claimed = await session.execute(
                update(Thing).where(Thing.id == thing.id, Thing.cas == cas).values(cas=cas + 1)
            )
            if rows_affected(claimed) != 1:
                raise Conflict("the Thing was changed meanwhile: read it again", code=STALE_CAS)
            changes = await self._apply_changes(session, principal, thing, fields)
            audit.record(
                session,
                "thing.updated",
                actor=principal.login,
                subject=thing.id,
                domain_id=thing.domain_id,
                changed=sorted(changes),
            )
        self.index.put(ThingFacts.of(thing))
        await self._enforce(thing)
        return thing

    async def _apply_changes(
        self,
        session: AsyncSession,
        principal: Principal,
        thing: Thing,
        fields: Mapping[str, Any],
    ) -> set[str]:
        changed: set[str] = set()
        if "ThingName" in fields:
            thing.name = _text(fields, "ThingName") or f"ICCID {thing.iccid}"
            changed.add("ThingName")
        if "ThingDescription" in fields:
            thing.description = _text(fields, "ThingDescription")
            changed.add("ThingDescription")
        if "IMEI" in fields:
            thing.imei = validate_imei(_text(fields, "IMEI"))
            changed.add("IMEI")
        if "MasterIMEI" in fields:
            thing.master_imei = validate_imei(_text(fields, "MasterIMEI"), "MasterIMEI")
            changed.add("MasterIMEI")
        lock = _flag(fields, "LockMasterImei")
        if lock is not None:
            thing.lock_master_imei = lock
            changed.add("LockMasterImei")
        if thing.lock_master_imei and not thing.master_imei:
            raise InvalidInput("LockMasterImei needs a MasterIMEI")
        for name, check in (("IMSI", validate_imsi), ("MSISDN", validate_msisdn)):
            if name in fields:
                if not principal.can(catalog.SENSITIVE_EDIT):
                    raise Forbidden(f"changing {name} needs ThingsSensitiveData edit")
                setattr(thing, name.lower(), check(_text(fields, name)))
                changed.add(name)
        if "ThingsGroupId" in fields:
            group = await self._group_for(session, principal, _text(fields, "ThingsGroupId"))
            thing.group_id = group.id if group else None
            changed.add("ThingsGroupId")
        if "Tags" in fields:
            thing.tags = parse_tags(fields["Tags"])
            await self._ensure_tags(session, thing.domain_id, thing.tags)
            changed.add("Tags")
        if not changed:
            raise InvalidInput("nothing to update")
        return changed

    async def delete(self, principal: Principal, ref: str) -> None:
        async with self.db.transaction() as session:
            thing = await self.get(session, principal, ref)
            await session.delete(thing)
            audit.record(
                session,
                "thing.deleted",
                actor=principal.login,
                subject=thing.id,
                domain_id=thing.domain_id,
            )
        self.index.remove(thing.id)

    # --- lifecycle -----------------------------------------------------------------------

    async def set_state(self, principal: Principal, ref: str, state_text: str) -> Thing:
        target = parse_state(state_text)
        async with self.db.transaction() as session:
            thing = await self.get(session, principal, ref)
            current = ThingState(thing.state)
            check_transition(current, target)
            if target is not current:
                thing.state = target.value
                thing.cas += 1
                cdr.record_for(
                    session,
                    cdr.DataType.STATE_CHANGE,
                    thing,
                    message=f"state changed from {current.value} to {target.value}",
                    previous=current.value,
                    state=target.value,
                    actor=principal.login,
                )
                audit.record(
                    session,
                    "thing.state_changed",
                    actor=principal.login,
                    subject=thing.id,
                    domain_id=thing.domain_id,
                    previous=current.value,
                    state=target.value,
                )
        self.index.put(ThingFacts.of(thing))
        await self._enforce(thing)
        return thing

    async def _enforce(self, thing: Thing) -> None:
        """End the registration of a device its SIM no longer lets on the network."""
        endpoint = thing.device_endpoint
        if not endpoint:
            return
        facts = self.index.get(thing.id)
        if facts is None:
            return
        registration = await self.lwm2m.get_registration(endpoint)
        if registration is None:
            return
        if (
            ThingState(thing.state).blocks_traffic
            or self.index.imei_violation(facts, self.index.reported_imei(endpoint)) is not None
        ):
            await self.lwm2m.forget(endpoint)

    # --- the LwM2M device ----------------------------------------------------------------

    async def link(self, principal: Principal, ref: str, endpoint: str) -> Thing:
        """Link the Thing to the caller's device ``endpoint`` (empty: unlink)."""
        async with self.db.transaction() as session:
            thing = await self.get(session, principal, ref)
            if endpoint:
                device = await session.scalar(
                    select(Device.endpoint_name).where(
                        Device.endpoint_name == endpoint,
                        in_scope(Device.domain_id, principal.domain_id),
                    )
                )
                if device is None:
                    raise InvalidInput(f"unknown device {endpoint[:80]!r}")
                taken = await session.scalar(
                    select(Thing.id).where(Thing.device_endpoint == endpoint, Thing.id != thing.id)
                )
                if taken is not None:
                    raise Conflict("that device is already linked to another Thing")
            thing.device_endpoint = endpoint or None
            thing.cas += 1
            audit.record(
                session,
                "thing.linked" if endpoint else "thing.unlinked",
                actor=principal.login,
                subject=thing.id,
                domain_id=thing.domain_id,
                endpoint=endpoint,
            )
        self.index.put(ThingFacts.of(thing))
        await self._enforce(thing)
        return thing

    async def link_automatically(self, facts: ThingFacts, endpoint: str) -> None:
        """A device named after the Thing's IMEI registered: link them if both are free."""
        async with self.db.transaction() as session:
            taken = await session.scalar(select(Thing.id).where(Thing.device_endpoint == endpoint))
            if taken is not None:
                return
            result = await session.execute(
                update(Thing)
                .where(Thing.id == facts.id, Thing.device_endpoint.is_(None))
                .values(device_endpoint=endpoint, cas=Thing.cas + 1)
            )
            if rows_affected(result) != 1:
                return
            audit.record(
                session,
                "thing.linked",
                subject=facts.id,
                domain_id=facts.domain_id,
                endpoint=endpoint,
                automatic=True,
            )
            thing = await session.get(Thing, facts.id)
            assert thing is not None
            await session.refresh(thing)
        self.index.put(ThingFacts.of(thing))

    async def status(
        self, session: AsyncSession, principal: Principal, things: Sequence[Thing]
    ) -> list[dict[str, Any]]:
        """Connection status of each Thing from its device's registration."""
        endpoints = [t.device_endpoint for t in things if t.device_endpoint]
        devices = (
            {
                row.endpoint_name: row
                for row in (
                    await session.execute(
                        select(Device.endpoint_name, Device.last_register_time).where(
                            Device.endpoint_name.in_(endpoints)
                        )
                    )
                )
            }
            if endpoints
            else {}
        )
        disconnected = (
            dict(
                (
                    await session.execute(
                        select(ConnectivityEvent.thing_id, func.max(ConnectivityEvent.at))
                        .where(
                            ConnectivityEvent.thing_id.in_([t.id for t in things]),
                            ConnectivityEvent.data_type == cdr.DataType.DEREGISTRATION.value,
                        )
                        .group_by(ConnectivityEvent.thing_id)
                    )
                ).all()
            )
            if things
            else {}
        )
        domains = await self._domains(session, {t.domain_id for t in things})
        sensitive = principal.can(catalog.SENSITIVE_VIEW)
        data = []
        for thing in things:
            registration = (
                await self.lwm2m.get_registration(thing.device_endpoint)
                if thing.device_endpoint
                else None
            )
            device = devices.get(thing.device_endpoint or "")
            sessions = []
            if registration is not None:
                sessions.append(
                    {
                        "ActiveSessionId": registration.registration_id,
                        "ApnName": "",
                        "IPAddress": registration.peer.host,
                        "LastConnectedTime": _epoch_ms(registration.registered_at),
                        "UplinkThroughput": 0,
                        "DownlinkThroughput": 0,
                    }
                )
            data.append(
                {
                    "ThingId": thing.id,
                    "CustomerId": domains[thing.domain_id].customer_id,
                    "ThingName": thing.name,
                    "ThingDescription": thing.description,
                    "ProvisionStatus": thing.state,
                    "ConnectionStatus": "CONNECTED" if registration else "DISCONNECTED",
                    "ActiveSessions": sessions,
                    "ActiveIMSI": thing.imsi if sensitive else "",
                    "LastConnectionTime": _epoch_ms(
                        registration.registered_at
                        if registration
                        else (device.last_register_time if device else None)
                    ),
                    "LastDisconnectionTime": _epoch_ms(disconnected.get(thing.id)),
                    "MSISDN": thing.msisdn if sensitive else "",
                }
            )
        return data

    async def ping(self, principal: Principal, ref: str) -> dict[str, Any]:
        """One CoAP ping to the linked device: ``{host,size,ttl,time,sent,received,...}``."""
        async with self.db.session() as session:
            thing = await self.get(session, principal, ref)
        registration = (
            await self.lwm2m.get_registration(thing.device_endpoint)
            if thing.device_endpoint
            else None
        )
        host = registration.peer.host if registration else ""
        elapsed: float | None = None
        if registration is not None:
            try:
                elapsed = await self.lwm2m.ping(registration.endpoint, timeout=5.0)
            except Lwm2mServerError:
                elapsed = None
        received = 0 if elapsed is None else 1
        result = {
            "host": host,
            "size": 4,
            "ttl": 0,
            "time": None if elapsed is None else round(elapsed * 1000, 3),
            "sent": 1,
            "received": received,
            "packetLoss": 100 - 100 * received,
        }
        async with self.db.transaction() as session:
            cdr.record_for(
                session,
                cdr.DataType.PING,
                thing,
                severity="Info" if received else "Warning",
                message="Success" if received else "Failure",
                **result,
            )
        return result

    async def refresh_connection(self, principal: Principal, ref: str) -> str:
        """Registration Update Trigger (/1/0/8): sent now, or queued for a sleeping device."""
        async with self.db.session() as session:
            thing = await self.get(session, principal, ref)
        endpoint = thing.device_endpoint
        if not endpoint or await self.lwm2m.get_registration(endpoint) is None:
            raise Conflict("the Thing's device is not connected", code=NOT_CONNECTED)
        try:
            await self.lwm2m.execute(endpoint, REGISTRATION_UPDATE_TRIGGER, wait=False)
            outcome = "Registration update triggered"
        except RequestQueuedError:
            outcome = "Registration update queued until the device wakes up"
        except Lwm2mServerError as exc:
            raise Conflict(f"the device did not take the trigger: {exc.message}") from None
        async with self.db.transaction() as session:
            cdr.record_for(
                session,
                cdr.DataType.REFRESH,
                thing,
                message=outcome,
                actor=principal.login,
            )
        return outcome

    async def send_sms(self, principal: Principal, ref: str, text: str, sender: str) -> str:
        """Hand an MT SMS to the gateway; its message id. Delivery is recorded as an event."""
        if not text:
            raise InvalidInput("Message is required")
        if len(text) > MAX_SMS:
            raise InvalidInput(f"Message is longer than {MAX_SMS} characters")
        if sender and not (sender.isascii() and sender.isalnum() and len(sender) <= 15):
            raise InvalidInput("From must be a name or number of up to 15 letters and digits")
        async with self.db.session() as session:
            thing = await self.get(session, principal, ref)
        if not thing.msisdn:
            raise Conflict("the Thing has no MSISDN", code=NOT_CONNECTED)
        if ThingState(thing.state) not in (ThingState.ACTIVE, ThingState.TEST_ACTIVE):
            raise Conflict(f"MT SMS needs an active SIM; this one is {thing.state}")
        message_id = f"{thing.id}_{int(time.time() * 1000)}_{secrets.token_hex(4)}"
        network_id = await self.sms.send(OutgoingSms(message_id, thing.msisdn, sender, text))
        delivered = network_id is not None
        async with self.db.transaction() as session:
            cdr.record_for(
                session,
                cdr.DataType.MT_SMS,
                thing,
                severity="Info" if delivered else "Warning",
                message="Success" if delivered else "Failure",
                messageId=message_id,
                networkMessageId=network_id,
                sender=sender,
                length=len(text),
            )
            if delivered:
                await add_usage(session, datetime.now(UTC).date(), {thing.id: {"sms_mt": 1}})
        return message_id

    async def record_receipt(self, receipt: DeliveryReceipt) -> None:
        """The network's delivery receipt of an MT SMS, as an event of its Thing."""
        facts = self.index.get(receipt.message_id.rsplit("_", 2)[0])
        if facts is None:
            return
        delivered = receipt.status == "DELIVRD"
        async with self.db.transaction() as session:
            cdr.record(
                session,
                cdr.DataType.SMS_DELIVERY,
                domain_id=facts.domain_id,
                thing_id=facts.id,
                endpoint=facts.endpoint,
                severity="Info" if delivered else "Warning",
                message=f"SMS {receipt.status}",
                messageId=receipt.message_id,
                networkMessageId=receipt.network_id,
                status=receipt.status,
                error=receipt.error,
            )


def _ip_version(host: str) -> str:
    return "IPv6" if ":" in host else "IPv4"


async def customer_id_of(session: AsyncSession, domain_id: str) -> str:
    domain = await session.get(Domain, domain_id)
    return domain.customer_id if domain else ""


async def things_by_ids(
    session: AsyncSession, principal: Principal, refs: Sequence[str], limit: int, offset: int
) -> list[Thing]:
    """The visible Things among ``refs`` (all visible ones if empty), paged."""
    if not 1 <= limit <= MAX_PAGE:
        raise InvalidInput(f"limit must be 1..{MAX_PAGE}")
    if offset < 0:
        raise InvalidInput("offset must not be negative")
    statement = select(Thing).where(visible_things(principal))
    if refs:
        ids = [thing_id(iccid) for ref in refs if (iccid := iccid_of(ref)) is not None]
        statement = statement.where(Thing.id.in_(ids))
    rows = await session.scalars(statement.order_by(Thing.id).limit(limit).offset(offset))
    return list(rows.all())


async def visible_thing_ids(
    session: AsyncSession, principal: Principal, refs: Sequence[str]
) -> tuple[str, ...] | None:
    """For a CDR search: the Things named (visible ones only), or None for all the
    caller sees when nothing is named and it is not limited to groups."""
    if not refs and not principal.things_group_ids:
        return None
    statement = select(Thing.id).where(visible_things(principal))
    if refs:
        ids = [thing_id(iccid) for ref in refs if (iccid := iccid_of(ref)) is not None]
        statement = statement.where(Thing.id.in_(ids))
    return tuple((await session.scalars(statement)).all())


MAX_IMPORT_ROWS = 100_000


def parse_import_csv(text: str) -> list[NewThing | InvalidInput]:
    """Rows of an import CSV (header: ICCID, IMSI, MSISDN, IMEI, name, group, tags)."""
    try:
        return _parse_rows(csv.DictReader(io.StringIO(text)))
    except csv.Error as exc:
        raise InvalidInput(f"malformed CSV: {exc}") from None


def _parse_rows(reader: csv.DictReader[str]) -> list[NewThing | InvalidInput]:
    if not reader.fieldnames or not any(
        (name or "").strip().lower() == "iccid" for name in reader.fieldnames
    ):
        raise InvalidInput("the CSV needs a header row with an ICCID column")
    rows: list[NewThing | InvalidInput] = []
    for record in reader:
        if len(rows) >= MAX_IMPORT_ROWS:
            raise InvalidInput(f"at most {MAX_IMPORT_ROWS} rows per import")
        if None in record:
            rows.append(InvalidInput("the row has more cells than the header"))
            continue
        fields = {(k or "").strip().lower(): (v or "").strip() for k, v in record.items()}
        try:
            rows.append(NewThing.from_fields(fields))
        except InvalidInput as exc:
            rows.append(exc)
    return rows
