"""Flat resource values (one per resource or resource instance path) for caches and events."""

from __future__ import annotations

import base64
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime

from meadowlark.lwm2m.node import (
    LwM2mObject,
    MultiResource,
    Node,
    ObjectInstance,
    ObjectLink,
    ResourceInstance,
    ResourceType,
    SingleResource,
    Value,
    time_from_epoch,
    time_to_epoch,
)
from meadowlark.lwm2m.path import LwM2mPath

JsonScalar = int | float | bool | str | None


@dataclass(frozen=True, slots=True)
class CachedValue:
    type: ResourceType
    value: Value
    updated_at: datetime


def flatten(node: Node, path: LwM2mPath) -> dict[LwM2mPath, tuple[ResourceType, Value]]:
    """Leaf values of ``node`` found at ``path``: single resources and resource instances."""
    leaves: dict[LwM2mPath, tuple[ResourceType, Value]] = {}
    _collect(node, path, leaves)
    return leaves


def flatten_all(nodes: Mapping[LwM2mPath, Node], at: datetime) -> dict[LwM2mPath, CachedValue]:
    values: dict[LwM2mPath, CachedValue] = {}
    for path, node in nodes.items():
        if (  # a single resource at its own path: most notifications
            type(node) is SingleResource
            and path.resource_id is not None
            and path.resource_instance_id is None
        ):
            values[path] = CachedValue(node.type, node.value, at)
            continue
        for leaf_path, (resource_type, value) in flatten(node, path).items():
            values[leaf_path] = CachedValue(resource_type, value, at)
    return values


def _collect(
    node: Node, path: LwM2mPath, leaves: dict[LwM2mPath, tuple[ResourceType, Value]]
) -> None:
    match node:
        case LwM2mObject():
            for instance in node.instances.values():
                _collect(instance, LwM2mPath.of(node.id, instance.id), leaves)
        case ObjectInstance():
            for resource in node.resources.values():
                _collect(resource, LwM2mPath.of(*path.ids[:2], resource.id), leaves)
        case SingleResource():
            leaves[LwM2mPath.of(*path.ids[:3])] = (node.type, node.value)
        case MultiResource():
            resource_path = LwM2mPath.of(*path.ids[:3])
            for instance_id, value in node.instances.items():
                leaves[resource_path.child(instance_id)] = (node.type, value)
        case ResourceInstance():
            leaves[LwM2mPath.of(*path.ids[:3], node.id)] = (node.type, node.value)


def value_to_json(resource_type: ResourceType, value: Value) -> JsonScalar:
    """A JSON-storable form: Opaque as base64, Time as epoch seconds, Objlnk as ``3:0``."""
    match value:
        case bytes():
            return base64.b64encode(value).decode("ascii")
        case datetime():
            return time_to_epoch(value)
        case ObjectLink():
            return str(value)
    return value


def value_from_json(resource_type: ResourceType, stored: JsonScalar) -> Value:
    """Inverse of ``value_to_json`` for a value of ``resource_type``."""
    if stored is None:
        return None
    match resource_type:
        case ResourceType.OPAQUE:
            return base64.b64decode(str(stored))
        case ResourceType.TIME:
            return time_from_epoch(float(stored))
        case ResourceType.OBJLNK:
            return ObjectLink.parse(str(stored))
    return stored
