"""Tables of monitoring: which devices are monitored, URL aliases, named monitoring
configurations and the samples themselves.

``monitoring_samples`` holds one row per value a monitored device reported: the device,
the resource path and the time (epoch milliseconds, so aggregates bucket by integer
division), the value as a number when it is one, as text otherwise, and as stored in the
value cache. On PostgreSQL the table is range-partitioned by ``at_ms`` (one partition a
day, see ``store.monitoring``); on SQLite it is a plain table.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import (
    JSON,
    BigInteger,
    Boolean,
    Float,
    ForeignKey,
    Integer,
    String,
    Text,
    UniqueConstraint,
)
from sqlalchemy.orm import Mapped, mapped_column

from meadowlark.store.models import Base, utcnow


class MonitoringDevice(Base):
    """Monitoring switched on or off for one device (overrides its groups' setting)."""

    __tablename__ = "monitoring_devices"

    device_id: Mapped[str] = mapped_column(
        ForeignKey("devices.id", ondelete="CASCADE"), primary_key=True
    )
    enabled: Mapped[bool] = mapped_column(Boolean)


class MonitoringGroup(Base):
    """Monitoring switched on or off for the members of a group and of its sub-groups."""

    __tablename__ = "monitoring_groups"

    group_id: Mapped[str] = mapped_column(
        ForeignKey("device_groups.id", ondelete="CASCADE"), primary_key=True
    )
    enabled: Mapped[bool] = mapped_column(Boolean)


class MonitoringAlias(Base):
    """A device's name for one of its LwM2M URLs (``/3303/0/5700`` -> ``temperature``)."""

    __tablename__ = "monitoring_aliases"
    __table_args__ = (UniqueConstraint("device_id", "alias"),)

    device_id: Mapped[str] = mapped_column(
        ForeignKey("devices.id", ondelete="CASCADE"), primary_key=True
    )
    lwm2m_url: Mapped[str] = mapped_column(String(32), primary_key=True)
    alias: Mapped[str] = mapped_column(String(255))


class MonitoringConfiguration(Base):
    """A named monitoring (Coiote ``monitoring``): resources of a group's devices, sampled
    from their notifications or read by the server every ``read_interval`` seconds."""

    __tablename__ = "monitoring_configurations"

    name: Mapped[str] = mapped_column(String(255), primary_key=True)
    domain_id: Mapped[str] = mapped_column(ForeignKey("domains.id", ondelete="CASCADE"), index=True)
    group_id: Mapped[str] = mapped_column(
        ForeignKey("device_groups.id", ondelete="CASCADE"), index=True
    )
    resources: Mapped[list[str]] = mapped_column(JSON)
    source: Mapped[str] = mapped_column(String(16))
    read_interval: Mapped[int | None] = mapped_column(Integer, default=None)
    description: Mapped[str] = mapped_column(Text, default="")
    created_at: Mapped[datetime] = mapped_column(default=utcnow)


class MonitoringSample(Base):
    """One reported value of a monitored resource."""

    __tablename__ = "monitoring_samples"
    # One B-tree per sample on SQLite: the primary key is the table (no rowid), and no
    # index on time alone (retention walks each device's resources by primary key).
    __table_args__ = {"sqlite_with_rowid": False}

    device_id: Mapped[str] = mapped_column(
        ForeignKey("devices.id", ondelete="CASCADE"), primary_key=True
    )
    path: Mapped[str] = mapped_column(String(32), primary_key=True)
    at_ms: Mapped[int] = mapped_column(BigInteger, primary_key=True)
    numeric_value: Mapped[float | None] = mapped_column(Float, default=None)
    text_value: Mapped[str | None] = mapped_column(Text, default=None)
    type: Mapped[str] = mapped_column(String(16))
    value: Mapped[Any] = mapped_column(JSON(none_as_null=True), nullable=True)
    """The value as the value cache stores it, when the two columns above do not already
    say it (Opaque, Time, Objlnk...): NULL for numbers, strings and booleans."""
