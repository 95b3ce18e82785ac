"""User accounts: create, read, change, delete, search, sign-up and the first administrator."""

from __future__ import annotations

import re
import secrets
import uuid
from dataclasses import dataclass

from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import AsyncSession

from meadowlark.auth import permissions as catalog
from meadowlark.auth.passwords import hash_password
from meadowlark.auth.principal import Principal
from meadowlark.core import audit
from meadowlark.core.domains import ROOT, in_scope, new_domain, normalize_domain_id
from meadowlark.core.errors import Conflict, Forbidden, InvalidInput, NotFound
from meadowlark.core.identity import Identity, validate_password
from meadowlark.core.roles import (
    RoleCache,
    ensure_grantable,
    resolve_for_user,
    sync_builtin_roles,
)
from meadowlark.store.connectivity_models import ThingsGroup
from meadowlark.store.models import Domain, User

ADMIN_LOGIN = "admin"
ACCOUNT_TYPES = ("developer", "business", "admin")
_LOGIN = re.compile(r"^[A-Za-z0-9._@+-]{1,255}$")
_EMAIL = re.compile(r"^[^@\s]+@[^@\s]+\.[^@\s]+$")


def validate_login(login: str) -> str:
    if not _LOGIN.fullmatch(login):
        raise InvalidInput("login may use letters, digits and . _ @ + - (1 to 255 characters)")
    return login


def validate_email(email: str) -> str:
    if email and (len(email) > 320 or not _EMAIL.fullmatch(email)):
        raise InvalidInput(f"invalid email address {email!r}")
    return email


@dataclass(frozen=True, slots=True)
class NewUser:
    login: str
    password: str
    domain: str
    email: str = ""
    account_type: str = "developer"
    email_verified: bool = False
    tos_accepted: bool = False
    roles: tuple[str, ...] = ()
    permissions: tuple[str, ...] = ()
    things_group_ids: tuple[str, ...] = ()


@dataclass(frozen=True, slots=True)
class UserChanges:
    email_verified: bool | None = None
    enabled: bool | None = None
    domain: str | None = None
    password: str | None = None
    tos_accepted: bool | None = None
    roles: tuple[str, ...] | None = None
    permissions: tuple[str, ...] | None = None
    things_group_ids: tuple[str, ...] | None = None
    """None: unchanged; empty: no longer limited to Things groups."""


MAX_THINGS_GROUPS = 100


async def check_things_groups(
    session: AsyncSession, actor: Principal, group_ids: tuple[str, ...], user_domain: str
) -> list[str]:
    """The Things groups a user of ``user_domain`` may be limited to, as the actor sets them.

    Each group must be one the actor sees (its subtree, and its own groups if it is limited
    to some) and one the user's domain sees; a caller limited to groups cannot lift the
    limit (an empty list would show the user every Thing of its domain).
    """
    ids = list(dict.fromkeys(group_ids))
    if len(ids) > MAX_THINGS_GROUPS:
        raise InvalidInput(f"at most {MAX_THINGS_GROUPS} Things groups per user")
    if not ids:
        if actor.things_group_ids:
            raise Forbidden("a user limited to Things groups only gives users some of them")
        return ids
    for group_id in ids:
        if not isinstance(group_id, str) or not group_id or len(group_id) > 128:
            raise InvalidInput("each Things group id is 1 to 128 characters")
    condition = in_scope(ThingsGroup.domain_id, actor.domain_id)
    if actor.things_group_ids:
        condition = condition & ThingsGroup.id.in_(actor.things_group_ids)
    rows = await session.execute(
        select(ThingsGroup.id, ThingsGroup.domain_id).where(ThingsGroup.id.in_(ids), condition)
    )
    found = {row.id: row.domain_id for row in rows}
    for group_id in ids:
        domain_id = found.get(group_id)
        if domain_id is None or not domain_id.startswith(user_domain):
            raise NotFound(f"Things group {group_id[:80]!r} not found", code=4041)
    return ids


class Users:
    def __init__(self, identity: Identity, roles: RoleCache) -> None:
        self.identity = identity
        self.roles = roles

    async def _check_grants(
        self,
        session: AsyncSession,
        actor: Principal,
        roles: tuple[str, ...],
        permissions: tuple[str, ...],
        user_domain: str,
    ) -> None:
        """The actor may hand these roles and permissions to a user of ``user_domain``."""
        for name in roles:
            role = await resolve_for_user(session, actor, name, user_domain)
            ensure_grantable(actor.permissions, role.permissions)
        try:
            catalog.validate_names(permissions)
        except catalog.UnknownPermissionError as exc:
            raise InvalidInput(str(exc)) from exc
        ensure_grantable(actor.permissions, permissions)

    async def create(self, session: AsyncSession, actor: Principal, new: NewUser) -> User:
        validate_login(new.login)
        validate_email(new.email)
        validate_password(new.password)
        domain_id = normalize_domain_id(new.domain)
        if not actor.sees_domain(domain_id) or await session.get(Domain, domain_id) is None:
            raise NotFound(f"domain {domain_id!r} not found", code=4041)
        if new.account_type not in ACCOUNT_TYPES:
            raise InvalidInput(f"account type must be one of {', '.join(ACCOUNT_TYPES)}")
        if new.account_type == "admin":
            # An administrator holds every permission: only a caller holding them all
            # (not an administrator's narrowed API token) creates one.
            if not actor.is_admin:
                raise Forbidden("only administrators create administrators")
            ensure_grantable(actor.permissions, catalog.GRANTABLE)
        # The account type's default role is a grant too (a Developer holds 47 permissions).
        roles = new.roles or (catalog.ROLE_FOR_ACCOUNT_TYPE[new.account_type],)
        await self._check_grants(session, actor, roles, new.permissions, domain_id)
        group_ids = await check_things_groups(session, actor, new.things_group_ids, domain_id)
        if await session.scalar(select(User.id).where(User.login == new.login)) is not None:
            raise Conflict(f"user {new.login!r} already exists")
        user = User(
            id=f"UserId_{uuid.uuid4()}",
            login=new.login,
            email=new.email,
            password_hash=await hash_password(new.password),
            domain_id=domain_id,
            account_type=new.account_type,
            email_verified=new.email_verified,
            tos_accepted=new.tos_accepted,
            roles=list(roles),
            extra_permissions=sorted(set(new.permissions)),
            things_group_ids=group_ids,
        )
        session.add(user)
        audit.record(
            session,
            "user.created",
            actor=actor.login,
            subject=new.login,
            domain_id=domain_id,
            roles=user.roles,
            permissions=user.extra_permissions,
            things_group_ids=group_ids,
        )
        return user

    async def get(self, session: AsyncSession, actor: Principal, login: str) -> User:
        user = await session.scalar(
            select(User).where(User.login == login, in_scope(User.domain_id, actor.domain_id))
        )
        if user is None:
            raise NotFound(f"user {login!r} not found", code=4040)
        return user

    async def _check_manageable(self, actor: Principal, user: User) -> None:
        """Nobody changes or deletes an account that holds permissions they do not hold."""
        if user.id == actor.user_id:
            return
        if await self.roles.effective_permissions(user) - actor.permissions:
            raise Forbidden("you cannot manage an account with permissions you do not hold")
        if actor.things_group_ids and (
            not user.things_group_ids or set(user.things_group_ids) - set(actor.things_group_ids)
        ):
            raise Forbidden("you cannot manage an account that sees Things you do not see")

    async def update(
        self, session: AsyncSession, actor: Principal, login: str, changes: UserChanges
    ) -> User:
        user = await self.get(session, actor, login)
        await self._check_manageable(actor, user)
        # Roles, permissions, Things groups and domain are part of the cached caller.
        self.identity.invalidate_after_commit(session, user.id)
        revoke_reason: str | None = None
        if changes.domain is not None:
            domain_id = normalize_domain_id(changes.domain)
            if not actor.sees_domain(domain_id) or await session.get(Domain, domain_id) is None:
                raise NotFound(f"domain {domain_id!r} not found", code=4041)
            user.domain_id = domain_id
            revoke_reason = "domain_changed"
        if changes.password is not None:
            user.password_hash = await hash_password(validate_password(changes.password))
            revoke_reason = "password_changed"
        if changes.enabled is not None and changes.enabled != user.active:
            if user.id == actor.user_id and not changes.enabled:
                raise Forbidden("you cannot disable your own account")
            user.active = changes.enabled
            if not changes.enabled:
                revoke_reason = "user_disabled"
        if changes.email_verified is not None:
            user.email_verified = changes.email_verified
        if changes.tos_accepted is not None:
            user.tos_accepted = changes.tos_accepted
        if changes.domain is not None and changes.roles is None:
            # Role names resolve per domain: the roles kept must exist in the new one too.
            await self._check_grants(session, actor, tuple(user.roles), (), user.domain_id)
        if changes.roles is not None or changes.permissions is not None:
            roles = changes.roles if changes.roles is not None else tuple(user.roles)
            extra = changes.permissions if changes.permissions is not None else ()
            await self._check_grants(session, actor, roles, extra, user.domain_id)
            if changes.roles is not None:
                user.roles = list(changes.roles)
            if changes.permissions is not None:
                user.extra_permissions = sorted(set(changes.permissions))
            audit.record(
                session,
                "permissions.changed",
                actor=actor.login,
                subject=user.login,
                domain_id=user.domain_id,
                roles=user.roles,
                permissions=user.extra_permissions,
            )
        if changes.things_group_ids is not None or (
            changes.domain is not None and user.things_group_ids
        ):
            wanted = (
                changes.things_group_ids
                if changes.things_group_ids is not None
                else tuple(user.things_group_ids)
            )
            if user.id == actor.user_id and changes.things_group_ids is not None:
                if set(wanted) != set(user.things_group_ids):
                    raise Forbidden("you cannot change your own Things groups")
            user.things_group_ids = await check_things_groups(
                session, actor, wanted, user.domain_id
            )
            audit.record(
                session,
                "things_groups.changed",
                actor=actor.login,
                subject=user.login,
                domain_id=user.domain_id,
                things_group_ids=user.things_group_ids,
            )
        if revoke_reason:
            self.identity.revoke_all(session, user, actor=actor.login, reason=revoke_reason)
            await self.identity.revoke_user_sessions(session, user)
        audit.record(
            session, "user.updated", actor=actor.login, subject=user.login, domain_id=user.domain_id
        )
        return user

    async def delete(self, session: AsyncSession, actor: Principal, login: str) -> None:
        user = await self.get(session, actor, login)
        if user.id == actor.user_id:
            raise Forbidden("you cannot delete your own account")
        await self._check_manageable(actor, user)
        self.identity.invalidate_after_commit(session, user.id)
        await session.delete(user)
        audit.record(
            session, "user.deleted", actor=actor.login, subject=login, domain_id=user.domain_id
        )

    async def search(
        self,
        session: AsyncSession,
        actor: Principal,
        *,
        username: str | None,
        email: str | None,
        domain: str | None,
        active_only: bool,
        limit: int = 1000,
    ) -> list[str]:
        statement = select(User.login).where(in_scope(User.domain_id, actor.domain_id))
        if username:
            statement = statement.where(
                func.lower(User.login).contains(username.lower(), autoescape=True)
            )
        if email:
            statement = statement.where(func.lower(User.email) == email.lower())
        if domain:
            statement = statement.where(User.domain_id == normalize_domain_id(domain))
        if active_only:
            statement = statement.where(User.active.is_(True))
        rows = await session.scalars(statement.order_by(User.login).limit(limit))
        return list(rows.all())

    async def list_page(
        self, session: AsyncSession, actor: Principal, *, limit: int, after: str | None
    ) -> list[User]:
        """Users of the actor's domain subtree ordered by login, the page after ``after``."""
        statement = select(User).where(in_scope(User.domain_id, actor.domain_id))
        if after:
            statement = statement.where(User.login > after)
        rows = await session.scalars(statement.order_by(User.login).limit(limit))
        return list(rows.all())

    async def sign_up(
        self, session: AsyncSession, *, login: str, email: str, password: str, client_ip: str
    ) -> User:
        """A free Developer account in a fresh domain of its own under /root/."""
        validate_login(login)
        if not email:
            raise InvalidInput("email is required")
        validate_email(email)
        validate_password(password)
        if await session.scalar(select(User.id).where(User.login == login)) is not None:
            raise Conflict(f"user {login!r} already exists")
        slug = re.sub(r"[^a-z0-9-]+", "-", login.lower()).strip("-")[:40] or "user"
        domain_id = f"{ROOT}{slug}/"
        while await session.get(Domain, domain_id) is not None:
            domain_id = f"{ROOT}{slug}-{secrets.token_hex(3)}/"
        session.add(new_domain(domain_id, f"Developer account of {login}"))
        user = User(
            id=f"UserId_{uuid.uuid4()}",
            login=login,
            email=email,
            password_hash=await hash_password(password),
            domain_id=domain_id,
            account_type="developer",
            roles=["Developer"],
        )
        session.add(user)
        audit.record(
            session,
            "user.signed_up",
            actor=login,
            subject=login,
            domain_id=domain_id,
            client_ip=client_ip,
        )
        return user


async def bootstrap(session: AsyncSession, admin_password: str | None) -> str | None:
    """Create the root domain, built-in roles and first administrator if missing.

    Returns the administrator's generated password when one had to be generated.
    """
    if await session.get(Domain, ROOT) is None:
        session.add(new_domain(ROOT, "Root domain"))
    await sync_builtin_roles(session)
    await session.flush()
    if await session.scalar(select(User.id).where(User.login == ADMIN_LOGIN)) is not None:
        await session.commit()
        return None
    generated = None if admin_password else secrets.token_urlsafe(18)
    session.add(
        User(
            id=f"UserId_{uuid.uuid4()}",
            login=ADMIN_LOGIN,
            password_hash=await hash_password(admin_password or generated or ""),
            domain_id=ROOT,
            account_type="admin",
            roles=["Admin"],
            email_verified=True,
            tos_accepted=True,
        )
    )
    audit.record(session, "user.created", actor="system", subject=ADMIN_LOGIN, domain_id=ROOT)
    await session.commit()
    return generated
