"""Plain text, content format 0: one value of a single resource or resource instance.

Text forms follow OMA-TS-LightweightM2M-Core Appendix C (1.0.2 and later): decimal
integers, decimal floats, Boolean ``0``/``1``, Time as decimal seconds since the
Unix epoch, Objlnk as ``object:instance`` and Opaque as Base64 (RFC 4648), e.g.
bytes 01 02 03 04 05 as ``AQIDBAU=``. Resources the model does not know decode as
``STRING``.
"""

from __future__ import annotations

import base64
import binascii
import math
import re
from decimal import Decimal

from meadowlark.lwm2m.codec.errors import DecodeError, EncodeError
from meadowlark.lwm2m.model.lookup import ModelLookup, resource_model_at
from meadowlark.lwm2m.node import (
    Node,
    ObjectLink,
    ResourceInstance,
    ResourceType,
    SingleResource,
    Value,
    check_value,
    time_from_epoch,
    time_to_epoch,
)
from meadowlark.lwm2m.path import LwM2mPath

_INTEGER = re.compile(r"[+-]?[0-9]{1,20}")
_UNSIGNED = re.compile(r"\+?[0-9]{1,20}")
_DECIMAL = re.compile(r"[+-]?(?:[0-9]+(?:\.[0-9]*)?|\.[0-9]+)(?:[eE][+-]?[0-9]{1,4})?")
_OBJLNK = re.compile(r"([0-9]{1,5}):([0-9]{1,5})")
_BASE64 = re.compile(r"[A-Za-z0-9+/]*={0,2}")
_MAX_DECIMAL_LENGTH = 1100
"""Longer than any shortest-round-trip float written positionally (5e-324 needs 327)."""


def decode(payload: bytes, path: LwM2mPath, models: ModelLookup) -> Node:
    resource_type = single_value_type(path, models, ResourceType.STRING, "plain text")
    try:
        text = payload.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise DecodeError(f"{path}: plain text is not valid UTF-8: {exc.reason}") from None
    try:
        value = value_from_text(resource_type, text)
    except DecodeError as exc:
        raise DecodeError(f"{path}: {exc}") from None
    return single_value_node(path, resource_type, value)


def encode(node: Node, path: LwM2mPath, models: ModelLookup) -> bytes:
    """Encode a single value; ``models`` is not consulted, the node carries its type."""
    resource_type, value = single_value_of(node, path, "plain text")
    return value_to_text(resource_type, value).encode("utf-8")


def value_from_text(resource_type: ResourceType, text: str) -> Value:
    """Parse the Appendix C text form of a value."""
    match resource_type:
        case ResourceType.STRING | ResourceType.CORELNK:
            return text
        case ResourceType.INTEGER:
            return _checked(resource_type, _parse_integer(text, _INTEGER, "an integer"))
        case ResourceType.UNSIGNED_INTEGER:
            return _checked(resource_type, _parse_integer(text, _UNSIGNED, "an unsigned integer"))
        case ResourceType.FLOAT:
            return float_from_text(text)
        case ResourceType.BOOLEAN:
            if text not in ("0", "1"):
                raise DecodeError(f"boolean must be 0 or 1, got {_preview(text)}")
            return text == "1"
        case ResourceType.TIME:
            seconds = _parse_integer(text, _INTEGER, "a time in seconds")
            try:
                return time_from_epoch(seconds)
            except (ValueError, OverflowError, OSError):
                raise DecodeError(f"time out of range: {seconds}") from None
        case ResourceType.OBJLNK:
            match = _OBJLNK.fullmatch(text)
            if match is None:
                raise DecodeError(f"objlnk must look like 3:0, got {_preview(text)}")
            try:
                return ObjectLink(int(match[1]), int(match[2]))
            except ValueError as exc:
                raise DecodeError(str(exc)) from None
        case ResourceType.OPAQUE:
            if _BASE64.fullmatch(text) is None:
                raise DecodeError("opaque value is not Base64")
            try:
                return base64.b64decode(text, validate=True)
            except binascii.Error as exc:
                raise DecodeError(f"opaque value is not Base64: {exc}") from None
        case ResourceType.NONE:
            if text:
                raise DecodeError("an executable resource carries no value")
            return None
    raise AssertionError(resource_type)  # pragma: no cover


def value_to_text(resource_type: ResourceType, value: object) -> str:
    """The Appendix C text form of a value."""
    try:
        checked = check_value(resource_type, value)
    except (TypeError, ValueError) as exc:
        raise EncodeError(str(exc)) from None
    match checked:
        case None:
            return ""
        case bool():
            return "1" if checked else "0"
        case int():
            return str(checked)
        case float():
            return float_to_text(checked)
        case str():
            return checked
        case bytes():
            return base64.b64encode(checked).decode("ascii")
        case ObjectLink():
            return str(checked)
        case _:  # datetime
            return str(time_to_epoch(checked))


def float_to_text(value: float) -> str:
    """Shortest decimal that reads back as the same float, without an exponent.

    Positional notation because Core describes floats as decimal numbers; exponents
    are accepted on input but not produced.
    """
    if not math.isfinite(value):
        raise EncodeError(f"{value} has no plain text representation")
    text = repr(value)
    if "e" in text:
        text = format(Decimal(text), "f")
    return text


def float_from_text(text: str) -> float:
    if len(text) > _MAX_DECIMAL_LENGTH or _DECIMAL.fullmatch(text) is None:
        raise DecodeError(f"not a decimal number: {_preview(text)}")
    value = float(text)
    if not math.isfinite(value):
        raise DecodeError(f"number out of float range: {_preview(text)}")
    return value


def _parse_integer(text: str, pattern: re.Pattern[str], what: str) -> int:
    if pattern.fullmatch(text) is None:
        raise DecodeError(f"not {what}: {_preview(text)}")
    return int(text)


def _checked(resource_type: ResourceType, value: int) -> int:
    try:
        check_value(resource_type, value)
    except ValueError as exc:
        raise DecodeError(str(exc)) from None
    return value


def _preview(text: str) -> str:
    return repr(text if len(text) <= 40 else text[:40] + "...")


# --- helpers shared by the single-value formats (plain text, opaque) -----------------


def single_value_type(
    path: LwM2mPath, models: ModelLookup, fallback: ResourceType, format_name: str
) -> ResourceType:
    """The type of the single value at ``path``, or ``fallback`` if the model lacks it.

    Raises ``DecodeError`` when ``path`` does not address one value: only a single
    resource (depth 3) or a resource instance (depth 4) qualifies.
    """
    depth = path.depth
    if depth != 3 and depth != 4:
        raise DecodeError(f"{path}: {format_name} carries a single resource value only")
    model = resource_model_at(models, path)
    if model is None:
        return fallback
    if depth == 3 and model.multiple:
        raise DecodeError(f"{path}: {format_name} cannot carry a multiple resource")
    if depth == 4 and not model.multiple:
        raise DecodeError(f"{path}: resource {path.resource_id} has no instances")
    return model.type


def single_value_node(
    path: LwM2mPath, resource_type: ResourceType, value: Value
) -> SingleResource | ResourceInstance:
    """Wrap a decoded value in the node its path (depth 3 or 4) calls for."""
    if path.depth == 4:
        return ResourceInstance(path.ids[3], resource_type, value)
    return SingleResource(path.ids[2], resource_type, value)


def single_value_of(node: Node, path: LwM2mPath, format_name: str) -> tuple[ResourceType, Value]:
    """Type and value of a single-value node that matches ``path``; else ``EncodeError``."""
    match node:
        case SingleResource() if path.depth == 3 and node.id == path.resource_id:
            return node.type, node.value
        case ResourceInstance() if path.depth == 4 and node.id == path.resource_instance_id:
            return node.type, node.value
    raise EncodeError(
        f"{format_name} carries one resource value; got a {type(node).__name__} "
        f"with id {node.id} for path {path}"
    )
