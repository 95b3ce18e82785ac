"""Opaque, content format 42: the raw bytes of one Opaque resource value.

OMA-TS-LightweightM2M-Core 1.0 §6.4.2 / 1.1 §7.4.2: only for single resources (or
resource instances) of type Opaque. Resources the model does not know decode as
``OPAQUE``; a known resource of another type is refused.
"""

from __future__ import annotations

from meadowlark.lwm2m.codec.errors import DecodeError, EncodeError
from meadowlark.lwm2m.codec.text import single_value_node, single_value_of, single_value_type
from meadowlark.lwm2m.model.lookup import ModelLookup
from meadowlark.lwm2m.node import Node, ResourceType
from meadowlark.lwm2m.path import LwM2mPath


def decode(payload: bytes, path: LwM2mPath, models: ModelLookup) -> Node:
    resource_type = single_value_type(path, models, ResourceType.OPAQUE, "opaque")
    if resource_type is not ResourceType.OPAQUE:
        raise DecodeError(f"{path}: opaque content for a {resource_type.value} resource")
    return single_value_node(path, resource_type, bytes(payload))


def encode(node: Node, path: LwM2mPath, models: ModelLookup) -> bytes:
    """Encode an Opaque value; ``models`` is not consulted, the node carries its type."""
    resource_type, value = single_value_of(node, path, "opaque")
    if resource_type is not ResourceType.OPAQUE or not isinstance(value, bytes):
        raise EncodeError(f"{path}: opaque content needs an Opaque (bytes) value")
    return value
