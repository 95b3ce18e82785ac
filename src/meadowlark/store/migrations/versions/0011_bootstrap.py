"""bootstrap: bootstrap accounts and the configurations they are given

Revision ID: 0011
Revises: 0010
Create Date: 2026-12-01 01:00:00.000000
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

import meadowlark.store.models

revision: str = "0011"
down_revision: str | None = "0010"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "bootstrap_accounts",
        sa.Column("id", sa.String(length=255), nullable=False),
        sa.Column("endpoint_name", sa.String(length=255), nullable=False),
        sa.Column("domain_id", sa.String(length=512), nullable=False),
        sa.Column("friendly_name", sa.String(length=255), nullable=False),
        sa.Column("description", sa.String(length=4096), nullable=False),
        sa.Column("security_mode", sa.String(length=32), nullable=False),
        sa.Column("dtls_identity", sa.String(length=255), nullable=True),
        sa.Column("dtls_psk", sa.String(length=512), nullable=True),
        sa.Column(
            "creation_time", meadowlark.store.models.UtcDateTime(timezone=True), nullable=False
        ),
        sa.Column(
            "last_bootstrap_time",
            meadowlark.store.models.UtcDateTime(timezone=True),
            nullable=True,
        ),
        sa.Column("last_bootstrap_result", sa.String(length=128), nullable=True),
        sa.ForeignKeyConstraint(
            ["domain_id"],
            ["domains.id"],
            name=op.f("fk_bootstrap_accounts_domain_id_domains"),
            ondelete="RESTRICT",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_bootstrap_accounts")),
        sa.UniqueConstraint("dtls_identity", name=op.f("uq_bootstrap_accounts_dtls_identity")),
        sa.UniqueConstraint("endpoint_name", name=op.f("uq_bootstrap_accounts_endpoint_name")),
    )
    op.create_index(
        op.f("ix_bootstrap_accounts_domain_id"), "bootstrap_accounts", ["domain_id"], unique=False
    )
    op.create_table(
        "bootstrap_configs",
        sa.Column("target_kind", sa.String(length=8), nullable=False),
        sa.Column("target_id", sa.String(length=255), nullable=False),
        sa.Column("domain_id", sa.String(length=512), nullable=False),
        sa.Column("server_uri", sa.String(length=1024), nullable=True),
        sa.Column("security_mode", sa.String(length=16), nullable=False),
        sa.Column("short_server_id", sa.Integer(), nullable=False),
        sa.Column("lifetime", sa.Integer(), nullable=False),
        sa.Column("binding", sa.String(length=8), nullable=False),
        sa.Column("notification_storing", sa.Boolean(), nullable=False),
        sa.Column("updated_at", meadowlark.store.models.UtcDateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(
            ["domain_id"],
            ["domains.id"],
            name=op.f("fk_bootstrap_configs_domain_id_domains"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("target_kind", "target_id", name=op.f("pk_bootstrap_configs")),
    )
    op.create_index(
        op.f("ix_bootstrap_configs_domain_id"), "bootstrap_configs", ["domain_id"], unique=False
    )


def downgrade() -> None:
    op.drop_index(op.f("ix_bootstrap_configs_domain_id"), table_name="bootstrap_configs")
    op.drop_table("bootstrap_configs")
    op.drop_index(op.f("ix_bootstrap_accounts_domain_id"), table_name="bootstrap_accounts")
    op.drop_table("bootstrap_accounts")
