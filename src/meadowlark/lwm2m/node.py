"""Typed LwM2M values and the node tree (object, instance, resource, resource instance)."""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from enum import Enum
from typing import TypeAlias

INT64_MIN = -(2**63)
INT64_MAX = 2**63 - 1
UINT64_MAX = 2**64 - 1


class ResourceType(Enum):
    """Data types of OMA-TS-LightweightM2M-Core Appendix C; ``NONE`` is for Execute-only."""

    STRING = "String"
    INTEGER = "Integer"
    UNSIGNED_INTEGER = "Unsigned Integer"
    FLOAT = "Float"
    BOOLEAN = "Boolean"
    OPAQUE = "Opaque"
    TIME = "Time"
    OBJLNK = "Objlnk"
    CORELNK = "Corelnk"
    NONE = "none"

    @classmethod
    def from_ddf(cls, text: str) -> ResourceType:
        """Map a DDF ``<Type>`` text (case and spacing vary between files) to a type."""
        key = text.strip().lower().replace(" ", "")
        for member in cls:
            if member.value.lower().replace(" ", "") == key:
                return member
        if key == "":
            return cls.NONE
        raise ValueError(f"unknown LwM2M resource type {text!r}")


@dataclass(frozen=True, slots=True, order=True)
class ObjectLink:
    """An Objlnk value: object id and instance id (65535:65535 is the null link)."""

    object_id: int
    instance_id: int

    def __post_init__(self) -> None:
        for value in (self.object_id, self.instance_id):
            if isinstance(value, bool) or not isinstance(value, int) or not 0 <= value <= 65535:
                raise ValueError(f"object link id out of range 0..65535: {value!r}")

    @classmethod
    def parse(cls, text: str) -> ObjectLink:
        """Parse the text form ``3:0``."""
        left, sep, right = text.partition(":")
        if not sep or not left.isdigit() or not right.isdigit():
            raise ValueError(f"not an object link: {text!r}")
        return cls(int(left), int(right))

    def __str__(self) -> str:
        return f"{self.object_id}:{self.instance_id}"


Value: TypeAlias = int | float | bool | str | bytes | datetime | ObjectLink | None


def check_value(resource_type: ResourceType, value: object) -> Value:
    """Validate that ``value`` is a correct Python value for ``resource_type``; return it.

    Raises ``TypeError``/``ValueError`` with a message fit for an API client.
    """
    match resource_type:
        case ResourceType.INTEGER:
            if isinstance(value, bool) or not isinstance(value, int):
                raise TypeError(f"Integer value expected, got {type(value).__name__}")
            if not INT64_MIN <= value <= INT64_MAX:
                raise ValueError("Integer out of 64-bit signed range")
            return value
        case ResourceType.UNSIGNED_INTEGER:
            if isinstance(value, bool) or not isinstance(value, int):
                raise TypeError(f"Unsigned Integer value expected, got {type(value).__name__}")
            if not 0 <= value <= UINT64_MAX:
                raise ValueError("Unsigned Integer out of 64-bit unsigned range")
            return value
        case ResourceType.FLOAT:
            if isinstance(value, bool) or not isinstance(value, int | float):
                raise TypeError(f"Float value expected, got {type(value).__name__}")
            return float(value)
        case ResourceType.BOOLEAN:
            if not isinstance(value, bool):
                raise TypeError(f"Boolean value expected, got {type(value).__name__}")
            return value
        case ResourceType.STRING | ResourceType.CORELNK:
            if not isinstance(value, str):
                raise TypeError(f"String value expected, got {type(value).__name__}")
            return value
        case ResourceType.OPAQUE:
            if not isinstance(value, bytes):
                raise TypeError(f"Opaque (bytes) value expected, got {type(value).__name__}")
            return value
        case ResourceType.TIME:
            if not isinstance(value, datetime):
                raise TypeError(f"Time value expected, got {type(value).__name__}")
            return value if value.tzinfo else value.replace(tzinfo=UTC)
        case ResourceType.OBJLNK:
            if not isinstance(value, ObjectLink):
                raise TypeError(f"Objlnk value expected, got {type(value).__name__}")
            return value
        case ResourceType.NONE:
            if value is not None:
                raise TypeError("an executable resource carries no value")
            return None
    raise AssertionError(resource_type)  # pragma: no cover


def time_from_epoch(seconds: int | float) -> datetime:
    """A Time value from seconds since the Unix epoch (UTC)."""
    if isinstance(seconds, float) and not math.isfinite(seconds):
        raise ValueError("time is not a finite number")
    return datetime.fromtimestamp(seconds, tz=UTC)


def time_to_epoch(value: datetime) -> int:
    """Whole seconds since the Unix epoch, as LwM2M Time values are transmitted."""
    if value.tzinfo is None:
        value = value.replace(tzinfo=UTC)
    return math.floor(value.timestamp())


@dataclass(frozen=True, slots=True)
class ResourceInstance:
    """One instance of a multiple-instance resource (path depth 4)."""

    id: int
    type: ResourceType
    value: Value


@dataclass(frozen=True, slots=True)
class SingleResource:
    """A single-instance resource with its value (path depth 3)."""

    id: int
    type: ResourceType
    value: Value


@dataclass(frozen=True, slots=True)
class MultiResource:
    """A multiple-instance resource: resource instance id -> value (path depth 3)."""

    id: int
    type: ResourceType
    instances: Mapping[int, Value] = field(default_factory=dict)


Resource: TypeAlias = SingleResource | MultiResource


@dataclass(frozen=True, slots=True)
class ObjectInstance:
    """An object instance: resource id -> resource (path depth 2)."""

    id: int
    resources: Mapping[int, Resource] = field(default_factory=dict)


@dataclass(frozen=True, slots=True)
class LwM2mObject:
    """An object: instance id -> instance (path depth 1)."""

    id: int
    instances: Mapping[int, ObjectInstance] = field(default_factory=dict)


Node: TypeAlias = LwM2mObject | ObjectInstance | SingleResource | MultiResource | ResourceInstance
