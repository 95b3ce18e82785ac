"""Administration: audit log, roles (user profiles), service accounts."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Any

from fastapi import APIRouter, Query, Response
from pydantic import AwareDatetime, BaseModel, ConfigDict, Field

from meadowlark.api.deps import RuntimeDep, SessionDep, require
from meadowlark.api.schemas.admin import RoleOut, UserSummary
from meadowlark.auth.principal import Principal
from meadowlark.core import audit, roles

router = APIRouter(prefix="/api/admin", tags=["admin"])


class AuditEventOut(BaseModel):
    id: int
    at: datetime
    event: str
    actor: str | None
    subject: str | None
    domain: str | None
    clientIp: str | None
    details: dict[str, Any]


@router.get("/audit")
async def list_audit_events(
    session: SessionDep,
    principal: Annotated[Principal, require("admin:GET /api/admin/audit")],
    event: Annotated[str | None, Query(max_length=64)] = None,
    actor: Annotated[str | None, Query(max_length=255)] = None,
    since: AwareDatetime | None = None,
    beforeId: Annotated[int | None, Query(ge=1, le=2**63 - 1)] = None,
    limit: Annotated[int, Query(ge=1, le=1000)] = 100,
) -> list[AuditEventOut]:
    """Security events of your domain subtree, newest first (page with ``beforeId``)."""
    rows = await audit.query(
        session,
        scope=principal.domain_id,
        event=event,
        actor=actor,
        since=since,
        limit=limit,
        before_id=beforeId,
    )
    return [
        AuditEventOut(
            id=r.id,
            at=r.at,
            event=r.event,
            actor=r.actor,
            subject=r.subject,
            domain=r.domain_id,
            clientIp=r.client_ip,
            details=r.details,
        )
        for r in rows
    ]


class RoleIn(BaseModel):
    """A role as a permission list, a Monogoto-style profile map, or both (union)."""

    model_config = ConfigDict(extra="forbid")
    name: str = Field(min_length=1, max_length=128)
    permissions: list[str] = Field(default_factory=list, max_length=1000)
    profile: dict[str, list[str]] | None = Field(default=None, max_length=200)
    thingsGroupScoped: bool = False
    domain: str | None = Field(
        default=None, max_length=512, description="Owning domain; default: your own"
    )


class RoleUpdate(BaseModel):
    model_config = ConfigDict(extra="forbid")
    permissions: list[str] = Field(default_factory=list, max_length=1000)
    profile: dict[str, list[str]] | None = Field(default=None, max_length=200)


@router.get("/roles")
async def list_roles(
    session: SessionDep,
    principal: Annotated[Principal, require("admin:GET /api/admin/roles")],
) -> list[RoleOut]:
    """Built-in roles and your subtree's roles (= user profiles), in both notations."""
    return [RoleOut.of(r) for r in await roles.list_roles(session, principal)]


@router.post("/roles", status_code=201)
async def create_role(
    body: RoleIn,
    runtime: RuntimeDep,
    session: SessionDep,
    principal: Annotated[Principal, require("admin:POST /api/admin/roles")],
) -> RoleOut:
    """A custom role of your domain (or one below it) made of permissions you hold."""
    role = await roles.create_role(
        session,
        principal,
        name=body.name,
        permissions=body.permissions,
        profile=body.profile,
        things_group_scoped=body.thingsGroupScoped,
        domain=body.domain,
    )
    audit.record(
        session,
        "permissions.changed",
        actor=principal.login,
        subject=f"role:{body.name}",
        domain_id=role.domain_id,
        permissions=role.permissions,
    )
    await session.commit()
    runtime.roles.invalidate()
    return RoleOut.of(role)


@router.get("/roles/{role_id}")
async def get_role(
    role_id: str,
    session: SessionDep,
    principal: Annotated[Principal, require("admin:GET /api/admin/roles/{id}")],
) -> RoleOut:
    """One role: built in, or of your subtree."""
    return RoleOut.of(await roles.get_role(session, principal, role_id))


@router.put("/roles/{role_id}")
async def update_role(
    role_id: str,
    body: RoleUpdate,
    runtime: RuntimeDep,
    session: SessionDep,
    principal: Annotated[Principal, require("admin:PUT /api/admin/roles/{id}")],
) -> RoleOut:
    """Replace a custom role's permissions."""
    role = await roles.update_role(
        session, principal, role_id, permissions=body.permissions, profile=body.profile
    )
    audit.record(
        session,
        "permissions.changed",
        actor=principal.login,
        subject=f"role:{role.name}",
        domain_id=role.domain_id,
        permissions=role.permissions,
    )
    await session.commit()
    runtime.roles.invalidate()
    return RoleOut.of(role)


@router.delete("/roles/{role_id}", status_code=204, response_class=Response)
async def delete_role(
    role_id: str,
    runtime: RuntimeDep,
    session: SessionDep,
    principal: Annotated[Principal, require("admin:DELETE /api/admin/roles/{id}")],
) -> Response:
    """Delete a custom role of your subtree that nobody holds."""
    role = await roles.delete_role(session, principal, role_id)
    audit.record(
        session,
        "permissions.changed",
        actor=principal.login,
        subject=f"role:{role.name}",
        domain_id=role.domain_id,
        deleted=True,
    )
    await session.commit()
    runtime.roles.invalidate()
    return Response(status_code=204)


@router.get("/users")
async def list_users(
    runtime: RuntimeDep,
    session: SessionDep,
    principal: Annotated[Principal, require("admin:GET /api/admin/users")],
    limit: Annotated[int, Query(ge=1, le=1000)] = 100,
    after: Annotated[str | None, Query(max_length=255)] = None,
) -> list[UserSummary]:
    """Users of your domain subtree, ordered by login (page with ``after``)."""
    users = await runtime.users.list_page(session, principal, limit=limit, after=after)
    return [UserSummary.of(user) for user in users]


class ServiceAccountIn(BaseModel):
    model_config = ConfigDict(extra="forbid")
    clientId: str = Field(min_length=1, max_length=128, pattern=r"^[A-Za-z0-9._:-]+$")
    realm: str = Field(min_length=1, max_length=128, pattern=r"^[A-Za-z0-9._-]+$")
    login: str = Field(min_length=1, max_length=255)


class ServiceAccountOut(BaseModel):
    clientId: str
    realm: str
    login: str
    createdAt: datetime


class ServiceAccountCreated(ServiceAccountOut):
    clientSecret: str


@router.get("/service-accounts")
async def list_service_accounts(
    runtime: RuntimeDep,
    principal: Annotated[Principal, require("admin:GET /api/admin/service-accounts")],
) -> list[ServiceAccountOut]:
    """Service accounts acting as users of your domain subtree."""
    return [
        ServiceAccountOut(clientId=a.client_id, realm=a.realm, login=login, createdAt=a.created_at)
        for a, login in await runtime.identity.list_service_accounts(principal)
    ]


@router.post("/service-accounts", status_code=201)
async def create_service_account(
    body: ServiceAccountIn,
    runtime: RuntimeDep,
    principal: Annotated[Principal, require("admin:POST /api/admin/service-accounts")],
) -> ServiceAccountCreated:
    """An OAuth2 client acting as a user whose permissions you hold; the secret is shown once."""
    secret, account = await runtime.identity.create_service_account(
        principal, realm=body.realm, client_id=body.clientId, login=body.login
    )
    return ServiceAccountCreated(
        clientId=account.client_id,
        realm=account.realm,
        login=body.login,
        createdAt=account.created_at,
        clientSecret=secret,
    )


@router.delete("/service-accounts/{client_id}", status_code=204, response_class=Response)
async def delete_service_account(
    client_id: str,
    runtime: RuntimeDep,
    principal: Annotated[Principal, require("admin:DELETE /api/admin/service-accounts/{clientId}")],
) -> Response:
    """Delete a service account and revoke the tokens it was issued."""
    await runtime.identity.delete_service_account(principal, client_id)
    return Response(status_code=204)
