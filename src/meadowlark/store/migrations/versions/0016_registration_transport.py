"""registration transport: how the device reached the node holding its registration

The node holding a registration writes, with its address, the transport it came over
(``udp``, ``dtls``, ``tcp``, ``tls``) and whom that transport authenticated the device
as (the credential's mode and name, never a key), so that another node of a cluster
reports the registration as it is. Rows written before this revision have none: they
read as plain UDP without identity until their device registers again.

Revision ID: 0016
Revises: 0015
Create Date: 2026-12-01 05:05:00.000000
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0016"
down_revision: str | None = "0015"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    with op.batch_alter_table("devices", schema=None) as batch_op:
        batch_op.add_column(sa.Column("registration_transport", sa.String(length=8), nullable=True))
        batch_op.add_column(
            sa.Column("registration_identity_mode", sa.String(length=8), nullable=True)
        )
        batch_op.add_column(sa.Column("registration_identity_name", sa.Text(), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("devices", schema=None) as batch_op:
        batch_op.drop_column("registration_identity_name")
        batch_op.drop_column("registration_identity_mode")
        batch_op.drop_column("registration_transport")
