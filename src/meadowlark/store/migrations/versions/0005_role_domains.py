"""roles belong to a domain

Revision ID: 0005
Revises: 0004
Create Date: 2026-11-30 18:50:00.000000
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0005"
down_revision: str | None = "0004"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    with op.batch_alter_table("roles") as batch:
        batch.add_column(sa.Column("domain_id", sa.String(length=512), nullable=True))
        batch.drop_constraint("uq_roles_name", type_="unique")
        batch.create_index(batch.f("ix_roles_name"), ["name"])
        batch.create_index(batch.f("ix_roles_domain_id"), ["domain_id"])
        batch.create_foreign_key(
            batch.f("fk_roles_domain_id_domains"),
            "domains",
            ["domain_id"],
            ["id"],
            ondelete="CASCADE",
        )
    # Custom roles made before domains owned roles were made by root administrators.
    op.execute("UPDATE roles SET domain_id = '/root/' WHERE builtin = false")


def downgrade() -> None:
    with op.batch_alter_table("roles") as batch:
        batch.drop_constraint("fk_roles_domain_id_domains", type_="foreignkey")
        batch.drop_index(batch.f("ix_roles_domain_id"))
        batch.drop_index(batch.f("ix_roles_name"))
        batch.drop_column("domain_id")
        batch.create_unique_constraint("uq_roles_name", ["name"])
