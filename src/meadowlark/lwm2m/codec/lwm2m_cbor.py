"""LwM2M CBOR (content format 11544, LwM2M Core 1.2 "LwM2M CBOR").

The payload is a CBOR map whose keys are path segments, either one unsigned integer or an
array of them, and whose values are either nested maps (keys continue the path) or the
resource values themselves, e.g. ``{[3, 0]: {0: "Open Mobile Alliance", 6: {0: 1, 1: 5}}}``.
The top-level keys start at the root, so paths are absolute.

Values are native CBOR (Core 1.2 Table C.2): integers, floats, booleans, text strings,
byte strings; Objlnk is the text ``"3:0"``; Time is an integer number of seconds (CBOR
date/time tags 0 and 1 are accepted on input). An empty map declares an empty object,
instance or multiple-instance resource. The format has no timestamps, so the timestamped
functions carry exactly one batch without time.

The encoder nests one map per path level and folds chains of single-entry maps into one
array key, so ``/3/0/1`` alone becomes ``{[3, 0, 1]: value}``.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from datetime import datetime

import cbor2

from meadowlark.lwm2m.codec.errors import DecodeError, EncodeError
from meadowlark.lwm2m.codec.senml_cbor import load_cbor
from meadowlark.lwm2m.codec.senml_common import (
    Leaf,
    build_composite,
    build_node,
    check_node_at,
    checked_value,
    child_path,
    infer_number_type,
    number_value,
)
from meadowlark.lwm2m.codec.timestamped import TimestampedNodes
from meadowlark.lwm2m.model.lookup import ModelLookup, resource_model_at
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
    time_to_epoch,
)
from meadowlark.lwm2m.path import InvalidPathError, LwM2mPath

_MAX_DEPTH = 12
"""Top map, four nested maps, array keys and a value fit well within this."""

_Tree = dict[object, object]


def decode(payload: bytes, path: LwM2mPath, models: ModelLookup) -> Node:
    leaves, containers = _read(payload, models)
    return build_node(leaves, path, models, containers)


def encode(node: Node, path: LwM2mPath, models: ModelLookup) -> bytes:
    return encode_composite({path: node}, models)


def decode_composite(
    payload: bytes, models: ModelLookup, requested_paths: Sequence[LwM2mPath] | None = None
) -> dict[LwM2mPath, Node]:
    """See ``senml_common.build_composite`` for what ``requested_paths`` changes."""
    leaves, containers = _read(payload, models)
    return build_composite(leaves, models, requested_paths, containers)


def encode_composite(nodes: Mapping[LwM2mPath, Node], models: ModelLookup) -> bytes:
    tree: _Tree = {}
    for path, node in nodes.items():
        if path.is_root:
            raise EncodeError("a composite entry needs an object, instance or resource path")
        _insert(tree, path, _content(node, path))
    try:
        return cbor2.dumps(_folded(tree), canonical=True)
    except (cbor2.CBOREncodeError, ValueError, TypeError) as error:
        raise EncodeError(f"cannot encode LwM2M CBOR: {error}") from error


def decode_timestamped(
    payload: bytes, path: LwM2mPath | None, models: ModelLookup, now: datetime | None = None
) -> list[TimestampedNodes]:
    """One batch without timestamp; ``now`` is accepted for a uniform codec interface."""
    if path is None:
        return [TimestampedNodes(None, decode_composite(payload, models))]
    return [TimestampedNodes(None, {path: decode(payload, path, models)})]


def encode_timestamped(batches: Sequence[TimestampedNodes], models: ModelLookup) -> bytes:
    if len(batches) != 1 or batches[0].timestamp is not None:
        raise EncodeError("LwM2M CBOR carries one batch of values without timestamp")
    return encode_composite(batches[0].nodes, models)


def _read(payload: bytes, models: ModelLookup) -> tuple[list[Leaf], list[LwM2mPath]]:
    document = load_cbor(payload, _MAX_DEPTH)
    if not isinstance(document, dict):
        raise DecodeError("an LwM2M CBOR payload must be a map")
    leaves: list[Leaf] = []
    containers: list[LwM2mPath] = []
    pending: list[tuple[tuple[int, ...], dict[object, object]]] = [((), document)]
    while pending:
        prefix, mapping = pending.pop()
        for key, value in mapping.items():
            path = _path(prefix + _key_ids(key))
            if isinstance(value, dict):
                if path.is_resource_instance:
                    raise DecodeError(f"a resource instance cannot hold a map: {path}")
                containers.append(path)
                pending.append((path.ids, value))
            elif path.depth < 3:
                raise DecodeError(f"a value must belong to a resource, not {path}")
            else:
                model = resource_model_at(models, path)
                try:
                    resource_type, typed = _read_value(value, model.type if model else None)
                except DecodeError as error:
                    raise DecodeError(f"{path}: {error}") from error
                leaves.append(Leaf(path, resource_type, typed))
    return leaves, containers


def _key_ids(key: object) -> tuple[int, ...]:
    ids = key if isinstance(key, tuple) and key else (key,)
    if any(isinstance(i, bool) or not isinstance(i, int) for i in ids):
        raise DecodeError(f"a map key must be a path segment or an array of them: {key!r}")
    return ids


def _path(ids: tuple[int, ...]) -> LwM2mPath:
    try:
        return LwM2mPath.of(*ids)
    except InvalidPathError as error:
        raise DecodeError(str(error)) from error


def _read_value(raw: object, resource_type: ResourceType | None) -> tuple[ResourceType, Value]:
    if resource_type is None:
        resource_type = _inferred_type(raw)
    match resource_type:
        case ResourceType.STRING | ResourceType.CORELNK if isinstance(raw, str):
            return resource_type, raw
        case ResourceType.OBJLNK if isinstance(raw, str):
            try:
                return resource_type, ObjectLink.parse(raw)
            except ValueError as error:
                raise DecodeError(str(error)) from error
        case ResourceType.BOOLEAN if isinstance(raw, bool):
            return resource_type, raw
        case ResourceType.OPAQUE if isinstance(raw, bytes):
            return resource_type, raw
        case (
            ResourceType.INTEGER
            | ResourceType.UNSIGNED_INTEGER
            | ResourceType.FLOAT
            | ResourceType.TIME
        ):
            return resource_type, number_value(raw, resource_type)
        case ResourceType.NONE:
            raise DecodeError("an executable resource carries no value")
    raise DecodeError(f"not a {resource_type.value} value: {raw!r}")


def _inferred_type(raw: object) -> ResourceType:
    match raw:
        case bool():
            return ResourceType.BOOLEAN
        case int() | float() | datetime():
            return infer_number_type(raw)
        case str():
            return ResourceType.STRING
        case bytes():
            return ResourceType.OPAQUE
        case None:
            raise DecodeError("null values are not supported")
    raise DecodeError(f"unsupported CBOR value {raw!r}")


def _content(node: Node, path: LwM2mPath) -> object:
    """The map (or value) that stands for ``node`` under the key of ``path``."""
    check_node_at(node, path)
    match node:
        case LwM2mObject():
            return {i: _content(child, child_path(path, i)) for i, child in node.instances.items()}
        case ObjectInstance():
            return {i: _content(child, child_path(path, i)) for i, child in node.resources.items()}
        case MultiResource():
            return {i: _cbor_value(node.type, value) for i, value in node.instances.items()}
        case SingleResource() | ResourceInstance():
            return _cbor_value(node.type, node.value)


def _cbor_value(resource_type: ResourceType, value: Value) -> object:
    checked = checked_value(resource_type, value)
    match checked:
        case datetime():
            return time_to_epoch(checked)
        case ObjectLink():
            return str(checked)
    return checked


def _insert(tree: _Tree, path: LwM2mPath, content: object) -> None:
    level = tree
    for segment in path.ids[:-1]:
        child = level.setdefault(segment, {})
        if not isinstance(child, dict):
            raise EncodeError(f"{path} lies inside a value given for another path")
        level = child
    if path.ids[-1] in level:
        raise EncodeError(f"{path} overlaps another entry")
    level[path.ids[-1]] = content


def _folded(tree: _Tree) -> _Tree:
    """Fold chains of single-entry maps into array keys: ``{3: {0: x}}`` -> ``{[3, 0]: x}``."""
    folded: _Tree = {}
    for key, value in tree.items():
        ids: tuple[object, ...] = (key,)
        while isinstance(value, dict) and len(value) == 1:
            ((child_key, value),) = value.items()
            ids += (child_key,)
        content = _folded(value) if isinstance(value, dict) else value
        folded[ids[0] if len(ids) == 1 else ids] = content
    return folded
