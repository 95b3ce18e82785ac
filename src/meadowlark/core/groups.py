"""Device groups: dotted hierarchical ids (``root.acme.sensors``) living in a domain.

A group is visible to callers whose domain contains the group's domain. A sub-group
needs its parent (the id without the last segment) and lives in the parent's domain
or below it.
"""

from __future__ import annotations

import re
from collections.abc import Iterable

from sqlalchemy import exists, select
from sqlalchemy.ext.asyncio import AsyncSession

from meadowlark.auth.principal import Principal
from meadowlark.core import audit
from meadowlark.core.domains import in_scope, normalize_domain_id
from meadowlark.core.errors import Conflict, InvalidInput, NotFound
from meadowlark.core.search_criteria import Field, compile_criteria
from meadowlark.store.coiote_models import Group, GroupMembership
from meadowlark.store.models import Domain

MAX_GROUP_ID_LENGTH = 255
_GROUP_ID = re.compile(r"[A-Za-z0-9_-]+(?:\.[A-Za-z0-9_-]+)*")

SEARCHABLE = {
    "id": Field(Group.id),
    "description": Field(Group.description),
    "domain": Field(Group.domain_id),
    "creationTime": Field(Group.created_at, "datetime"),
}


def validate_group_id(group_id: str) -> str:
    if len(group_id) > MAX_GROUP_ID_LENGTH or not _GROUP_ID.fullmatch(group_id):
        raise InvalidInput(
            f"invalid group id {group_id[:80]!r}: dot-separated segments of "
            f"[A-Za-z0-9_-], at most {MAX_GROUP_ID_LENGTH} characters"
        )
    return group_id


def parent_group_id(group_id: str) -> str | None:
    parent, dot, _ = group_id.rpartition(".")
    return parent if dot else None


async def list_groups(
    session: AsyncSession, principal: Principal, search_criteria: str | None = None
) -> list[str]:
    rows = await session.scalars(
        select(Group.id)
        .where(
            in_scope(Group.domain_id, principal.domain_id),
            compile_criteria(search_criteria, SEARCHABLE),
        )
        .order_by(Group.id)
    )
    return list(rows.all())


async def get_group(session: AsyncSession, principal: Principal, group_id: str) -> Group:
    group = await session.scalar(
        select(Group).where(Group.id == group_id, in_scope(Group.domain_id, principal.domain_id))
    )
    if group is None:
        raise NotFound(f"group {group_id[:255]!r} not found", code=4041)
    return group


async def require_visible_groups(
    session: AsyncSession,
    principal: Principal,
    group_ids: Iterable[str],
    *,
    member_domain: str | None = None,
) -> list[str]:
    """The distinct ``group_ids``, all existing in the caller's scope; 404 (4041) otherwise.

    With ``member_domain`` (a device about to join them), each group must also be in that
    domain or above it, else 400: a group's owner configures observations on its members
    and members list their groups, so a group below or beside a device's domain would
    reach into a tenant that cannot see it (even the root administrator, who sees both,
    cannot mix them).
    """
    wanted = list(dict.fromkeys(group_ids))
    if not wanted:
        return []
    rows = await session.execute(
        select(Group.id, Group.domain_id).where(
            Group.id.in_(wanted), in_scope(Group.domain_id, principal.domain_id)
        )
    )
    domains = {group_id: domain_id for group_id, domain_id in rows}
    missing = [group_id for group_id in wanted if group_id not in domains]
    if missing:
        raise NotFound(f"group {missing[0][:255]!r} not found", code=4041)
    if member_domain is not None:
        apart = [group_id for group_id in wanted if not member_domain.startswith(domains[group_id])]
        if apart:
            raise InvalidInput(
                f"group {apart[0]!r} is not in the device's domain ({member_domain}) or above it"
            )
    return wanted


async def create_group(
    session: AsyncSession,
    principal: Principal,
    group_id: str,
    description: str,
    domain: str | None = None,
) -> Group:
    validate_group_id(group_id)
    domain_id = normalize_domain_id(domain) if domain else principal.domain_id
    if not principal.sees_domain(domain_id) or await session.get(Domain, domain_id) is None:
        raise NotFound(f"domain {domain_id!r} not found", code=4041)
    parent_id = parent_group_id(group_id)
    if parent_id is not None:
        parent = await get_group(session, principal, parent_id)
        if not domain_id.startswith(parent.domain_id):
            raise InvalidInput(
                f"group {group_id!r} must be in the domain of its parent ({parent.domain_id}) "
                "or below it"
            )
    if await session.get(Group, group_id) is not None:
        raise Conflict(f"group {group_id!r} already exists")
    group = Group(id=group_id, domain_id=domain_id, description=description)
    session.add(group)
    audit.record(
        session, "group.created", actor=principal.login, subject=group_id, domain_id=domain_id
    )
    return group


async def update_group(
    session: AsyncSession, principal: Principal, group_id: str, description: str
) -> Group:
    group = await get_group(session, principal, group_id)
    group.description = description
    return group


async def delete_group(session: AsyncSession, principal: Principal, group_id: str) -> list[str]:
    """Delete a group without sub-groups; its memberships go with it.

    Returns the ids of the devices that were members.
    """
    group = await get_group(session, principal, group_id)
    has_children = await session.scalar(
        select(exists().where(Group.id.startswith(group.id + ".", autoescape=True)))
    )
    if has_children:
        raise Conflict(f"group {group.id!r} has sub-groups; delete them first")
    members = list(
        await session.scalars(
            select(GroupMembership.device_id).where(GroupMembership.group_id == group.id)
        )
    )
    await session.delete(group)
    audit.record(
        session, "group.deleted", actor=principal.login, subject=group.id, domain_id=group.domain_id
    )
    return members
