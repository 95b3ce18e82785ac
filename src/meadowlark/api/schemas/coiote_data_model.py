"""Coiote v3 data model, dialect and observation bodies (python-coiote's field names)."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Literal

from pydantic import BaseModel, ConfigDict, Field, StrictFloat, StrictInt, StrictStr

from meadowlark.core import data_model
from meadowlark.core.observations import DEVICE, Observation

MAX_ATTRIBUTES = 16


class DeviceDataEntry(BaseModel):
    """A cached value: ``name`` is its readable path (``Device.0.Manufacturer``)."""

    name: str
    value: str
    updateTime: datetime
    type: str

    @classmethod
    def of(cls, entry: data_model.CacheEntry) -> DeviceDataEntry:
        return cls(
            name=entry.name, value=entry.value, updateTime=entry.update_time, type=entry.type
        )


InstanceType = Literal["Single", "Multiple"]


class ResourceDefinition(BaseModel):
    id: int
    name: str
    operations: list[Literal["Read", "Write", "Execute"]]
    instanceType: InstanceType
    mandatory: bool
    type: str
    range: str
    units: str
    description: str

    @classmethod
    def of(cls, definition: data_model.ResourceDefinition) -> ResourceDefinition:
        return cls(
            id=definition.id,
            name=definition.name,
            operations=definition.operations,  # type: ignore[arg-type]
            instanceType=definition.instance_type,  # type: ignore[arg-type]
            mandatory=definition.mandatory,
            type=definition.type,
            range=definition.range,
            units=definition.units,
            description=definition.description,
        )


class ObjectDefinition(BaseModel):
    id: int
    name: str
    objectVersion: str
    instanceType: InstanceType
    mandatory: bool
    resourceDefinitions: list[ResourceDefinition]

    @classmethod
    def of(cls, definition: data_model.ObjectDefinition) -> ObjectDefinition:
        return cls(
            id=definition.id,
            name=definition.name,
            objectVersion=definition.object_version,
            instanceType=definition.instance_type,  # type: ignore[arg-type]
            mandatory=definition.mandatory,
            resourceDefinitions=[
                ResourceDefinition.of(resource) for resource in definition.resource_definitions
            ],
        )


class SingleValue(BaseModel):
    value: str


class MultipleValues(BaseModel):
    values: list[str]


class SingleInstanceValue(BaseModel):
    Single: SingleValue


class MultipleInstanceValue(BaseModel):
    Multiple: MultipleValues


class ResourceData(BaseModel):
    """An instantiated resource with its cached value (empty when nothing is cached)."""

    path: str
    value: SingleInstanceValue | MultipleInstanceValue
    resourceId: int
    operations: list[Literal["Read", "Write", "Execute"]]
    mandatory: bool
    type: str
    range: str
    units: str
    description: str

    @classmethod
    def of(cls, data: data_model.ResourceData) -> ResourceData:
        definition = data.definition
        value: SingleInstanceValue | MultipleInstanceValue
        if data.values is not None:
            value = MultipleInstanceValue(Multiple=MultipleValues(values=data.values))
        else:
            value = SingleInstanceValue(Single=SingleValue(value=data.value or ""))
        return cls(
            path=data.path,
            value=value,
            resourceId=definition.id,
            operations=definition.operations,  # type: ignore[arg-type]
            mandatory=definition.mandatory,
            type=definition.type,
            range=definition.range,
            units=definition.units,
            description=definition.description,
        )


class Dialect(BaseModel):
    dialectId: str


class ObservationAttribute(BaseModel):
    """A notification attribute (``pmin pmax gt lt st``); numbers are accepted as such."""

    model_config = ConfigDict(extra="forbid")
    name: str = Field(max_length=16)
    value: StrictStr | StrictInt | StrictFloat

    @property
    def text(self) -> str:
        return self.value if isinstance(self.value, str) else str(self.value)


class SetObservationRequest(BaseModel):
    """``createEnsureObserveIfNotExists`` is accepted for compatibility: the Observe is
    always set up (now, or when the device next registers)."""

    model_config = ConfigDict(extra="forbid")
    attributes: list[ObservationAttribute] = Field(default_factory=list, max_length=MAX_ATTRIBUTES)
    createEnsureObserveIfNotExists: bool = False


NonNegativePeriod = Annotated[int, Field(ge=0, le=2**31 - 1, strict=True)]


class BasicSetObservationRequest(BaseModel):
    """Group observations: ``minPeriod`` and ``maxPeriod`` become ``pmin`` and ``pmax``."""

    model_config = ConfigDict(extra="forbid")
    minPeriod: NonNegativePeriod | None = None
    maxPeriod: NonNegativePeriod | None = None
    createEnsureObserveIfNotExists: bool = False


class ObservationAttributeValue(BaseModel):
    name: str
    value: str


class ObservationData(BaseModel):
    deviceId: str
    path: str
    attributes: list[ObservationAttributeValue]

    @classmethod
    def of(cls, observation: Observation) -> ObservationData:
        return cls(
            deviceId=observation.target_id,
            path=observation.path,
            attributes=[
                ObservationAttributeValue(name=name, value=value)
                for name, value in observation.attributes
            ],
        )


class ObservedDevice(BaseModel):
    DeviceId: str


class ObservedGroup(BaseModel):
    GroupId: str


class EntityObservationData(BaseModel):
    targetEntity: ObservedDevice | ObservedGroup
    path: str

    @classmethod
    def of(cls, observation: Observation) -> EntityObservationData:
        target: ObservedDevice | ObservedGroup = (
            ObservedDevice(DeviceId=observation.target_id)
            if observation.target_kind == DEVICE
            else ObservedGroup(GroupId=observation.target_id)
        )
        return cls(targetEntity=target, path=observation.path)
