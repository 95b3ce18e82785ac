"""Things groups (with their IMEI-range lock) and tags."""

from __future__ import annotations

import uuid
from collections.abc import Mapping
from typing import Any

from sqlalchemy import exists, select
from sqlalchemy.ext.asyncio import AsyncSession

from meadowlark.auth.principal import Principal
from meadowlark.connectivity.enforcement import ThingIndex
from meadowlark.connectivity.identifiers import optional_digits
from meadowlark.connectivity.things import _epoch_ms, _flag, _text, visible_groups
from meadowlark.core import audit
from meadowlark.core.domains import in_scope
from meadowlark.core.errors import Conflict, InvalidInput, NotFound
from meadowlark.store.connectivity_models import Thing, ThingsGroup, ThingTag


def group_body(group: ThingsGroup) -> dict[str, Any]:
    return {
        "ThingsGroupId": group.id,
        "ThingsGroupName": group.name,
        "IMEIPrefix": group.imei_prefix,
        "LockMasterImei": group.lock_master_imei,
        "TelephonyProfileId": group.telephony_profile_id,
        "DateCreated": _epoch_ms(group.created_at),
        "DateModified": _epoch_ms(group.modified_at),
        "cas": str(group.cas),
    }


async def list_groups(session: AsyncSession, principal: Principal) -> list[ThingsGroup]:
    rows = await session.scalars(
        select(ThingsGroup).where(visible_groups(principal)).order_by(ThingsGroup.name)
    )
    return list(rows.all())


async def get_group(session: AsyncSession, principal: Principal, group_id: str) -> ThingsGroup:
    group = await session.scalar(
        select(ThingsGroup).where(ThingsGroup.id == group_id, visible_groups(principal))
    )
    if group is None:
        raise NotFound(f"Things group {group_id[:80]!r} not found")
    return group


def _apply(group: ThingsGroup, fields: Mapping[str, Any]) -> None:
    if "ThingsGroupName" in fields:
        name = _text(fields, "ThingsGroupName")
        if not name:
            raise InvalidInput("ThingsGroupName must not be empty")
        group.name = name
    if "IMEIPrefix" in fields:
        group.imei_prefix = optional_digits("IMEIPrefix", _text(fields, "IMEIPrefix"), range(1, 16))
    if "TelephonyProfileId" in fields:
        group.telephony_profile_id = _text(fields, "TelephonyProfileId")
    lock = _flag(fields, "LockMasterImei")
    if lock is not None:
        group.lock_master_imei = lock
    if group.lock_master_imei and not group.imei_prefix:
        raise InvalidInput("LockMasterImei on a group needs an IMEIPrefix")


async def create_group(
    session: AsyncSession, principal: Principal, index: ThingIndex, fields: Mapping[str, Any]
) -> ThingsGroup:
    if principal.things_group_ids:
        raise InvalidInput("a user limited to Things groups cannot create groups")
    if not _text(fields, "ThingsGroupName"):
        raise InvalidInput("ThingsGroupName is required")
    group = ThingsGroup(
        id=f"ThingsGroupId_{uuid.uuid4()}",
        domain_id=principal.domain_id,
        name="",
        imei_prefix="",
        lock_master_imei=False,
        telephony_profile_id="",
    )
    _apply(group, fields)
    session.add(group)
    audit.record(
        session,
        "thingsgroup.created",
        actor=principal.login,
        subject=group.id,
        domain_id=group.domain_id,
    )
    await session.flush()
    index.put_group(group.id, group.imei_prefix, group.lock_master_imei)
    return group


async def update_group(
    session: AsyncSession,
    principal: Principal,
    index: ThingIndex,
    group_id: str,
    fields: Mapping[str, Any],
) -> ThingsGroup:
    group = await get_group(session, principal, group_id)
    _apply(group, fields)
    group.cas += 1
    audit.record(
        session,
        "thingsgroup.updated",
        actor=principal.login,
        subject=group.id,
        domain_id=group.domain_id,
        changed=sorted(fields),
    )
    index.put_group(group.id, group.imei_prefix, group.lock_master_imei)
    return group


async def delete_group(
    session: AsyncSession, principal: Principal, index: ThingIndex, group_id: str
) -> None:
    group = await get_group(session, principal, group_id)
    if await session.scalar(select(exists().where(Thing.group_id == group.id))):
        raise Conflict("the group still has Things")
    await session.delete(group)
    audit.record(
        session,
        "thingsgroup.deleted",
        actor=principal.login,
        subject=group.id,
        domain_id=group.domain_id,
    )
    index.remove_group(group.id)


async def list_tags(session: AsyncSession, principal: Principal) -> list[ThingTag]:
    rows = await session.scalars(
        select(ThingTag)
        .where(in_scope(ThingTag.domain_id, principal.domain_id))
        .order_by(ThingTag.name)
    )
    return list(rows.all())


async def create_tag(session: AsyncSession, principal: Principal, name: str) -> ThingTag:
    name = name.strip()
    if not name or len(name) > 128:
        raise InvalidInput("Name must be 1 to 128 characters")
    taken = await session.scalar(
        select(ThingTag.id).where(ThingTag.domain_id == principal.domain_id, ThingTag.name == name)
    )
    if taken is not None:
        raise Conflict(f"tag {name!r} already exists")
    tag = ThingTag(id=f"TagId_{uuid.uuid4()}", domain_id=principal.domain_id, name=name)
    session.add(tag)
    return tag


async def delete_tag(session: AsyncSession, principal: Principal, tag_id: str) -> None:
    tag = await session.scalar(
        select(ThingTag).where(
            ThingTag.id == tag_id, in_scope(ThingTag.domain_id, principal.domain_id)
        )
    )
    if tag is None:
        raise NotFound(f"tag {tag_id[:80]!r} not found")
    await session.delete(tag)


def tag_body(tag: ThingTag) -> dict[str, Any]:
    return {"TagId": tag.id, "Name": tag.name, "DateCreated": _epoch_ms(tag.created_at)}
