"""Plain CBOR, content format 60: one resource value as a native CBOR item.

OMA-TS-LightweightM2M-Core 1.1 §7.4.6: single resources and resource instances only.
Integer, Unsigned Integer, Float, Boolean, String and Opaque map to the CBOR major types;
Time is an integer of seconds (a date/time tag 0/1 is accepted on input); Objlnk and
Corelnk are text (``"3:0"``).
"""

from __future__ import annotations

import math
from datetime import datetime

import cbor2

from meadowlark.lwm2m.codec.errors import DecodeError, EncodeError
from meadowlark.lwm2m.codec.senml_cbor import load_cbor
from meadowlark.lwm2m.codec.senml_common import number_value
from meadowlark.lwm2m.codec.text import single_value_node, single_value_of, single_value_type
from meadowlark.lwm2m.model.lookup import ModelLookup
from meadowlark.lwm2m.node import Node, ObjectLink, ResourceType, Value, time_to_epoch
from meadowlark.lwm2m.path import LwM2mPath

_NUMERIC = frozenset(
    {ResourceType.INTEGER, ResourceType.UNSIGNED_INTEGER, ResourceType.FLOAT, ResourceType.TIME}
)


def _infer_type(item: object) -> ResourceType:
    match item:
        case bool():
            return ResourceType.BOOLEAN
        case int():
            return ResourceType.INTEGER
        case float():
            return ResourceType.FLOAT
        case bytes():
            return ResourceType.OPAQUE
        case str():
            return ResourceType.STRING
    raise DecodeError(f"CBOR item of type {type(item).__name__} is not an LwM2M value")


def decode(payload: bytes, path: LwM2mPath, models: ModelLookup) -> Node:
    item = load_cbor(payload, 1)
    resource_type = single_value_type(path, models, ResourceType.NONE, "CBOR")
    if resource_type is ResourceType.NONE:
        resource_type = _infer_type(item)
    return single_value_node(path, resource_type, _value(item, resource_type, path))


def _value(item: object, resource_type: ResourceType, path: LwM2mPath) -> Value:
    if resource_type in _NUMERIC:
        return number_value(item, resource_type)
    expected: type = {
        ResourceType.BOOLEAN: bool,
        ResourceType.OPAQUE: bytes,
        ResourceType.STRING: str,
        ResourceType.CORELNK: str,
        ResourceType.OBJLNK: str,
    }[resource_type]
    if not isinstance(item, expected):
        raise DecodeError(f"{path}: a {resource_type.value} value cannot be {item!r}")
    if resource_type is ResourceType.OBJLNK:
        try:
            return ObjectLink.parse(str(item))
        except ValueError as exc:
            raise DecodeError(f"{path}: {exc}") from exc
    return item  # type: ignore[return-value]  # isinstance against a looked-up type: no narrowing


def encode(node: Node, path: LwM2mPath, models: ModelLookup) -> bytes:
    """Encode one value; ``models`` is not consulted, the node carries its type."""
    resource_type, value = single_value_of(node, path, "CBOR")
    if resource_type is ResourceType.TIME and isinstance(value, datetime):
        value = time_to_epoch(value)
    elif resource_type is ResourceType.OBJLNK:
        value = str(value)
    elif resource_type is ResourceType.NONE:
        raise EncodeError(f"{path}: an executable resource has no value")
    elif isinstance(value, float) and not math.isfinite(value):
        raise EncodeError(f"{path}: {value} is not a number LwM2M can carry")
    return cbor2.dumps(value)
