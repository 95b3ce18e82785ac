"""Coiote v3 monitoring bodies: ``deviceMonitoring``, ``monitoring``, ``monitoringData``.

Times are ISO 8601 UTC with milliseconds (``2026-12-01T01:02:03.456Z``); query
parameters take that or epoch milliseconds.
"""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel, ConfigDict, Field

from meadowlark.core.monitoring import (
    DataPage,
    NewConfiguration,
    Sample,
    SamplesPage,
    iso_ms,
)
from meadowlark.store.monitoring_models import MonitoringConfiguration


class MonitoringEnabled(BaseModel):
    enabled: bool


class AliasRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")

    lwm2mUrl: str = Field(max_length=64)
    alias: str = Field(max_length=255)


class AliasEntry(BaseModel):
    lwm2mUrl: str
    alias: str


class DataPoint(BaseModel):
    date: str
    value: Any


class DataMetadata(BaseModel):
    deviceId: str
    lwm2mUrl: str
    alias: str | None


class MonitoringDataPage(BaseModel):
    """One page of a resource's samples; the next starts after ``lastPointTimestamp``."""

    hasNext: bool
    lastPointTimestamp: str | None
    metadata: DataMetadata
    data: list[DataPoint]

    @classmethod
    def of(cls, page: DataPage) -> MonitoringDataPage:
        return cls(
            hasNext=page.has_next,
            lastPointTimestamp=iso_ms(page.samples[-1].at_ms) if page.samples else None,
            metadata=DataMetadata(deviceId=page.device_id, lwm2mUrl=page.url, alias=page.alias),
            data=[DataPoint(date=iso_ms(s.at_ms), value=s.value) for s in page.samples],
        )


class MonitoringConfigurationBody(BaseModel):
    """A named monitoring: ``resources`` (LwM2M URLs) of the devices of ``groupId``,
    sampled from their ``notifications`` or by ``periodicReads`` every ``readInterval``
    seconds."""

    model_config = ConfigDict(extra="forbid")

    name: str = Field(default="", max_length=255)
    groupId: str = Field(max_length=255)
    resources: list[str] = Field(max_length=100)
    source: str = Field(default="notifications", max_length=32)
    readInterval: int | None = Field(default=None, ge=0, le=2**31 - 1)
    description: str = Field(default="", max_length=4096)

    def to_new(self) -> NewConfiguration:
        return NewConfiguration(
            name=self.name,
            group_id=self.groupId,
            resources=[url[:64] for url in self.resources],
            source=self.source,
            read_interval=self.readInterval,
            description=self.description,
        )


class MonitoringConfigurationView(BaseModel):
    name: str
    domain: str
    groupId: str
    resources: list[str]
    source: str
    readInterval: int | None
    description: str

    @classmethod
    def of(cls, row: MonitoringConfiguration) -> MonitoringConfigurationView:
        return cls(
            name=row.name,
            domain=row.domain_id,
            groupId=row.group_id,
            resources=list(row.resources),
            source=row.source,
            readInterval=row.read_interval,
            description=row.description,
        )


class SampleEntry(BaseModel):
    deviceId: str
    lwm2mUrl: str
    date: str
    value: Any

    @classmethod
    def of(cls, sample: Sample) -> SampleEntry:
        return cls(
            deviceId=sample.device_id,
            lwm2mUrl=sample.path,
            date=iso_ms(sample.at_ms),
            value=sample.value,
        )


class SamplesBatch(BaseModel):
    """Samples oldest first; ``nextCursor`` (for ``moreSamples``) when there are more."""

    batch: list[SampleEntry]
    hasNext: bool
    nextCursor: str | None

    @classmethod
    def of(cls, page: SamplesPage) -> SamplesBatch:
        return cls(
            batch=[SampleEntry.of(sample) for sample in page.samples],
            hasNext=page.cursor is not None,
            nextCursor=page.cursor,
        )


class NumericalAggregate(BaseModel):
    """Figures of the samples in ``(from, to]``."""

    model_config = ConfigDict(populate_by_name=True)

    # Both aliases rather than ``alias``: the same JSON, and type checkers then take the
    # constructor's keyword as ``from_`` (``from`` is reserved in Python).
    from_: str = Field(validation_alias="from", serialization_alias="from")
    to: str
    min: float
    max: float
    avg: float
    count: int


class TextualAggregate(BaseModel):
    """How many samples in ``(from, to]`` had each value."""

    model_config = ConfigDict(populate_by_name=True)

    from_: str = Field(validation_alias="from", serialization_alias="from")
    to: str
    counts: dict[str, int]
