"""Coiote v3 domains API. Domain ids contain slashes (``/root/acme/``), hence ``:path``."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Query, Response
from pydantic import BaseModel, ConfigDict, Field

from meadowlark.api.deps import SessionDep, require
from meadowlark.auth.principal import Principal
from meadowlark.core import domains

router = APIRouter(prefix="/api/coiotedm/v3", tags=["domains"])


class DomainPublic(BaseModel):
    model_config = ConfigDict(extra="forbid")
    id: str = Field(min_length=1, max_length=512)
    description: str | None = Field(default=None, max_length=4096)


class DomainUpdateRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")
    newDescription: str | None = Field(default=None, max_length=4096)


class StringResult(BaseModel):
    result: str


@router.get("/domains")
async def list_domains(
    session: SessionDep,
    principal: Annotated[Principal, require("GET domains")],
    searchCriteria: Annotated[str | None, Query(max_length=4096)] = None,
) -> list[str]:
    """Ids of your domain and every domain below it, filtered by ``searchCriteria``."""
    return await domains.list_domains(session, principal, searchCriteria)


@router.post("/domains", status_code=201)
async def create_domain(
    body: DomainPublic,
    session: SessionDep,
    principal: Annotated[Principal, require("POST domains")],
) -> StringResult:
    """Create a subdomain of your domain."""
    domain = await domains.create_domain(session, principal, body.id, body.description or "")
    await session.commit()
    return StringResult(result=domain.id)


@router.get("/domains/{domain_id:path}")
async def get_domain(
    domain_id: str,
    session: SessionDep,
    principal: Annotated[Principal, require("GET domains/{id}")],
) -> DomainPublic:
    """One domain."""
    domain = await domains.get_domain(session, principal, domain_id)
    return DomainPublic(id=domain.id, description=domain.description)


@router.put("/domains/{domain_id:path}", status_code=204, response_class=Response)
async def update_domain(
    domain_id: str,
    body: DomainUpdateRequest,
    session: SessionDep,
    principal: Annotated[Principal, require("PUT domains/{id}")],
) -> Response:
    """Change a domain's description."""
    await domains.update_domain(session, principal, domain_id, body.newDescription or "")
    await session.commit()
    return Response(status_code=204)


@router.delete("/domains/{domain_id:path}", status_code=204, response_class=Response)
async def delete_domain(
    domain_id: str,
    session: SessionDep,
    principal: Annotated[Principal, require("DELETE domains/{id}")],
) -> Response:
    """Delete an empty domain (no subdomains, no users)."""
    await domains.delete_domain(session, principal, domain_id)
    await session.commit()
    return Response(status_code=204)
