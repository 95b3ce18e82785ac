"""Tables of tasks: definitions, per-device runs (the reports), the callback outbox,
domain templates, setting values and report cursors.

The whole schedule lives here, so a restart loses no task, pending device or report.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import JSON, Boolean, ForeignKey, Index, Integer, String, Text, UniqueConstraint
from sqlalchemy.orm import Mapped, mapped_column

from meadowlark.store.models import Base, utcnow


class TaskRow(Base):
    """A named list of operations for one device or every member of a group."""

    __tablename__ = "tasks"
    __table_args__ = (UniqueConstraint("target_kind", "target_id", "name"),)

    id: Mapped[str] = mapped_column(String(320), primary_key=True)
    domain_id: Mapped[str] = mapped_column(ForeignKey("domains.id", ondelete="CASCADE"), index=True)
    name: Mapped[str] = mapped_column(String(255))
    target_kind: Mapped[str] = mapped_column(String(8))
    target_id: Mapped[str] = mapped_column(String(255))
    operations: Mapped[list[Any]] = mapped_column(JSON)
    parameters: Mapped[list[Any]] = mapped_column(JSON, default=list)
    properties: Mapped[dict[str, Any]] = mapped_column(default=dict)
    is_active: Mapped[bool] = mapped_column(Boolean, default=True)
    batch_requests: Mapped[bool] = mapped_column(Boolean, default=True)
    template_name: Mapped[str | None] = mapped_column(String(255), default=None)
    max_attempts: Mapped[int] = mapped_column(Integer, default=3)
    callback: Mapped[dict[str, Any] | None] = mapped_column(JSON, default=None)
    """``{name, url, secret}``: where each device's report goes, and the HMAC key."""
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    updated_at: Mapped[datetime] = mapped_column(default=utcnow, onupdate=utcnow)


class TaskRun(Base):
    """One device's run of a task: its schedule state and, once finished, its report."""

    __tablename__ = "task_runs"
    __table_args__ = (
        UniqueConstraint("task_id", "device_id"),
        Index("ix_task_runs_device_status", "device_id", "status"),
        Index("ix_task_runs_task_status", "task_id", "status"),
        Index("ix_task_runs_updated", "last_update_time"),
        Index("ix_task_runs_status", "status"),
    )

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    task_id: Mapped[str] = mapped_column(ForeignKey("tasks.id", ondelete="CASCADE"))
    device_id: Mapped[str] = mapped_column(ForeignKey("devices.id", ondelete="CASCADE"))
    domain_id: Mapped[str] = mapped_column(ForeignKey("domains.id", ondelete="CASCADE"))
    direct: Mapped[bool] = mapped_column(Boolean, default=True)
    """The task targets the device itself (not one of its groups)."""
    status: Mapped[str] = mapped_column(String(16))
    attempts: Mapped[int] = mapped_column(Integer, default=0)
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    start_time: Mapped[datetime | None] = mapped_column(default=None)
    finish_time: Mapped[datetime | None] = mapped_column(default=None)
    last_update_time: Mapped[datetime] = mapped_column(default=utcnow)
    summary: Mapped[str] = mapped_column(Text, default="")
    properties: Mapped[list[Any] | None] = mapped_column(JSON, default=None)
    """The report's values: ``[{name, value}]``."""


class TaskCounter(Base):
    """The last number handed out for task ids with this prefix (``d:<hash>``, ``g:<id>``)."""

    __tablename__ = "task_counters"

    prefix: Mapped[str] = mapped_column(String(300), primary_key=True)
    last: Mapped[int] = mapped_column(Integer)


class CallbackDelivery(Base):
    """A report waiting to be POSTed to a task's callback URL (the outbox)."""

    __tablename__ = "task_callback_outbox"
    __table_args__ = (Index("ix_task_callback_outbox_due", "delivered_at", "next_attempt_at"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    task_id: Mapped[str] = mapped_column(ForeignKey("tasks.id", ondelete="CASCADE"), index=True)
    device_id: Mapped[str] = mapped_column(String(255))
    callback_name: Mapped[str] = mapped_column(String(255))
    url: Mapped[str] = mapped_column(Text)
    secret: Mapped[str] = mapped_column(String(512))
    payload: Mapped[dict[str, Any]] = mapped_column()
    attempts: Mapped[int] = mapped_column(Integer, default=0)
    next_attempt_at: Mapped[datetime] = mapped_column(default=utcnow)
    delivered_at: Mapped[datetime | None] = mapped_column(default=None)
    gave_up: Mapped[bool] = mapped_column(Boolean, default=False)
    last_error: Mapped[str] = mapped_column(Text, default="")


class TaskTemplateRow(Base):
    """A domain's own task template (the built-in ones are in code)."""

    __tablename__ = "task_templates"
    __table_args__ = (UniqueConstraint("domain_id", "name"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    domain_id: Mapped[str] = mapped_column(ForeignKey("domains.id", ondelete="CASCADE"))
    name: Mapped[str] = mapped_column(String(255))
    description: Mapped[str] = mapped_column(Text, default="")
    parameters: Mapped[list[Any]] = mapped_column(JSON, default=list)
    operations: Mapped[list[Any]] = mapped_column(JSON)
    created_at: Mapped[datetime] = mapped_column(default=utcnow)


class SettingValueRow(Base):
    """A named value of a domain, a group or a device, used as ``${sv.name}`` in tasks."""

    __tablename__ = "setting_values"
    __table_args__ = (
        UniqueConstraint("target_kind", "target_id", "name"),
        Index("ix_setting_values_name", "name"),
    )

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    domain_id: Mapped[str] = mapped_column(ForeignKey("domains.id", ondelete="CASCADE"), index=True)
    target_kind: Mapped[str] = mapped_column(String(8))
    target_id: Mapped[str] = mapped_column(String(512))
    name: Mapped[str] = mapped_column(String(255))
    value: Mapped[str] = mapped_column(Text)
    is_secret: Mapped[bool] = mapped_column(Boolean, default=False)
    updated_at: Mapped[datetime] = mapped_column(default=utcnow, onupdate=utcnow)


class ReportCursor(Base):
    """A ``findReports`` cursor: the criteria and how far ``moreReports`` got."""

    __tablename__ = "task_report_cursors"

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    domain_id: Mapped[str] = mapped_column(ForeignKey("domains.id", ondelete="CASCADE"))
    owner: Mapped[str] = mapped_column(String(255))
    search_criteria: Mapped[str] = mapped_column(Text, default="")
    position: Mapped[int] = mapped_column(Integer, default=0)
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
