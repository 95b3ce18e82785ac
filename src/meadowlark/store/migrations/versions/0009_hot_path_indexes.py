"""hot path indexes

Indexes for the existence checks a device's Register or Update makes (any scheduled
task run, any ``registrationRead`` setting); proven used by
``tests/integration/store/test_hot_query_plans.py``.

Revision ID: 0009
Revises: 0008
Create Date: 2026-11-30 22:10:00.000000
"""

from collections.abc import Sequence

from alembic import op

revision: str = "0009"
down_revision: str | None = "0008"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    with op.batch_alter_table("task_runs", schema=None) as batch_op:
        batch_op.create_index("ix_task_runs_status", ["status"], unique=False)
    with op.batch_alter_table("setting_values", schema=None) as batch_op:
        batch_op.create_index("ix_setting_values_name", ["name"], unique=False)


def downgrade() -> None:
    with op.batch_alter_table("setting_values", schema=None) as batch_op:
        batch_op.drop_index("ix_setting_values_name")
    with op.batch_alter_table("task_runs", schema=None) as batch_op:
        batch_op.drop_index("ix_task_runs_status")
