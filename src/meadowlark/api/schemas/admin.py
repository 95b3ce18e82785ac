"""Answers of the administration routes (``api.routers.admin``), built from the rows
``core.roles`` and ``core.users`` return."""

from __future__ import annotations

from pydantic import BaseModel

from meadowlark.auth import permissions as catalog
from meadowlark.store.models import Role, User


class RoleOut(BaseModel):
    id: str
    name: str
    realm: str
    domain: str | None
    builtin: bool
    thingsGroupScoped: bool
    permissions: list[str]
    profile: dict[str, list[str]]
    cas: str

    @classmethod
    def of(cls, role: Role) -> RoleOut:
        return cls(
            id=role.id,
            name=role.name,
            realm=role.realm,
            domain=role.domain_id,
            builtin=role.builtin,
            thingsGroupScoped=role.things_group_scoped,
            permissions=role.permissions,
            profile=catalog.collapse_to_profile(role.permissions),
            cas=str(role.cas),
        )


class UserSummary(BaseModel):
    userId: str
    login: str
    domain: str
    accountType: str
    active: bool
    roles: list[str]

    @classmethod
    def of(cls, user: User) -> UserSummary:
        return cls(
            userId=user.id,
            login=user.login,
            domain=user.domain_id,
            accountType=user.account_type,
            active=user.active,
            roles=user.roles,
        )
