"""LwM2M nodes as JSON, in the shape of the Leshan demo server's REST API.

A node is ``{"id", "kind", ...}`` with ``kind`` one of ``obj`` (``instances``: list),
``instance`` (``resources``: list), ``singleResource`` and ``resourceInstance``
(``type``, ``value``) or ``multiResource`` (``type``, ``values``: map of resource
instance id to value). Values are typed JSON: integers and floats as numbers (non-finite
floats as the strings ``NaN``, ``Infinity``, ``-Infinity``), Opaque as hex (or Base64),
Objlnk as ``"3:0"``, Time as an ISO 8601 string with the epoch seconds beside it in
``epoch`` (``epochs`` for a multiple resource). ``epoch``/``epochs`` are output only:
input Time values are ISO 8601 strings or epoch numbers.

Parsing checks every value against the object model, so a wrongly typed write is
refused before anything is sent to a device.
"""

from __future__ import annotations

import base64
import binascii
import math
from collections.abc import Mapping
from datetime import UTC, datetime
from typing import Any, Literal

from meadowlark.lwm2m.model.lookup import ModelLookup
from meadowlark.lwm2m.node import (
    LwM2mObject,
    MultiResource,
    Node,
    ObjectInstance,
    ObjectLink,
    Resource,
    ResourceInstance,
    ResourceType,
    SingleResource,
    Value,
    check_value,
    time_from_epoch,
    time_to_epoch,
)
from meadowlark.lwm2m.path import MAX_ID, InvalidPathError, LwM2mPath

OpaqueEncoding = Literal["hex", "base64"]

OBJECT, INSTANCE, SINGLE, MULTI, RESOURCE_INSTANCE = (
    "obj",
    "instance",
    "singleResource",
    "multiResource",
    "resourceInstance",
)
_KIND_AT_DEPTH = {1: (OBJECT,), 2: (INSTANCE,), 3: (SINGLE, MULTI), 4: (RESOURCE_INSTANCE,)}
_KEYS = {
    OBJECT: frozenset({"id", "kind", "instances"}),
    INSTANCE: frozenset({"id", "kind", "resources"}),
    SINGLE: frozenset({"id", "kind", "type", "value", "epoch"}),
    RESOURCE_INSTANCE: frozenset({"id", "kind", "type", "value", "epoch"}),
    MULTI: frozenset({"id", "kind", "type", "values", "epochs"}),
}
_NON_FINITE = {"NaN": math.nan, "Infinity": math.inf, "-Infinity": -math.inf}


class NodeJsonError(ValueError):
    """JSON that is not a valid node for its path and model; the message names the path."""


# --- output ---------------------------------------------------------------------------


def type_name(resource_type: ResourceType) -> str:
    """``ResourceType.UNSIGNED_INTEGER`` -> ``"unsigned_integer"``."""
    return resource_type.name.lower()


def node_to_json(node: Node, opaque: OpaqueEncoding = "hex") -> dict[str, Any]:
    match node:
        case LwM2mObject():
            return {
                "id": node.id,
                "kind": OBJECT,
                "instances": [node_to_json(i, opaque) for i in node.instances.values()],
            }
        case ObjectInstance():
            return {
                "id": node.id,
                "kind": INSTANCE,
                "resources": [node_to_json(r, opaque) for r in node.resources.values()],
            }
        case MultiResource():
            multi: dict[str, Any] = {
                "id": node.id,
                "kind": MULTI,
                "type": type_name(node.type),
                "values": {
                    str(i): value_to_json(node.type, v, opaque) for i, v in node.instances.items()
                },
            }
            if node.type is ResourceType.TIME:
                multi["epochs"] = {str(i): _epoch(v) for i, v in node.instances.items()}
            return multi
    kind = SINGLE if isinstance(node, SingleResource) else RESOURCE_INSTANCE
    single: dict[str, Any] = {
        "id": node.id,
        "kind": kind,
        "type": type_name(node.type),
        "value": value_to_json(node.type, node.value, opaque),
    }
    if node.type is ResourceType.TIME:
        single["epoch"] = _epoch(node.value)
    return single


def nodes_to_json(
    nodes: Mapping[LwM2mPath, Node], opaque: OpaqueEncoding = "hex"
) -> dict[str, dict[str, Any]]:
    """Composite content: ``{"/3/0/0": node, ...}``."""
    return {str(path): node_to_json(node, opaque) for path, node in nodes.items()}


def value_to_json(resource_type: ResourceType, value: Value, opaque: OpaqueEncoding = "hex") -> Any:
    match value:
        case bool() | int() | str() | None:
            return value
        case float():
            if math.isfinite(value):
                return value
            return "NaN" if math.isnan(value) else ("Infinity" if value > 0 else "-Infinity")
        case bytes():
            return value.hex() if opaque == "hex" else base64.b64encode(value).decode("ascii")
        case datetime():
            return iso_8601(value)
        case ObjectLink():
            return str(value)
    raise TypeError(f"not an LwM2M value: {value!r}")  # pragma: no cover


def iso_8601(value: datetime) -> str:
    """UTC, with ``Z``: ``2024-05-01T12:30:00Z``."""
    moment = value if value.tzinfo else value.replace(tzinfo=UTC)
    return moment.astimezone(UTC).isoformat().replace("+00:00", "Z")


def _epoch(value: Value) -> int | None:
    return time_to_epoch(value) if isinstance(value, datetime) else None


# --- input ----------------------------------------------------------------------------


def node_from_json(
    data: object, path: LwM2mPath, models: ModelLookup, opaque: OpaqueEncoding = "hex"
) -> Node:
    """The node at ``path`` described by ``data``; ``id`` may be left out at ``path``."""
    if path.is_root:
        raise NodeJsonError("a node needs an object, instance or resource path")
    return _node(data, path, models, opaque, id_given_by_path=True)


def nodes_from_json(
    data: object, models: ModelLookup, opaque: OpaqueEncoding = "hex"
) -> dict[LwM2mPath, Node]:
    """Write-Composite content: a map of path to node."""
    if not isinstance(data, dict) or not data:
        raise NodeJsonError("expected a non-empty object mapping paths to nodes")
    nodes: dict[LwM2mPath, Node] = {}
    for text, item in data.items():
        try:
            path = LwM2mPath.parse(text)
        except InvalidPathError as exc:
            raise NodeJsonError(str(exc)) from None
        if path in nodes:
            raise NodeJsonError(f"{path} is given twice")
        nodes[path] = node_from_json(item, path, models, opaque)
    return nodes


def instances_from_json(
    data: object,
    path: LwM2mPath,
    models: ModelLookup,
    opaque: OpaqueEncoding = "hex",
    *,
    free_instance_id: int,
) -> list[ObjectInstance]:
    """Create content at ``/o`` or ``/o/i``: an instance node, a list of them, or an object.

    The instance id comes from ``/o/i``, else from the node; a single instance without
    one gets ``free_instance_id``.
    """
    if path.object_id is None or path.depth > 2:
        raise NodeJsonError("create needs an object or object instance path")
    if path.is_object_instance:
        return [_instance(node_from_json(data, path, models, opaque))]
    if isinstance(data, dict) and data.get("kind") == OBJECT:
        return list(_object(node_from_json(data, path, models, opaque)).instances.values())
    items = data if isinstance(data, list) else [data]
    if not items:
        raise NodeJsonError("create needs at least one object instance")
    instances = []
    for item in items:
        if not isinstance(item, dict):
            raise NodeJsonError(f"{path}: an object instance must be a JSON object")
        if "id" not in item and len(items) == 1:
            item = {**item, "id": free_instance_id}
        instance_id = _id(item, path)
        instances.append(_instance(node_from_json(item, path.child(instance_id), models, opaque)))
    if len({instance.id for instance in instances}) != len(instances):
        raise NodeJsonError(f"{path}: an instance id is given twice")
    return instances


def _instance(node: Node) -> ObjectInstance:
    assert isinstance(node, ObjectInstance)
    return node


def _object(node: Node) -> LwM2mObject:
    assert isinstance(node, LwM2mObject)
    return node


def _node(
    data: object,
    path: LwM2mPath,
    models: ModelLookup,
    opaque: OpaqueEncoding,
    *,
    id_given_by_path: bool,
) -> Node:
    if not isinstance(data, dict):
        raise NodeJsonError(f"{path}: a node must be a JSON object")
    if not id_given_by_path or "id" in data:
        node_id = _id(data, path)
        if node_id != path.ids[-1]:
            raise NodeJsonError(f"{path}: id {node_id} does not match the path")
    kind = _kind(data, path)
    unknown = set(data) - _KEYS[kind]
    if unknown:
        raise NodeJsonError(f"{path}: unexpected key(s) {sorted(unknown)} in a {kind} node")
    if kind == OBJECT:
        instance_nodes = _children(data, "instances", path, models, opaque)
        return LwM2mObject(path.ids[0], {i.id: _instance(i) for i in instance_nodes})
    if kind == INSTANCE:
        resources = _children(data, "resources", path, models, opaque)
        return ObjectInstance(path.ids[1], {r.id: _resource(r) for r in resources})
    resource_type = _resource_type(data, path, kind, models)
    if kind == MULTI:
        values = data.get("values")
        if not isinstance(values, dict):
            raise NodeJsonError(f"{path}: a multiResource needs a 'values' object")
        instances: dict[int, Value] = {}
        for key, raw in values.items():
            instance_path = path.child(_int_id(key, path))
            instances[instance_path.ids[-1]] = _value(raw, resource_type, instance_path, opaque)
        return MultiResource(path.ids[2], resource_type, instances)
    if "value" not in data:
        raise NodeJsonError(f"{path}: a {kind} needs a 'value'")
    value = _value(data["value"], resource_type, path, opaque)
    if kind == SINGLE:
        return SingleResource(path.ids[2], resource_type, value)
    return ResourceInstance(path.ids[3], resource_type, value)


def _children(
    data: dict[str, Any], key: str, path: LwM2mPath, models: ModelLookup, opaque: OpaqueEncoding
) -> list[Node]:
    items = data.get(key, [])
    if not isinstance(items, list):
        raise NodeJsonError(f"{path}: '{key}' must be a list")
    children: list[Node] = []
    seen: set[int] = set()
    for item in items:
        if not isinstance(item, dict):
            raise NodeJsonError(f"{path}: every entry of '{key}' must be a JSON object")
        child_id = _id(item, path)
        if child_id in seen:
            raise NodeJsonError(f"{path}: id {child_id} is given twice in '{key}'")
        seen.add(child_id)
        children.append(
            _node(item, _child_path(path, child_id), models, opaque, id_given_by_path=False)
        )
    return children


def _child_path(path: LwM2mPath, child_id: int) -> LwM2mPath:
    try:
        return path.child(child_id)
    except InvalidPathError as exc:
        raise NodeJsonError(f"{path}: {exc}") from None


def _resource(node: Node) -> Resource:
    assert isinstance(node, SingleResource | MultiResource)
    return node


def _id(data: dict[str, Any], path: LwM2mPath) -> int:
    if "id" not in data:
        raise NodeJsonError(f"{path}: a nested node needs an 'id'")
    return _int_id(data["id"], path)


def _int_id(raw: object, path: LwM2mPath) -> int:
    if isinstance(raw, str) and raw.isascii() and raw.isdigit():
        raw = int(raw)
    if isinstance(raw, bool) or not isinstance(raw, int) or not 0 <= raw <= MAX_ID:
        raise NodeJsonError(f"{path}: id must be an integer 0..{MAX_ID}, got {raw!r}")
    return raw


def _kind(data: dict[str, Any], path: LwM2mPath) -> str:
    allowed = _KIND_AT_DEPTH[path.depth]
    kind = data.get("kind")
    if kind is None:
        if path.is_resource:
            return MULTI if "values" in data else SINGLE
        return allowed[0]
    if kind not in allowed:
        raise NodeJsonError(f"{path}: kind must be {' or '.join(allowed)}, got {kind!r}")
    return str(kind)


def _resource_type(
    data: dict[str, Any], path: LwM2mPath, kind: str, models: ModelLookup
) -> ResourceType:
    assert path.object_id is not None and path.resource_id is not None
    declared = data.get("type")
    given = None if declared is None else _parse_type(declared, path)
    model = models.get_resource(path.object_id, path.resource_id)
    if model is None:
        if given is None:
            raise NodeJsonError(f"{path}: unknown resource, 'type' is required")
        return given
    if given is not None and given is not model.type:
        raise NodeJsonError(
            f"{path}: type {type_name(given)} given, the model says {type_name(model.type)}"
        )
    if kind != RESOURCE_INSTANCE and model.multiple != (kind == MULTI):
        expected = MULTI if model.multiple else SINGLE
        raise NodeJsonError(f"{path}: the model says this is a {expected}")
    if kind == RESOURCE_INSTANCE and not model.multiple:
        raise NodeJsonError(f"{path}: a single-instance resource has no resource instances")
    return model.type


def _parse_type(declared: object, path: LwM2mPath) -> ResourceType:
    for resource_type in ResourceType:
        if declared == type_name(resource_type):
            return resource_type
    names = ", ".join(type_name(t) for t in ResourceType)
    raise NodeJsonError(f"{path}: unknown type {declared!r} (one of {names})")


def _value(raw: object, resource_type: ResourceType, path: LwM2mPath, opaque: str) -> Value:
    try:
        return check_value(resource_type, _python_value(raw, resource_type, opaque))
    except (TypeError, ValueError, OverflowError, OSError) as exc:
        raise NodeJsonError(f"{path}: {exc}") from None


def _python_value(raw: object, resource_type: ResourceType, opaque: str) -> object:
    """The Python value of JSON ``raw``; wrong kinds are left for ``check_value`` to refuse."""
    match resource_type:
        case ResourceType.FLOAT if isinstance(raw, str):
            if raw not in _NON_FINITE:
                raise ValueError(f"Float value expected, got {raw!r}")
            return _NON_FINITE[raw]
        case ResourceType.OPAQUE if isinstance(raw, str):
            try:
                if opaque == "hex":
                    return bytes.fromhex(raw)
                return base64.b64decode(raw, validate=True)
            except (ValueError, binascii.Error):
                raise ValueError(f"Opaque value is not valid {opaque}") from None
        case ResourceType.TIME:
            return _time(raw)
        case ResourceType.OBJLNK if isinstance(raw, str):
            return ObjectLink.parse(raw)
    return raw


def _time(raw: object) -> object:
    if isinstance(raw, str):
        try:
            moment = datetime.fromisoformat(raw)
        except ValueError:
            raise ValueError(f"Time must be ISO 8601 or epoch seconds, got {raw!r}") from None
        return moment if moment.tzinfo else moment.replace(tzinfo=UTC)
    if isinstance(raw, int | float) and not isinstance(raw, bool):
        return time_from_epoch(raw)
    return raw
