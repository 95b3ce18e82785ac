"""Coiote v3 ``resources`` bodies: firmware images and their download URLs."""

from __future__ import annotations

from datetime import datetime

from pydantic import BaseModel, ConfigDict, Field

from meadowlark.store.firmware_models import FirmwareResource


class InternalLocation(BaseModel):
    model_config = ConfigDict(extra="forbid")

    fileName: str = Field(min_length=1, max_length=255)


class ResourceLocation(BaseModel):
    """Where the bytes are: only ``InternalLocation`` (uploaded to this server)."""

    model_config = ConfigDict(extra="forbid")

    InternalLocation: InternalLocation


class ResourceCreate(BaseModel):
    id: str | None = Field(default=None, max_length=255)
    name: str = Field(min_length=1, max_length=255)
    domain: str | None = Field(default=None, max_length=512)
    location: ResourceLocation
    category: str = Field(default="FIRMWARE", max_length=32)
    expirationTime: str = Field(default="ONE_DAY", max_length=32)


class ResourceCreated(BaseModel):
    """The new id, under both names clients expect (``id`` and ``resourceId``)."""

    id: str
    resourceId: str


class ResourcePublic(BaseModel):
    id: str
    name: str
    domain: str
    location: ResourceLocation
    category: str
    expirationTime: str
    size: int | None
    """Bytes of the uploaded image; null until ``PUT resources/{id}/data``."""
    sha256: str | None
    creationTime: datetime
    uploadTime: datetime | None

    @classmethod
    def of(cls, resource: FirmwareResource) -> ResourcePublic:
        return cls(
            id=resource.id,
            name=resource.name,
            domain=resource.domain_id,
            location=ResourceLocation(
                InternalLocation=InternalLocation(fileName=resource.file_name)
            ),
            category=resource.category,
            expirationTime=resource.expiration_time,
            size=resource.size,
            sha256=resource.sha256,
            creationTime=resource.created_at,
            uploadTime=resource.uploaded_at,
        )


class DownloadUrlRequest(BaseModel):
    protocol: str = Field(max_length=16)
    """``COAP``, ``HTTP`` or ``HTTPS`` (case-insensitive)."""


class DownloadUrl(BaseModel):
    address: str
