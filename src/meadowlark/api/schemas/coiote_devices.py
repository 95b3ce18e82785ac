"""Coiote v3 devices, groups and sessions bodies (python-coiote's field names)."""

from __future__ import annotations

from datetime import datetime
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field

from meadowlark.core.devices import MAX_PROPERTIES, device_properties, software_version
from meadowlark.store.bootstrap_models import BootstrapAccount
from meadowlark.store.device_models import Device
from meadowlark.store.hot_reads import Row

MAX_GROUPS_PER_REQUEST = 100


class DeviceCreate(BaseModel):
    """A device to pre-provision (python-coiote sends its whole ``Device``).

    The id defaults to ``properties.endpointName``. Fields that only the device reports
    (times, addresses, ``manufacturer`` ...) are accepted and ignored.
    """

    model_config = ConfigDict(extra="forbid")
    id: str | None = Field(default=None, max_length=255)
    domain: str | None = Field(default=None, max_length=512)
    friendlyName: str | None = Field(default=None, max_length=255)
    description: str | None = Field(default=None, max_length=4096)
    blacklisted: bool = False
    managementEnabled: bool = True
    securityMode: str | None = Field(default=None, max_length=16)
    dtlsIdentity: str | None = Field(default=None, max_length=255)
    dtlsPsk: dict[str, Any] | None = None
    directGroups: list[str] = Field(default_factory=list, max_length=MAX_GROUPS_PER_REQUEST)
    properties: dict[str, str] = Field(default_factory=dict, max_length=MAX_PROPERTIES + 1)
    connectorType: Literal["management", "bootstrap"] = "management"
    """``bootstrap``: a bootstrap account (``core.bootstrap``); its security settings
    are the credentials it bootstraps with."""
    bootstrap: bool = False
    """True: the same as ``connectorType: bootstrap``."""
    lastSessionTime: datetime | None = None
    lastContactTime: datetime | None = None
    lastRegisterTime: datetime | None = None
    firstRegisterTime: datetime | None = None
    creationTime: datetime | None = None
    ipAddress: str | None = None
    serialNumber: str | None = None
    oui: str | None = None
    modelName: str | None = None
    hardwareVersion: str | None = None
    softwareVersion: str | None = None
    productClass: str | None = None
    manufacturer: str | None = None


class DeviceUpdateRequest(BaseModel):
    """Absent or null fields stay unchanged (python-coiote always sends the flags)."""

    model_config = ConfigDict(extra="forbid")
    addProperties: dict[str, str] = Field(default_factory=dict, max_length=MAX_PROPERTIES)
    removeProperties: list[str] = Field(default_factory=list, max_length=MAX_PROPERTIES)
    addGroups: list[str] = Field(default_factory=list, max_length=MAX_GROUPS_PER_REQUEST)
    removeGroups: list[str] = Field(default_factory=list, max_length=MAX_GROUPS_PER_REQUEST)
    blacklisted: bool | None = None
    managementEnabled: bool | None = None
    description: str | None = Field(default=None, max_length=4096)
    friendlyName: str | None = Field(default=None, max_length=255)
    securityMode: str | None = Field(default=None, max_length=16)
    dtlsIdentity: str | None = Field(default=None, max_length=255)
    dtlsPsk: dict[str, Any] | None = None


class DevicePublic(BaseModel):
    """A device as Coiote shows it; ``dtlsPsk`` is never returned (always null)."""

    id: str
    connectorType: str = "management"
    bootstrap: bool = False
    directGroups: list[str]
    properties: dict[str, str]
    blacklisted: bool
    managementEnabled: bool
    lastSessionTime: datetime | None
    lastContactTime: datetime | None
    lastRegisterTime: datetime | None
    firstRegisterTime: datetime | None
    creationTime: datetime | None
    ipAddress: str | None
    serialNumber: str | None
    oui: str | None = None
    modelName: str | None
    hardwareVersion: str | None
    softwareVersion: str | None
    """Firmware Version (/3/0/3) as Coiote maps it, else Software Version (/3/0/19)."""
    productClass: str | None = None
    manufacturer: str | None
    description: str
    friendlyName: str
    domain: str
    securityMode: str
    dtlsIdentity: str | None
    dtlsPsk: None = None

    @classmethod
    def of(cls, device: Device | Row, groups: list[str]) -> DevicePublic:
        """From an ORM device or a row of ``core.devices.read_device``."""
        return cls(
            id=device.id,
            directGroups=groups,
            properties=device_properties(device),
            blacklisted=device.blacklisted,
            managementEnabled=device.management_enabled,
            lastSessionTime=device.last_session_time,
            lastContactTime=device.last_contact_time,
            lastRegisterTime=device.last_register_time,
            firstRegisterTime=device.first_register_time,
            creationTime=device.creation_time,
            ipAddress=device.ip_address,
            serialNumber=device.serial_number,
            modelName=device.model_name,
            hardwareVersion=device.hardware_version,
            softwareVersion=software_version(device),
            manufacturer=device.manufacturer,
            description=device.description,
            friendlyName=device.friendly_name,
            domain=device.domain_id,
            securityMode=device.security_mode,
            dtlsIdentity=device.dtls_identity,
        )

    @classmethod
    def of_bootstrap(cls, account: BootstrapAccount) -> DevicePublic:
        """A bootstrap account as Coiote shows a ``connectorType: bootstrap`` device."""
        return cls(
            id=account.id,
            connectorType="bootstrap",
            bootstrap=True,
            directGroups=[],
            properties={"endpointName": account.endpoint_name},
            blacklisted=False,
            managementEnabled=True,
            lastSessionTime=account.last_bootstrap_time,
            lastContactTime=account.last_bootstrap_time,
            lastRegisterTime=None,
            firstRegisterTime=None,
            creationTime=account.creation_time,
            ipAddress=None,
            serialNumber=None,
            modelName=None,
            hardwareVersion=None,
            softwareVersion=None,
            manufacturer=None,
            description=account.description,
            friendlyName=account.friendly_name,
            domain=account.domain_id,
            securityMode=account.security_mode,
            dtlsIdentity=account.dtls_identity,
        )


DEVICE_FIELDS = frozenset(DevicePublic.model_fields)


class DevicesFindResponse(BaseModel):
    devices: list[dict[str, Any]]
    """Devices with the fields of ``fieldSelection`` (all when it is empty)."""
    nextPageBookmark: str | None


class DeviceCount(BaseModel):
    count: int


class SingleDeviceAddResponse(BaseModel):
    id: str
    result: str


class DeviceAddResult(BaseModel):
    id: str
    success: bool
    reason: str | None = None


class DevicesBatchAddResponse(BaseModel):
    total: int
    succeeded: int
    failed: int
    results: list[DeviceAddResult]


class GroupCreate(BaseModel):
    """A group; ``domain`` (not in Coiote's model) defaults to the caller's domain."""

    model_config = ConfigDict(extra="forbid")
    id: str = Field(min_length=1, max_length=255)
    description: str | None = Field(default=None, max_length=4096)
    domain: str | None = Field(default=None, max_length=512)


class GroupPublic(BaseModel):
    id: str
    description: str


class GroupUpdateRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")
    description: str | None = Field(default=None, max_length=4096)


class StringResult(BaseModel):
    result: str


class SessionStarted(BaseModel):
    result: Literal["triggered", "queued"]
