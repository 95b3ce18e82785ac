"""Tables of firmware update: uploaded images (Coiote ``resources``)."""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import BigInteger, ForeignKey, String
from sqlalchemy.orm import Mapped, mapped_column

from meadowlark.store.models import Base, utcnow


class FirmwareResource(Base):
    """An image for devices; its bytes are a file in the data dir named by ``blob_key``.

    ``blob_key`` changes with every upload, so that a download URL handed out for one
    upload never serves another's bytes.
    """

    __tablename__ = "firmware_resources"

    id: Mapped[str] = mapped_column(String(255), primary_key=True)
    domain_id: Mapped[str] = mapped_column(ForeignKey("domains.id", ondelete="CASCADE"), index=True)
    name: Mapped[str] = mapped_column(String(255))
    file_name: Mapped[str] = mapped_column(String(255))
    category: Mapped[str] = mapped_column(String(32))
    expiration_time: Mapped[str] = mapped_column(String(32))
    blob_key: Mapped[str | None] = mapped_column(String(64), default=None, unique=True)
    size: Mapped[int | None] = mapped_column(BigInteger, default=None)
    sha256: Mapped[str | None] = mapped_column(String(64), default=None)
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    uploaded_at: Mapped[datetime | None] = mapped_column(default=None)
