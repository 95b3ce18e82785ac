"""SenML record logic shared by the SenML JSON, SenML CBOR and OMA JSON codecs (RFC 8428).

A serializer turns a payload into *raw records*: mappings keyed by the RFC 8428 JSON labels
(``bn``, ``bt``, ``n``, ``t``, ``v``, ``vs``, ``vb``, ``vd``, plus LwM2M's ``vlo``) with ``vd``
already as bytes, and back. Everything past that point lives here: base name and base time
resolution, typing values against the object model, building node trees and flattening them.

The leaf/tree half (``Leaf``, ``build_node``, ``build_composite``, ``node_leaves`` and the
number conversions) does not depend on SenML and is reused by the LwM2M CBOR codec.

Unknown resources (no model) get their type from the value field: ``v`` holding an integer
is INTEGER (UNSIGNED_INTEGER above the signed 64-bit range) and any other number FLOAT, so a
JSON ``1.0`` stays a float; ``vs`` is STRING, ``vb`` BOOLEAN, ``vd`` OPAQUE, ``vlo`` OBJLNK.
"""

from __future__ import annotations

import base64
import binascii
import math
from collections.abc import Callable, Collection, Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import TypeAlias

from meadowlark.lwm2m.codec.errors import DecodeError, EncodeError
from meadowlark.lwm2m.codec.timestamped import TimestampedNodes
from meadowlark.lwm2m.model.lookup import ModelLookup, resource_model_at
from meadowlark.lwm2m.node import (
    INT64_MAX,
    INT64_MIN,
    UINT64_MAX,
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
from meadowlark.lwm2m.path import InvalidPathError, LwM2mPath

RELATIVE_TIME_LIMIT = 2**28
"""RFC 8428 section 4.5.3: resolved times below 2**28 are seconds relative to now."""

VALUE_LABELS = ("v", "vs", "vb", "vd", "vlo")

RawRecord: TypeAlias = dict[object, object]
FieldValue: TypeAlias = tuple[str, object]
ValueReader: TypeAlias = Callable[[str, object, ResourceType | None], tuple[ResourceType, Value]]
ValueWriter: TypeAlias = Callable[[ResourceType, Value], FieldValue]

# --- leaves and node trees (format independent) ------------------------------------------


@dataclass(frozen=True, slots=True)
class Leaf:
    """One typed value at a resource (depth 3) or resource instance (depth 4) path."""

    path: LwM2mPath
    type: ResourceType
    value: Value


def build_node(
    leaves: Iterable[Leaf],
    path: LwM2mPath,
    models: ModelLookup,
    containers: Collection[LwM2mPath] = (),
) -> Node:
    """Assemble the node at request ``path`` from ``leaves``, all of which must lie under it.

    ``containers`` names objects, instances and multiple-instance resources that a payload
    declared even when they hold no value (only LwM2M CBOR can say that).
    """
    if path.is_root:
        raise DecodeError("a single node needs an object, instance or resource path")
    leaves = list(leaves)
    for leaf in leaves:
        if not leaf.path.starts_with(path):
            raise DecodeError(f"{leaf.path} is outside the request path {path}")
    resources = _resources_from_leaves(leaves, models)
    for container in containers:
        if container.is_resource and container.starts_with(path) and container not in resources:
            resources[container] = _empty_multi_resource(container, models)
    node_id = path.ids[-1]
    if path.is_resource_instance:
        resource = resources.get(path.parent)
        if not isinstance(resource, MultiResource) or node_id not in resource.instances:
            raise DecodeError(f"the payload holds no value for {path}")
        return ResourceInstance(node_id, resource.type, resource.instances[node_id])
    if path.is_resource:
        return resources[path] if path in resources else _empty_multi_resource(path, models)
    instances = _instances(resources, [c for c in containers if c.starts_with(path)])
    if path.is_object_instance:
        return instances.get(node_id, ObjectInstance(node_id))
    return LwM2mObject(node_id, {i.id: i for i in instances.values()})


def build_composite(
    leaves: Iterable[Leaf],
    models: ModelLookup,
    requested_paths: Sequence[LwM2mPath] | None = None,
    containers: Collection[LwM2mPath] = (),
) -> dict[LwM2mPath, Node]:
    """Nodes of a composite payload.

    Without ``requested_paths`` every value is returned on its own: a SingleResource at its
    resource path or a ResourceInstance at its resource instance path. With them, one node
    per requested path that the payload has data for (a leaf may feed overlapping paths).
    """
    leaves = list(leaves)
    if requested_paths is None:
        nodes: dict[LwM2mPath, Node] = {}
        for resource_path, resource in _resources_from_leaves(leaves, models).items():
            if isinstance(resource, SingleResource):
                nodes[resource_path] = resource
                continue
            for instance_id, value in resource.instances.items():
                instance = ResourceInstance(instance_id, resource.type, value)
                nodes[resource_path.child(instance_id)] = instance
        return nodes
    for leaf in leaves:
        if not any(leaf.path.starts_with(requested) for requested in requested_paths):
            raise DecodeError(f"{leaf.path} was not requested")
    nodes = {}
    for requested in requested_paths:
        inside = [leaf for leaf in leaves if leaf.path.starts_with(requested)]
        declared = [c for c in containers if c.starts_with(requested)]
        if inside or declared:
            nodes[requested] = build_node(inside, requested, models, declared)
    return nodes


def node_leaves(node: Node, path: LwM2mPath) -> list[Leaf]:
    """Flatten ``node`` (which must be the node at ``path``) into checked leaves, by id."""
    check_node_at(node, path)
    match node:
        case LwM2mObject():
            return [
                leaf
                for instance_id, instance in sorted(node.instances.items())
                for leaf in node_leaves(instance, child_path(path, instance_id))
            ]
        case ObjectInstance():
            return [
                leaf
                for resource_id, resource in sorted(node.resources.items())
                for leaf in node_leaves(resource, child_path(path, resource_id))
            ]
        case MultiResource():
            return [
                Leaf(child_path(path, instance_id), node.type, checked_value(node.type, value))
                for instance_id, value in sorted(node.instances.items())
            ]
        case SingleResource() | ResourceInstance():
            return [Leaf(path, node.type, checked_value(node.type, node.value))]


def checked_value(resource_type: ResourceType, value: Value) -> Value:
    """``check_value`` for encoders: an EncodeError for bad values and executable resources."""
    if resource_type is ResourceType.NONE:
        raise EncodeError("an executable resource has no value to encode")
    try:
        return check_value(resource_type, value)
    except (TypeError, ValueError) as error:
        raise EncodeError(str(error)) from error


def number_value(raw: object, resource_type: ResourceType) -> Value:
    """Convert a decoded number to a numeric or Time value; integral floats become ints.

    A datetime (decoded from a CBOR date/time tag) is accepted for Time.
    """
    if isinstance(raw, datetime) and resource_type is ResourceType.TIME:
        return raw if raw.tzinfo else raw.replace(tzinfo=UTC)
    if isinstance(raw, bool) or not isinstance(raw, int | float):
        raise DecodeError(f"{resource_type.value} value must be a number, got {raw!r}")
    if resource_type is ResourceType.FLOAT:
        try:
            return float(raw)
        except OverflowError as error:
            raise DecodeError(f"number too large for a Float: {raw}") from error
    if resource_type is ResourceType.TIME:
        try:
            return time_from_epoch(raw)
        except (OverflowError, ValueError, OSError) as error:
            raise DecodeError(f"not a representable Time: {raw!r}") from error
    if isinstance(raw, float):
        if not raw.is_integer():
            raise DecodeError(f"{resource_type.value} value is not integral: {raw!r}")
        raw = int(raw)
    unsigned = resource_type is ResourceType.UNSIGNED_INTEGER
    low, high = (0, UINT64_MAX) if unsigned else (INT64_MIN, INT64_MAX)
    if not low <= raw <= high:
        raise DecodeError(f"{resource_type.value} value out of range: {raw}")
    return raw


def infer_number_type(raw: int | float | datetime) -> ResourceType:
    if isinstance(raw, datetime):
        return ResourceType.TIME
    if isinstance(raw, float):
        return ResourceType.FLOAT
    return ResourceType.UNSIGNED_INTEGER if raw > INT64_MAX else ResourceType.INTEGER


def child_path(path: LwM2mPath, child_id: int) -> LwM2mPath:
    """``path.child`` for encoders: an EncodeError for ids a path cannot hold."""
    try:
        return path.child(child_id)
    except InvalidPathError as error:
        raise EncodeError(str(error)) from error


def check_node_at(node: Node, path: LwM2mPath) -> None:
    node_types: dict[int, type | tuple[type, ...]] = {
        1: LwM2mObject,
        2: ObjectInstance,
        3: (SingleResource, MultiResource),
        4: ResourceInstance,
    }
    expected = node_types.get(path.depth, ())
    if not isinstance(node, expected):
        raise EncodeError(f"a {type(node).__name__} cannot be the node at {path}")
    if node.id != path.ids[-1]:
        raise EncodeError(f"node id {node.id} does not match the path {path}")


def _resources_from_leaves(
    leaves: Iterable[Leaf], models: ModelLookup
) -> dict[LwM2mPath, Resource]:
    singles: dict[LwM2mPath, Leaf] = {}
    multiples: dict[LwM2mPath, dict[int, Leaf]] = {}
    for leaf in leaves:
        is_instance = leaf.path.is_resource_instance
        resource_path = leaf.path.parent if is_instance else leaf.path
        model = resource_model_at(models, leaf.path)
        if model is not None and model.multiple != is_instance:
            kind = "multiple" if model.multiple else "single"
            raise DecodeError(f"{leaf.path} does not fit {kind}-instance resource {resource_path}")
        if resource_path in singles or (not is_instance and resource_path in multiples):
            raise DecodeError(f"{resource_path} appears more than once")
        if is_instance:
            instances = multiples.setdefault(resource_path, {})
            instance_id = leaf.path.ids[-1]
            if instance_id in instances:
                raise DecodeError(f"{leaf.path} appears more than once")
            instances[instance_id] = leaf
        else:
            singles[resource_path] = leaf
    resources: dict[LwM2mPath, Resource] = {
        path: SingleResource(path.ids[-1], leaf.type, leaf.value) for path, leaf in singles.items()
    }
    for path, instance_leaves in multiples.items():
        resource_type, values = _unified(path, instance_leaves)
        resources[path] = MultiResource(path.ids[-1], resource_type, values)
    return resources


def _unified(path: LwM2mPath, leaves: Mapping[int, Leaf]) -> tuple[ResourceType, dict[int, Value]]:
    """One type for the instances of a resource whose types were inferred one by one."""
    types = {leaf.type for leaf in leaves.values()}
    values = {instance_id: leaf.value for instance_id, leaf in leaves.items()}
    if len(types) == 1:
        return types.pop(), values
    if types <= {ResourceType.INTEGER, ResourceType.UNSIGNED_INTEGER, ResourceType.FLOAT}:
        if ResourceType.FLOAT in types:
            floats = {i: number_value(v, ResourceType.FLOAT) for i, v in values.items()}
            return ResourceType.FLOAT, floats
        if all(isinstance(v, int) and v >= 0 for v in values.values()):
            return ResourceType.UNSIGNED_INTEGER, values
    raise DecodeError(f"the instances of {path} have mixed types")


def _empty_multi_resource(path: LwM2mPath, models: ModelLookup) -> MultiResource:
    model = resource_model_at(models, path)
    if model is None:
        raise DecodeError(f"cannot tell the type of empty unknown resource {path}")
    if not model.multiple:
        raise DecodeError(f"{path} is a single-instance resource but has no value")
    return MultiResource(path.ids[-1], model.type, {})


def _instances(
    resources: Mapping[LwM2mPath, Resource], containers: Iterable[LwM2mPath]
) -> dict[int, ObjectInstance]:
    by_instance: dict[int, dict[int, Resource]] = {}
    for container in containers:
        if container.depth >= 2:
            by_instance.setdefault(container.ids[1], {})
    for path, resource in sorted(resources.items()):
        _, instance_id, resource_id = path.ids
        by_instance.setdefault(instance_id, {})[resource_id] = resource
    return {iid: ObjectInstance(iid, found) for iid, found in sorted(by_instance.items())}


# --- SenML records -----------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class SenmlRecord:
    """A record after base name/time resolution; ``time`` is None when none was given."""

    path: LwM2mPath
    time: float | None
    value: FieldValue | None


def resolve_records(raw_records: object) -> list[SenmlRecord]:
    """Apply RFC 8428 section 4.5 resolution (bn/bt/bv carry over to later records)."""
    if not isinstance(raw_records, list):
        raise DecodeError("a SenML pack must be an array of records")
    base_name = ""
    base_time: int | float | None = None
    base_value: int | float | None = None
    resolved: list[SenmlRecord] = []
    for index, raw in enumerate(raw_records):
        if not isinstance(raw, dict):
            raise DecodeError(f"SenML record {index} is not a map")
        for label in raw:
            if isinstance(label, str) and label.endswith("_"):
                raise DecodeError(f"SenML record {index} has must-understand label {label!r}")
        if "bn" in raw:
            base_name = _text_label(raw, "bn", index)
        if "bt" in raw:
            base_time = _number_label(raw, "bt", index)
        if "bv" in raw:
            base_value = _number_label(raw, "bv", index)
        name = _joined_name(base_name, _text_label(raw, "n", index) if "n" in raw else "")
        if not name:
            raise DecodeError(f"SenML record {index} has no name")
        try:
            path = LwM2mPath.parse(name)
        except InvalidPathError as error:
            raise DecodeError(f"SenML record {index}: {error}") from error
        time = None
        if base_time is not None or "t" in raw:
            time = (base_time or 0) + (_number_label(raw, "t", index) if "t" in raw else 0)
        resolved.append(SenmlRecord(path, time, _field_value(raw, index, base_value)))
    return resolved


def resolve_time(seconds: float | None, now: datetime | None) -> datetime | None:
    """The datetime of a resolved SenML time; relative times are counted from ``now``.

    A relative time of zero means "roughly now" and yields ``None`` when ``now`` is unknown.
    """
    if seconds is None:
        return None
    try:
        if seconds >= RELATIVE_TIME_LIMIT:
            return time_from_epoch(seconds)
        if now is None:
            if seconds == 0:
                return None
            raise DecodeError("the payload has relative times; decode it with a reference 'now'")
        reference = now if now.tzinfo else now.replace(tzinfo=UTC)
        return reference + timedelta(seconds=seconds)
    except (OverflowError, ValueError, OSError) as error:
        raise DecodeError(f"time out of range: {seconds!r}") from error


def read_value(
    label: str, raw: object, resource_type: ResourceType | None
) -> tuple[ResourceType, Value]:
    """Type a SenML value field, inferring the type for unknown resources."""
    if resource_type is None:
        resource_type = _inferred_type(label, raw)
    expected = _LABEL_OF_TYPE.get(resource_type)
    if expected is None:
        raise DecodeError("an executable resource carries no value")
    if label != expected:
        raise DecodeError(f"a {resource_type.value} value belongs in {expected!r}, not {label!r}")
    match label:
        case "v":
            return resource_type, number_value(raw, resource_type)
        case "vs" if isinstance(raw, str):
            return resource_type, raw
        case "vb" if isinstance(raw, bool):
            return resource_type, raw
        case "vd" if isinstance(raw, bytes):
            return resource_type, raw
        case "vlo" if isinstance(raw, str):
            try:
                return resource_type, ObjectLink.parse(raw)
            except ValueError as error:
                raise DecodeError(str(error)) from error
    raise DecodeError(f"bad {label!r} value {raw!r}")


def write_value(resource_type: ResourceType, value: Value) -> FieldValue:
    label = _LABEL_OF_TYPE[resource_type]
    match value:
        case datetime():
            return label, time_to_epoch(value)
        case ObjectLink():
            return label, str(value)
    return label, value


def leaves_from_records(
    records: Iterable[SenmlRecord], models: ModelLookup, reader: ValueReader = read_value
) -> list[Leaf]:
    leaves = []
    for record in records:
        if record.value is None:
            raise DecodeError(f"the record for {record.path} has no value")
        if record.path.depth < 3:
            raise DecodeError(f"a value must name a resource or resource instance: {record.path}")
        model = resource_model_at(models, record.path)
        label, raw = record.value
        try:
            resource_type, value = reader(label, raw, model.type if model else None)
        except DecodeError as error:
            raise DecodeError(f"{record.path}: {error}") from error
        leaves.append(Leaf(record.path, resource_type, value))
    return leaves


def decode_records(
    raw_records: object, path: LwM2mPath, models: ModelLookup, reader: ValueReader = read_value
) -> Node:
    leaves = leaves_from_records(resolve_records(raw_records), models, reader)
    return build_node(leaves, path, models)


def decode_composite_records(
    raw_records: object,
    models: ModelLookup,
    requested_paths: Sequence[LwM2mPath] | None = None,
    reader: ValueReader = read_value,
) -> dict[LwM2mPath, Node]:
    leaves = leaves_from_records(resolve_records(raw_records), models, reader)
    return build_composite(leaves, models, requested_paths)


def decode_timestamped_records(
    raw_records: object,
    path: LwM2mPath | None,
    models: ModelLookup,
    now: datetime | None = None,
    reader: ValueReader = read_value,
) -> list[TimestampedNodes]:
    """Group consecutive records with the same time into one batch each, in payload order."""
    groups: list[tuple[datetime | None, list[SenmlRecord]]] = []
    for record in resolve_records(raw_records):
        timestamp = resolve_time(record.time, now)
        if not groups or groups[-1][0] != timestamp:
            groups.append((timestamp, []))
        groups[-1][1].append(record)
    batches = []
    for timestamp, records in groups:
        leaves = leaves_from_records(records, models, reader)
        if path is None:
            nodes = build_composite(leaves, models)
        else:
            nodes = {path: build_node(leaves, path, models)}
        batches.append(TimestampedNodes(timestamp, nodes))
    return batches


def paths_from_records(raw_records: object) -> list[LwM2mPath]:
    return [record.path for record in resolve_records(raw_records)]


def records_for_node(
    node: Node, path: LwM2mPath, writer: ValueWriter = write_value
) -> list[RawRecord]:
    """Records named relative to a base name on the first record, as the Core examples do."""
    leaves = node_leaves(node, path)
    base = path if any(leaf.path != path for leaf in leaves) else path.parent
    records: list[RawRecord] = []
    for leaf in leaves:
        label, raw = writer(leaf.type, leaf.value)
        name = "/".join(str(i) for i in leaf.path.ids[base.depth :])
        record: RawRecord = {} if records else {"bn": f"{base}/"}
        record.update({"n": name, label: raw})
        records.append(record)
    return records


def records_for_composite(
    nodes: Mapping[LwM2mPath, Node], writer: ValueWriter = write_value
) -> list[RawRecord]:
    """Records with absolute names, one per value."""
    records: list[RawRecord] = []
    seen: set[LwM2mPath] = set()
    for path, node in nodes.items():
        for leaf in node_leaves(node, path):
            if leaf.path in seen:
                raise EncodeError(f"{leaf.path} is given more than once")
            seen.add(leaf.path)
            label, raw = writer(leaf.type, leaf.value)
            records.append({"n": str(leaf.path), label: raw})
    return records


def records_for_timestamped(
    batches: Sequence[TimestampedNodes], writer: ValueWriter = write_value
) -> list[RawRecord]:
    """Each batch's time goes in ``bt`` on its first record when it differs from the last.

    A batch without timestamp uses base time 0, which RFC 8428 reads as "roughly now".
    """
    records: list[RawRecord] = []
    current_base_time: int | float = 0
    for batch in batches:
        batch_records = records_for_composite(batch.nodes, writer)
        base_time = 0 if batch.timestamp is None else epoch_number(batch.timestamp)
        if batch_records and base_time != current_base_time:
            batch_records[0] = {"bt": base_time, **batch_records[0]}
            current_base_time = base_time
        records.extend(batch_records)
    return records


def epoch_number(timestamp: datetime) -> int | float:
    """Seconds since the epoch, as an int when whole; refuses times SenML reads as relative."""
    aware = timestamp if timestamp.tzinfo else timestamp.replace(tzinfo=UTC)
    seconds = aware.timestamp()
    if seconds < RELATIVE_TIME_LIMIT:
        raise EncodeError(f"{timestamp} is too early to be sent as an absolute SenML time")
    return int(seconds) if seconds.is_integer() else seconds


def path_records(paths: Iterable[LwM2mPath]) -> list[RawRecord]:
    return [{"n": str(path)} for path in paths]


def decode_base64_lenient(text: str) -> bytes:
    """Base64 in either alphabet, padded or not (RFC 8428 asks for base64url, unpadded)."""
    stripped = text.rstrip("=")
    if len(stripped) % 4 == 1:
        raise DecodeError("malformed base64 data")
    padded = stripped.replace("+", "-").replace("/", "_") + "=" * (-len(stripped) % 4)
    try:
        return base64.b64decode(padded, altchars=b"-_", validate=True)
    except (binascii.Error, ValueError) as error:
        raise DecodeError("malformed base64 data") from error


def encode_base64url(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).decode("ascii").rstrip("=")


_LABEL_OF_TYPE = {
    ResourceType.STRING: "vs",
    ResourceType.CORELNK: "vs",
    ResourceType.INTEGER: "v",
    ResourceType.UNSIGNED_INTEGER: "v",
    ResourceType.FLOAT: "v",
    ResourceType.TIME: "v",
    ResourceType.BOOLEAN: "vb",
    ResourceType.OPAQUE: "vd",
    ResourceType.OBJLNK: "vlo",
}


def _inferred_type(label: str, raw: object) -> ResourceType:
    match label:
        case "v" if isinstance(raw, int | float | datetime) and not isinstance(raw, bool):
            return infer_number_type(raw)
        case "vs":
            return ResourceType.STRING
        case "vb":
            return ResourceType.BOOLEAN
        case "vd":
            return ResourceType.OPAQUE
        case "vlo":
            return ResourceType.OBJLNK
    raise DecodeError(f"bad {label!r} value {raw!r}")


def _joined_name(base_name: str, name: str) -> str:
    """bn + n, tolerating a missing or doubled slash where they meet."""
    if base_name and name:
        return f"{base_name.rstrip('/')}/{name.lstrip('/')}"
    return base_name + name


def _text_label(raw: RawRecord, label: str, index: int) -> str:
    value = raw[label]
    if not isinstance(value, str):
        raise DecodeError(f"SenML record {index}: {label!r} must be a string")
    return value


def _number_label(raw: RawRecord, label: str, index: int) -> int | float:
    value = raw[label]
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise DecodeError(f"SenML record {index}: {label!r} must be a finite number")
    if isinstance(value, float) and not math.isfinite(value):
        raise DecodeError(f"SenML record {index}: {label!r} must be a finite number")
    return value


def _field_value(raw: RawRecord, index: int, base_value: int | float | None) -> FieldValue | None:
    present = [label for label in VALUE_LABELS if label in raw]
    if len(present) > 1:
        raise DecodeError(f"SenML record {index} has several values: {present}")
    if not present:
        return None
    label = present[0]
    value = raw[label]
    if label == "v" and base_value is not None:
        if isinstance(value, bool) or not isinstance(value, int | float):
            raise DecodeError(f"SenML record {index}: 'v' must be a number")
        value = base_value + value
    return label, value
