"""device indexes: DTLS identity lookups

Revision ID: 0004
Revises: 0003
Create Date: 2026-11-22 06:10:00.000000
"""

from collections.abc import Sequence

from alembic import op

revision: str = "0004"
down_revision: str | None = "0003"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    # Provisioning checks that a DTLS identity is unused; a PSK handshake looks it up.
    op.create_index(op.f("ix_devices_dtls_identity"), "devices", ["dtls_identity"])


def downgrade() -> None:
    op.drop_index(op.f("ix_devices_dtls_identity"), table_name="devices")
