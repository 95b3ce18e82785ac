"""alerts: rules per domain or group, alerts, the last-contact index of the no-contact sweep

Revision ID: 0014
Revises: 0010
Create Date: 2026-12-01 01:40:00.000000
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

import meadowlark.store.models

revision: str = "0014"
down_revision: str | None = "0013"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "alert_rules",
        sa.Column("id", sa.String(length=32), nullable=False),
        sa.Column("domain_id", sa.String(length=512), nullable=False),
        sa.Column("group_id", sa.String(length=255), nullable=True),
        sa.Column("name", sa.String(length=255), nullable=False),
        sa.Column("kind", sa.String(length=16), nullable=False),
        sa.Column("severity", sa.String(length=16), nullable=False),
        sa.Column("enabled", sa.Boolean(), nullable=False),
        sa.Column("no_contact_minutes", sa.Integer(), nullable=True),
        sa.Column("resource_url", sa.String(length=32), nullable=True),
        sa.Column("above", sa.Float(), nullable=True),
        sa.Column("below", sa.Float(), nullable=True),
        sa.Column("hysteresis", sa.Float(), nullable=False),
        sa.Column("created_at", meadowlark.store.models.UtcDateTime(timezone=True), nullable=False),
        sa.Column("updated_at", meadowlark.store.models.UtcDateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(
            ["domain_id"],
            ["domains.id"],
            name=op.f("fk_alert_rules_domain_id_domains"),
            ondelete="CASCADE",
        ),
        sa.ForeignKeyConstraint(
            ["group_id"],
            ["device_groups.id"],
            name=op.f("fk_alert_rules_group_id_device_groups"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_alert_rules")),
    )
    op.create_index(op.f("ix_alert_rules_domain_id"), "alert_rules", ["domain_id"], unique=False)
    op.create_index(op.f("ix_alert_rules_group_id"), "alert_rules", ["group_id"], unique=False)
    op.create_index(op.f("ix_alert_rules_kind"), "alert_rules", ["kind"], unique=False)
    op.create_table(
        "alerts",
        sa.Column("id", sa.String(length=32), nullable=False),
        sa.Column("rule_id", sa.String(length=32), nullable=False),
        sa.Column("device_id", sa.String(length=255), nullable=False),
        sa.Column("domain_id", sa.String(length=512), nullable=False),
        sa.Column("state", sa.String(length=16), nullable=False),
        sa.Column("severity", sa.String(length=16), nullable=False),
        sa.Column("message", sa.Text(), nullable=False),
        sa.Column("value", sa.JSON(), nullable=True),
        sa.Column("open_key", sa.String(length=320), nullable=True),
        sa.Column("raised_at", meadowlark.store.models.UtcDateTime(timezone=True), nullable=False),
        sa.Column(
            "acknowledged_at", meadowlark.store.models.UtcDateTime(timezone=True), nullable=True
        ),
        sa.Column("acknowledged_by", sa.String(length=255), nullable=True),
        sa.Column("cleared_at", meadowlark.store.models.UtcDateTime(timezone=True), nullable=True),
        sa.ForeignKeyConstraint(
            ["device_id"],
            ["devices.id"],
            name=op.f("fk_alerts_device_id_devices"),
            ondelete="CASCADE",
        ),
        sa.ForeignKeyConstraint(
            ["domain_id"],
            ["domains.id"],
            name=op.f("fk_alerts_domain_id_domains"),
            ondelete="CASCADE",
        ),
        sa.ForeignKeyConstraint(
            ["rule_id"],
            ["alert_rules.id"],
            name=op.f("fk_alerts_rule_id_alert_rules"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_alerts")),
        sa.UniqueConstraint("open_key", name=op.f("uq_alerts_open_key")),
    )
    op.create_index("ix_alerts_domain_id", "alerts", ["domain_id", "id"], unique=False)
    op.create_index("ix_alerts_device_id", "alerts", ["device_id", "id"], unique=False)
    op.create_index("ix_alerts_rule_state", "alerts", ["rule_id", "state"], unique=False)
    op.create_index("ix_devices_last_contact_time", "devices", ["last_contact_time"], unique=False)


def downgrade() -> None:
    op.drop_index("ix_devices_last_contact_time", table_name="devices")
    op.drop_table("alerts")
    op.drop_index(op.f("ix_alert_rules_kind"), table_name="alert_rules")
    op.drop_index(op.f("ix_alert_rules_group_id"), table_name="alert_rules")
    op.drop_index(op.f("ix_alert_rules_domain_id"), table_name="alert_rules")
    op.drop_table("alert_rules")
