"""Tables of the bootstrap server: bootstrap accounts (Coiote's ``connectorType:
bootstrap`` devices) and the configurations they are given."""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import Boolean, ForeignKey, Integer, String
from sqlalchemy.orm import Mapped, mapped_column

from meadowlark.store.models import Base, utcnow


class BootstrapAccount(Base):
    """A device as the bootstrap server knows it: its endpoint name and the credentials
    it bootstraps with (distinct from the management credentials on its ``devices``
    record, which a successful bootstrap replaces)."""

    __tablename__ = "bootstrap_accounts"

    id: Mapped[str] = mapped_column(String(255), primary_key=True)
    endpoint_name: Mapped[str] = mapped_column(String(255), unique=True)
    domain_id: Mapped[str] = mapped_column(
        ForeignKey("domains.id", ondelete="RESTRICT"), index=True
    )
    friendly_name: Mapped[str] = mapped_column(String(255), default="")
    description: Mapped[str] = mapped_column(String(4096), default="")
    security_mode: Mapped[str] = mapped_column(String(32), default="nosec")
    dtls_identity: Mapped[str | None] = mapped_column(String(255), default=None, unique=True)
    dtls_psk: Mapped[str | None] = mapped_column(String(512), default=None)
    """Bootstrap pre-shared key as hex; never returned by the API."""
    creation_time: Mapped[datetime] = mapped_column(default=utcnow)
    last_bootstrap_time: Mapped[datetime | None] = mapped_column(default=None)
    last_bootstrap_result: Mapped[str | None] = mapped_column(String(128), default=None)


class BootstrapConfig(Base):
    """The management server account given to one bootstrap account (``target_kind``
    ``device``) or to the devices of a group (``group``: the groups of the device
    record with the same endpoint name)."""

    __tablename__ = "bootstrap_configs"

    target_kind: Mapped[str] = mapped_column(String(8), primary_key=True)
    target_id: Mapped[str] = mapped_column(String(255), primary_key=True)
    domain_id: Mapped[str] = mapped_column(ForeignKey("domains.id", ondelete="CASCADE"), index=True)
    server_uri: Mapped[str | None] = mapped_column(String(1024), default=None)
    """None: this server's own CoAP address (from settings)."""
    security_mode: Mapped[str] = mapped_column(String(16), default="nosec")
    short_server_id: Mapped[int] = mapped_column(Integer, default=1)
    lifetime: Mapped[int] = mapped_column(Integer, default=86400)
    binding: Mapped[str] = mapped_column(String(8), default="U")
    notification_storing: Mapped[bool] = mapped_column(Boolean, default=True)
    updated_at: Mapped[datetime] = mapped_column(default=utcnow, onupdate=utcnow)
