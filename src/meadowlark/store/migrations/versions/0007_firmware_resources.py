"""firmware resources

Revision ID: 0007
Revises: 0006
Create Date: 2026-12-02 10:00:00.000000
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

import meadowlark.store.models

revision: str = "0007"
down_revision: str | None = "0006"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "firmware_resources",
        sa.Column("id", sa.String(length=255), nullable=False),
        sa.Column("domain_id", sa.String(length=512), nullable=False),
        sa.Column("name", sa.String(length=255), nullable=False),
        sa.Column("file_name", sa.String(length=255), nullable=False),
        sa.Column("category", sa.String(length=32), nullable=False),
        sa.Column("expiration_time", sa.String(length=32), nullable=False),
        sa.Column("blob_key", sa.String(length=64), nullable=True),
        sa.Column("size", sa.BigInteger(), nullable=True),
        sa.Column("sha256", sa.String(length=64), nullable=True),
        sa.Column("created_at", meadowlark.store.models.UtcDateTime(timezone=True), nullable=False),
        sa.Column("uploaded_at", meadowlark.store.models.UtcDateTime(timezone=True), nullable=True),
        sa.ForeignKeyConstraint(
            ["domain_id"],
            ["domains.id"],
            name=op.f("fk_firmware_resources_domain_id_domains"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_firmware_resources")),
        sa.UniqueConstraint("blob_key", name=op.f("uq_firmware_resources_blob_key")),
    )
    with op.batch_alter_table("firmware_resources", schema=None) as batch_op:
        batch_op.create_index(
            batch_op.f("ix_firmware_resources_domain_id"), ["domain_id"], unique=False
        )


def downgrade() -> None:
    with op.batch_alter_table("firmware_resources", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_firmware_resources_domain_id"))
    op.drop_table("firmware_resources")
