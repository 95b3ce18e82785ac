"""event handlers and their delivery outbox

Revision ID: 0013
Revises: 0010
Create Date: 2026-12-01 01:30:00.000000
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

import meadowlark.store.models

revision: str = "0013"
down_revision: str | None = "0012"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "event_handlers",
        sa.Column("id", sa.String(length=24), nullable=False),
        sa.Column("domain_id", sa.String(length=512), nullable=False),
        sa.Column("type", sa.String(length=16), nullable=False),
        sa.Column("name", sa.String(length=255), nullable=False),
        sa.Column("description", sa.Text(), nullable=False),
        sa.Column("enabled", sa.Boolean(), nullable=False),
        sa.Column("filter", sa.JSON(), nullable=False),
        sa.Column("connection", sa.JSON(), nullable=False),
        sa.Column("signing_secret", sa.String(length=256), nullable=False),
        sa.Column("consecutive_failures", sa.Integer(), nullable=False),
        sa.Column("disabled_reason", sa.Text(), nullable=False),
        sa.Column("created_at", meadowlark.store.models.UtcDateTime(timezone=True), nullable=False),
        sa.Column("updated_at", meadowlark.store.models.UtcDateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(
            ["domain_id"],
            ["domains.id"],
            name=op.f("fk_event_handlers_domain_id_domains"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_event_handlers")),
    )
    with op.batch_alter_table("event_handlers", schema=None) as batch_op:
        batch_op.create_index(
            batch_op.f("ix_event_handlers_domain_id"), ["domain_id"], unique=False
        )
    op.create_table(
        "event_handler_outbox",
        sa.Column(
            "id",
            sa.BigInteger().with_variant(sa.Integer(), "sqlite"),
            autoincrement=True,
            nullable=False,
        ),
        sa.Column("handler_id", sa.String(length=24), nullable=False),
        sa.Column("endpoint", sa.String(length=255), nullable=False),
        sa.Column("payload", sa.JSON(), nullable=False),
        sa.Column("attempts", sa.Integer(), nullable=False),
        sa.Column(
            "next_attempt_at", meadowlark.store.models.UtcDateTime(timezone=True), nullable=False
        ),
        sa.Column(
            "claimed_until", meadowlark.store.models.UtcDateTime(timezone=True), nullable=True
        ),
        sa.Column(
            "first_failed_at", meadowlark.store.models.UtcDateTime(timezone=True), nullable=True
        ),
        sa.Column("last_error", sa.Text(), nullable=False),
        sa.Column("created_at", meadowlark.store.models.UtcDateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(
            ["handler_id"],
            ["event_handlers.id"],
            name=op.f("fk_event_handler_outbox_handler_id_event_handlers"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_event_handler_outbox")),
    )
    with op.batch_alter_table("event_handler_outbox", schema=None) as batch_op:
        batch_op.create_index(
            "ix_event_handler_outbox_queue", ["handler_id", "endpoint", "id"], unique=False
        )
        batch_op.create_index("ix_event_handler_outbox_due", ["next_attempt_at"], unique=False)


def downgrade() -> None:
    with op.batch_alter_table("event_handler_outbox", schema=None) as batch_op:
        batch_op.drop_index("ix_event_handler_outbox_due")
        batch_op.drop_index("ix_event_handler_outbox_queue")
    op.drop_table("event_handler_outbox")
    with op.batch_alter_table("event_handlers", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_event_handlers_domain_id"))
    op.drop_table("event_handlers")
