"""Devices of the Coiote API: provisioning, search with keyset pages, updates, sessions.

Rows of the ``devices`` table are made either here (pre-provisioning) or by the LwM2M
server on a device's first Register. Every query is limited to the caller's domain
subtree; devices outside it answer 404 as if they did not exist.
"""

from __future__ import annotations

import base64
import binascii
import csv
import hashlib
import io
import json
import re
import uuid
from collections.abc import Collection, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from enum import Enum
from typing import Any

import structlog
from sqlalchemy import bindparam, delete, exists, func, insert, or_, select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncSession
from sqlalchemy.sql.elements import ColumnElement

from meadowlark.auth.principal import Principal
from meadowlark.core import audit
from meadowlark.core.domains import in_scope, normalize_domain_id
from meadowlark.core.errors import Conflict, InvalidInput, NotFound, ServiceError
from meadowlark.core.groups import require_visible_groups
from meadowlark.core.search_criteria import Field, compile_criteria
from meadowlark.core.secret_box import SealError, SecretBox
from meadowlark.lwm2m.codec.errors import DecodeError
from meadowlark.lwm2m.codec.link_format import RegisteredObjects, parse_registration_links
from meadowlark.lwm2m.path import LwM2mPath
from meadowlark.server.errors import (
    DeviceNotRegisteredError,
    Lwm2mServerError,
    RequestQueuedError,
)
from meadowlark.server.operations import Operation, OperationKind, QueuedRequest
from meadowlark.server.registration import MAX_ENDPOINT_NAME_LENGTH
from meadowlark.server.service import LwM2mServer
from meadowlark.server.transport import DownlinkRequest, Method
from meadowlark.store.coiote_models import GroupMembership
from meadowlark.store.db import Database
from meadowlark.store.device_models import Device
from meadowlark.store.devices import device_domain
from meadowlark.store.hot_reads import Row, prefix_values, starts_with
from meadowlark.store.models import Domain
from meadowlark.store.psk_keyring import note_psk_change

_log = structlog.get_logger("meadowlark.devices")

MAX_DEVICE_ID_LENGTH = 255
MAX_PAGE_SIZE = 1000
MAX_PSK_BYTES = 256
MAX_PROPERTIES = 100
MAX_PROPERTY_VALUE_LENGTH = 1024
SECURITY_MODES = frozenset({"psk", "cert", "rpk", "nosec"})
RUNTIME_PROPERTIES = frozenset(
    {
        "endpointName",
        "lwm2mVersion",
        "registeredObjects",
        "registeredQueueMode",
        "binding",
        "lifetime",
    }
)
"""Properties the server derives from the device record and its registration."""
_PROPERTY_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_.-]{0,63}")
_HEX = re.compile(r"(?:[0-9A-Fa-f]{2})+")


# --- DTLS pre-shared keys ----------------------------------------------------------------


def psk_to_hex(psk: Mapping[str, Any]) -> str:
    """A Coiote ``dtlsPsk`` (``PlainTextPsk``, ``HexadecimalPsk`` or ``BinaryPsk``) as hex."""
    if len(psk) != 1:
        raise InvalidInput("dtlsPsk needs exactly one of PlainTextPsk, HexadecimalPsk, BinaryPsk")
    ((kind, value),) = psk.items()
    if kind == "PlainTextPsk" and isinstance(value, str):
        key = value.encode("utf-8")
    elif kind == "HexadecimalPsk" and isinstance(value, str):
        if not _HEX.fullmatch(value):
            raise InvalidInput("HexadecimalPsk must be an even number of hexadecimal digits")
        key = bytes.fromhex(value)
    elif kind == "BinaryPsk" and isinstance(value, list):
        if not all(isinstance(b, int) and not isinstance(b, bool) and 0 <= b <= 255 for b in value):
            raise InvalidInput("BinaryPsk must be a list of byte values 0..255")
        key = bytes(value)
    elif kind in ("PlainTextPsk", "HexadecimalPsk", "BinaryPsk"):
        raise InvalidInput(f"{kind} has the wrong type")
    else:
        raise InvalidInput(f"unsupported dtlsPsk kind {kind[:40]!r}")
    if not key:
        raise InvalidInput("dtlsPsk must not be empty")
    if len(key) > MAX_PSK_BYTES:
        raise InvalidInput(f"dtlsPsk longer than {MAX_PSK_BYTES} bytes")
    return key.hex()


def _sealed_psk(psk_box: SecretBox, device_id: str, psk_hex: str, current: str | None) -> str:
    """``psk_hex`` sealed for ``device_id``; ``current`` itself when it already holds
    that key (so re-sending the same key is not a credentials change)."""
    key = bytes.fromhex(psk_hex)
    if current is not None:
        try:
            if psk_box.open(current, device_id) == key:
                return current
        except SealError:
            pass
    return psk_box.seal(key, device_id)


# --- paging and field selection ------------------------------------------------------------


def _criteria_check(search_criteria: str | None, last_id: str) -> str:
    text = (search_criteria or "").strip()
    digest = hashlib.sha256(f"{text}\x00{last_id}".encode()).hexdigest()
    return digest[:16]


def encode_bookmark(last_id: str, search_criteria: str | None) -> str:
    """An opaque page bookmark: the last id seen and a check of it and the criteria."""
    data = json.dumps([last_id, _criteria_check(search_criteria, last_id)], separators=(",", ":"))
    return base64.urlsafe_b64encode(data.encode()).decode().rstrip("=")


def decode_bookmark(bookmark: str, search_criteria: str | None) -> str:
    """The last id of the previous page; 400 if altered or made for other criteria."""
    try:
        padded = bookmark + "=" * (-len(bookmark) % 4)
        last_id, check = json.loads(base64.urlsafe_b64decode(padded.encode("ascii")))
        valid = isinstance(last_id, str) and check == _criteria_check(search_criteria, last_id)
    except (ValueError, TypeError, binascii.Error):
        valid = False
    if not valid:
        raise InvalidInput("pageBookmark is invalid or belongs to other searchCriteria")
    return last_id


def parse_field_selection(text: str | None, known: Collection[str]) -> frozenset[str] | None:
    """``fieldSelection=a,b`` as a set (``id`` always in it); None when empty (all fields)."""
    names = [name.strip() for name in (text or "").split(",") if name.strip()]
    if not names:
        return None
    unknown = [name for name in names if name not in known]
    if unknown:
        raise InvalidInput(f"unknown field {unknown[0][:64]!r} in fieldSelection")
    return frozenset([*names, "id"])


# --- search ----------------------------------------------------------------------------------


class _DirectGroups:
    """``directGroups`` in searchCriteria: every comparison applies to the device's groups.

    ``directGroups eq 'g'`` is membership of ``g``; ``ne`` its absence; ``in``,
    ``startswith`` (sub-trees of a hierarchy) and the others mean "some group matches".
    """

    @staticmethod
    def _member_of(condition: ColumnElement[bool]) -> ColumnElement[bool]:
        return Device.id.in_(select(GroupMembership.device_id).where(condition))

    def __eq__(self, group: object) -> ColumnElement[bool]:  # type: ignore[override]
        return self._member_of(GroupMembership.group_id == group)

    def __ne__(self, group: object) -> ColumnElement[bool]:  # type: ignore[override]
        return Device.id.not_in(
            select(GroupMembership.device_id).where(GroupMembership.group_id == group)
        )

    def __lt__(self, group: str) -> ColumnElement[bool]:
        return self._member_of(GroupMembership.group_id < group)

    def __le__(self, group: str) -> ColumnElement[bool]:
        return self._member_of(GroupMembership.group_id <= group)

    def __gt__(self, group: str) -> ColumnElement[bool]:
        return self._member_of(GroupMembership.group_id > group)

    def __ge__(self, group: str) -> ColumnElement[bool]:
        return self._member_of(GroupMembership.group_id >= group)

    def in_(self, groups: Sequence[str]) -> ColumnElement[bool]:
        return self._member_of(GroupMembership.group_id.in_(groups))

    def startswith(self, prefix: str, autoescape: bool = True) -> ColumnElement[bool]:
        return self._member_of(GroupMembership.group_id.startswith(prefix, autoescape=autoescape))

    def contains(self, part: str, autoescape: bool = True) -> ColumnElement[bool]:
        return self._member_of(GroupMembership.group_id.contains(part, autoescape=autoescape))

    def is_(self, _: None) -> ColumnElement[bool]:
        return Device.id.not_in(select(GroupMembership.device_id))

    def is_not(self, _: None) -> ColumnElement[bool]:
        return Device.id.in_(select(GroupMembership.device_id))

    __hash__ = None  # type: ignore[assignment]


SEARCHABLE = {
    "id": Field(Device.id),
    "domain": Field(Device.domain_id),
    "friendlyName": Field(Device.friendly_name),
    "description": Field(Device.description),
    "blacklisted": Field(Device.blacklisted, "boolean"),
    "managementEnabled": Field(Device.management_enabled, "boolean"),
    "securityMode": Field(Device.security_mode),
    "manufacturer": Field(Device.manufacturer),
    "modelName": Field(Device.model_name),
    "serialNumber": Field(Device.serial_number),
    "hardwareVersion": Field(Device.hardware_version),
    "ipAddress": Field(Device.ip_address),
    "lastContactTime": Field(Device.last_contact_time, "datetime"),
    "lastRegisterTime": Field(Device.last_register_time, "datetime"),
    "firstRegisterTime": Field(Device.first_register_time, "datetime"),
    "lastSessionTime": Field(Device.last_session_time, "datetime"),
    "creationTime": Field(Device.creation_time, "datetime"),
    "properties.endpointName": Field(Device.endpoint_name),
    "properties.lwm2mVersion": Field(Device.lwm2m_version),
    "properties.binding": Field(Device.binding),
    "properties.lifetime": Field(Device.lifetime, "integer"),
    "properties.registeredQueueMode": Field(Device.queue_mode, "boolean"),
    "directGroups": Field(_DirectGroups()),
}
"""searchCriteria fields; other ``properties.<name>`` are user properties (JSON column)."""


def _user_property(name: str) -> Any:
    return Device.properties[name].as_string()


def device_condition(principal: Principal, search_criteria: str | None) -> ColumnElement[bool]:
    """The caller's devices matching ``search_criteria``."""
    return in_scope(Device.domain_id, principal.domain_id) & compile_criteria(
        search_criteria, SEARCHABLE, property_column=_user_property
    )


async def list_device_ids(
    session: AsyncSession, principal: Principal, search_criteria: str | None
) -> list[str]:
    rows = await session.scalars(
        select(Device.id).where(device_condition(principal, search_criteria)).order_by(Device.id)
    )
    return list(rows.all())


async def commit_new_device(session: AsyncSession, device_id: str) -> None:
    """Commit; a concurrent create of the same id or endpoint name is a conflict."""
    try:
        await session.commit()
    except IntegrityError:
        await session.rollback()
        raise Conflict(f"device {device_id!r} already exists") from None


async def count_devices(session: AsyncSession, principal: Principal) -> int:
    count = await session.scalar(
        select(func.count())
        .select_from(Device)
        .where(in_scope(Device.domain_id, principal.domain_id))
    )
    return int(count or 0)


@dataclass(frozen=True, slots=True)
class DevicePage:
    devices: list[Device]
    groups: dict[str, list[str]]
    """Direct groups per device id (empty unless asked for)."""
    next_bookmark: str | None


async def find_devices(
    session: AsyncSession,
    principal: Principal,
    search_criteria: str | None,
    *,
    limit: int = 100,
    bookmark: str | None = None,
    with_groups: bool = True,
) -> DevicePage:
    """One page in id order; the bookmark continues after the last id (keyset paging)."""
    if not 0 <= limit <= MAX_PAGE_SIZE:
        raise InvalidInput(f"limit must be 0..{MAX_PAGE_SIZE}", code=4001)
    condition = device_condition(principal, search_criteria)
    after = decode_bookmark(bookmark, search_criteria) if bookmark else None
    if limit == 0:
        return DevicePage([], {}, bookmark or None)
    statement = select(Device).where(condition).order_by(Device.id).limit(limit + 1)
    if after is not None:
        statement = statement.where(Device.id > after)
    devices = list((await session.scalars(statement)).all())
    more = len(devices) > limit
    devices = devices[:limit]
    groups = await groups_of(session, [d.id for d in devices]) if with_groups else {}
    next_bookmark = encode_bookmark(devices[-1].id, search_criteria) if more else None
    return DevicePage(devices, groups, next_bookmark)


async def groups_of(session: AsyncSession, device_ids: Sequence[str]) -> dict[str, list[str]]:
    groups: dict[str, list[str]] = {device_id: [] for device_id in device_ids}
    if device_ids:
        rows = await session.execute(
            select(GroupMembership.device_id, GroupMembership.group_id)
            .where(GroupMembership.device_id.in_(device_ids))
            .order_by(GroupMembership.device_id, GroupMembership.group_id)
        )
        for device_id, group_id in rows:
            groups[device_id].append(group_id)
    return groups


async def get_device(session: AsyncSession, principal: Principal, device_id: str) -> Device:
    device = await session.scalar(
        select(Device).where(
            Device.id == device_id, in_scope(Device.domain_id, principal.domain_id)
        )
    )
    if device is None:
        raise NotFound(f"device {device_id[:MAX_DEVICE_ID_LENGTH]!r} not found", code=4041)
    return device


_DEVICE_WITH_GROUPS = (
    select(
        *(column for column in Device.__table__.columns if column.key != "dtls_psk"),
        GroupMembership.group_id,
    )
    .outerjoin(GroupMembership, GroupMembership.device_id == Device.id)
    .where(
        Device.id == bindparam("device_id"),
        starts_with(Device.domain_id, "scope"),
    )
    .order_by(GroupMembership.group_id)
)
_REGISTERED_ENDPOINTS = select(Device.endpoint_name).where(
    starts_with(Device.domain_id, "scope"), Device.registration_id.is_not(None)
)


async def read_device(db: Database, principal: Principal, device_id: str) -> tuple[Row, list[str]]:
    """One of the caller's devices (its columns, without the DTLS key) and its direct
    groups in id order: one primary-key read, no ORM."""
    [rows] = await db.hot_reads.rows(
        (
            _DEVICE_WITH_GROUPS,
            {"device_id": device_id, **prefix_values("scope", principal.domain_id)},
        ),
        inline=True,
    )
    if not rows:
        raise NotFound(f"device {device_id[:MAX_DEVICE_ID_LENGTH]!r} not found", code=4041)
    return rows[0], [row.group_id for row in rows if row.group_id is not None]


async def sees_endpoint(db: Database, principal: Principal, endpoint: str) -> bool:
    """Whether a device with this endpoint name exists in the caller's domain subtree."""
    domain_id = await device_domain(db, endpoint)
    return domain_id is not None and principal.sees_domain(domain_id)


async def registered_endpoints(db: Database, principal: Principal) -> set[str]:
    """Endpoint names of the caller's devices that hold a registration (read inline: the
    caller then builds an answer for each of them, which costs more than the read)."""
    [rows] = await db.hot_reads.rows(
        (_REGISTERED_ENDPOINTS, prefix_values("scope", principal.domain_id)), inline=True
    )
    return {row.endpoint_name for row in rows}


def device_properties(device: Device | Row) -> dict[str, str]:
    """User properties plus those derived from the record (all values are strings)."""
    properties = {str(name): str(value) for name, value in (device.properties or {}).items()}
    properties["endpointName"] = device.endpoint_name
    if device.lwm2m_version is not None:
        properties["lwm2mVersion"] = device.lwm2m_version
        properties["registeredQueueMode"] = "true" if device.queue_mode else "false"
    if device.registered_objects is not None:
        properties["registeredObjects"] = device.registered_objects
    if device.binding is not None:
        properties["binding"] = device.binding
    if device.lifetime is not None:
        properties["lifetime"] = str(device.lifetime)
    return properties


def software_version(device: Device | Row) -> str | None:
    """Coiote reports Firmware Version (/3/0/3) as ``softwareVersion``; /3/0/19 if none."""
    return device.firmware_version or device.software_version or None


# --- provisioning and changes ----------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class NewDevice:
    endpoint_name: str
    device_id: str | None = None
    domain: str | None = None
    friendly_name: str = ""
    description: str = ""
    blacklisted: bool = False
    management_enabled: bool = True
    security_mode: str | None = None
    dtls_identity: str | None = None
    dtls_psk: Mapping[str, Any] | None = None
    groups: Sequence[str] = ()
    properties: Mapping[str, str] = field(default_factory=dict)


@dataclass(frozen=True, slots=True)
class DeviceChanges:
    """A ``DeviceUpdateRequest``; ``None`` leaves a field as it is."""

    add_properties: Mapping[str, str] = field(default_factory=dict)
    remove_properties: Sequence[str] = ()
    add_groups: Sequence[str] = ()
    remove_groups: Sequence[str] = ()
    blacklisted: bool | None = None
    management_enabled: bool | None = None
    description: str | None = None
    friendly_name: str | None = None
    security_mode: str | None = None
    dtls_identity: str | None = None
    dtls_psk: Mapping[str, Any] | None = None


@dataclass(frozen=True, slots=True)
class DeviceUpdate:
    device: Device
    memberships_changed: bool
    barred: bool
    """The device's current registration must end: it may no longer register
    (blacklisted or management disabled), or its security settings changed, so a
    registration made under the old ones (e.g. over plain UDP before it became a PSK
    device) must not stay alive through Updates; it registers again under the new ones."""


def _validate_name(kind: str, value: str, max_length: int) -> str:
    if not value or len(value) > max_length:
        raise InvalidInput(f"{kind} must be 1..{max_length} characters")
    if not value.isprintable():
        raise InvalidInput(f"{kind} has control characters")
    return value


def _validate_user_properties(properties: Mapping[str, str]) -> None:
    for name, value in properties.items():
        if name in RUNTIME_PROPERTIES:
            raise InvalidInput(f"property {name!r} is set by the server and cannot be changed")
        if not _PROPERTY_NAME.fullmatch(name):
            raise InvalidInput(f"invalid property name {name[:64]!r}")
        if len(value) > MAX_PROPERTY_VALUE_LENGTH:
            raise InvalidInput(f"property {name!r} longer than {MAX_PROPERTY_VALUE_LENGTH}")


def _security(
    mode: str, identity: str | None, psk_hex: str | None
) -> tuple[str, str | None, str | None]:
    if mode not in SECURITY_MODES:
        raise InvalidInput(f"securityMode must be one of {', '.join(sorted(SECURITY_MODES))}")
    if mode == "psk":
        if not identity or psk_hex is None:
            raise InvalidInput("securityMode psk needs dtlsIdentity and dtlsPsk")
    elif mode == "cert":  # the identity, if any: the certificate's CN or one of its SANs
        if psk_hex is not None:
            raise InvalidInput("dtlsPsk only applies to securityMode psk")
    elif identity is not None or psk_hex is not None:
        raise InvalidInput("dtlsIdentity applies to securityMode psk and cert, dtlsPsk to psk")
    if identity is not None:
        _validate_name("dtlsIdentity", identity, 255)
    return mode, identity, psk_hex


async def _require_identity_free(
    session: AsyncSession, identity: str | None, device_id: str
) -> None:
    if identity is None:
        return
    taken = await session.scalar(
        select(exists().where(Device.dtls_identity == identity, Device.id != device_id))
    )
    if taken:
        raise _identity_taken(identity)


def _identity_taken(identity: str) -> InvalidInput:
    return InvalidInput(f"DTLS identity {identity!r} is already used by another device")


async def _write_claiming_identity(session: AsyncSession, identity: str | None) -> None:
    """Write the pending changes now: a racing request that took ``identity`` after
    ``_require_identity_free`` looked trips the store's unique index
    (``uq_devices_dtls_identity``), and gets the same answer as the check gives."""
    try:
        await session.flush()
    except IntegrityError as exc:
        if identity is not None and "dtls_identity" in str(exc.orig):
            raise _identity_taken(identity) from exc
        raise


async def _visible_domain(session: AsyncSession, principal: Principal, domain: str | None) -> str:
    domain_id = normalize_domain_id(domain) if domain else principal.domain_id
    if not principal.sees_domain(domain_id) or await session.get(Domain, domain_id) is None:
        raise NotFound(f"domain {domain_id!r} not found", code=4041)
    return domain_id


async def create_device(
    session: AsyncSession, principal: Principal, new: NewDevice, *, psk_box: SecretBox
) -> Device:
    """Pre-provision a device; the id is the endpoint name unless given. Its PSK is
    stored sealed by ``psk_box``."""
    endpoint = _validate_name("endpoint name", new.endpoint_name, MAX_ENDPOINT_NAME_LENGTH)
    device_id = _validate_name(
        "device id",
        new.device_id if new.device_id is not None else endpoint,
        MAX_DEVICE_ID_LENGTH,
    )
    domain_id = await _visible_domain(session, principal, new.domain)
    if len(new.properties) > MAX_PROPERTIES:
        raise InvalidInput(f"at most {MAX_PROPERTIES} properties")
    _validate_user_properties(new.properties)
    psk_hex = psk_to_hex(new.dtls_psk) if new.dtls_psk is not None else None
    default_mode = "psk" if new.dtls_identity is not None or psk_hex is not None else "nosec"
    mode, identity, psk_hex = _security(
        new.security_mode or default_mode, new.dtls_identity, psk_hex
    )
    groups = await require_visible_groups(session, principal, new.groups, member_domain=domain_id)
    duplicate = await session.scalar(
        select(exists().where(or_(Device.id == device_id, Device.endpoint_name == endpoint)))
    )
    if duplicate:
        raise Conflict(f"device {device_id!r} (endpoint name {endpoint!r}) already exists")
    await _require_identity_free(session, identity, device_id)
    sealed = None if psk_hex is None else _sealed_psk(psk_box, device_id, psk_hex, None)
    device = Device(
        id=device_id,
        endpoint_name=endpoint,
        domain_id=domain_id,
        friendly_name=new.friendly_name,
        description=new.description,
        properties=dict(new.properties),
        blacklisted=new.blacklisted,
        management_enabled=new.management_enabled,
        security_mode=mode,
        dtls_identity=identity,
        dtls_psk=sealed,
    )
    session.add(device)
    await _write_claiming_identity(session, identity)
    if groups:
        await session.execute(
            insert(GroupMembership), [{"device_id": device_id, "group_id": g} for g in groups]
        )
    audit.record(
        session, "device.created", actor=principal.login, subject=device_id, domain_id=domain_id
    )
    if sealed is not None:
        note_psk_change(session, device_id, identity, sealed)
    return device


async def update_device(
    session: AsyncSession,
    principal: Principal,
    device_id: str,
    changes: DeviceChanges,
    *,
    psk_box: SecretBox,
) -> DeviceUpdate:
    """Apply ``changes``; a new PSK is sealed by ``psk_box``. A security change (mode,
    identity or key: a key rotation) is audited and bars the current registration."""
    device = await get_device(session, principal, device_id)
    _validate_user_properties(changes.add_properties)
    reserved = RUNTIME_PROPERTIES.intersection(changes.remove_properties)
    if reserved:
        raise InvalidInput(f"property {sorted(reserved)[0]!r} is set by the server")
    properties = {
        name: value
        for name, value in (device.properties or {}).items()
        if name not in changes.remove_properties
    }
    properties.update(changes.add_properties)
    if len(properties) > MAX_PROPERTIES:
        raise InvalidInput(f"at most {MAX_PROPERTIES} properties")

    names_identity = changes.dtls_identity is not None and device.security_mode != "cert"
    wants_psk = names_identity or changes.dtls_psk is not None
    mode = changes.security_mode or ("psk" if wants_psk else device.security_mode)
    keep_psk = mode == "psk"
    identity = (
        changes.dtls_identity
        if changes.dtls_identity is not None
        else (device.dtls_identity if mode == device.security_mode else None)
    )
    new_psk_hex = psk_to_hex(changes.dtls_psk) if changes.dtls_psk is not None else None
    mode, identity, psk_value = _security(
        mode, identity, new_psk_hex or (device.dtls_psk if keep_psk else None)
    )
    await _require_identity_free(session, identity, device.id)
    sealed = (
        _sealed_psk(psk_box, device.id, new_psk_hex, device.dtls_psk)
        if new_psk_hex is not None and psk_value is not None
        else psk_value
    )

    added = await require_visible_groups(
        session, principal, changes.add_groups, member_domain=device.domain_id
    )
    removed = await require_visible_groups(session, principal, changes.remove_groups)
    current = set((await groups_of(session, [device.id]))[device.id])
    to_add = [group for group in added if group not in current and group not in removed]
    to_remove = [group for group in removed if group in current]
    if to_add:
        await session.execute(
            insert(GroupMembership), [{"device_id": device.id, "group_id": g} for g in to_add]
        )
    if to_remove:
        await session.execute(
            delete(GroupMembership).where(
                GroupMembership.device_id == device.id, GroupMembership.group_id.in_(to_remove)
            )
        )

    was_allowed = not device.blacklisted and device.management_enabled
    old_security = (device.security_mode, device.dtls_identity, device.dtls_psk)
    security_changed = old_security != (mode, identity, sealed)
    if security_changed:
        audit.record(
            session,
            "device.security_changed",
            actor=principal.login,
            subject=device.id,
            domain_id=device.domain_id,
            securityMode=mode,
            dtlsIdentity=identity,
            keyChanged=old_security[2] != sealed,
        )
        if old_security[2] is not None or sealed is not None:
            note_psk_change(session, device.id, identity, sealed)
    device.properties = properties
    device.security_mode, device.dtls_identity, device.dtls_psk = mode, identity, sealed
    if identity is not None and identity != old_security[1]:
        await _write_claiming_identity(session, identity)
    if changes.blacklisted is not None:
        device.blacklisted = changes.blacklisted
    if changes.management_enabled is not None:
        device.management_enabled = changes.management_enabled
    if changes.description is not None:
        device.description = changes.description
    if changes.friendly_name is not None:
        device.friendly_name = _validate_name("friendlyName", changes.friendly_name, 255)
    barred = security_changed or (
        was_allowed and (device.blacklisted or not device.management_enabled)
    )
    return DeviceUpdate(device, bool(to_add or to_remove), barred)


async def delete_device(session: AsyncSession, principal: Principal, device_id: str) -> Device:
    """Delete the record; its values, queued requests and memberships go with it."""
    device = await get_device(session, principal, device_id)
    await session.execute(delete(Device).where(Device.id == device.id))
    if device.dtls_psk is not None:
        note_psk_change(session, device.id, None, None)
    audit.record(
        session,
        "device.deleted",
        actor=principal.login,
        subject=device.id,
        domain_id=device.domain_id,
    )
    return device


# --- CSV import ------------------------------------------------------------------------------

CSV_COLUMNS = ("endpoint", "domain", "securityMode", "dtlsIdentity", "dtlsPsk", "groups")
"""Columns of a device import file; ``dtlsPsk`` is hex, ``groups`` separated by ``;``."""
MAX_IMPORT_ROWS = 100_000


def parse_device_csv(text: str) -> list[tuple[int, NewDevice | InvalidInput]]:
    """The devices of an import file (a header row naming ``CSV_COLUMNS``, ``endpoint``
    required), each with the line it ends on. A problem with the file as a whole
    raises ``InvalidInput``; one with a row is that row's entry."""
    if "\0" in text:
        raise InvalidInput("the file has NUL characters: not a CSV text file")
    reader = csv.DictReader(io.StringIO(text), strict=True)
    known = {column.lower(): column for column in CSV_COLUMNS}
    try:
        header = [(name or "").strip().lower() for name in reader.fieldnames or ()]
        unknown = [name for name in header if name not in known]
        repeated = [name for name in known if header.count(name) > 1]
        if "endpoint" not in header:
            raise InvalidInput(f"the CSV needs a header row: {','.join(CSV_COLUMNS)}")
        if unknown:
            raise InvalidInput(
                f"unknown column {unknown[0][:40]!r}; columns: {','.join(CSV_COLUMNS)}"
            )
        if repeated:
            raise InvalidInput(f"column {known[repeated[0]]!r} appears twice")
        rows: list[tuple[int, NewDevice | InvalidInput]] = []
        for record in reader:
            if len(rows) >= MAX_IMPORT_ROWS:
                raise InvalidInput(f"at most {MAX_IMPORT_ROWS} devices per file")
            if None in record:
                rows.append((reader.line_num, InvalidInput("more cells than columns")))
                continue
            fields = {
                known[(name or "").strip().lower()]: (value or "").strip()
                for name, value in record.items()
            }
            rows.append((reader.line_num, _csv_device(fields)))
    except csv.Error as exc:
        raise InvalidInput(f"malformed CSV at line {reader.line_num}: {exc}") from None
    return rows


def _csv_device(fields: Mapping[str, str]) -> NewDevice | InvalidInput:
    endpoint = fields.get("endpoint", "")
    if not endpoint:
        return InvalidInput("endpoint is empty")
    psk = fields.get("dtlsPsk", "")
    return NewDevice(
        endpoint_name=endpoint,
        domain=fields.get("domain") or None,
        security_mode=fields.get("securityMode") or None,
        dtls_identity=fields.get("dtlsIdentity") or None,
        dtls_psk={"HexadecimalPsk": psk} if psk else None,
        groups=tuple(group for group in fields.get("groups", "").replace(";", " ").split()),
    )


async def import_devices(
    session: AsyncSession,
    principal: Principal,
    rows: Sequence[tuple[int, NewDevice | InvalidInput]],
    *,
    psk_box: SecretBox,
) -> list[tuple[int, str]]:
    """Create the devices of ``rows`` in ``session``; (line, reason) of each that cannot
    be. The caller commits only when there is none: a file goes in whole or not at all."""
    failures: list[tuple[int, str]] = []
    for line, row in rows:
        if isinstance(row, InvalidInput):
            failures.append((line, row.message))
            continue
        try:
            await create_device(session, principal, row, psk_box=psk_box)
        except ServiceError as exc:
            failures.append((line, exc.message))
    return failures


# --- management sessions ---------------------------------------------------------------------


class SessionOutcome(Enum):
    TRIGGERED = "triggered"
    """The device acknowledged the Registration Update Trigger."""
    QUEUED = "queued"
    """The trigger waits for the device's next contact or registration."""


class DeviceRequestFailed(ServiceError):
    """Asking the device failed (timeout, unreachable, error answer)."""

    def __init__(self, error: Lwm2mServerError) -> None:
        super().__init__(error.message)
        self.status = error.http_status


def update_trigger_path(objects: RegisteredObjects | None) -> LwM2mPath:
    """``/1/<instance>/8``: Registration Update Trigger of the device's Server object.

    The lowest announced instance of object 1; instance 0 when none is known yet.
    """
    entry = objects.objects.get(1) if objects is not None else None
    instance = entry.instances[0] if entry is not None and entry.instances else 0
    return LwM2mPath(1, instance, 8)


def _last_known_objects(device: Device) -> RegisteredObjects | None:
    if not device.registered_objects:
        return None
    try:
        return parse_registration_links(device.registered_objects.encode("utf-8"))
    except DecodeError:
        return None


async def request_session(
    lwm2m: LwM2mServer, device: Device, *, allow_deregistered: bool
) -> SessionOutcome:
    """Ask the device to talk to us now (Registration Update Trigger).

    An unregistered device is 404 unless ``allow_deregistered``: then the trigger is
    queued and sent when the device next registers.
    """
    endpoint = device.endpoint_name
    registration = await lwm2m.get_registration(endpoint)
    if registration is not None:
        try:
            await lwm2m.execute(endpoint, update_trigger_path(registration.objects), wait=False)
        except RequestQueuedError:
            return SessionOutcome.QUEUED
        except DeviceNotRegisteredError:
            registration = None
        except Lwm2mServerError as exc:
            raise DeviceRequestFailed(exc) from None
        else:
            return SessionOutcome.TRIGGERED
    if not allow_deregistered:
        raise NotFound(
            f"device {device.id!r} is not registered; POST sessions/{{id}}/allow-deregistered "
            "starts the session at its next registration",
            code=4041,
        )
    await _queue_update_trigger(lwm2m, device)
    return SessionOutcome.QUEUED


async def _queue_update_trigger(lwm2m: LwM2mServer, device: Device) -> None:
    objects = _last_known_objects(device)
    path = update_trigger_path(objects)
    root_path = objects.root_path if objects is not None else "/"
    operation = Operation(
        OperationKind.EXECUTE, DownlinkRequest.for_path(Method.POST, path, root_path), (path,)
    )
    now = datetime.now(UTC)
    pending = await lwm2m.queue.pending(device.endpoint_name, now)
    if any(request.operation == operation for request in pending):
        return
    await lwm2m.queue.enqueue(
        QueuedRequest(
            id=uuid.uuid4().hex,
            endpoint=device.endpoint_name,
            operation=operation,
            created_at=now,
            expires_at=now + timedelta(seconds=lwm2m.options.queued_request_ttl),
        )
    )
