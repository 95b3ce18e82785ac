"""Roles (Coiote) = user profiles (Monogoto): named permission sets, owned by a domain.

Built-in roles (no domain) are visible everywhere and read-only. A custom role belongs
to the domain it was created in: only users of that domain's subtree can hold it, so it
is visible to callers in that subtree and to those above it, and changed or deleted only
by callers whose own subtree contains its domain. Sibling domains never see it. Role
names are unique along every root-to-leaf line of domains, so a name held by a user
resolves to exactly one role: the one whose domain is the user's domain or above it.
"""

from __future__ import annotations

import time
import uuid
from collections.abc import Callable, Iterable

from sqlalchemy import or_, select
from sqlalchemy.ext.asyncio import AsyncSession

from meadowlark.auth import permissions as catalog
from meadowlark.auth.principal import Principal
from meadowlark.core.domains import domain_lineage, in_scope, normalize_domain_id
from meadowlark.core.errors import Conflict, Forbidden, InvalidInput, NotFound
from meadowlark.store.db import Database
from meadowlark.store.models import Domain, Role, User

CACHE_SECONDS = 1.0


def role_applies_to(role: Role, domain_id: str) -> bool:
    """A user of ``domain_id`` can hold ``role``: built-in, or owned at or above it."""
    return role.domain_id is None or domain_id.startswith(role.domain_id)


def resolve_role(candidates: Iterable[Role], domain_id: str) -> Role | None:
    """Among roles of one name, the one a user of ``domain_id`` holds (deepest wins)."""
    applicable = [role for role in candidates if role_applies_to(role, domain_id)]
    return max(applicable, key=lambda role: len(role.domain_id or ""), default=None)


class RoleCache:
    """Role name -> roles of that name, re-read when used and older than ``CACHE_SECONDS``.

    Changes made through this process invalidate it at once (call ``invalidate`` after
    the commit); other processes and nodes see them within ``CACHE_SECONDS``. Listeners
    added with ``on_change`` hear of both: ``local=True`` for ``invalidate``, ``False``
    when a re-read finds roles changed elsewhere.
    """

    def __init__(self, db: Database) -> None:
        self._db = db
        self._by_name: dict[str, list[Role]] = {}
        self._fingerprint: frozenset[tuple[object, ...]] = frozenset()
        self._loaded_at = float("-inf")
        self._resolved: dict[tuple[object, ...], frozenset[str]] = {}
        self._listeners: list[Callable[[bool], None]] = []

    def on_change(self, listener: Callable[[bool], None]) -> None:
        self._listeners.append(listener)

    def invalidate(self) -> None:
        self._loaded_at = float("-inf")
        for listener in self._listeners:
            listener(True)

    async def _roles_by_name(self) -> dict[str, list[Role]]:
        if time.monotonic() - self._loaded_at > CACHE_SECONDS:
            async with self._db.session() as session:
                rows = (await session.scalars(select(Role))).all()
            by_name: dict[str, list[Role]] = {}
            for role in rows:
                by_name.setdefault(role.name, []).append(role)
            fingerprint = frozenset(
                (role.id, role.name, role.domain_id, tuple(role.permissions)) for role in rows
            )
            changed = fingerprint != self._fingerprint and self._loaded_at != float("-inf")
            self._by_name = by_name
            self._fingerprint = fingerprint
            self._resolved.clear()
            self._loaded_at = time.monotonic()
            if changed:
                for listener in self._listeners:
                    listener(False)
        return self._by_name

    async def effective_permissions(self, user: User) -> frozenset[str]:
        return await self.permissions_of(
            user.account_type, user.roles, user.extra_permissions, user.domain_id
        )

    async def permissions_of(
        self, account_type: str, role_names: Iterable[str], extra: Iterable[str], domain_id: str
    ) -> frozenset[str]:
        """Everything granted by the account type, the roles and the extra permissions."""
        by_name = await self._roles_by_name()
        key = (account_type, tuple(role_names), tuple(extra), domain_id, id(by_name))
        cached = self._resolved.get(key)
        if cached is not None:
            return cached
        granted: set[str] = set(catalog.SELF_SERVICE)
        if account_type == "admin":
            granted |= catalog.ALL
        for name in key[1]:
            role = resolve_role(by_name.get(name, ()), domain_id)
            if role is not None:
                granted.update(role.permissions)
        granted.update(key[2])
        resolved = frozenset(granted & (catalog.GRANTABLE | catalog.SELF_SERVICE))
        if len(self._resolved) > 10_000:
            self._resolved.clear()
        self._resolved[key] = resolved
        return resolved

    async def primary_role(self, user: User) -> Role | None:
        by_name = await self._roles_by_name()
        names = [*user.roles, catalog.ROLE_FOR_ACCOUNT_TYPE.get(user.account_type, "")]
        for name in names:
            role = resolve_role(by_name.get(name, ()), user.domain_id)
            if role is not None:
                return role
        return None


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


def ensure_grantable(granter: frozenset[str], wanted: Iterable[str]) -> None:
    """Nobody hands out a permission they do not hold themselves.

    Administrators pass because they hold every permission, not because of their type:
    an administrator's API token narrowed to a few permissions grants only those.
    """
    missing = sorted(set(wanted) - granter)
    if missing:
        raise Forbidden(f"cannot grant a permission you do not hold: {missing[0]!r}")


def _visible(principal: Principal):  # noqa: ANN202 - SQLAlchemy condition
    """Built in, owned by the caller's subtree, or owned above it (roles its users hold)."""
    return or_(
        Role.domain_id.is_(None),
        in_scope(Role.domain_id, principal.domain_id),
        Role.domain_id.in_(domain_lineage(principal.domain_id)),
    )


async def list_roles(session: AsyncSession, principal: Principal) -> list[Role]:
    """Built-in roles, the roles of the caller's subtree and those of the domains above."""
    rows = await session.scalars(select(Role).where(_visible(principal)).order_by(Role.name))
    return list(rows.all())


async def get_role(session: AsyncSession, principal: Principal, role_id: str) -> Role:
    role = await session.scalar(select(Role).where(Role.id == role_id, _visible(principal)))
    if role is None:
        raise NotFound(f"role {role_id!r} not found")
    return role


async def _changeable_role(session: AsyncSession, principal: Principal, role_id: str) -> Role:
    """A custom role owned by the caller's domain or below it."""
    role = await get_role(session, principal, role_id)
    if role.builtin or role.domain_id is None:
        raise Forbidden("built-in roles cannot be changed; create a custom one")
    if not principal.sees_domain(role.domain_id):
        raise Forbidden("a role of a parent domain can only be changed there")
    return role


async def resolve_for_user(
    session: AsyncSession, principal: Principal, name: str, user_domain: str
) -> Role:
    """The role ``name`` as a user of ``user_domain`` would hold it, if the caller sees it."""
    candidates = (await session.scalars(select(Role).where(Role.name == name))).all()
    role = resolve_role(candidates, user_domain)
    if role is None or not principal.sees_domain(user_domain):
        raise InvalidInput(f"unknown role {name!r} for domain {user_domain!r}")
    return role


async def _ensure_name_free(session: AsyncSession, name: str, domain_id: str) -> None:
    """No role of this name is built in, above, at or below ``domain_id``."""
    same_name = (await session.scalars(select(Role).where(Role.name == name))).all()
    for role in same_name:
        if role.domain_id is None or domain_id.startswith(role.domain_id):
            raise Conflict(f"role {name!r} already exists")
        if role.domain_id.startswith(domain_id):
            raise Conflict(f"role {name!r} already exists in a subdomain")


async def create_role(
    session: AsyncSession,
    principal: Principal,
    *,
    name: str,
    permissions: Iterable[str] | None,
    profile: dict[str, list[str]] | None,
    things_group_scoped: bool,
    domain: str | None = None,
) -> Role:
    """A custom role owned by ``domain`` (default: the caller's own domain)."""
    domain_id = normalize_domain_id(domain) if domain else principal.domain_id
    if not principal.sees_domain(domain_id) or await session.get(Domain, domain_id) is None:
        raise NotFound(f"domain {domain_id!r} not found", code=4041)
    granted = _permissions_from_input(permissions, profile)
    ensure_grantable(principal.permissions, granted)
    await _ensure_name_free(session, name, domain_id)
    role = Role(
        id=f"UserProfileId_{uuid.uuid4()}",
        name=name,
        domain_id=domain_id,
        permissions=sorted(granted),
        things_group_scoped=things_group_scoped,
    )
    session.add(role)
    return role


async def update_role(
    session: AsyncSession,
    principal: Principal,
    role_id: str,
    *,
    permissions: Iterable[str] | None,
    profile: dict[str, list[str]] | None,
) -> Role:
    role = await _changeable_role(session, principal, role_id)
    granted = _permissions_from_input(permissions, profile)
    ensure_grantable(principal.permissions, granted)
    role.permissions = sorted(granted)
    role.cas += 1
    return role


async def delete_role(session: AsyncSession, principal: Principal, role_id: str) -> Role:
    role = await _changeable_role(session, principal, role_id)
    assert role.domain_id is not None
    holders = await session.scalars(
        select(User.roles).where(in_scope(User.domain_id, role.domain_id))
    )
    if any(role.name in names for names in holders.all()):
        raise Conflict(f"role {role.name!r} is still assigned to users")
    await session.delete(role)
    return role
