"""JSON forms of what travels between nodes: registrations, value trees, device events,
downlink answers and the errors a node's LwM2M server raised for another's request."""

from __future__ import annotations

import base64
from collections.abc import Mapping
from datetime import datetime
from typing import Any

from meadowlark.core.events import DeviceEvent, EventKind
from meadowlark.lwm2m.codec.timestamped import TimestampedNodes
from meadowlark.lwm2m.node import (
    LwM2mObject,
    MultiResource,
    Node,
    ObjectInstance,
    ResourceInstance,
    ResourceType,
    SingleResource,
)
from meadowlark.lwm2m.path import LwM2mPath
from meadowlark.server.errors import (
    DeviceErrorResponse,
    DeviceNotRegisteredError,
    DeviceUnreachableError,
    InvalidRequestError,
    InvalidResponseError,
    Lwm2mServerError,
    QueuedRequestExpiredError,
    RequestQueuedError,
    RequestTimeoutError,
)
from meadowlark.server.operations import Operation, QueuedRequest, QueuedRequestState
from meadowlark.server.registration import (
    Registration,
    registered_links_text,
    shared_object_list,
)
from meadowlark.server.transport import DownlinkResponse, Peer, ResponseCode
from meadowlark.server.values import value_from_json, value_to_json

# --- values ------------------------------------------------------------------------------


def node_to_wire(node: Node) -> dict[str, Any]:
    match node:
        case LwM2mObject():
            return {
                "o": node.id,
                "i": [node_to_wire(instance) for instance in node.instances.values()],
            }
        case ObjectInstance():
            return {"n": node.id, "r": [node_to_wire(r) for r in node.resources.values()]}
        case SingleResource():
            return {"s": node.id, "t": node.type.value, "v": value_to_json(node.type, node.value)}
        case MultiResource():
            return {
                "m": node.id,
                "t": node.type.value,
                "v": {str(k): value_to_json(node.type, v) for k, v in node.instances.items()},
            }
        case ResourceInstance():
            return {"ri": node.id, "t": node.type.value, "v": value_to_json(node.type, node.value)}
    raise TypeError(f"not a node: {node!r}")


def node_from_wire(data: Mapping[str, Any]) -> Node:
    if "o" in data:
        instances = [node_from_wire(item) for item in data["i"]]
        return LwM2mObject(data["o"], {i.id: i for i in instances})  # type: ignore[misc]
    if "n" in data:
        resources = [node_from_wire(item) for item in data["r"]]
        return ObjectInstance(data["n"], {r.id: r for r in resources})  # type: ignore[misc]
    kind = ResourceType(data["t"])
    if "s" in data:
        return SingleResource(data["s"], kind, value_from_json(kind, data["v"]))
    if "m" in data:
        return MultiResource(
            data["m"], kind, {int(k): value_from_json(kind, v) for k, v in data["v"].items()}
        )
    return ResourceInstance(data["ri"], kind, value_from_json(kind, data["v"]))


def nodes_to_wire(nodes: Mapping[LwM2mPath, Node]) -> list[list[Any]]:
    return [[str(path), node_to_wire(node)] for path, node in nodes.items()]


def nodes_from_wire(items: list[list[Any]]) -> dict[LwM2mPath, Node]:
    return {LwM2mPath.parse(path): node_from_wire(node) for path, node in items}


# --- registrations -------------------------------------------------------------------------


def registration_to_wire(registration: Registration) -> dict[str, Any]:
    return {
        "id": registration.registration_id,
        "ep": registration.endpoint,
        "lwm2m": registration.lwm2m_version,
        "b": registration.binding,
        "lt": registration.lifetime,
        "q": registration.queue_mode,
        "sms": registration.sms_number,
        "objects": registered_links_text(registration.objects),
        "host": registration.peer.host,
        "port": registration.peer.port,
        "transport": registration.peer.transport,
        "at": registration.registered_at.isoformat(),
        "updated": registration.last_update.isoformat(),
    }


def registration_from_wire(data: Mapping[str, Any]) -> Registration:
    return Registration(
        registration_id=data["id"],
        endpoint=data["ep"],
        lwm2m_version=data["lwm2m"],
        binding=data["b"],
        lifetime=data["lt"],
        queue_mode=data["q"],
        sms_number=data["sms"],
        objects=shared_object_list(data["objects"].encode()),
        peer=Peer(data["host"], data["port"], data["transport"]),
        registered_at=datetime.fromisoformat(data["at"]),
        last_update=datetime.fromisoformat(data["updated"]),
    )


# --- downlink answers and errors ------------------------------------------------------------


def response_to_wire(response: DownlinkResponse) -> dict[str, Any]:
    return {
        "code": [response.code.code_class, response.code.detail],
        "payload": base64.b64encode(response.payload).decode("ascii"),
        "content_format": response.content_format,
        "location_path": list(response.location_path),
    }


def response_from_wire(data: Mapping[str, Any]) -> DownlinkResponse:
    return DownlinkResponse(
        code=ResponseCode(*data["code"]),
        payload=base64.b64decode(data["payload"]),
        content_format=data["content_format"],
        location_path=tuple(data["location_path"]),
    )


_ERRORS: dict[str, type[Lwm2mServerError]] = {
    cls.__name__: cls
    for cls in (
        DeviceUnreachableError,
        InvalidRequestError,
        InvalidResponseError,
        RequestTimeoutError,
        QueuedRequestExpiredError,
    )
}


def error_to_wire(error: Lwm2mServerError) -> dict[str, Any]:
    data: dict[str, Any] = {"reason": "lwm2m_error", "type": type(error).__name__}
    data["message"] = error.message
    if isinstance(error, DeviceErrorResponse):
        data["code"] = [error.code.code_class, error.code.detail]
        data["diagnostic"] = error.diagnostic
    elif isinstance(error, RequestQueuedError):
        data["request_id"] = error.request_id
    return data


def error_from_wire(endpoint: str, data: Mapping[str, Any]) -> Lwm2mServerError:
    kind = data.get("type")
    if kind == "DeviceErrorResponse":
        return DeviceErrorResponse(ResponseCode(*data["code"]), data.get("diagnostic", ""))
    if kind == "RequestQueuedError":
        return RequestQueuedError(endpoint, data["request_id"])
    if kind == "DeviceNotRegisteredError":
        return DeviceNotRegisteredError(endpoint)
    return _ERRORS.get(str(kind), DeviceUnreachableError)(data.get("message", "failed"))


# --- device events ---------------------------------------------------------------------------


def event_to_wire(event: DeviceEvent) -> dict[str, Any]:
    data: dict[str, Any] = {
        "kind": event.kind.value,
        "ep": event.endpoint,
        "domain": event.domain_id,
        "at": event.at.isoformat(),
    }
    if event.registration is not None:
        data["registration"] = registration_to_wire(event.registration)
    if event.paths:
        data["paths"] = [str(path) for path in event.paths]
    if event.nodes:
        data["nodes"] = nodes_to_wire(event.nodes)
    if event.batches:
        data["batches"] = [
            [None if b.timestamp is None else b.timestamp.isoformat(), nodes_to_wire(b.nodes)]
            for b in event.batches
        ]
    if event.expired:
        data["expired"] = True
    if event.request is not None:
        data["request"] = _queued_request_to_wire(event.request)
        data["result"] = result_to_wire(event.result)
    if event.error is not None:
        data["error"] = error_to_wire(event.error)
    for name in ("peer", "previous_peer"):
        peer: Peer | None = getattr(event, name)
        if peer is not None:
            data[name] = [peer.host, peer.port, peer.transport]
    if event.reason:
        data["reason"] = event.reason
    if event.operation:
        data["operation"] = event.operation
    if event.alert:
        data["alert"] = dict(event.alert)
    return data


def event_from_wire(data: Mapping[str, Any]) -> DeviceEvent:
    endpoint = data["ep"]
    request = data.get("request")
    error = data.get("error")
    return DeviceEvent(
        kind=EventKind(data["kind"]),
        endpoint=endpoint,
        domain_id=data["domain"],
        at=datetime.fromisoformat(data["at"]),
        registration=(
            registration_from_wire(data["registration"]) if "registration" in data else None
        ),
        paths=tuple(LwM2mPath.parse(path) for path in data.get("paths", ())),
        nodes=nodes_from_wire(data.get("nodes", [])),
        batches=tuple(
            TimestampedNodes(
                None if at is None else datetime.fromisoformat(at), nodes_from_wire(nodes)
            )
            for at, nodes in data.get("batches", ())
        ),
        expired=data.get("expired", False),
        request=None if request is None else _queued_request_from_wire(request),
        result=result_from_wire(data.get("result")),
        error=None if error is None else error_from_wire(endpoint, error),
        peer=None if "peer" not in data else Peer(*data["peer"]),
        previous_peer=None if "previous_peer" not in data else Peer(*data["previous_peer"]),
        reason=data.get("reason", ""),
        operation=data.get("operation", ""),
        alert=data.get("alert", {}),
    )


def _queued_request_to_wire(request: QueuedRequest) -> dict[str, Any]:
    return {
        "id": request.id,
        "ep": request.endpoint,
        "operation": request.operation.to_json(),
        "created": request.created_at.isoformat(),
        "expires": request.expires_at.isoformat(),
        "state": request.state.value,
        "result": request.result,
    }


def _queued_request_from_wire(data: Mapping[str, Any]) -> QueuedRequest:
    return QueuedRequest(
        id=data["id"],
        endpoint=data["ep"],
        operation=Operation.from_json(data["operation"]),
        created_at=datetime.fromisoformat(data["created"]),
        expires_at=datetime.fromisoformat(data["expires"]),
        state=QueuedRequestState(data["state"]),
        result=dict(data["result"]),
    )


def result_to_wire(result: object) -> Any:
    """What a queued request returned: a value tree, several, a discovered link map, a
    created path or nothing."""
    match result:
        case None:
            return None
        case LwM2mPath():
            return {"path": str(result)}
        case dict() if all(isinstance(value, dict) for value in result.values()):
            return {"links": [[str(path), attrs] for path, attrs in result.items()]}
        case dict():
            return {"nodes": nodes_to_wire(result)}
    return {"node": node_to_wire(result)}  # type: ignore[arg-type]


def result_from_wire(data: Any) -> object:
    if data is None:
        return None
    if "path" in data:
        return LwM2mPath.parse(data["path"])
    if "links" in data:
        return {LwM2mPath.parse(path): attrs for path, attrs in data["links"]}
    if "nodes" in data:
        return nodes_from_wire(data["nodes"])
    return node_from_wire(data["node"])
