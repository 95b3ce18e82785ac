"""Setting values (Coiote ``settingValues``): named values of a domain, a group or a
device, which tasks use as ``${sv.name}``.

A device's effective value of a name is its own, else the one of its deepest group
(``a.b`` before ``a``; among direct groups of equal depth, the first by id), else its
domain's, else the nearest ancestor domain's. Secret values are never returned in clear
and never logged: the API shows ``SECRET_MASK`` in their place.
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

from sqlalchemy import case, or_, select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncSession

from meadowlark.auth.principal import Principal
from meadowlark.core.devices import device_properties, get_device
from meadowlark.core.domains import domain_lineage, in_scope
from meadowlark.core.errors import Conflict, InvalidInput
from meadowlark.core.groups import get_group
from meadowlark.core.search_criteria import Field, compile_criteria
from meadowlark.store.coiote_models import GroupMembership
from meadowlark.store.device_models import Device
from meadowlark.store.task_models import SettingValueRow

DOMAIN = "domain"
GROUP = "group"
DEVICE = "device"
SECRET_MASK = "******"  # noqa: S105 - the mask shown instead of a secret
MAX_VALUE_LENGTH = 8192
SETTING_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_.-]{0,127}")
REFERENCE = re.compile(r"\$\{sv\.([^}]*)\}")
"""``${sv.name}`` in a task's text."""

SEARCHABLE = {
    "name": Field(SettingValueRow.name),
    "domain": Field(SettingValueRow.domain_id),
    "isSecret": Field(SettingValueRow.is_secret, "boolean"),
    "groupId": Field(case((SettingValueRow.target_kind == GROUP, SettingValueRow.target_id))),
    "deviceId": Field(case((SettingValueRow.target_kind == DEVICE, SettingValueRow.target_id))),
}


@dataclass(frozen=True, slots=True)
class SettingValue:
    name: str
    value: str
    """The value in clear; shown masked when ``is_secret``."""
    group_id: str | None
    device_id: str | None
    is_secret: bool

    @property
    def shown_value(self) -> str:
        return SECRET_MASK if self.is_secret else self.value


def _view(row: SettingValueRow) -> SettingValue:
    return SettingValue(
        name=row.name,
        value=row.value,
        group_id=row.target_id if row.target_kind == GROUP else None,
        device_id=row.target_id if row.target_kind == DEVICE else None,
        is_secret=row.is_secret,
    )


def validate_name(name: str) -> str:
    if not SETTING_NAME.fullmatch(name):
        raise InvalidInput(
            f"invalid setting name {name[:64]!r}: a letter or _, then letters, digits, _ . -, "
            "at most 128 characters",
            code=4000,
        )
    return name


def group_lineage(group_ids: Sequence[str]) -> list[str]:
    """The groups and their ancestors, deepest first (``a.b.c``, ``a.b``, ``a``)."""
    lineage: dict[str, int] = {}
    for group_id in sorted(group_ids):
        segments = group_id.split(".")
        for depth in range(len(segments), 0, -1):
            lineage.setdefault(".".join(segments[:depth]), depth)
    return sorted(lineage, key=lambda group_id: (-lineage[group_id], group_id))


async def list_settings(
    session: AsyncSession, principal: Principal, search_criteria: str | None
) -> list[SettingValue]:
    criteria = compile_criteria(search_criteria, SEARCHABLE)
    rows = await session.scalars(
        select(SettingValueRow)
        .where(in_scope(SettingValueRow.domain_id, principal.domain_id), criteria)
        .order_by(SettingValueRow.name, SettingValueRow.target_kind, SettingValueRow.target_id)
    )
    return [_view(row) for row in rows]


async def upsert_setting(
    session: AsyncSession,
    principal: Principal,
    *,
    name: str,
    value: str,
    group_id: str | None,
    device_id: str | None,
    is_secret: bool,
) -> SettingValue:
    """Set a value on the caller's domain, a group or a device of its subtree."""
    validate_name(name)
    if len(value) > MAX_VALUE_LENGTH:
        raise InvalidInput(f"value longer than {MAX_VALUE_LENGTH} characters", code=4000)
    if group_id and device_id:
        raise InvalidInput("give groupId or deviceId, not both", code=4000)
    if group_id:
        group = await get_group(session, principal, group_id)
        kind, target, domain_id = GROUP, group.id, group.domain_id
    elif device_id:
        device = await get_device(session, principal, device_id)
        kind, target, domain_id = DEVICE, device.id, device.domain_id
    else:
        kind, target, domain_id = DOMAIN, principal.domain_id, principal.domain_id
    row = await session.scalar(
        select(SettingValueRow).where(
            SettingValueRow.target_kind == kind,
            SettingValueRow.target_id == target,
            SettingValueRow.name == name,
        )
    )
    if row is None:
        row = SettingValueRow(
            domain_id=domain_id,
            target_kind=kind,
            target_id=target,
            name=name,
            value=value,
            is_secret=is_secret,
        )
        session.add(row)
    else:
        row.value = value
        row.is_secret = is_secret
    try:
        await session.flush()
    except IntegrityError:
        raise Conflict(f"setting {name!r} changed concurrently; retry") from None
    return _view(row)


async def _effective(
    session: AsyncSession,
    domain_id: str,
    group_ids: Sequence[str],
    device_id: str | None,
    visible: Principal | None,
) -> dict[str, SettingValue]:
    strongest_first = [(DEVICE, device_id)] if device_id is not None else []
    strongest_first += [(GROUP, group) for group in group_lineage(group_ids)]
    strongest_first += [(DOMAIN, domain) for domain in domain_lineage(domain_id)]
    conditions = [
        (SettingValueRow.target_kind == kind) & (SettingValueRow.target_id == target)
        for kind, target in strongest_first
    ]
    # A value counts only where its owner reaches: a group or device id reused by another
    # domain after a delete does not inherit the old owner's values.
    query = select(SettingValueRow).where(
        or_(*conditions), SettingValueRow.domain_id.in_(domain_lineage(domain_id))
    )
    if visible is not None:
        query = query.where(in_scope(SettingValueRow.domain_id, visible.domain_id))
    rows = list(await session.scalars(query))
    rank = {target: position for position, target in enumerate(strongest_first)}
    rows.sort(key=lambda row: rank[(row.target_kind, row.target_id)], reverse=True)
    effective: dict[str, SettingValue] = {}
    for row in rows:  # weakest first; stronger ones overwrite
        effective[row.name] = _view(row)
    return effective


async def device_settings(
    session: AsyncSession, device: Device, visible: Principal | None = None
) -> dict[str, SettingValue]:
    """The device's effective values by name (``visible``: only those the caller sees)."""
    group_ids = list(
        await session.scalars(
            select(GroupMembership.group_id).where(GroupMembership.device_id == device.id)
        )
    )
    return await _effective(session, device.domain_id, group_ids, device.id, visible)


async def device_profile(
    session: AsyncSession, principal: Principal, device_id: str, with_device_properties: bool
) -> list[SettingValue]:
    device = await get_device(session, principal, device_id)
    effective = await device_settings(session, device, principal)
    if with_device_properties:
        for name, value in device_properties(device).items():
            effective.setdefault(name, SettingValue(name, value, None, device.id, False))
    return [effective[name] for name in sorted(effective)]


async def group_profile(
    session: AsyncSession, principal: Principal, group_id: str
) -> list[SettingValue]:
    group = await get_group(session, principal, group_id)
    effective = await _effective(session, group.domain_id, [group.id], None, principal)
    return [effective[name] for name in sorted(effective)]


class MissingSetting(Exception):
    def __init__(self, name: str) -> None:
        super().__init__(f"setting {name!r} is not defined for this device")
        self.name = name


def substitute(text: str, values: Mapping[str, SettingValue]) -> str:
    """``text`` with every ``${sv.name}`` replaced; ``MissingSetting`` for an unknown one."""

    def replace(match: re.Match[str]) -> str:
        setting = values.get(match.group(1))
        if setting is None:
            raise MissingSetting(match.group(1))
        return setting.value

    return REFERENCE.sub(replace, text)
