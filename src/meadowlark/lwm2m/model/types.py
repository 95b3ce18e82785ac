"""Object and resource definitions, as an OMA DDF file describes them."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from enum import Enum

from meadowlark.lwm2m.node import ResourceType


class Operations(Enum):
    """Operations a resource supports (DDF ``<Operations>``)."""

    NONE = ""
    R = "R"
    W = "W"
    RW = "RW"
    E = "E"

    @property
    def readable(self) -> bool:
        return "R" in self.value

    @property
    def writable(self) -> bool:
        return "W" in self.value

    @property
    def executable(self) -> bool:
        return self is Operations.E


@dataclass(frozen=True, slots=True)
class ResourceModel:
    id: int
    name: str
    operations: Operations
    multiple: bool
    mandatory: bool
    type: ResourceType
    range_enumeration: str = ""
    units: str = ""
    description: str = ""


@dataclass(frozen=True, slots=True)
class ObjectModel:
    id: int
    name: str
    version: str = "1.0"
    lwm2m_version: str = "1.0"
    urn: str = ""
    multiple: bool = True
    mandatory: bool = False
    resources: Mapping[int, ResourceModel] = field(default_factory=dict)
    description: str = ""
