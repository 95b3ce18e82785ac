"""LwM2M operations over REST, shaped like the Leshan demo server's API.

Every route is domain-scoped: a caller sees the registered devices whose
``devices.domain_id`` is its domain or below it; any other endpoint is answered 404,
exactly like an unknown one. Paths are numeric (``/3/0/1``), values are JSON nodes
(see ``api.lwm2m_json``). A request to a sleeping queue-mode device is queued and
answered 202 ``{"requestId", "delayed": true}``; its outcome comes later as a
``REQUEST_RESPONSE`` event on ``GET /events``.
"""

from __future__ import annotations

from collections.abc import Callable, Coroutine
from typing import Annotated, Any, Literal

from fastapi import APIRouter, Body, Query, Request
from fastapi.responses import JSONResponse, Response, StreamingResponse
from fastapi.routing import APIRoute

from meadowlark.api import json_input
from meadowlark.api.deps import RuntimeDep, require
from meadowlark.api.errors import error_response
from meadowlark.api.lwm2m_json import (
    NodeJsonError,
    OpaqueEncoding,
    instances_from_json,
    iso_8601,
    node_from_json,
    node_to_json,
    nodes_from_json,
    nodes_to_json,
)
from meadowlark.api.responses import json_response
from meadowlark.api.sse import event_stream
from meadowlark.auth.principal import Principal
from meadowlark.core.devices import registered_endpoints, sees_endpoint
from meadowlark.core.errors import InvalidInput, NotFound
from meadowlark.core.events import DeviceEvent, EventFilter, EventKind
from meadowlark.lwm2m.codec.attributes import InvalidAttributeError, parse_attributes
from meadowlark.lwm2m.codec.formats import ContentFormat
from meadowlark.lwm2m.codec.link_format import ParamValue
from meadowlark.lwm2m.node import Node
from meadowlark.lwm2m.path import InvalidPathError, LwM2mPath
from meadowlark.runtime import Runtime
from meadowlark.server.errors import Lwm2mServerError, RequestQueuedError
from meadowlark.server.operations import OperationKind
from meadowlark.server.registration import Registration

BASE = "/api/lwm2m/v1"
FORMATS: dict[str, ContentFormat] = {
    "text": ContentFormat.TEXT,
    "opaque": ContentFormat.OPAQUE,
    "cbor": ContentFormat.CBOR,
    "tlv": ContentFormat.TLV,
    "senml-json": ContentFormat.SENML_JSON,
    "senml-cbor": ContentFormat.SENML_CBOR,
    "lwm2m-cbor": ContentFormat.LWM2M_CBOR,
    "oma-json": ContentFormat.OMA_JSON,
}
FormatName = Literal[
    "text", "opaque", "cbor", "tlv", "senml-json", "senml-cbor", "lwm2m-cbor", "oma-json"
]
CONTENT, CHANGED, CREATED, DELETED = "CONTENT(205)", "CHANGED(204)", "CREATED(201)", "DELETED(202)"
_TIMEOUT_CONTROL = "timeout"


class _DeviceRequestRoute(APIRoute):
    """Turns device outcomes into answers: 202 for a queued request, the error's own
    status for server failures (504 timeout, CoAP 4.xx passed through), 400 for
    unparseable paths, nodes and attributes."""

    def get_route_handler(self) -> Callable[[Request], Coroutine[Any, Any, Response]]:
        handler = super().get_route_handler()

        async def answer(request: Request) -> Response:
            try:
                return await handler(request)
            except RequestQueuedError as queued:
                return JSONResponse({"requestId": queued.request_id, "delayed": True}, 202)
            except Lwm2mServerError as exc:
                return error_response(exc.http_status, exc.message)
            except (NodeJsonError, InvalidPathError, InvalidAttributeError) as exc:
                return error_response(400, str(exc))

        return answer


router = APIRouter(prefix=BASE, tags=["lwm2m"], route_class=_DeviceRequestRoute)


def _require(method: str, path: str) -> Any:
    return require(f"lwm2m:{method} {BASE}{path}")


Timeout = Annotated[
    float | None,
    Query(alias="timeout", gt=0, le=300, description="Seconds to wait for the device"),
]
Format = Annotated[FormatName | None, Query(description="Content format to use with the device")]
Opaque = Annotated[OpaqueEncoding, Query(description="How Opaque values are written in JSON")]
Paths = Annotated[str, Query(max_length=4096, description="Comma-separated: /3/0/0,/3303/0/5700")]


# --- visibility ------------------------------------------------------------------------


async def _registration(runtime: Runtime, principal: Principal, endpoint: str) -> Registration:
    """The caller's device's registration; 404 when unregistered or in another domain."""
    registration = await runtime.lwm2m.get_registration(endpoint)
    if registration is not None and await sees_endpoint(runtime.db, principal, endpoint):
        return registration
    raise NotFound(f"client {endpoint!r} not found")


def _format(name: FormatName | None) -> int | None:
    return None if name is None else FORMATS[name]


def _path(text: str, *, min_depth: int = 1) -> LwM2mPath:
    path = LwM2mPath.parse(text)
    if path.depth < min_depth:
        raise InvalidInput(f"a path of at least {min_depth} level(s) is needed, got {text!r}")
    return path


def _paths(text: str) -> list[LwM2mPath]:
    paths = list(dict.fromkeys(_path(part) for part in text.split(",") if part.strip()))
    if not paths:
        raise InvalidInput("paths must list at least one path, e.g. /3/0/0,/3/0/1")
    return paths


# --- registrations ---------------------------------------------------------------------


def registration_json(runtime: Runtime, registration: Registration) -> dict[str, Any]:
    return {
        "endpoint": registration.endpoint,
        "registrationId": registration.registration_id,
        "registrationDate": iso_8601(registration.registered_at),
        "lastUpdate": iso_8601(registration.last_update),
        "address": str(registration.peer),
        "transport": registration.peer.transport,
        "secure": registration.peer.secure,
        "lwM2mVersion": registration.lwm2m_version,
        "lifetime": registration.lifetime,
        "bindingMode": registration.binding,
        "queuemode": registration.queue_mode,
        "sleeping": not runtime.lwm2m.is_awake(registration),
        "smsNumber": registration.sms_number,
        "rootPath": registration.root_path,
        "contentFormats": list(registration.content_formats),
        "objectLinks": [
            {"url": link.uri, "attributes": link.params} for link in registration.objects.links
        ],
    }


@router.get("/clients", response_model=list[dict[str, Any]])
async def list_clients(
    runtime: RuntimeDep, principal: Annotated[Principal, _require("GET", "/clients")]
) -> Response:
    """Registrations of the devices in your domain and below."""
    visible = await registered_endpoints(runtime.db, principal)
    registrations = await runtime.lwm2m.all_registrations()
    return json_response(
        [
            registration_json(runtime, registration)
            for registration in sorted(registrations, key=lambda r: r.endpoint)
            if registration.endpoint in visible
        ]
    )


@router.get("/clients/{ep}")
async def get_client(
    ep: str, runtime: RuntimeDep, principal: Annotated[Principal, _require("GET", "/clients/{ep}")]
) -> dict[str, Any]:
    """One registration."""
    return registration_json(runtime, await _registration(runtime, principal, ep))


# --- composite operations (declared before the /{path} routes that would match them) ----


@router.get("/clients/{ep}/composite")
async def read_composite(
    ep: str,
    paths: Paths,
    runtime: RuntimeDep,
    principal: Annotated[Principal, _require("GET", "/clients/{ep}/composite")],
    format: Format = None,
    timeout_seconds: Timeout = None,
    opaque: Opaque = "hex",
) -> dict[str, Any]:
    """Read-Composite (LwM2M 1.1+): the nodes of several paths at once."""
    await _registration(runtime, principal, ep)
    nodes = await runtime.lwm2m.read_composite(
        ep, _paths(paths), format=_format(format), timeout=timeout_seconds, wait=False
    )
    return {"status": CONTENT, "content": nodes_to_json(nodes, opaque)}


@router.put("/clients/{ep}/composite")
async def write_composite(
    ep: str,
    body: Annotated[dict[str, Any], Body(description="Map of path to node")],
    runtime: RuntimeDep,
    principal: Annotated[Principal, _require("PUT", "/clients/{ep}/composite")],
    format: Format = None,
    timeout_seconds: Timeout = None,
    opaque: Opaque = "hex",
) -> dict[str, Any]:
    """Write-Composite (LwM2M 1.1+): several values in one request."""
    registration = await _registration(runtime, principal, ep)
    nodes = nodes_from_json(body, runtime.lwm2m.models_for(registration), opaque)
    await runtime.lwm2m.write_composite(
        ep, nodes, format=_format(format), timeout=timeout_seconds, wait=False
    )
    return {"status": CHANGED}


@router.post("/clients/{ep}/composite/observe")
async def observe_composite(
    ep: str,
    paths: Paths,
    runtime: RuntimeDep,
    principal: Annotated[Principal, _require("POST", "/clients/{ep}/composite/observe")],
    format: Format = None,
    timeout_seconds: Timeout = None,
    opaque: Opaque = "hex",
) -> dict[str, Any]:
    """Observe-Composite (LwM2M 1.1+); notifications arrive as NOTIFICATION events."""
    await _registration(runtime, principal, ep)
    nodes = await runtime.lwm2m.observe_composite(
        ep, _paths(paths), format=_format(format), timeout=timeout_seconds, wait=False
    )
    return {"status": CONTENT, "content": nodes_to_json(nodes, opaque)}


@router.delete("/clients/{ep}/composite/observe")
async def cancel_composite_observation(
    ep: str,
    paths: Paths,
    runtime: RuntimeDep,
    principal: Annotated[Principal, _require("DELETE", "/clients/{ep}/composite/observe")],
    active: bool = True,
) -> dict[str, Any]:
    """Stop a composite observation: now (``active``) or at the next notification."""
    await _registration(runtime, principal, ep)
    return await _cancel(runtime, ep, _paths(paths), active)


# --- single-path operations --------------------------------------------------------------


@router.get("/clients/{ep}/{path:path}/discover")
async def discover(
    ep: str,
    path: str,
    runtime: RuntimeDep,
    principal: Annotated[Principal, _require("GET", "/clients/{ep}/{path}/discover")],
    timeout_seconds: Timeout = None,
) -> dict[str, Any]:
    """Discover: the objects, instances and resources under a path, with attributes."""
    await _registration(runtime, principal, ep)
    found = await runtime.lwm2m.discover(ep, _path(path), timeout=timeout_seconds, wait=False)
    return {"status": CONTENT, "objectLinks": _object_links(found)}


@router.put("/clients/{ep}/{path:path}/attributes")
async def write_attributes(
    ep: str,
    path: str,
    request: Request,
    runtime: RuntimeDep,
    principal: Annotated[Principal, _require("PUT", "/clients/{ep}/{path}/attributes")],
    timeout_seconds: Timeout = None,
) -> dict[str, Any]:
    """Write-Attributes: ``?pmin=10&pmax=60&gt=..&lt=..&st=..``; an empty value clears one."""
    await _registration(runtime, principal, ep)
    target = _path(path)
    query: dict[str, str | None] = {}
    for name, value in request.query_params.multi_items():
        if name == _TIMEOUT_CONTROL:
            continue
        if name in query:
            raise InvalidInput(f"attribute {name!r} given twice")
        query[name] = value
    attributes = parse_attributes(query, target)
    await runtime.lwm2m.write_attributes(
        ep, target, attributes, timeout=timeout_seconds, wait=False
    )
    return {"status": CHANGED}


@router.post("/clients/{ep}/{path:path}/observe")
async def observe(
    ep: str,
    path: str,
    runtime: RuntimeDep,
    principal: Annotated[Principal, _require("POST", "/clients/{ep}/{path}/observe")],
    format: Format = None,
    timeout_seconds: Timeout = None,
    opaque: Opaque = "hex",
) -> dict[str, Any]:
    """Observe: the current value now, NOTIFICATION events as it changes."""
    await _registration(runtime, principal, ep)
    node = await runtime.lwm2m.observe(
        ep, _path(path), format=_format(format), timeout=timeout_seconds, wait=False
    )
    return {"status": CONTENT, "content": node_to_json(node, opaque)}


@router.delete("/clients/{ep}/{path:path}/observe")
async def cancel_observation(
    ep: str,
    path: str,
    runtime: RuntimeDep,
    principal: Annotated[Principal, _require("DELETE", "/clients/{ep}/{path}/observe")],
    active: bool = True,
) -> dict[str, Any]:
    """Stop observing: now (``active``, the default) or at the next notification."""
    await _registration(runtime, principal, ep)
    return await _cancel(runtime, ep, [_path(path)], active)


@router.get("/clients/{ep}/{path:path}")
async def read(
    ep: str,
    path: str,
    runtime: RuntimeDep,
    principal: Annotated[Principal, _require("GET", "/clients/{ep}/{path}")],
    format: Format = None,
    timeout_seconds: Timeout = None,
    opaque: Opaque = "hex",
) -> dict[str, Any]:
    """Read an object, instance, resource or resource instance."""
    await _registration(runtime, principal, ep)
    node = await runtime.lwm2m.read(
        ep, _path(path), format=_format(format), timeout=timeout_seconds, wait=False
    )
    return {"status": CONTENT, "content": node_to_json(node, opaque)}


@router.put("/clients/{ep}/{path:path}")
async def write(
    ep: str,
    path: str,
    body: Annotated[dict[str, Any], Body(description="The node to write")],
    runtime: RuntimeDep,
    principal: Annotated[Principal, _require("PUT", "/clients/{ep}/{path}")],
    replace: bool = True,
    format: Format = None,
    timeout_seconds: Timeout = None,
    opaque: Opaque = "hex",
) -> dict[str, Any]:
    """Write an instance or resource: replace it, or (``replace=false``) update it partially."""
    registration = await _registration(runtime, principal, ep)
    target = _path(path, min_depth=2)
    node = node_from_json(body, target, runtime.lwm2m.models_for(registration), opaque)
    await runtime.lwm2m.write(
        ep,
        target,
        node,
        replace=replace,
        format=_format(format),
        timeout=timeout_seconds,
        wait=False,
    )
    return {"status": CHANGED}


@router.post("/clients/{ep}/{path:path}", response_model=None)
async def execute_or_create(
    ep: str,
    path: str,
    request: Request,
    runtime: RuntimeDep,
    principal: Annotated[Principal, _require("POST", "/clients/{ep}/{path}")],
    format: Format = None,
    timeout_seconds: Timeout = None,
    opaque: Opaque = "hex",
) -> dict[str, Any] | JSONResponse:
    """On ``/o/i/r``: Execute, the body being the plain-text arguments (``0='a',1``).
    On ``/o`` or ``/o/i``: Create, the body being instance node(s) as JSON."""
    registration = await _registration(runtime, principal, ep)
    target = _path(path)
    body = await request.body()
    if target.is_resource:
        try:
            arguments = body.decode("utf-8")
        except UnicodeDecodeError:
            raise InvalidInput("execute arguments must be UTF-8 text") from None
        await runtime.lwm2m.execute(
            ep, target, arguments or None, timeout=timeout_seconds, wait=False
        )
        return {"status": CHANGED}
    if target.depth > 2:
        raise InvalidInput("POST needs a resource (execute) or an object/instance (create)")
    document = json_input.loads(body)
    instances = instances_from_json(
        document,
        target,
        runtime.lwm2m.models_for(registration),
        opaque,
        free_instance_id=_free_instance_id(registration, target.ids[0]),
    )
    created = await runtime.lwm2m.create(
        ep,
        LwM2mPath(target.ids[0]),
        instances,
        format=_format(format),
        timeout=timeout_seconds,
        wait=False,
    )
    location = created or LwM2mPath(target.ids[0], instances[0].id)
    return JSONResponse({"status": CREATED, "location": str(location)}, 201)


@router.delete("/clients/{ep}/{path:path}")
async def delete(
    ep: str,
    path: str,
    runtime: RuntimeDep,
    principal: Annotated[Principal, _require("DELETE", "/clients/{ep}/{path}")],
    timeout_seconds: Timeout = None,
) -> dict[str, Any]:
    """Delete an object instance."""
    await _registration(runtime, principal, ep)
    await runtime.lwm2m.delete(ep, _path(path), timeout=timeout_seconds, wait=False)
    return {"status": DELETED}


def _free_instance_id(registration: Registration, object_id: int) -> int:
    """The lowest instance id the device did not announce for the object."""
    entry = registration.objects.objects.get(object_id)
    used = set(entry.instances) if entry is not None else set()
    return next(candidate for candidate in range(65535) if candidate not in used)


async def _cancel(
    runtime: Runtime, endpoint: str, paths: list[LwM2mPath], active: bool
) -> dict[str, Any]:
    target = paths[0] if len(paths) == 1 else paths
    if not await runtime.lwm2m.cancel_observation(endpoint, target, active=active):
        raise NotFound(f"no observation of {', '.join(str(p) for p in paths)}")
    return {"cancelled": True, "active": active}


def _object_links(found: dict[LwM2mPath, dict[str, ParamValue]]) -> list[dict[str, Any]]:
    return [{"url": str(path), "attributes": attributes} for path, attributes in found.items()]


# --- events ----------------------------------------------------------------------------


@router.get("/events", response_class=StreamingResponse)
async def events(
    request: Request,
    runtime: RuntimeDep,
    principal: Annotated[Principal, _require("GET", "/events")],
    ep: Annotated[str | None, Query(max_length=255, description="Only this endpoint")] = None,
    opaque: Opaque = "hex",
) -> StreamingResponse:
    """Server-sent events of your devices: REGISTRATION, UPDATED, DEREGISTRATION,
    NOTIFICATION, SEND, AWAKE, SLEEPING, REQUEST_RESPONSE, BOOTSTRAP."""
    subscription = runtime.events.subscribe(EventFilter(principal.domain_id, ep))
    return event_stream(
        request,
        subscription,
        lambda event: [(str(event.kind), _event_json(runtime, event, opaque))],
    )


def _event_json(runtime: Runtime, event: DeviceEvent, opaque: OpaqueEncoding) -> dict[str, Any]:
    """The data of an SSE event, as the Leshan demo sends it (plus REQUEST_RESPONSE)."""
    ep = event.endpoint
    match event.kind:
        case EventKind.REGISTRATION | EventKind.UPDATED | EventKind.DEREGISTRATION:
            assert event.registration is not None
            data = registration_json(runtime, event.registration)
            if event.kind is EventKind.DEREGISTRATION:
                data["expired"] = event.expired
            return data
        case EventKind.NOTIFICATION if len(event.paths) == 1 and event.paths[0] in event.nodes:
            path = event.paths[0]
            return {
                "ep": ep,
                "kind": "single",
                "res": str(path),
                "val": node_to_json(event.nodes[path], opaque),
            }
        case EventKind.NOTIFICATION:
            return {
                "ep": ep,
                "kind": "composite",
                "paths": [str(path) for path in event.paths],
                "val": nodes_to_json(event.nodes, opaque),
            }
        case EventKind.SEND:
            newest: dict[LwM2mPath, Node] = {}
            for batch in event.batches:
                newest.update(batch.nodes)
            return {"ep": ep, "val": nodes_to_json(newest, opaque)}
        case EventKind.REQUEST_RESPONSE:
            return _request_response_json(event, opaque)
        case EventKind.REGISTRATION_REFUSED | EventKind.BOOTSTRAP:
            assert event.peer is not None
            return {
                "ep": ep,
                "operation": event.operation,
                "reason": event.reason,
                "address": str(event.peer),
            }
        case EventKind.ADDRESS_CHANGED:
            assert event.peer is not None and event.previous_peer is not None
            return {
                "ep": ep,
                "operation": event.operation,
                "address": str(event.peer),
                "previousAddress": str(event.previous_peer),
            }
    return {"ep": ep, **event.alert}


def _request_response_json(event: DeviceEvent, opaque: OpaqueEncoding) -> dict[str, Any]:
    assert event.request is not None
    kind = event.request.operation.kind
    data: dict[str, Any] = {
        "ep": event.endpoint,
        "requestId": event.request.id,
        "operation": kind.value,
        "success": event.error is None,
    }
    if event.error is not None:
        data["code"] = event.error.http_status
        data["errormessage"] = event.error.message
        return data
    result = event.result
    if kind in (OperationKind.READ, OperationKind.OBSERVE):
        data["content"] = node_to_json(result, opaque)  # type: ignore[arg-type]
    elif kind in (OperationKind.READ_COMPOSITE, OperationKind.OBSERVE_COMPOSITE):
        data["content"] = nodes_to_json(result, opaque)  # type: ignore[arg-type]
    elif kind is OperationKind.DISCOVER:
        data["objectLinks"] = _object_links(result)  # type: ignore[arg-type]
    elif kind is OperationKind.CREATE and result is not None:
        data["location"] = str(result)
    return data
