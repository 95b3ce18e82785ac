"""Tables of the Coiote management layer: groups, memberships, observations, custom objects."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import ForeignKey, Index, Integer, String, Text, UniqueConstraint
from sqlalchemy.orm import Mapped, mapped_column

from meadowlark.store.models import Base, utcnow


class Group(Base):
    """A device group; ids are dotted and hierarchical (``root.acme.sensors``)."""

    __tablename__ = "device_groups"

    id: Mapped[str] = mapped_column(String(255), primary_key=True)
    domain_id: Mapped[str] = mapped_column(
        ForeignKey("domains.id", ondelete="RESTRICT"), index=True
    )
    description: Mapped[str] = mapped_column(Text, default="")
    created_at: Mapped[datetime] = mapped_column(default=utcnow)


class GroupMembership(Base):
    """A device's direct membership of a group."""

    __tablename__ = "group_memberships"
    __table_args__ = (Index("ix_group_memberships_group", "group_id", "device_id"),)

    device_id: Mapped[str] = mapped_column(
        ForeignKey("devices.id", ondelete="CASCADE"), primary_key=True
    )
    group_id: Mapped[str] = mapped_column(
        ForeignKey("device_groups.id", ondelete="CASCADE"), primary_key=True
    )


class ObservationConfig(Base):
    """A wanted observation on a device or on every member of a group.

    The server keeps the LwM2M Observe of each target device in line with these rows,
    also for devices that register or join the group later.
    """

    __tablename__ = "observation_configs"
    __table_args__ = (
        UniqueConstraint("target_kind", "target_id", "lwm2m_path"),
        Index("ix_observation_configs_domain", "domain_id"),
    )

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    domain_id: Mapped[str] = mapped_column(ForeignKey("domains.id", ondelete="CASCADE"))
    target_kind: Mapped[str] = mapped_column(String(8))
    target_id: Mapped[str] = mapped_column(String(255))
    path: Mapped[str] = mapped_column(String(512))
    lwm2m_path: Mapped[str] = mapped_column(String(32))
    attributes: Mapped[dict[str, Any]] = mapped_column(default=dict)
    created_at: Mapped[datetime] = mapped_column(default=utcnow)


class CustomObjectModel(Base):
    """An object definition (OMA DDF XML) added through ``dialects/addObject``."""

    __tablename__ = "custom_object_models"
    __table_args__ = (UniqueConstraint("domain_id", "object_id", "version"),)

    id: Mapped[str] = mapped_column(String(64), primary_key=True)
    domain_id: Mapped[str] = mapped_column(ForeignKey("domains.id", ondelete="CASCADE"))
    object_id: Mapped[int] = mapped_column(Integer)
    version: Mapped[str] = mapped_column(String(16))
    name: Mapped[str] = mapped_column(String(255))
    ddf_xml: Mapped[str] = mapped_column(Text)
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    updated_at: Mapped[datetime] = mapped_column(default=utcnow, onupdate=utcnow)
