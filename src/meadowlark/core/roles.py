"""Roles (Coiote) = user profiles (Monogoto): named permission sets, cached in process."""

from __future__ import annotations

import time
import uuid
from collections.abc import Iterable

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from meadowlark.auth import permissions as catalog
from meadowlark.core.errors import Conflict, Forbidden, InvalidInput, NotFound
from meadowlark.store.db import Database
from meadowlark.store.models import Role, User

CACHE_SECONDS = 5.0


class RoleCache:
    """Role name -> permission set, re-read at most every few seconds.

    Changes made through this process invalidate it at once; other nodes see them
    within ``CACHE_SECONDS``.
    """

    def __init__(self, db: Database) -> None:
        self._db = db
        self._roles: dict[str, Role] = {}
        self._loaded_at = float("-inf")
        self._resolved: dict[tuple[object, ...], frozenset[str]] = {}

    def invalidate(self) -> None:
        self._loaded_at = float("-inf")

    async def roles(self) -> dict[str, Role]:
        if time.monotonic() - self._loaded_at > CACHE_SECONDS:
            async with self._db.session() as session:
                rows = (await session.scalars(select(Role))).all()
            self._roles = {role.name: role for role in rows}
            self._resolved.clear()
            self._loaded_at = time.monotonic()
        return self._roles

    async def effective_permissions(self, user: User) -> frozenset[str]:
        return await self.permissions_of(user.account_type, user.roles, user.extra_permissions)

    async def permissions_of(
        self, account_type: str, role_names: Iterable[str], extra: Iterable[str]
    ) -> frozenset[str]:
        """Everything granted by the account type, the roles and the extra permissions."""
        roles = await self.roles()
        key = (account_type, tuple(role_names), tuple(extra), id(roles))
        cached = self._resolved.get(key)
        if cached is not None:
            return cached
        granted: set[str] = set(catalog.SELF_SERVICE)
        if account_type == "admin":
            granted |= catalog.ALL
        for name in key[1]:
            role = roles.get(name)
            if role is not None:
                granted.update(role.permissions)
        granted.update(key[2])
        resolved = frozenset(granted & (catalog.GRANTABLE | catalog.SELF_SERVICE))
        if len(self._resolved) > 10_000:
            self._resolved.clear()
        self._resolved[key] = resolved
        return resolved

    async def primary_role(self, user: User) -> Role | None:
        roles = await self.roles()
        names = [*user.roles, catalog.ROLE_FOR_ACCOUNT_TYPE.get(user.account_type, "")]
        return next((roles[name] for name in names if name in roles), None)


async def sync_builtin_roles(session: AsyncSession) -> None:
    """Create or refresh the built-in roles from the catalog (run at start-up)."""
    existing = {role.id: role for role in (await session.scalars(select(Role))).all()}
    for builtin in catalog.BUILTIN_ROLES:
        permissions = sorted(builtin.permissions)
        role = existing.get(builtin.id)
        if role is None:
            session.add(
                Role(
                    id=builtin.id,
                    name=builtin.name,
                    permissions=permissions,
                    builtin=True,
                    things_group_scoped=builtin.things_group_scoped,
                )
            )
        elif role.permissions != permissions:
            role.permissions = permissions
            role.cas += 1


def _permissions_from_input(
    permissions: Iterable[str] | None, profile: dict[str, list[str]] | None
) -> frozenset[str]:
    try:
        names = catalog.validate_names(permissions or ())
        return names | (catalog.expand_profile(profile) if profile else frozenset())
    except catalog.UnknownPermissionError as exc:
        raise InvalidInput(str(exc)) from exc


def ensure_grantable(granter: frozenset[str], wanted: Iterable[str], *, is_admin: bool) -> None:
    """Nobody hands out a permission they do not hold themselves."""
    if is_admin:
        return
    missing = sorted(set(wanted) - granter)
    if missing:
        raise Forbidden(f"cannot grant a permission you do not hold: {missing[0]!r}")


async def create_role(
    session: AsyncSession,
    *,
    name: str,
    permissions: Iterable[str] | None,
    profile: dict[str, list[str]] | None,
    things_group_scoped: bool,
) -> Role:
    if await session.scalar(select(Role).where(Role.name == name)) is not None:
        raise Conflict(f"role {name!r} already exists")
    role = Role(
        id=f"UserProfileId_{uuid.uuid4()}",
        name=name,
        permissions=sorted(_permissions_from_input(permissions, profile)),
        things_group_scoped=things_group_scoped,
    )
    session.add(role)
    return role


async def get_role(session: AsyncSession, role_id: str) -> Role:
    role = await session.get(Role, role_id)
    if role is None:
        raise NotFound(f"role {role_id!r} not found")
    return role


async def update_role(
    session: AsyncSession,
    role_id: str,
    *,
    permissions: Iterable[str] | None,
    profile: dict[str, list[str]] | None,
) -> Role:
    role = await get_role(session, role_id)
    if role.builtin:
        raise Forbidden("built-in roles cannot be changed; create a custom one")
    role.permissions = sorted(_permissions_from_input(permissions, profile))
    role.cas += 1
    return role


async def delete_role(session: AsyncSession, role_id: str) -> None:
    role = await get_role(session, role_id)
    if role.builtin:
        raise Forbidden("built-in roles cannot be deleted")
    users = (await session.scalars(select(User.roles))).all()
    if any(role.name in names for names in users):
        raise Conflict(f"role {role.name!r} is still assigned to users")
    await session.delete(role)
