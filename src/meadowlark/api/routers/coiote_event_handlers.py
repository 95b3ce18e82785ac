"""Coiote v3 ``deviceEvents/handler``: push a domain's device events to webhooks, Kafka
topics and MQTT brokers. Secrets are shown masked; the signing secret only at creation."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Query, Response
from pydantic import BaseModel, ConfigDict, Field

from meadowlark.api.deps import RuntimeDep, SessionDep, require
from meadowlark.auth.principal import Principal
from meadowlark.core.event_handlers import service
from meadowlark.core.event_handlers.rules import KAFKA, MQTT, WEBHOOK
from meadowlark.runtime import Runtime

router = APIRouter(prefix="/api/coiotedm/v3/deviceEvents/handler", tags=["deviceEvents"])

SIGNING_SECRET_HEADER = "X-Meadowlark-Signing-Secret"  # noqa: S105 - a header name
DomainQuery = Annotated[str | None, Query(max_length=512)]


class EventHandlerPublic(BaseModel):
    id: str
    type: str
    name: str
    enabled: bool
    description: str
    domain: str
    filter: dict[str, Any]
    connectionConfig: dict[str, Any]


class EventHandlerCreate(BaseModel):
    """A handler (``type`` is given by the route; ``domain`` by the query or here)."""

    model_config = ConfigDict(extra="ignore")

    name: str = Field(max_length=255)
    enabled: bool | None = True
    description: str | None = Field(default=None, max_length=4096)
    domain: str | None = Field(default=None, max_length=512)
    filter: dict[str, Any]
    connectionConfig: dict[str, Any]


class EventHandlerUpdate(BaseModel):
    """Fields to change; absent or null ones keep their value."""

    model_config = ConfigDict(extra="ignore")

    name: str | None = Field(default=None, max_length=255)
    enabled: bool | None = None
    description: str | None = Field(default=None, max_length=4096)
    filter: dict[str, Any] | None = None
    connectionConfig: dict[str, Any] | None = None


class HandlerTestResult(BaseModel):
    successful: bool
    message: str | None = None


def _public(runtime: Runtime, row: Any) -> EventHandlerPublic:
    return EventHandlerPublic(
        **service.public_view(row, service.open_connection(runtime.handler_box, row))
    )


def _block_private(runtime: Runtime) -> bool:
    return runtime.settings.event_handlers.block_private_targets


@router.get("")
async def list_event_handlers(
    runtime: RuntimeDep,
    session: SessionDep,
    principal: Annotated[Principal, require("GET deviceEvents/handler")],
    domain: DomainQuery = None,
) -> list[EventHandlerPublic]:
    """The handlers of a domain (default: yours) and of the domains below it."""
    rows = await service.list_handlers(session, principal, domain)
    return [_public(runtime, row) for row in rows]


@router.get("/{id}")
async def get_event_handler(
    id: str,  # noqa: A002 - the reference's parameter name
    runtime: RuntimeDep,
    session: SessionDep,
    principal: Annotated[Principal, require("GET deviceEvents/handler/{id}")],
) -> EventHandlerPublic:
    """One handler (secrets masked)."""
    return _public(runtime, await service.get_handler(session, principal, id))


@router.delete("/{id}", status_code=204, response_class=Response)
async def delete_event_handler(
    id: str,  # noqa: A002
    runtime: RuntimeDep,
    session: SessionDep,
    principal: Annotated[Principal, require("DELETE deviceEvents/handler/{id}")],
) -> Response:
    """Delete a handler and its undelivered events."""
    await service.delete_handler(session, principal, id)
    await session.commit()
    await runtime.handler_delivery.changed()
    return Response(status_code=204)


async def _create(
    kind: str,
    body: EventHandlerCreate,
    domain: str | None,
    runtime: Runtime,
    session: Any,
    principal: Principal,
) -> Response:
    new = service.draft(
        kind, body.model_dump(exclude={"domain"}), block_private=_block_private(runtime)
    )
    row, signing_secret = await service.create_handler(
        session, principal, new, domain or body.domain, runtime.handler_box
    )
    await session.commit()
    await runtime.handler_delivery.changed()
    return Response(
        content=f'"{row.id}"',
        status_code=201,
        media_type="application/json",
        headers={SIGNING_SECRET_HEADER: signing_secret},
    )


_CREATED: dict[int | str, dict[str, Any]] = {
    201: {
        "description": "The new handler's id; its HMAC signing secret is in the "
        f"{SIGNING_SECRET_HEADER} header (shown this once).",
        "content": {"application/json": {"schema": {"type": "string"}}},
    }
}


@router.post("/webhook", status_code=201, response_class=Response, responses=_CREATED)
async def create_webhook_handler(
    body: EventHandlerCreate,
    runtime: RuntimeDep,
    session: SessionDep,
    principal: Annotated[Principal, require("POST deviceEvents/handler/webhook")],
    domain: DomainQuery = None,
) -> Response:
    """Create a webhook handler (HTTP/HTTPS); at most 10 handlers per domain."""
    return await _create(WEBHOOK, body, domain, runtime, session, principal)


@router.post("/kafka", status_code=201, response_class=Response, responses=_CREATED)
async def create_kafka_handler(
    body: EventHandlerCreate,
    runtime: RuntimeDep,
    session: SessionDep,
    principal: Annotated[Principal, require("POST deviceEvents/handler/kafka")],
    domain: DomainQuery = None,
) -> Response:
    """Create a Kafka handler (producer properties in ``connectionConfig.value``)."""
    return await _create(KAFKA, body, domain, runtime, session, principal)


@router.post("/mqtt", status_code=201, response_class=Response, responses=_CREATED)
async def create_mqtt_handler(
    body: EventHandlerCreate,
    runtime: RuntimeDep,
    session: SessionDep,
    principal: Annotated[Principal, require("POST deviceEvents/handler/mqtt")],
    domain: DomainQuery = None,
) -> Response:
    """Create an MQTT handler: each device's events go to ``<topicPrefix>/<domain>/<endpoint>``."""
    return await _create(MQTT, body, domain, runtime, session, principal)


async def _update(
    kind: str,
    handler_id: str,
    body: EventHandlerUpdate,
    runtime: Runtime,
    session: Any,
    principal: Principal,
) -> EventHandlerPublic:
    row = await service.update_handler(
        session,
        principal,
        kind,
        handler_id,
        body.model_dump(),
        runtime.handler_box,
        block_private=_block_private(runtime),
    )
    await session.commit()
    await runtime.handler_delivery.changed()
    return _public(runtime, row)


@router.put("/webhook/{id}")
async def update_webhook_handler(
    id: str,  # noqa: A002
    body: EventHandlerUpdate,
    runtime: RuntimeDep,
    session: SessionDep,
    principal: Annotated[Principal, require("PUT deviceEvents/handler/webhook/{id}")],
) -> EventHandlerPublic:
    """Change a webhook handler (only the fields given; masked secrets keep their value)."""
    return await _update(WEBHOOK, id, body, runtime, session, principal)


@router.put("/kafka/{id}")
async def update_kafka_handler(
    id: str,  # noqa: A002
    body: EventHandlerUpdate,
    runtime: RuntimeDep,
    session: SessionDep,
    principal: Annotated[Principal, require("PUT deviceEvents/handler/kafka/{id}")],
) -> EventHandlerPublic:
    """Change a Kafka handler (only the fields given)."""
    return await _update(KAFKA, id, body, runtime, session, principal)


@router.put("/mqtt/{id}")
async def update_mqtt_handler(
    id: str,  # noqa: A002
    body: EventHandlerUpdate,
    runtime: RuntimeDep,
    session: SessionDep,
    principal: Annotated[Principal, require("PUT deviceEvents/handler/mqtt/{id}")],
) -> EventHandlerPublic:
    """Change an MQTT handler (only the fields given)."""
    return await _update(MQTT, id, body, runtime, session, principal)


@router.post("/test/existing/{id}")
async def test_existing_handler(
    id: str,  # noqa: A002
    runtime: RuntimeDep,
    session: SessionDep,
    principal: Annotated[Principal, require("POST deviceEvents/handler/test/existing/{id}")],
) -> HandlerTestResult:
    """Send a sample event through a handler; success re-enables a disabled one."""
    row = await service.get_handler(session, principal, id)
    connection = service.open_connection(runtime.handler_box, row)
    secret = service.open_signing_secret(runtime.handler_box, row)
    kind = row.type
    await session.rollback()  # no transaction held while the receiver answers
    successful, message = await runtime.handler_delivery.test(kind, connection, secret)
    if successful:
        row = await service.get_handler(session, principal, id, for_update=True)
        await service.mark_tested(session, row)
        await session.commit()
        await runtime.handler_delivery.changed()
    return HandlerTestResult(successful=successful, message=message)


async def _test_new(
    kind: str,
    body: EventHandlerCreate,
    domain: str | None,
    runtime: Runtime,
    session: Any,
    principal: Principal,
) -> HandlerTestResult:
    new = service.draft(
        kind, body.model_dump(exclude={"domain"}), block_private=_block_private(runtime)
    )
    await service.list_handlers(session, principal, domain or body.domain)  # domain in scope
    await session.rollback()
    successful, message = await runtime.handler_delivery.test(kind, new.connection, "test")
    return HandlerTestResult(successful=successful, message=message)


@router.post("/test/webhook")
async def test_webhook_handler(
    body: EventHandlerCreate,
    runtime: RuntimeDep,
    session: SessionDep,
    principal: Annotated[Principal, require("POST deviceEvents/handler/test/webhook")],
    domain: DomainQuery = None,
) -> HandlerTestResult:
    """Send a sample event to a webhook configuration without saving it."""
    return await _test_new(WEBHOOK, body, domain, runtime, session, principal)


@router.post("/test/kafka")
async def test_kafka_handler(
    body: EventHandlerCreate,
    runtime: RuntimeDep,
    session: SessionDep,
    principal: Annotated[Principal, require("POST deviceEvents/handler/test/kafka")],
    domain: DomainQuery = None,
) -> HandlerTestResult:
    """Send a sample record to a Kafka configuration without saving it."""
    return await _test_new(KAFKA, body, domain, runtime, session, principal)


@router.post("/test/mqtt")
async def test_mqtt_handler(
    body: EventHandlerCreate,
    runtime: RuntimeDep,
    session: SessionDep,
    principal: Annotated[Principal, require("POST deviceEvents/handler/test/mqtt")],
    domain: DomainQuery = None,
) -> HandlerTestResult:
    """Publish a sample event to an MQTT configuration without saving it."""
    return await _test_new(MQTT, body, domain, runtime, session, principal)
