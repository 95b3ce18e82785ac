"""Tables of the connectivity layer: SIM cards (Things), their groups and tags, daily
usage, the connectivity event log (what ``searchCDR`` reads) and usage reports."""

from __future__ import annotations

from datetime import date, datetime
from typing import Any

from sqlalchemy import (
    BigInteger,
    Boolean,
    Date,
    ForeignKey,
    Index,
    Integer,
    String,
    Text,
    UniqueConstraint,
)
from sqlalchemy.orm import Mapped, mapped_column

from meadowlark.store.models import Base, utcnow


class ThingsGroup(Base):
    """A group of SIMs; ``imei_prefix`` with ``lock_master_imei`` locks its members to
    devices of one IMEI range (TAC)."""

    __tablename__ = "things_groups"

    id: Mapped[str] = mapped_column(String(64), primary_key=True)
    domain_id: Mapped[str] = mapped_column(
        ForeignKey("domains.id", ondelete="RESTRICT"), index=True
    )
    name: Mapped[str] = mapped_column(String(255))
    imei_prefix: Mapped[str] = mapped_column(String(16), default="")
    lock_master_imei: Mapped[bool] = mapped_column(Boolean, default=False)
    telephony_profile_id: Mapped[str] = mapped_column(String(128), default="")
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    modified_at: Mapped[datetime] = mapped_column(default=utcnow, onupdate=utcnow)
    cas: Mapped[int] = mapped_column(BigInteger, default=1)


class Thing(Base):
    """A SIM card, ``ThingId_ICCID_<iccid>``; ``device_endpoint`` links it to the LwM2M
    device that uses it."""

    __tablename__ = "things"
    __table_args__ = (
        Index("ix_things_name", "name", "id"),
        Index("ix_things_domain_state", "domain_id", "state"),
    )

    id: Mapped[str] = mapped_column(String(64), primary_key=True)
    iccid: Mapped[str] = mapped_column(String(22), unique=True)
    domain_id: Mapped[str] = mapped_column(
        ForeignKey("domains.id", ondelete="RESTRICT"), index=True
    )
    name: Mapped[str] = mapped_column(String(255))
    description: Mapped[str] = mapped_column(Text, default="")
    imsi: Mapped[str] = mapped_column(String(16), default="")
    msisdn: Mapped[str] = mapped_column(String(16), default="")
    imei: Mapped[str] = mapped_column(String(16), default="", index=True)
    master_imei: Mapped[str] = mapped_column(String(16), default="")
    lock_master_imei: Mapped[bool] = mapped_column(Boolean, default=False)
    state: Mapped[str] = mapped_column(String(16), default="PROVISIONED")
    group_id: Mapped[str | None] = mapped_column(
        ForeignKey("things_groups.id", ondelete="RESTRICT"), index=True, default=None
    )
    tags: Mapped[list[str]] = mapped_column(default=list)
    device_endpoint: Mapped[str | None] = mapped_column(String(255), unique=True, default=None)
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    modified_at: Mapped[datetime] = mapped_column(default=utcnow, onupdate=utcnow)
    cas: Mapped[int] = mapped_column(BigInteger, default=1)


class ThingTag(Base):
    """A tag name a domain's Things can carry."""

    __tablename__ = "thing_tags"
    __table_args__ = (UniqueConstraint("domain_id", "name"),)

    id: Mapped[str] = mapped_column(String(64), primary_key=True)
    domain_id: Mapped[str] = mapped_column(
        ForeignKey("domains.id", ondelete="RESTRICT"), index=True
    )
    name: Mapped[str] = mapped_column(String(128))
    created_at: Mapped[datetime] = mapped_column(default=utcnow)


class ThingUsage(Base):
    """What the server really exchanged with a Thing's device on one UTC day."""

    __tablename__ = "thing_usage"

    thing_id: Mapped[str] = mapped_column(
        ForeignKey("things.id", ondelete="CASCADE"), primary_key=True
    )
    day: Mapped[date] = mapped_column(Date, primary_key=True)
    bytes_in: Mapped[int] = mapped_column(BigInteger, default=0)
    """Bytes received from the device (CoAP datagrams)."""
    bytes_out: Mapped[int] = mapped_column(BigInteger, default=0)
    messages_in: Mapped[int] = mapped_column(BigInteger, default=0)
    messages_out: Mapped[int] = mapped_column(BigInteger, default=0)
    sms_mt: Mapped[int] = mapped_column(Integer, default=0)


class ConnectivityEvent(Base):
    """One entry of the connectivity event log (state changes, registrations, refusals,
    SMS, IMEI violations, usage), searched by ``POST /thing/searchCDR``."""

    __tablename__ = "connectivity_events"
    __table_args__ = (
        Index("ix_connectivity_events_thing_at", "thing_id", "at"),
        Index("ix_connectivity_events_domain_at", "domain_id", "at"),
    )

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    at: Mapped[datetime] = mapped_column(default=utcnow)
    domain_id: Mapped[str] = mapped_column(String(512))
    thing_id: Mapped[str | None] = mapped_column(String(64), default=None)
    endpoint: Mapped[str | None] = mapped_column(String(255), default=None)
    data_type: Mapped[str] = mapped_column(String(32))
    message_type: Mapped[str] = mapped_column(String(32))
    severity: Mapped[str] = mapped_column(String(16), default="Info")
    message: Mapped[str] = mapped_column(Text, default="")
    details: Mapped[dict[str, Any]] = mapped_column(default=dict)


class ReportTemplate(Base):
    __tablename__ = "report_templates"

    id: Mapped[str] = mapped_column(String(64), primary_key=True)
    domain_id: Mapped[str] = mapped_column(ForeignKey("domains.id", ondelete="CASCADE"), index=True)
    name: Mapped[str] = mapped_column(String(255))
    description: Mapped[str] = mapped_column(Text, default="")
    group_by: Mapped[str] = mapped_column(String(64), default="servingNetwork")
    report_type: Mapped[str] = mapped_column(String(32), default="rating")
    period_start: Mapped[datetime] = mapped_column()
    period_end: Mapped[datetime] = mapped_column()
    created_at: Mapped[datetime] = mapped_column(default=utcnow)


class ReportHistory(Base):
    """One generated report; ``csv`` holds it, ``csv_path`` names it for download."""

    __tablename__ = "report_histories"

    id: Mapped[str] = mapped_column(String(64), primary_key=True)
    template_id: Mapped[str] = mapped_column(
        ForeignKey("report_templates.id", ondelete="CASCADE"), index=True
    )
    domain_id: Mapped[str] = mapped_column(String(512), index=True)
    csv_path: Mapped[str] = mapped_column(String(255), unique=True)
    csv: Mapped[str] = mapped_column(Text)
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
