"""Tables of a scaled-out deployment: who holds each registration, singleton leases,
and the bodies of cross-node messages too large for a PostgreSQL NOTIFY."""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import ForeignKey, String, Text
from sqlalchemy.orm import Mapped, mapped_column

from meadowlark.store.models import Base, utcnow


class RegistrationOwner(Base):
    """The node (worker process) that holds a device's current registration: the one
    that received its last Register or Update, and so the one whose socket reaches it."""

    __tablename__ = "registration_owners"

    endpoint_name: Mapped[str] = mapped_column(
        ForeignKey("devices.endpoint_name", ondelete="CASCADE"), primary_key=True
    )
    registration_id: Mapped[str] = mapped_column(String(64), index=True)
    """Found by an Update or De-register that reaches another node (its location)."""
    node_id: Mapped[str] = mapped_column(String(64), index=True)
    claimed_at: Mapped[datetime] = mapped_column(default=utcnow)


class ClusterLease(Base):
    """A named singleton duty (task recovery, sweeps) held by one node until it expires;
    used where the store has no advisory locks (SQLite)."""

    __tablename__ = "cluster_leases"

    name: Mapped[str] = mapped_column(String(64), primary_key=True)
    holder: Mapped[str] = mapped_column(String(64))
    expires_at: Mapped[datetime] = mapped_column()


class ClusterMessage(Base):
    """The body of a cross-node message larger than a NOTIFY payload; the notification
    carries its id and the receiver deletes the row."""

    __tablename__ = "cluster_messages"

    id: Mapped[str] = mapped_column(String(32), primary_key=True)
    body: Mapped[str] = mapped_column(Text)
    created_at: Mapped[datetime] = mapped_column(default=utcnow, index=True)
