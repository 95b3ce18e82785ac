"""OMA TLV, content format 11542 (and the pre-registration number 1542).

Layout (OMA-TS-LightweightM2M-Core 1.0 §6.4.3, 1.1 §7.4.3): one type byte, an 8- or
16-bit identifier, an optional 8/16/24-bit length, then the value. Type byte bits:

* 7-6: what the identifier names: ``00`` object instance (value = resource TLVs),
  ``01`` resource instance, ``10`` multiple resource (value = resource instance TLVs),
  ``11`` resource with a value;
* 5: identifier width, 0 = 8 bits, 1 = 16 bits;
* 4-3: length-field width, 0/8/16/24 bits; with ``00`` bits 2-0 hold the value length.

Value encodings follow Core Appendix C. Resources the model does not know decode as
``OPAQUE`` holding the raw value bytes: TLV does not say what type a value has.
"""

from __future__ import annotations

import math
import struct
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from enum import IntEnum

from meadowlark.lwm2m.codec.errors import DecodeError, EncodeError
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
from meadowlark.lwm2m.path import MAX_ID, LwM2mPath

MAX_VALUE_LENGTH = 2**24 - 1
"""The 24-bit length field caps one TLV value at 16 MiB - 1."""

_INTEGER_WIDTHS = (1, 2, 4, 8)


class TlvKind(IntEnum):
    """Bits 7-6 of the type byte."""

    OBJECT_INSTANCE = 0b00
    RESOURCE_INSTANCE = 0b01
    MULTIPLE_RESOURCE = 0b10
    RESOURCE_VALUE = 0b11


_RESOURCE_KINDS = frozenset({TlvKind.RESOURCE_VALUE, TlvKind.MULTIPLE_RESOURCE})
_ALLOWED_CHILDREN: Mapping[TlvKind, frozenset[TlvKind]] = {
    TlvKind.OBJECT_INSTANCE: _RESOURCE_KINDS,
    TlvKind.MULTIPLE_RESOURCE: frozenset({TlvKind.RESOURCE_INSTANCE}),
}


@dataclass(frozen=True, slots=True)
class Tlv:
    """One parsed TLV: containers have ``children``, the others a raw ``value``."""

    kind: TlvKind
    id: int
    value: bytes = b""
    children: tuple[Tlv, ...] = ()


def parse_tlvs(data: bytes) -> list[Tlv]:
    """Split a payload into TLVs, parsing container values into children.

    Nesting is checked against the kinds each container may hold, so the depth is at
    most three (object instance > multiple resource > resource instance).
    """
    return _parse_sequence(bytes(data), frozenset(TlvKind))


def _parse_sequence(data: bytes, allowed: frozenset[TlvKind]) -> list[Tlv]:
    tlvs: list[Tlv] = []
    offset = 0
    while offset < len(data):
        kind, identifier, start, end = _read_header(data, offset)
        if kind not in allowed:
            raise DecodeError(f"TLV at byte {offset}: a {kind.name} TLV is not allowed here")
        value = data[start:end]
        if kind in _ALLOWED_CHILDREN:
            children = tuple(_parse_sequence(value, _ALLOWED_CHILDREN[kind]))
            tlvs.append(Tlv(kind, identifier, children=children))
        else:
            tlvs.append(Tlv(kind, identifier, value=value))
        offset = end
    return tlvs


def _read_header(data: bytes, offset: int) -> tuple[TlvKind, int, int, int]:
    """Return kind, identifier, value start and value end of the TLV at ``offset``."""
    type_byte = data[offset]
    kind = TlvKind(type_byte >> 6)
    id_width = 2 if type_byte & 0b0010_0000 else 1
    length_width = (type_byte >> 3) & 0b11
    position = offset + 1
    header_end = position + id_width + length_width
    if header_end > len(data):
        raise DecodeError(f"TLV at byte {offset}: header truncated")
    identifier = int.from_bytes(data[position : position + id_width], "big")
    position += id_width
    if length_width:
        length = int.from_bytes(data[position:header_end], "big")
    else:
        length = type_byte & 0b111
    end = header_end + length
    if end > len(data):
        raise DecodeError(
            f"TLV at byte {offset}: value of {length} bytes runs past the end of the payload"
        )
    return kind, identifier, header_end, end


def serialize_tlv(kind: TlvKind, identifier: int, value: bytes) -> bytes:
    """One TLV with the shortest identifier and length fields."""
    if not 0 <= identifier <= MAX_ID:
        raise EncodeError(f"TLV identifier out of range: {identifier}")
    length = len(value)
    if length > MAX_VALUE_LENGTH:
        raise EncodeError(f"TLV value of {length} bytes exceeds the 24-bit length field")
    type_byte = kind << 6
    id_width = 1
    if identifier > 0xFF:
        type_byte |= 0b0010_0000
        id_width = 2
    if length < 8:
        type_byte |= length
        length_field = b""
    else:
        length_width = (length.bit_length() + 7) // 8
        type_byte |= length_width << 3
        length_field = length.to_bytes(length_width, "big")
    return bytes([type_byte]) + identifier.to_bytes(id_width, "big") + length_field + value


# --- values -------------------------------------------------------------------------


def decode_value(resource_type: ResourceType, raw: bytes) -> Value:
    """Decode one TLV value per Core Appendix C; ``NONE`` accepts only an empty value."""
    match resource_type:
        case ResourceType.STRING | ResourceType.CORELNK:
            try:
                return raw.decode("utf-8")
            except UnicodeDecodeError as exc:
                raise DecodeError(f"string value is not valid UTF-8: {exc.reason}") from None
        case ResourceType.INTEGER:
            return _decode_integer(raw, signed=True)
        case ResourceType.UNSIGNED_INTEGER:
            return _decode_integer(raw, signed=False)
        case ResourceType.TIME:
            seconds = _decode_integer(raw, signed=True)
            try:
                return time_from_epoch(seconds)
            except (ValueError, OverflowError, OSError):
                raise DecodeError(f"time value out of range: {seconds}") from None
        case ResourceType.FLOAT:
            if len(raw) == 4:
                return float(struct.unpack(">f", raw)[0])
            if len(raw) == 8:
                return float(struct.unpack(">d", raw)[0])
            raise DecodeError(f"float value must be 4 or 8 bytes, got {len(raw)}")
        case ResourceType.BOOLEAN:
            if raw == b"\x00":
                return False
            if raw == b"\x01":
                return True
            raise DecodeError(f"boolean value must be one byte 0 or 1, got {raw.hex()!r}")
        case ResourceType.OPAQUE:
            return raw
        case ResourceType.OBJLNK:
            if len(raw) != 4:
                raise DecodeError(f"objlnk value must be 4 bytes, got {len(raw)}")
            return ObjectLink(int.from_bytes(raw[:2], "big"), int.from_bytes(raw[2:], "big"))
        case ResourceType.NONE:
            if raw:
                raise DecodeError("an executable resource carries no value")
            return None
    raise AssertionError(resource_type)  # pragma: no cover


def _decode_integer(raw: bytes, *, signed: bool) -> int:
    if len(raw) not in _INTEGER_WIDTHS:
        raise DecodeError(f"integer value must be 1, 2, 4 or 8 bytes, got {len(raw)}")
    return int.from_bytes(raw, "big", signed=signed)


def encode_value(resource_type: ResourceType, value: object) -> bytes:
    """Encode one value per Core Appendix C, integers and floats in their shortest form."""
    try:
        checked = check_value(resource_type, value)
    except (TypeError, ValueError) as exc:
        raise EncodeError(str(exc)) from None
    match checked:
        case None:
            return b""
        case bool():
            return b"\x01" if checked else b"\x00"
        case int() if resource_type is ResourceType.UNSIGNED_INTEGER:
            return _encode_integer(checked, signed=False)
        case int():
            return _encode_integer(checked, signed=True)
        case float():
            return _encode_float(checked)
        case str():
            return checked.encode("utf-8")
        case bytes():
            return checked
        case ObjectLink():
            return checked.object_id.to_bytes(2, "big") + checked.instance_id.to_bytes(2, "big")
        case _:  # datetime: Time travels as Integer seconds
            return _encode_integer(time_to_epoch(checked), signed=True)


def _encode_integer(value: int, *, signed: bool) -> bytes:
    for width in _INTEGER_WIDTHS:
        try:
            return value.to_bytes(width, "big", signed=signed)
        except OverflowError:
            continue
    raise EncodeError(f"integer out of 64-bit range: {value}")


def _encode_float(value: float) -> bytes:
    """Four bytes when single precision holds the value exactly, else eight."""
    if not math.isnan(value):
        try:
            single = struct.pack(">f", value)
        except OverflowError:
            pass
        else:
            if struct.unpack(">f", single)[0] == value:
                return single
    return struct.pack(">d", value)


# --- nodes --------------------------------------------------------------------------


def decode(payload: bytes, path: LwM2mPath, models: ModelLookup) -> Node:
    """Decode a TLV payload answering (or written to) ``path``."""
    tlvs = parse_tlvs(payload)
    match path.depth:
        case 1:
            return _decode_object(tlvs, path, models)
        case 2:
            return _decode_instance(tlvs, path, models)
        case 3:
            return _decode_resource_path(tlvs, path, models)
        case 4:
            return _decode_resource_instance_path(tlvs, path, models)
    raise DecodeError("a TLV payload cannot address the root path")


def _decode_object(tlvs: list[Tlv], path: LwM2mPath, models: ModelLookup) -> LwM2mObject:
    (object_id,) = path.ids
    if all(tlv.kind in _RESOURCE_KINDS for tlv in tlvs) and tlvs:
        # Tolerated: some clients omit the instance TLV for a single-instance object;
        # the resources then belong to instance 0.
        return LwM2mObject(object_id, {0: _instance_from(0, tlvs, object_id, models)})
    instances: dict[int, ObjectInstance] = {}
    for tlv in tlvs:
        if tlv.kind is not TlvKind.OBJECT_INSTANCE:
            raise DecodeError(f"{path}: expected object instance TLVs, got {tlv.kind.name}")
        _check_instance_id(tlv.id, path)
        if tlv.id in instances:
            raise DecodeError(f"{path}: object instance {tlv.id} appears twice")
        instances[tlv.id] = _instance_from(tlv.id, tlv.children, object_id, models)
    return LwM2mObject(object_id, instances)


def _decode_instance(tlvs: list[Tlv], path: LwM2mPath, models: ModelLookup) -> ObjectInstance:
    object_id, instance_id = path.ids
    if len(tlvs) == 1 and tlvs[0].kind is TlvKind.OBJECT_INSTANCE:
        if tlvs[0].id != instance_id:
            raise DecodeError(f"{path}: payload is for object instance {tlvs[0].id}")
        return _instance_from(instance_id, tlvs[0].children, object_id, models)
    for tlv in tlvs:
        if tlv.kind not in _RESOURCE_KINDS:
            raise DecodeError(f"{path}: expected resource TLVs, got {tlv.kind.name}")
    return _instance_from(instance_id, tlvs, object_id, models)


def _decode_resource_path(tlvs: list[Tlv], path: LwM2mPath, models: ModelLookup) -> Resource:
    object_id, _, resource_id = path.ids
    model = models.get_resource(object_id, resource_id)
    if len(tlvs) == 1 and tlvs[0].kind in _RESOURCE_KINDS:
        if tlvs[0].id != resource_id:
            raise DecodeError(f"{path}: payload is for resource {tlvs[0].id}")
        return _resource_from(tlvs[0], object_id, models)
    if not tlvs and (model is None or not model.multiple):
        known = "a single" if model is not None else "an unknown"
        raise DecodeError(f"{path}: empty payload for {known} resource")
    if all(tlv.kind is TlvKind.RESOURCE_INSTANCE for tlv in tlvs):
        # A multiple resource may also be written as bare resource instance TLVs.
        if model is not None and not model.multiple:
            raise DecodeError(f"{path}: resource instances given for a single resource")
        resource_type = model.type if model is not None else ResourceType.OPAQUE
        return MultiResource(resource_id, resource_type, _instances_from(tlvs, resource_type))
    raise DecodeError(f"{path}: expected one resource TLV")


def _decode_resource_instance_path(
    tlvs: list[Tlv], path: LwM2mPath, models: ModelLookup
) -> ResourceInstance:
    object_id, _, resource_id, instance_id = path.ids
    model = models.get_resource(object_id, resource_id)
    if model is not None and not model.multiple:
        raise DecodeError(f"{path}: resource {resource_id} is not a multiple resource")
    resource_type = model.type if model is not None else ResourceType.OPAQUE
    if (
        len(tlvs) == 1
        and tlvs[0].kind is TlvKind.MULTIPLE_RESOURCE
        and tlvs[0].id == resource_id
        and len(tlvs[0].children) == 1
    ):
        tlvs = list(tlvs[0].children)
    if len(tlvs) != 1 or tlvs[0].kind is not TlvKind.RESOURCE_INSTANCE:
        raise DecodeError(f"{path}: expected one resource instance TLV")
    if tlvs[0].id != instance_id:
        raise DecodeError(f"{path}: payload is for resource instance {tlvs[0].id}")
    return ResourceInstance(instance_id, resource_type, _value(resource_type, tlvs[0], str(path)))


def _instance_from(
    instance_id: int, tlvs: Iterable[Tlv], object_id: int, models: ModelLookup
) -> ObjectInstance:
    resources: dict[int, Resource] = {}
    for tlv in tlvs:
        if tlv.id in resources:
            raise DecodeError(f"/{object_id}/{instance_id}: resource {tlv.id} appears twice")
        resources[tlv.id] = _resource_from(tlv, object_id, models)
    return ObjectInstance(instance_id, resources)


def _resource_from(tlv: Tlv, object_id: int, models: ModelLookup) -> Resource:
    model = models.get_resource(object_id, tlv.id)
    resource_type = model.type if model is not None else ResourceType.OPAQUE
    if tlv.kind is TlvKind.MULTIPLE_RESOURCE:
        if model is not None and not model.multiple:
            raise DecodeError(f"resource {object_id}/{tlv.id} is single but sent as multiple")
        return MultiResource(tlv.id, resource_type, _instances_from(tlv.children, resource_type))
    if model is not None and model.multiple:
        raise DecodeError(f"resource {object_id}/{tlv.id} is multiple but sent as single")
    return SingleResource(tlv.id, resource_type, _value(resource_type, tlv, f"resource {tlv.id}"))


def _instances_from(tlvs: Iterable[Tlv], resource_type: ResourceType) -> dict[int, Value]:
    values: dict[int, Value] = {}
    for tlv in tlvs:
        if tlv.id in values:
            raise DecodeError(f"resource instance {tlv.id} appears twice")
        values[tlv.id] = _value(resource_type, tlv, f"resource instance {tlv.id}")
    return values


def _value(resource_type: ResourceType, tlv: Tlv, where: str) -> Value:
    try:
        return decode_value(resource_type, tlv.value)
    except DecodeError as exc:
        raise DecodeError(f"{where}: {exc}") from None


def _check_instance_id(instance_id: int, path: LwM2mPath) -> None:
    if instance_id == MAX_ID:
        raise DecodeError(f"{path}: object instance id {MAX_ID} is reserved")


def encode(node: Node, path: LwM2mPath, models: ModelLookup) -> bytes:
    """Encode ``node`` for a request on ``path``.

    An object instance at its own path is sent as bare resource TLVs (as Core shows
    for a Read of ``/3/0``); at an object path (Create) it is wrapped in an object
    instance TLV so the instance id travels. ``models`` is not consulted: nodes carry
    their types.
    """
    match node:
        case LwM2mObject() if path.depth == 1 and node.id == path.object_id:
            return b"".join(_encode_instance(instance) for instance in node.instances.values())
        case ObjectInstance() if path.depth == 1:
            return _encode_instance(node)
        case ObjectInstance() if path.depth == 2 and node.id == path.instance_id:
            return _encode_resources(node.resources.values())
        case SingleResource() | MultiResource() if path.depth == 3 and node.id == path.resource_id:
            return _encode_resource(node)
        case ResourceInstance() if path.depth == 4 and node.id == path.resource_instance_id:
            return serialize_tlv(
                TlvKind.RESOURCE_INSTANCE, node.id, encode_value(node.type, node.value)
            )
    raise EncodeError(f"a {type(node).__name__} with id {node.id} does not match path {path}")


def _encode_instance(instance: ObjectInstance) -> bytes:
    if instance.id == MAX_ID:
        raise EncodeError(f"object instance id {MAX_ID} is reserved")
    body = _encode_resources(instance.resources.values())
    return serialize_tlv(TlvKind.OBJECT_INSTANCE, instance.id, body)


def _encode_resources(resources: Iterable[Resource]) -> bytes:
    return b"".join(_encode_resource(resource) for resource in resources)


def _encode_resource(resource: Resource) -> bytes:
    if isinstance(resource, SingleResource):
        value = encode_value(resource.type, resource.value)
        return serialize_tlv(TlvKind.RESOURCE_VALUE, resource.id, value)
    body = b"".join(
        serialize_tlv(TlvKind.RESOURCE_INSTANCE, instance_id, encode_value(resource.type, value))
        for instance_id, value in resource.instances.items()
    )
    return serialize_tlv(TlvKind.MULTIPLE_RESOURCE, resource.id, body)
