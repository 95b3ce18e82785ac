"""Domains: the tenancy tree. Every query is limited to the caller's subtree."""

from __future__ import annotations

import re
import uuid

from sqlalchemy import exists, select
from sqlalchemy.ext.asyncio import AsyncSession

from meadowlark.auth.principal import Principal
from meadowlark.core import audit
from meadowlark.core.errors import Conflict, Forbidden, InvalidInput, NotFound
from meadowlark.core.search_criteria import Field, compile_criteria
from meadowlark.store.models import Domain, User

ROOT = "/root/"
_SEGMENT = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,62}$")
MAX_DEPTH = 16


def normalize_domain_id(text: str) -> str:
    """``root/acme`` or ``/root/acme/`` -> ``/root/acme/``; refuses malformed ids."""
    segments = [s for s in text.strip().split("/") if s]
    if not segments or segments[0] != "root":
        raise InvalidInput(f"domain id must start with /root/: {text!r}")
    if len(segments) > MAX_DEPTH:
        raise InvalidInput("domain tree too deep")
    for segment in segments[1:]:
        if not _SEGMENT.fullmatch(segment):
            raise InvalidInput(f"invalid domain name segment {segment!r}")
    return "/" + "/".join(segments) + "/"


def parent_of(domain_id: str) -> str | None:
    if domain_id == ROOT:
        return None
    return domain_id[: domain_id.rstrip("/").rfind("/") + 1]


def domain_lineage(domain_id: str) -> list[str]:
    """The domain and its ancestors, nearest first: ``/root/a/b/``, ``/root/a/``, ``/root/``."""
    chain: list[str] = []
    current: str | None = domain_id
    while current is not None:
        chain.append(current)
        current = parent_of(current)
    return chain


def in_scope(column, scope: str):  # noqa: ANN001, ANN201 - SQLAlchemy column expression
    """SQL condition: ``column`` is ``scope`` or below it (LIKE wildcards escaped)."""
    return column.startswith(scope, autoescape=True)


def new_domain(domain_id: str, description: str = "") -> Domain:
    return Domain(
        id=domain_id,
        description=description,
        customer_id=f"cid_{uuid.uuid4()}",
        organization_id=f"OrganizationId_{uuid.uuid4()}",
    )


SEARCHABLE = {
    "id": Field(Domain.id),
    "description": Field(Domain.description),
    "creationTime": Field(Domain.created_at, "datetime"),
}


async def list_domains(
    session: AsyncSession, principal: Principal, search_criteria: str | None = None
) -> list[str]:
    rows = await session.scalars(
        select(Domain.id)
        .where(
            in_scope(Domain.id, principal.domain_id), compile_criteria(search_criteria, SEARCHABLE)
        )
        .order_by(Domain.id)
    )
    return list(rows.all())


async def get_domain(session: AsyncSession, principal: Principal, domain_id: str) -> Domain:
    normalized = normalize_domain_id(domain_id)
    domain = await session.scalar(
        select(Domain).where(Domain.id == normalized, in_scope(Domain.id, principal.domain_id))
    )
    if domain is None:
        raise NotFound(f"domain {normalized!r} not found", code=4041)
    return domain


async def own_domain(session: AsyncSession, user: User) -> Domain | None:
    """The user's own domain (no scope check: it is theirs); None if it was deleted."""
    return await session.get(Domain, user.domain_id)


async def create_domain(
    session: AsyncSession, principal: Principal, domain_id: str, description: str
) -> Domain:
    normalized = normalize_domain_id(domain_id)
    parent = parent_of(normalized)
    if parent is None or not principal.sees_domain(parent):
        raise Forbidden("a domain can only be created inside your own domain")
    if await session.get(Domain, parent) is None:
        raise NotFound(f"parent domain {parent!r} not found", code=4041)
    if await session.get(Domain, normalized) is not None:
        raise Conflict(f"domain {normalized!r} already exists")
    domain = new_domain(normalized, description)
    session.add(domain)
    audit.record(
        session, "domain.created", actor=principal.login, subject=normalized, domain_id=normalized
    )
    return domain


async def update_domain(
    session: AsyncSession, principal: Principal, domain_id: str, description: str
) -> Domain:
    domain = await get_domain(session, principal, domain_id)
    domain.description = description
    return domain


async def delete_domain(session: AsyncSession, principal: Principal, domain_id: str) -> None:
    domain = await get_domain(session, principal, domain_id)
    if domain.id == principal.domain_id:
        raise Forbidden("you cannot delete your own domain")
    has_children = await session.scalar(
        select(exists().where(Domain.id != domain.id, in_scope(Domain.id, domain.id)))
    )
    has_users = await session.scalar(select(exists().where(User.domain_id == domain.id)))
    if has_children or has_users:
        raise Conflict(f"domain {domain.id!r} is not empty (subdomains or users)")
    await session.delete(domain)
    audit.record(
        session, "domain.deleted", actor=principal.login, subject=domain.id, domain_id=domain.id
    )
