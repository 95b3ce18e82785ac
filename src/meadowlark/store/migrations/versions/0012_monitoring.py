"""monitoring: monitored devices and groups, aliases, named configurations, samples

On PostgreSQL ``monitoring_samples`` is range-partitioned by ``at_ms``; the server
creates the daily partitions ahead and drops expired ones (``store.monitoring``).

Revision ID: 0012
Revises: 0010
Create Date: 2026-12-01 01:30:00.000000
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

import meadowlark.store.models

revision: str = "0012"
down_revision: str | None = "0011"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "monitoring_devices",
        sa.Column("device_id", sa.String(length=255), nullable=False),
        sa.Column("enabled", sa.Boolean(), nullable=False),
        sa.ForeignKeyConstraint(
            ["device_id"],
            ["devices.id"],
            name=op.f("fk_monitoring_devices_device_id_devices"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("device_id", name=op.f("pk_monitoring_devices")),
    )
    op.create_table(
        "monitoring_groups",
        sa.Column("group_id", sa.String(length=255), nullable=False),
        sa.Column("enabled", sa.Boolean(), nullable=False),
        sa.ForeignKeyConstraint(
            ["group_id"],
            ["device_groups.id"],
            name=op.f("fk_monitoring_groups_group_id_device_groups"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("group_id", name=op.f("pk_monitoring_groups")),
    )
    op.create_table(
        "monitoring_aliases",
        sa.Column("device_id", sa.String(length=255), nullable=False),
        sa.Column("lwm2m_url", sa.String(length=32), nullable=False),
        sa.Column("alias", sa.String(length=255), nullable=False),
        sa.ForeignKeyConstraint(
            ["device_id"],
            ["devices.id"],
            name=op.f("fk_monitoring_aliases_device_id_devices"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("device_id", "lwm2m_url", name=op.f("pk_monitoring_aliases")),
        sa.UniqueConstraint("device_id", "alias", name=op.f("uq_monitoring_aliases_device_id")),
    )
    op.create_table(
        "monitoring_configurations",
        sa.Column("name", sa.String(length=255), nullable=False),
        sa.Column("domain_id", sa.String(length=512), nullable=False),
        sa.Column("group_id", sa.String(length=255), nullable=False),
        sa.Column("resources", sa.JSON(), nullable=False),
        sa.Column("source", sa.String(length=16), nullable=False),
        sa.Column("read_interval", sa.Integer(), nullable=True),
        sa.Column("description", sa.Text(), nullable=False),
        sa.Column("created_at", meadowlark.store.models.UtcDateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(
            ["domain_id"],
            ["domains.id"],
            name=op.f("fk_monitoring_configurations_domain_id_domains"),
            ondelete="CASCADE",
        ),
        sa.ForeignKeyConstraint(
            ["group_id"],
            ["device_groups.id"],
            name=op.f("fk_monitoring_configurations_group_id_device_groups"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("name", name=op.f("pk_monitoring_configurations")),
    )
    op.create_index(
        op.f("ix_monitoring_configurations_domain_id"),
        "monitoring_configurations",
        ["domain_id"],
        unique=False,
    )
    op.create_index(
        op.f("ix_monitoring_configurations_group_id"),
        "monitoring_configurations",
        ["group_id"],
        unique=False,
    )
    op.create_table(
        "monitoring_samples",
        sa.Column("device_id", sa.String(length=255), nullable=False),
        sa.Column("path", sa.String(length=32), nullable=False),
        sa.Column("at_ms", sa.BigInteger(), nullable=False),
        sa.Column("numeric_value", sa.Float(), nullable=True),
        sa.Column("text_value", sa.Text(), nullable=True),
        sa.Column("type", sa.String(length=16), nullable=False),
        sa.Column("value", sa.JSON(), nullable=True),
        sa.ForeignKeyConstraint(
            ["device_id"],
            ["devices.id"],
            name=op.f("fk_monitoring_samples_device_id_devices"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("device_id", "path", "at_ms", name=op.f("pk_monitoring_samples")),
        postgresql_partition_by="RANGE (at_ms)",
        sqlite_with_rowid=False,
    )


def downgrade() -> None:
    op.drop_table("monitoring_samples")
    op.drop_index(
        op.f("ix_monitoring_configurations_group_id"), table_name="monitoring_configurations"
    )
    op.drop_index(
        op.f("ix_monitoring_configurations_domain_id"), table_name="monitoring_configurations"
    )
    op.drop_table("monitoring_configurations")
    op.drop_table("monitoring_aliases")
    op.drop_table("monitoring_groups")
    op.drop_table("monitoring_devices")
