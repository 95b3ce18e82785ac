"""cluster: registration owners, singleton leases, large cross-node messages

Revision ID: 0010
Revises: 0009
Create Date: 2026-11-30 21:50:00.000000
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

import meadowlark.store.models

revision: str = "0010"
down_revision: str | None = "0009"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "registration_owners",
        sa.Column("endpoint_name", sa.String(length=255), nullable=False),
        sa.Column("registration_id", sa.String(length=64), nullable=False),
        sa.Column("node_id", sa.String(length=64), nullable=False),
        sa.Column("claimed_at", meadowlark.store.models.UtcDateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(
            ["endpoint_name"],
            ["devices.endpoint_name"],
            name=op.f("fk_registration_owners_endpoint_name_devices"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("endpoint_name", name=op.f("pk_registration_owners")),
    )
    op.create_index(
        op.f("ix_registration_owners_node_id"), "registration_owners", ["node_id"], unique=False
    )
    op.create_index(
        op.f("ix_registration_owners_registration_id"),
        "registration_owners",
        ["registration_id"],
        unique=False,
    )
    op.create_table(
        "cluster_leases",
        sa.Column("name", sa.String(length=64), nullable=False),
        sa.Column("holder", sa.String(length=64), nullable=False),
        sa.Column("expires_at", meadowlark.store.models.UtcDateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("name", name=op.f("pk_cluster_leases")),
    )
    op.create_table(
        "cluster_messages",
        sa.Column("id", sa.String(length=32), nullable=False),
        sa.Column("body", sa.Text(), nullable=False),
        sa.Column("created_at", meadowlark.store.models.UtcDateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_cluster_messages")),
    )
    op.create_index(
        op.f("ix_cluster_messages_created_at"), "cluster_messages", ["created_at"], unique=False
    )


def downgrade() -> None:
    op.drop_index(op.f("ix_cluster_messages_created_at"), table_name="cluster_messages")
    op.drop_table("cluster_messages")
    op.drop_table("cluster_leases")
    op.drop_index(op.f("ix_registration_owners_registration_id"), table_name="registration_owners")
    op.drop_index(op.f("ix_registration_owners_node_id"), table_name="registration_owners")
    op.drop_table("registration_owners")
