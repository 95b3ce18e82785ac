"""Tables of LwM2M devices: the device registry, cached resource values, queued requests."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import (
    JSON,
    BigInteger,
    Boolean,
    ForeignKey,
    Index,
    Integer,
    String,
    Text,
    text,
)
from sqlalchemy.orm import Mapped, mapped_column

from meadowlark.store.models import Base, utcnow


class Device(Base):
    """A managed device; ``id`` is the endpoint name unless created with another id."""

    __tablename__ = "devices"
    __table_args__ = (
        Index(
            "uq_devices_dtls_identity",
            "dtls_identity",
            unique=True,
            sqlite_where=text("dtls_identity IS NOT NULL"),
            postgresql_where=text("dtls_identity IS NOT NULL"),
        ),
        # the alerts' no-contact sweep: one range query per rule (migration 0014)
        Index("ix_devices_last_contact_time", "last_contact_time"),
    )

    id: Mapped[str] = mapped_column(String(255), primary_key=True)
    endpoint_name: Mapped[str] = mapped_column(String(255), unique=True)
    domain_id: Mapped[str] = mapped_column(
        ForeignKey("domains.id", ondelete="RESTRICT"), index=True
    )
    friendly_name: Mapped[str] = mapped_column(String(255), default="")
    description: Mapped[str] = mapped_column(Text, default="")
    properties: Mapped[dict[str, Any]] = mapped_column(default=dict)
    blacklisted: Mapped[bool] = mapped_column(Boolean, default=False)
    management_enabled: Mapped[bool] = mapped_column(Boolean, default=True)
    connector_type: Mapped[str] = mapped_column(String(32), default="lwm2m")
    security_mode: Mapped[str] = mapped_column(String(32), default="nosec")
    dtls_identity: Mapped[str | None] = mapped_column(String(255), default=None)
    """Unique among devices that have one (``uq_devices_dtls_identity``)."""
    dtls_psk: Mapped[str | None] = mapped_column(String(512), default=None)
    """Pre-shared key as hex; never returned in clear by the API."""
    first_register_time: Mapped[datetime | None] = mapped_column(default=None)
    last_register_time: Mapped[datetime | None] = mapped_column(default=None)
    last_contact_time: Mapped[datetime | None] = mapped_column(default=None)
    last_session_time: Mapped[datetime | None] = mapped_column(default=None)
    creation_time: Mapped[datetime] = mapped_column(default=utcnow)
    ip_address: Mapped[str | None] = mapped_column(String(64), default=None)
    port: Mapped[int | None] = mapped_column(Integer, default=None)
    lwm2m_version: Mapped[str | None] = mapped_column(String(8), default=None)
    binding: Mapped[str | None] = mapped_column(String(8), default=None)
    lifetime: Mapped[int | None] = mapped_column(BigInteger, default=None)
    queue_mode: Mapped[bool] = mapped_column(Boolean, default=False)
    registered_objects: Mapped[str | None] = mapped_column(Text, default=None)
    """The Register/Update link-format payload, as the device sent it."""
    registration_id: Mapped[str | None] = mapped_column(String(64), default=None)
    registration_transport: Mapped[str | None] = mapped_column(String(8), default=None)
    """``udp``, ``dtls``, ``tcp`` or ``tls``: what the registration came over (``Peer``);
    None in rows written before migration 0016 (read as ``udp``)."""
    registration_identity_mode: Mapped[str | None] = mapped_column(String(8), default=None)
    """Whom that transport authenticated the device as (``PeerIdentity``): the mode
    (``psk``, ``rpk``, ``cert``) and name (never a key); None when nothing was."""
    registration_identity_name: Mapped[str | None] = mapped_column(Text, default=None)
    manufacturer: Mapped[str | None] = mapped_column(String(255), default=None)
    model_name: Mapped[str | None] = mapped_column(String(255), default=None)
    serial_number: Mapped[str | None] = mapped_column(String(255), default=None)
    firmware_version: Mapped[str | None] = mapped_column(String(255), default=None)
    hardware_version: Mapped[str | None] = mapped_column(String(255), default=None)
    software_version: Mapped[str | None] = mapped_column(String(255), default=None)


class ResourceValue(Base):
    """The last value seen for one resource (instance) path of a device."""

    __tablename__ = "resource_values"

    device_id: Mapped[str] = mapped_column(
        ForeignKey("devices.id", ondelete="CASCADE"), primary_key=True
    )
    path: Mapped[str] = mapped_column(String(32), primary_key=True)
    type: Mapped[str] = mapped_column(String(32))
    value: Mapped[Any] = mapped_column(JSON, nullable=True)
    updated_at: Mapped[datetime] = mapped_column()


class QueuedRequestRow(Base):
    """A request for a queue-mode device, from submission until delivery or expiry."""

    __tablename__ = "queued_requests"
    __table_args__ = (
        Index("ix_queued_requests_device_state", "device_id", "state", "created_at"),
        Index("ix_queued_requests_state_expires", "state", "expires_at"),
    )

    id: Mapped[str] = mapped_column(String(64), primary_key=True)
    device_id: Mapped[str] = mapped_column(ForeignKey("devices.id", ondelete="CASCADE"))
    kind: Mapped[str] = mapped_column(String(32))
    request: Mapped[dict[str, Any]] = mapped_column()
    created_at: Mapped[datetime] = mapped_column()
    expires_at: Mapped[datetime] = mapped_column()
    state: Mapped[str] = mapped_column(String(16), default="pending")
    result: Mapped[dict[str, Any]] = mapped_column(default=dict)
