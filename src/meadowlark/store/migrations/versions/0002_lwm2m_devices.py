"""LwM2M devices: device registry, cached resource values, queued requests

Revision ID: 0002
Revises: 0001
Create Date: 2026-11-22 03:31:08.194566
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

import meadowlark.store.models

revision: str = "0002"
down_revision: str | None = "0001"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "devices",
        sa.Column("id", sa.String(length=255), nullable=False),
        sa.Column("endpoint_name", sa.String(length=255), nullable=False),
        sa.Column("domain_id", sa.String(length=512), nullable=False),
        sa.Column("friendly_name", sa.String(length=255), nullable=False),
        sa.Column("description", sa.Text(), nullable=False),
        sa.Column("properties", sa.JSON(), nullable=False),
        sa.Column("blacklisted", sa.Boolean(), nullable=False),
        sa.Column("management_enabled", sa.Boolean(), nullable=False),
        sa.Column("connector_type", sa.String(length=32), nullable=False),
        sa.Column("security_mode", sa.String(length=32), nullable=False),
        sa.Column("dtls_identity", sa.String(length=255), nullable=True),
        sa.Column("dtls_psk", sa.String(length=512), nullable=True),
        sa.Column(
            "first_register_time", meadowlark.store.models.UtcDateTime(timezone=True), nullable=True
        ),
        sa.Column(
            "last_register_time", meadowlark.store.models.UtcDateTime(timezone=True), nullable=True
        ),
        sa.Column(
            "last_contact_time", meadowlark.store.models.UtcDateTime(timezone=True), nullable=True
        ),
        sa.Column(
            "last_session_time", meadowlark.store.models.UtcDateTime(timezone=True), nullable=True
        ),
        sa.Column(
            "creation_time", meadowlark.store.models.UtcDateTime(timezone=True), nullable=False
        ),
        sa.Column("ip_address", sa.String(length=64), nullable=True),
        sa.Column("port", sa.Integer(), nullable=True),
        sa.Column("lwm2m_version", sa.String(length=8), nullable=True),
        sa.Column("binding", sa.String(length=8), nullable=True),
        sa.Column("lifetime", sa.BigInteger(), nullable=True),
        sa.Column("queue_mode", sa.Boolean(), nullable=False),
        sa.Column("registered_objects", sa.Text(), nullable=True),
        sa.Column("registration_id", sa.String(length=64), nullable=True),
        sa.Column("manufacturer", sa.String(length=255), nullable=True),
        sa.Column("model_name", sa.String(length=255), nullable=True),
        sa.Column("serial_number", sa.String(length=255), nullable=True),
        sa.Column("firmware_version", sa.String(length=255), nullable=True),
        sa.Column("hardware_version", sa.String(length=255), nullable=True),
        sa.Column("software_version", sa.String(length=255), nullable=True),
        sa.ForeignKeyConstraint(
            ["domain_id"],
            ["domains.id"],
            name=op.f("fk_devices_domain_id_domains"),
            ondelete="RESTRICT",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_devices")),
        sa.UniqueConstraint("endpoint_name", name=op.f("uq_devices_endpoint_name")),
    )
    op.create_index(op.f("ix_devices_domain_id"), "devices", ["domain_id"])

    op.create_table(
        "queued_requests",
        sa.Column("id", sa.String(length=64), nullable=False),
        sa.Column("device_id", sa.String(length=255), nullable=False),
        sa.Column("kind", sa.String(length=32), nullable=False),
        sa.Column("request", sa.JSON(), nullable=False),
        sa.Column("created_at", meadowlark.store.models.UtcDateTime(timezone=True), nullable=False),
        sa.Column("expires_at", meadowlark.store.models.UtcDateTime(timezone=True), nullable=False),
        sa.Column("state", sa.String(length=16), nullable=False),
        sa.Column("result", sa.JSON(), nullable=False),
        sa.ForeignKeyConstraint(
            ["device_id"],
            ["devices.id"],
            name=op.f("fk_queued_requests_device_id_devices"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_queued_requests")),
    )
    op.create_index(
        "ix_queued_requests_device_state", "queued_requests", ["device_id", "state", "created_at"]
    )
    op.create_index("ix_queued_requests_state_expires", "queued_requests", ["state", "expires_at"])

    op.create_table(
        "resource_values",
        sa.Column("device_id", sa.String(length=255), nullable=False),
        sa.Column("path", sa.String(length=32), nullable=False),
        sa.Column("type", sa.String(length=32), nullable=False),
        sa.Column("value", sa.JSON(), nullable=True),
        sa.Column("updated_at", meadowlark.store.models.UtcDateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(
            ["device_id"],
            ["devices.id"],
            name=op.f("fk_resource_values_device_id_devices"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("device_id", "path", name=op.f("pk_resource_values")),
    )


def downgrade() -> None:
    op.drop_table("resource_values")
    op.drop_index("ix_queued_requests_state_expires", table_name="queued_requests")
    op.drop_index("ix_queued_requests_device_state", table_name="queued_requests")
    op.drop_table("queued_requests")
    op.drop_index(op.f("ix_devices_domain_id"), table_name="devices")
    op.drop_table("devices")
