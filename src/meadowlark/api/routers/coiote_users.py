"""Coiote v3 users API, as python-coiote's ``Users`` module calls it."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated

from fastapi import APIRouter, Query, Response
from pydantic import BaseModel, ConfigDict, Field

from meadowlark.api.deps import RuntimeDep, SessionDep, require
from meadowlark.auth.principal import Principal
from meadowlark.core.users import NewUser, UserChanges

BASE = "/api/coiotedm/v3"
GroupIds = list[Annotated[str, Field(min_length=1, max_length=128)]]
router = APIRouter(prefix=BASE, tags=["users"])


class UserCreateRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")
    login: str = Field(min_length=1, max_length=255)
    email: str = Field(default="", max_length=320)
    password: str = Field(min_length=1, max_length=1024)
    domain: str = Field(min_length=1, max_length=512)
    emailVerified: bool = False
    tosAccepted: bool = False
    roles: list[str] = Field(default_factory=list, max_length=100)
    permissions: list[str] = Field(default_factory=list, max_length=1000)
    accountType: str = "developer"
    thingsGroupIds: GroupIds = Field(default_factory=list, max_length=100)
    """Things groups (console SIM groups) the user is limited to; empty: all of its domain's."""


class UserPatchRequest(BaseModel):
    """Empty ``roles``/``permissions`` lists mean "unchanged": python-coiote always sends them."""

    model_config = ConfigDict(extra="forbid")
    emailVerified: bool | None = None
    userEnabled: bool | None = None
    domain: str | None = Field(default=None, max_length=512)
    password: str | None = Field(default=None, max_length=1024)
    tosAccepted: bool | None = None
    roles: list[str] = Field(default_factory=list, max_length=100)
    permissions: list[str] = Field(default_factory=list, max_length=1000)
    thingsGroupIds: GroupIds | None = Field(default=None, max_length=100)
    """Absent or null: unchanged; an empty list lifts the limit to Things groups."""


class UserPublic(BaseModel):
    userId: str
    login: str
    email: str
    active: bool
    superUser: bool
    staff: bool
    domain: str
    password: str = ""
    expirationDate: datetime | None
    creationDate: datetime | None
    roles: list[str]
    permissions: list[str]
    fullName: str
    properties: dict[str, str]
    accessSchedule: str | None = None
    securityPolicyId: str | None = None
    emailVerified: bool
    tosAccepted: bool
    twoFactorAuthentication: bool
    thingsGroupIds: list[str] = Field(default_factory=list)


class UserCreated(BaseModel):
    userId: str
    login: str


@router.post("/users", status_code=201)
async def create_user(
    body: UserCreateRequest,
    runtime: RuntimeDep,
    session: SessionDep,
    principal: Annotated[Principal, require("POST users")],
) -> UserCreated:
    """Create a user in your domain or below it."""
    user = await runtime.users.create(
        session,
        principal,
        NewUser(
            login=body.login,
            password=body.password,
            domain=body.domain,
            email=body.email,
            account_type=body.accountType,
            email_verified=body.emailVerified,
            tos_accepted=body.tosAccepted,
            roles=tuple(body.roles),
            permissions=tuple(body.permissions),
            things_group_ids=tuple(body.thingsGroupIds),
        ),
    )
    await session.commit()
    runtime.roles.invalidate()
    return UserCreated(userId=user.id, login=user.login)


@router.get("/users/search/usernames")
async def search_usernames(
    runtime: RuntimeDep,
    session: SessionDep,
    principal: Annotated[Principal, require("GET users/search/usernames")],
    username: Annotated[str | None, Query(max_length=255)] = None,
    email: Annotated[str | None, Query(max_length=320)] = None,
    domain: Annotated[str | None, Query(max_length=512)] = None,
    isActiveOnly: bool = False,
) -> list[str]:
    """Logins matching a login substring, an email, a domain, visible to you."""
    return await runtime.users.search(
        session, principal, username=username, email=email, domain=domain, active_only=isActiveOnly
    )


@router.get("/users/{login}")
async def get_user(
    login: str,
    runtime: RuntimeDep,
    session: SessionDep,
    principal: Annotated[Principal, require("GET users/{id}")],
) -> UserPublic:
    """One user (the password is never returned)."""
    user = await runtime.users.get(session, principal, login)
    return UserPublic(
        userId=user.id,
        login=user.login,
        email=user.email,
        active=user.active,
        superUser=user.account_type == "admin",
        staff=user.account_type == "admin",
        domain=user.domain_id,
        expirationDate=user.expiration_date,
        creationDate=user.created_at,
        roles=list(user.roles),
        permissions=list(user.extra_permissions),
        fullName=user.full_name,
        properties={str(k): str(v) for k, v in user.properties.items()},
        emailVerified=user.email_verified,
        tosAccepted=user.tos_accepted,
        twoFactorAuthentication=user.totp_enabled,
        thingsGroupIds=list(user.things_group_ids or ()),
    )


@router.patch("/users/{login}", status_code=204, response_class=Response)
async def update_user(
    login: str,
    body: UserPatchRequest,
    runtime: RuntimeDep,
    session: SessionDep,
    principal: Annotated[Principal, require("PATCH users/{id}")],
) -> Response:
    """Change a user; a new password, a new domain or disabling revokes its tokens."""
    await runtime.users.update(
        session,
        principal,
        login,
        UserChanges(
            email_verified=body.emailVerified,
            enabled=body.userEnabled,
            domain=body.domain,
            password=body.password,
            tos_accepted=body.tosAccepted,
            roles=tuple(body.roles) or None,
            permissions=tuple(body.permissions) or None,
            things_group_ids=(None if body.thingsGroupIds is None else tuple(body.thingsGroupIds)),
        ),
    )
    await session.commit()
    return Response(status_code=204)


@router.delete("/users/{login}", status_code=204, response_class=Response)
async def delete_user(
    login: str,
    runtime: RuntimeDep,
    session: SessionDep,
    principal: Annotated[Principal, require("DELETE users/{id}")],
) -> Response:
    """Delete a user and everything that authenticates as it."""
    await runtime.users.delete(session, principal, login)
    await session.commit()
    return Response(status_code=204)
