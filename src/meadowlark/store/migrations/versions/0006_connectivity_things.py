"""connectivity things

Revision ID: 0006
Revises: 0005
Create Date: 2026-11-30 18:54:25.149969
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

import meadowlark.store.models

revision: str = "0006"
down_revision: str | None = "0005"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "connectivity_events",
        sa.Column("id", sa.Integer(), autoincrement=True, nullable=False),
        sa.Column("at", meadowlark.store.models.UtcDateTime(timezone=True), nullable=False),
        sa.Column("domain_id", sa.String(length=512), nullable=False),
        sa.Column("thing_id", sa.String(length=64), nullable=True),
        sa.Column("endpoint", sa.String(length=255), nullable=True),
        sa.Column("data_type", sa.String(length=32), nullable=False),
        sa.Column("message_type", sa.String(length=32), nullable=False),
        sa.Column("severity", sa.String(length=16), nullable=False),
        sa.Column("message", sa.Text(), nullable=False),
        sa.Column("details", sa.JSON(), nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_connectivity_events")),
    )
    with op.batch_alter_table("connectivity_events", schema=None) as batch_op:
        batch_op.create_index("ix_connectivity_events_domain_at", ["domain_id", "at"], unique=False)
        batch_op.create_index("ix_connectivity_events_thing_at", ["thing_id", "at"], unique=False)

    op.create_table(
        "report_templates",
        sa.Column("id", sa.String(length=64), nullable=False),
        sa.Column("domain_id", sa.String(length=512), nullable=False),
        sa.Column("name", sa.String(length=255), nullable=False),
        sa.Column("description", sa.Text(), nullable=False),
        sa.Column("group_by", sa.String(length=64), nullable=False),
        sa.Column("report_type", sa.String(length=32), nullable=False),
        sa.Column(
            "period_start", meadowlark.store.models.UtcDateTime(timezone=True), nullable=False
        ),
        sa.Column("period_end", meadowlark.store.models.UtcDateTime(timezone=True), nullable=False),
        sa.Column("created_at", meadowlark.store.models.UtcDateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(
            ["domain_id"],
            ["domains.id"],
            name=op.f("fk_report_templates_domain_id_domains"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_report_templates")),
    )
    with op.batch_alter_table("report_templates", schema=None) as batch_op:
        batch_op.create_index(
            batch_op.f("ix_report_templates_domain_id"), ["domain_id"], unique=False
        )

    op.create_table(
        "thing_tags",
        sa.Column("id", sa.String(length=64), nullable=False),
        sa.Column("domain_id", sa.String(length=512), nullable=False),
        sa.Column("name", sa.String(length=128), nullable=False),
        sa.Column("created_at", meadowlark.store.models.UtcDateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(
            ["domain_id"],
            ["domains.id"],
            name=op.f("fk_thing_tags_domain_id_domains"),
            ondelete="RESTRICT",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_thing_tags")),
        sa.UniqueConstraint("domain_id", "name", name=op.f("uq_thing_tags_domain_id")),
    )
    with op.batch_alter_table("thing_tags", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_thing_tags_domain_id"), ["domain_id"], unique=False)

    op.create_table(
        "things_groups",
        sa.Column("id", sa.String(length=64), nullable=False),
        sa.Column("domain_id", sa.String(length=512), nullable=False),
        sa.Column("name", sa.String(length=255), nullable=False),
        sa.Column("imei_prefix", sa.String(length=16), nullable=False),
        sa.Column("lock_master_imei", sa.Boolean(), nullable=False),
        sa.Column("telephony_profile_id", sa.String(length=128), nullable=False),
        sa.Column("created_at", meadowlark.store.models.UtcDateTime(timezone=True), nullable=False),
        sa.Column(
            "modified_at", meadowlark.store.models.UtcDateTime(timezone=True), nullable=False
        ),
        sa.Column("cas", sa.BigInteger(), nullable=False),
        sa.ForeignKeyConstraint(
            ["domain_id"],
            ["domains.id"],
            name=op.f("fk_things_groups_domain_id_domains"),
            ondelete="RESTRICT",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_things_groups")),
    )
    with op.batch_alter_table("things_groups", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_things_groups_domain_id"), ["domain_id"], unique=False)

    op.create_table(
        "report_histories",
        sa.Column("id", sa.String(length=64), nullable=False),
        sa.Column("template_id", sa.String(length=64), nullable=False),
        sa.Column("domain_id", sa.String(length=512), nullable=False),
        sa.Column("csv_path", sa.String(length=255), nullable=False),
        sa.Column("csv", sa.Text(), nullable=False),
        sa.Column("created_at", meadowlark.store.models.UtcDateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(
            ["template_id"],
            ["report_templates.id"],
            name=op.f("fk_report_histories_template_id_report_templates"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_report_histories")),
        sa.UniqueConstraint("csv_path", name=op.f("uq_report_histories_csv_path")),
    )
    with op.batch_alter_table("report_histories", schema=None) as batch_op:
        batch_op.create_index(
            batch_op.f("ix_report_histories_domain_id"), ["domain_id"], unique=False
        )
        batch_op.create_index(
            batch_op.f("ix_report_histories_template_id"), ["template_id"], unique=False
        )

    op.create_table(
        "things",
        sa.Column("id", sa.String(length=64), nullable=False),
        sa.Column("iccid", sa.String(length=22), nullable=False),
        sa.Column("domain_id", sa.String(length=512), nullable=False),
        sa.Column("name", sa.String(length=255), nullable=False),
        sa.Column("description", sa.Text(), nullable=False),
        sa.Column("imsi", sa.String(length=16), nullable=False),
        sa.Column("msisdn", sa.String(length=16), nullable=False),
        sa.Column("imei", sa.String(length=16), nullable=False),
        sa.Column("master_imei", sa.String(length=16), nullable=False),
        sa.Column("lock_master_imei", sa.Boolean(), nullable=False),
        sa.Column("state", sa.String(length=16), nullable=False),
        sa.Column("group_id", sa.String(length=64), nullable=True),
        sa.Column("tags", sa.JSON(), nullable=False),
        sa.Column("device_endpoint", sa.String(length=255), nullable=True),
        sa.Column("created_at", meadowlark.store.models.UtcDateTime(timezone=True), nullable=False),
        sa.Column(
            "modified_at", meadowlark.store.models.UtcDateTime(timezone=True), nullable=False
        ),
        sa.Column("cas", sa.BigInteger(), nullable=False),
        sa.ForeignKeyConstraint(
            ["domain_id"],
            ["domains.id"],
            name=op.f("fk_things_domain_id_domains"),
            ondelete="RESTRICT",
        ),
        sa.ForeignKeyConstraint(
            ["group_id"],
            ["things_groups.id"],
            name=op.f("fk_things_group_id_things_groups"),
            ondelete="RESTRICT",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_things")),
        sa.UniqueConstraint("device_endpoint", name=op.f("uq_things_device_endpoint")),
        sa.UniqueConstraint("iccid", name=op.f("uq_things_iccid")),
    )
    with op.batch_alter_table("things", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_things_domain_id"), ["domain_id"], unique=False)
        batch_op.create_index("ix_things_name", ["name", "id"], unique=False)
        batch_op.create_index("ix_things_domain_state", ["domain_id", "state"], unique=False)
        batch_op.create_index(batch_op.f("ix_things_group_id"), ["group_id"], unique=False)
        batch_op.create_index(batch_op.f("ix_things_imei"), ["imei"], unique=False)

    op.create_table(
        "thing_usage",
        sa.Column("thing_id", sa.String(length=64), nullable=False),
        sa.Column("day", sa.Date(), nullable=False),
        sa.Column("bytes_in", sa.BigInteger(), nullable=False),
        sa.Column("bytes_out", sa.BigInteger(), nullable=False),
        sa.Column("messages_in", sa.BigInteger(), nullable=False),
        sa.Column("messages_out", sa.BigInteger(), nullable=False),
        sa.Column("sms_mt", sa.Integer(), nullable=False),
        sa.ForeignKeyConstraint(
            ["thing_id"],
            ["things.id"],
            name=op.f("fk_thing_usage_thing_id_things"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("thing_id", "day", name=op.f("pk_thing_usage")),
    )


def downgrade() -> None:
    op.drop_table("thing_usage")
    with op.batch_alter_table("things", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_things_imei"))
        batch_op.drop_index(batch_op.f("ix_things_group_id"))
        batch_op.drop_index("ix_things_domain_state")
        batch_op.drop_index("ix_things_name")
        batch_op.drop_index(batch_op.f("ix_things_domain_id"))

    op.drop_table("things")
    with op.batch_alter_table("report_histories", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_report_histories_template_id"))
        batch_op.drop_index(batch_op.f("ix_report_histories_domain_id"))

    op.drop_table("report_histories")
    with op.batch_alter_table("things_groups", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_things_groups_domain_id"))

    op.drop_table("things_groups")
    with op.batch_alter_table("thing_tags", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_thing_tags_domain_id"))

    op.drop_table("thing_tags")
    with op.batch_alter_table("report_templates", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_report_templates_domain_id"))

    op.drop_table("report_templates")
    with op.batch_alter_table("connectivity_events", schema=None) as batch_op:
        batch_op.drop_index("ix_connectivity_events_thing_at")
        batch_op.drop_index("ix_connectivity_events_domain_at")

    op.drop_table("connectivity_events")
