"""Device event feed for people and UIs: Server-Sent Events on the Coiote surface.

Lifecycle events (registration, update, deregistration, awake, sleeping) and telemetry
(one event per resource value of a notification or a Send), shaped like the payloads
of Coiote's event handlers: ``endpointName``, ``url``, ``value``, ``timestamp`` (ms).
"""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Query, Request
from fastapi.responses import StreamingResponse

from meadowlark.api.deps import RuntimeDep, require
from meadowlark.api.sse import event_stream
from meadowlark.auth.principal import Principal
from meadowlark.core.data_model import COIOTE_TYPES, render_value
from meadowlark.core.errors import InvalidInput
from meadowlark.core.events import DeviceEvent, EventFilter, EventKind
from meadowlark.lwm2m.codec.senml_common import node_leaves
from meadowlark.lwm2m.model.naming import to_readable
from meadowlark.runtime import Runtime

router = APIRouter(prefix="/api/coiotedm/v3", tags=["events"])

EVENT_TYPES: dict[EventKind, str] = {
    EventKind.REGISTRATION: "deviceRegistered",
    EventKind.UPDATED: "deviceUpdated",
    EventKind.DEREGISTRATION: "deviceDeregistered",
    EventKind.AWAKE: "deviceAwake",
    EventKind.SLEEPING: "deviceSleeping",
    EventKind.NOTIFICATION: "notification",
    EventKind.SEND: "send",
    EventKind.REGISTRATION_REFUSED: "deviceRegistrationRefused",
    EventKind.ADDRESS_CHANGED: "deviceAddressChanged",
    EventKind.BOOTSTRAP: "deviceBootstrap",
    EventKind.ALERT_RAISED: "alertRaised",
    EventKind.ALERT_ACKNOWLEDGED: "alertAcknowledged",
    EventKind.ALERT_CLEARED: "alertCleared",
}


def _millis(event: DeviceEvent) -> int:
    return int(event.at.timestamp() * 1000)


def event_payloads(runtime: Runtime, event: DeviceEvent) -> list[dict[str, Any]]:
    """The feed entries of one device event (telemetry: one per resource value)."""
    event_type = EVENT_TYPES.get(event.kind)
    if event_type is None:
        return []
    base = {
        "eventType": event_type,
        "endpointName": event.endpoint,
        "domain": event.domain_id,
        "timestamp": _millis(event),
    }
    if event.kind not in (EventKind.NOTIFICATION, EventKind.SEND):
        entry = {"type": "lifecycle", **base}
        if event.registration is not None:
            entry["lwm2mVersion"] = event.registration.lwm2m_version
            entry["ipAddress"] = event.registration.peer.host
        if event.kind is EventKind.DEREGISTRATION:
            entry["expired"] = event.expired
        if event.peer is not None:  # refusals and address changes: who asked
            entry["ipAddress"] = event.peer.host
            entry["operation"] = event.operation
        if event.previous_peer is not None:
            entry["previousIpAddress"] = event.previous_peer.host
        if event.reason:
            entry["reason"] = event.reason
        entry.update(event.alert)
        return [entry]
    models = runtime.object_models.registry_for(event.domain_id)
    batches = (
        [(event.at, event.nodes)]
        if event.kind is EventKind.NOTIFICATION
        else [(batch.timestamp or event.at, batch.nodes) for batch in event.batches]
    )
    entries = []
    for at, nodes in batches:
        for path, node in nodes.items():
            for leaf in node_leaves(node, path):
                entries.append(
                    {
                        "type": "telemetry",
                        **base,
                        "timestamp": int(at.timestamp() * 1000),
                        "url": str(leaf.path),
                        "path": to_readable(leaf.path, models),
                        "value": render_value(leaf.value),
                        "valueType": COIOTE_TYPES[leaf.type],
                    }
                )
    return entries


@router.get("/events", response_class=StreamingResponse)
async def device_events(
    request: Request,
    runtime: RuntimeDep,
    principal: Annotated[Principal, require("GET events")],
    endpointName: Annotated[str | None, Query(max_length=255)] = None,
    eventTypes: Annotated[
        str | None, Query(max_length=512, description="Comma-separated, e.g. notification,send")
    ] = None,
) -> StreamingResponse:
    """Live events of the devices in your domain (Server-Sent Events)."""
    wanted = {t.strip() for t in eventTypes.split(",") if t.strip()} if eventTypes else None
    if wanted is not None and not wanted <= set(EVENT_TYPES.values()):
        unknown = sorted(wanted - set(EVENT_TYPES.values()))[0]
        raise InvalidInput(
            f"unknown event type {unknown!r}; known: {', '.join(EVENT_TYPES.values())}"
        )
    subscription = runtime.events.subscribe(EventFilter(principal.domain_id, endpointName))

    def render(event: DeviceEvent) -> list[tuple[str, dict[str, Any]]]:
        return [
            (entry["eventType"], entry)
            for entry in event_payloads(runtime, event)
            if wanted is None or entry["eventType"] in wanted
        ]

    return event_stream(request, subscription, render)
