"""Tables of event handlers (``deviceEvents/handler``) and their delivery outbox.

Secrets of a handler (auth passwords and tokens, Kafka properties with credentials, the
MQTT password and the signing secret) are stored sealed (``core.secret_box``); the outbox
holds one row per event and handler until the receiver took it.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import JSON, BigInteger, Boolean, ForeignKey, Index, Integer, String, Text
from sqlalchemy.orm import Mapped, mapped_column

from meadowlark.store.models import Base, utcnow


class EventHandlerRow(Base):
    __tablename__ = "event_handlers"

    id: Mapped[str] = mapped_column(String(24), primary_key=True)
    domain_id: Mapped[str] = mapped_column(ForeignKey("domains.id", ondelete="CASCADE"), index=True)
    type: Mapped[str] = mapped_column(String(16))
    name: Mapped[str] = mapped_column(String(255))
    description: Mapped[str] = mapped_column(Text, default="")
    enabled: Mapped[bool] = mapped_column(Boolean, default=True)
    filter: Mapped[dict[str, Any]] = mapped_column(JSON)
    connection: Mapped[dict[str, Any]] = mapped_column(JSON)
    """The connection config with its secrets replaced by sealed text."""
    signing_secret: Mapped[str] = mapped_column(String(256))
    """Sealed HMAC key of ``X-Meadowlark-Signature``."""
    consecutive_failures: Mapped[int] = mapped_column(Integer, default=0)
    disabled_reason: Mapped[str] = mapped_column(Text, default="")
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    updated_at: Mapped[datetime] = mapped_column(default=utcnow, onupdate=utcnow)


class EventOutboxRow(Base):
    """One event waiting for one handler's receiver; deleted once delivered."""

    __tablename__ = "event_handler_outbox"
    __table_args__ = (
        Index("ix_event_handler_outbox_queue", "handler_id", "endpoint", "id"),
        Index("ix_event_handler_outbox_due", "next_attempt_at"),
    )

    id: Mapped[int] = mapped_column(
        BigInteger().with_variant(Integer, "sqlite"), primary_key=True, autoincrement=True
    )
    handler_id: Mapped[str] = mapped_column(ForeignKey("event_handlers.id", ondelete="CASCADE"))
    endpoint: Mapped[str] = mapped_column(String(255))
    payload: Mapped[dict[str, Any]] = mapped_column(JSON)
    attempts: Mapped[int] = mapped_column(Integer, default=0)
    next_attempt_at: Mapped[datetime] = mapped_column(default=utcnow)
    claimed_until: Mapped[datetime | None] = mapped_column(default=None)
    """A delivery of this row is under way (by some worker) until then."""
    first_failed_at: Mapped[datetime | None] = mapped_column(default=None)
    last_error: Mapped[str] = mapped_column(Text, default="")
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
