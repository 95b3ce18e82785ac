"""Tables of alerting: rules per domain or group, and the alerts they raise."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import JSON, Boolean, Float, ForeignKey, Index, Integer, String, Text
from sqlalchemy.orm import Mapped, mapped_column

from meadowlark.store.models import Base, utcnow


class AlertRule(Base):
    """A condition watched on the devices of a domain subtree, or of one group."""

    __tablename__ = "alert_rules"

    id: Mapped[str] = mapped_column(String(32), primary_key=True)
    domain_id: Mapped[str] = mapped_column(ForeignKey("domains.id", ondelete="CASCADE"), index=True)
    group_id: Mapped[str | None] = mapped_column(
        ForeignKey("device_groups.id", ondelete="CASCADE"), default=None, index=True
    )
    name: Mapped[str] = mapped_column(String(255))
    kind: Mapped[str] = mapped_column(String(16), index=True)
    """``noContact``, ``threshold`` or ``taskFailed``."""
    severity: Mapped[str] = mapped_column(String(16))
    enabled: Mapped[bool] = mapped_column(Boolean, default=True)
    no_contact_minutes: Mapped[int | None] = mapped_column(Integer, default=None)
    resource_url: Mapped[str | None] = mapped_column(String(32), default=None)
    above: Mapped[float | None] = mapped_column(Float, default=None)
    below: Mapped[float | None] = mapped_column(Float, default=None)
    hysteresis: Mapped[float] = mapped_column(Float, default=0.0)
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    updated_at: Mapped[datetime] = mapped_column(default=utcnow)


class Alert(Base):
    """One occurrence of a rule's condition on a device: raised, acknowledged, cleared.

    ``open_key`` is ``<rule id>/<device id>`` until the alert is cleared, then NULL: its
    unique index keeps one open alert per rule and device, across nodes.
    """

    __tablename__ = "alerts"
    __table_args__ = (
        Index("ix_alerts_domain_id", "domain_id", "id"),
        Index("ix_alerts_device_id", "device_id", "id"),
        Index("ix_alerts_rule_state", "rule_id", "state"),
    )

    id: Mapped[str] = mapped_column(String(32), primary_key=True)
    """Hex of the raise time (ms) then random: newest first is ``id`` descending."""
    rule_id: Mapped[str] = mapped_column(ForeignKey("alert_rules.id", ondelete="CASCADE"))
    device_id: Mapped[str] = mapped_column(ForeignKey("devices.id", ondelete="CASCADE"))
    domain_id: Mapped[str] = mapped_column(ForeignKey("domains.id", ondelete="CASCADE"))
    """The device's domain when raised: who may see the alert."""
    state: Mapped[str] = mapped_column(String(16))
    severity: Mapped[str] = mapped_column(String(16))
    message: Mapped[str] = mapped_column(Text)
    value: Mapped[Any] = mapped_column(JSON, nullable=True)
    open_key: Mapped[str | None] = mapped_column(String(320), unique=True, default=None)
    raised_at: Mapped[datetime] = mapped_column(default=utcnow)
    acknowledged_at: Mapped[datetime | None] = mapped_column(default=None)
    acknowledged_by: Mapped[str | None] = mapped_column(String(255), default=None)
    cleared_at: Mapped[datetime | None] = mapped_column(default=None)
