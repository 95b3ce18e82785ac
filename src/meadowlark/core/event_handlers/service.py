"""Event handlers of a domain: create, list, read, update, delete (domain-scoped).

A handler belongs to one domain and gets the events of devices in that domain and below
it. Its secrets are sealed with ``SecretBox`` (purpose ``HANDLER_PURPOSE``, context: the
handler id and field) and shown masked; the HMAC signing secret is generated at creation
and returned only then.
"""

from __future__ import annotations

import secrets
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import AsyncSession

from meadowlark.auth.principal import Principal
from meadowlark.config import Settings
from meadowlark.core import audit
from meadowlark.core.domains import in_scope, normalize_domain_id
from meadowlark.core.errors import InvalidInput, NotFound
from meadowlark.core.event_handlers.rules import (
    HANDLER_TYPES,
    MAX_HANDLERS_PER_DOMAIN,
    TOO_MANY_HANDLERS,
    check_connection,
    check_handler_id,
    masked,
    new_handler_id,
    parse_filter,
    secret_fields,
    with_fields,
)
from meadowlark.core.secret_box import SecretBox, derive_key
from meadowlark.store.event_handler_models import EventHandlerRow
from meadowlark.store.models import Domain

HANDLER_PURPOSE = b"meadowlark event handler secret v1"
NOT_FOUND_CODE = 4041


def handler_box(settings: Settings) -> SecretBox:
    """The box of handler secrets: derived from the secret key, for this purpose only."""
    return SecretBox(derive_key(settings.signing_key, HANDLER_PURPOSE))


@dataclass(frozen=True, slots=True)
class HandlerDraft:
    """A handler as the API gives it: checked and normalised, secrets in clear."""

    type: str
    name: str
    enabled: bool
    description: str
    filter: dict[str, Any]
    connection: dict[str, Any]


def public_view(row: EventHandlerRow, connection: Mapping[str, Any]) -> dict[str, Any]:
    """The Coiote ``EventHandler`` of a row (``connection`` opened, shown masked)."""
    return {
        "id": row.id,
        "type": row.type,
        "name": row.name,
        "enabled": row.enabled,
        "description": row.description,
        "domain": row.domain_id,
        "filter": row.filter,
        "connectionConfig": masked(row.type, connection),
    }


def seal_connection(
    box: SecretBox, handler_id: str, kind: str, connection: Mapping[str, Any]
) -> dict[str, Any]:
    found = secret_fields(kind, connection)
    return with_fields(
        connection,
        {name: box.seal(value.encode(), f"{handler_id}:{name}") for name, value in found.items()},
    )


def open_connection(box: SecretBox, row: EventHandlerRow) -> dict[str, Any]:
    sealed = secret_fields(row.type, row.connection)
    return with_fields(
        row.connection,
        {name: box.open(value, f"{row.id}:{name}").decode() for name, value in sealed.items()},
    )


def open_signing_secret(box: SecretBox, row: EventHandlerRow) -> str:
    return box.open(row.signing_secret, f"{row.id}:signing").decode()


def draft(
    kind: str,
    body: Mapping[str, Any],
    *,
    block_private: bool,
    previous: HandlerDraft | None = None,
) -> HandlerDraft:
    """A full (create, test) or partial (``previous`` given: update) body, checked."""
    if kind not in HANDLER_TYPES:
        raise InvalidInput(f"handler type must be one of {', '.join(HANDLER_TYPES)}")
    if previous is not None and previous.type != kind:
        raise InvalidInput(f"this handler is a {previous.type} handler, not {kind}")

    def given(name: str, default: Any) -> Any:
        value = body.get(name)
        return default if value is None else value

    name = given("name", previous.name if previous else None)
    if not isinstance(name, str) or not name.strip() or len(name) > 255:
        raise InvalidInput("name must be 1..255 characters")
    description = given("description", previous.description if previous else "")
    if not isinstance(description, str) or len(description) > 4096:
        raise InvalidInput("description must be text of at most 4096 characters")
    enabled = given("enabled", previous.enabled if previous else True)
    if not isinstance(enabled, bool):
        raise InvalidInput("enabled must be true or false")
    raw_filter = body.get("filter")
    if raw_filter is None and previous is not None:
        stored_filter = previous.filter
    else:
        stored_filter = parse_filter(raw_filter)[1]
    raw_connection = body.get("connectionConfig")
    if raw_connection is None and previous is not None:
        connection = previous.connection
    else:
        connection = check_connection(
            kind,
            raw_connection,
            block_private=block_private,
            previous=previous.connection if previous else None,
        )
    return HandlerDraft(kind, name, enabled, description, stored_filter, connection)


async def _domain_for(session: AsyncSession, principal: Principal, domain: str | None) -> str:
    domain_id = normalize_domain_id(domain) if domain else principal.domain_id
    if not principal.sees_domain(domain_id) or await session.get(Domain, domain_id) is None:
        raise NotFound(f"domain {domain_id!r} not found", code=NOT_FOUND_CODE)
    return domain_id


async def list_handlers(
    session: AsyncSession, principal: Principal, domain: str | None
) -> list[EventHandlerRow]:
    """Handlers of ``domain`` (default: the caller's) and the domains below it."""
    scope = await _domain_for(session, principal, domain)
    rows = await session.scalars(
        select(EventHandlerRow)
        .where(in_scope(EventHandlerRow.domain_id, scope))
        .order_by(EventHandlerRow.created_at, EventHandlerRow.id)
    )
    return list(rows)


async def get_handler(
    session: AsyncSession, principal: Principal, handler_id: str, *, for_update: bool = False
) -> EventHandlerRow:
    check_handler_id(handler_id)
    query = select(EventHandlerRow).where(
        EventHandlerRow.id == handler_id, in_scope(EventHandlerRow.domain_id, principal.domain_id)
    )
    row = await session.scalar(query.with_for_update() if for_update else query)
    if row is None:
        raise NotFound(f"event handler {handler_id!r} not found", code=NOT_FOUND_CODE)
    return row


def draft_of(box: SecretBox, row: EventHandlerRow) -> HandlerDraft:
    return HandlerDraft(
        row.type, row.name, row.enabled, row.description, row.filter, open_connection(box, row)
    )


async def create_handler(
    session: AsyncSession,
    principal: Principal,
    new: HandlerDraft,
    domain: str | None,
    box: SecretBox,
) -> tuple[EventHandlerRow, str]:
    """The new handler and its signing secret (shown to the caller once)."""
    domain_id = await _domain_for(session, principal, domain)
    # Creations in one domain queue up on its row (PostgreSQL), so the limit holds.
    await session.execute(select(Domain.id).where(Domain.id == domain_id).with_for_update())
    count = await session.scalar(
        select(func.count())
        .select_from(EventHandlerRow)
        .where(EventHandlerRow.domain_id == domain_id)
    )
    if (count or 0) >= MAX_HANDLERS_PER_DOMAIN:
        raise InvalidInput(
            f"domain {domain_id} has {MAX_HANDLERS_PER_DOMAIN} event handlers already",
            code=TOO_MANY_HANDLERS,
        )
    handler_id = new_handler_id()
    signing_secret = secrets.token_urlsafe(32)
    row = EventHandlerRow(
        id=handler_id,
        domain_id=domain_id,
        type=new.type,
        name=new.name,
        description=new.description,
        enabled=new.enabled,
        filter=new.filter,
        connection=seal_connection(box, handler_id, new.type, new.connection),
        signing_secret=box.seal(signing_secret.encode(), f"{handler_id}:signing"),
        consecutive_failures=0,
        disabled_reason="",
    )
    session.add(row)
    audit.record(
        session,
        "event_handler.created",
        actor=principal.login,
        subject=handler_id,
        domain_id=domain_id,
        type=new.type,
    )
    await session.flush()
    return row, signing_secret


async def update_handler(
    session: AsyncSession,
    principal: Principal,
    kind: str,
    handler_id: str,
    body: Mapping[str, Any],
    box: SecretBox,
    *,
    block_private: bool,
) -> EventHandlerRow:
    row = await get_handler(session, principal, handler_id, for_update=True)
    changed = draft(kind, body, block_private=block_private, previous=draft_of(box, row))
    row.name = changed.name
    row.description = changed.description
    if changed.enabled and not row.enabled:
        row.consecutive_failures = 0
        row.disabled_reason = ""
    row.enabled = changed.enabled
    row.filter = changed.filter
    row.connection = seal_connection(box, row.id, row.type, changed.connection)
    audit.record(
        session,
        "event_handler.updated",
        actor=principal.login,
        subject=handler_id,
        domain_id=row.domain_id,
    )
    await session.flush()
    return row


async def delete_handler(session: AsyncSession, principal: Principal, handler_id: str) -> None:
    """The handler and its undelivered events."""
    row = await get_handler(session, principal, handler_id, for_update=True)
    audit.record(
        session,
        "event_handler.deleted",
        actor=principal.login,
        subject=handler_id,
        domain_id=row.domain_id,
    )
    await session.delete(row)
    await session.flush()


async def mark_tested(session: AsyncSession, row: EventHandlerRow) -> None:
    """A passing test re-enables the handler and clears its failure count."""
    row.enabled = True
    row.consecutive_failures = 0
    row.disabled_reason = ""
    await session.flush()
