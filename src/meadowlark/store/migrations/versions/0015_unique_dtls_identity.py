"""one DTLS identity per device: a unique index on devices.dtls_identity

A PSK identity names one key, so it must name one device: the store now refuses a
second device with the same identity (a partial unique index: NULLs are many). Before
the index is built, identities held by several devices (written by racing requests
before this revision) are resolved deterministically: the oldest device (creation time,
then id) keeps it; every other one loses its identity and key and stays in ``psk`` mode,
so it cannot authenticate until an operator gives it credentials of its own. Each such
device is logged (its id and the identity, never a key).

Revision ID: 0015
Revises: 0010
Create Date: 2026-12-01 01:45:00.000000
"""

import logging
from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0015"
down_revision: str | None = "0014"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

_log = logging.getLogger("meadowlark.migrations")
_DEVICES = sa.table(
    "devices",
    sa.column("id", sa.String),
    sa.column("dtls_identity", sa.String),
    sa.column("dtls_psk", sa.String),
    sa.column("security_mode", sa.String),
    sa.column("creation_time", sa.DateTime),
)
_NOT_NULL = sa.text("dtls_identity IS NOT NULL")


def upgrade() -> None:
    _release_duplicate_identities(op.get_bind())
    with op.batch_alter_table("devices", schema=None) as batch_op:
        batch_op.drop_index("ix_devices_dtls_identity")
        batch_op.create_index(
            "uq_devices_dtls_identity",
            ["dtls_identity"],
            unique=True,
            sqlite_where=_NOT_NULL,
            postgresql_where=_NOT_NULL,
        )


def _release_duplicate_identities(bind: sa.Connection) -> None:
    devices = _DEVICES.c
    shared = (
        sa.select(devices.dtls_identity)
        .where(devices.dtls_identity.is_not(None))
        .group_by(devices.dtls_identity)
        .having(sa.func.count() > 1)
    )
    rows = bind.execute(
        sa.select(devices.id, devices.dtls_identity)
        .where(devices.dtls_identity.in_(shared))
        .order_by(devices.dtls_identity, devices.creation_time, devices.id)
    ).all()
    keeper: dict[str, str] = {}
    for device_id, identity in rows:
        if identity not in keeper:
            keeper[identity] = device_id
            continue
        bind.execute(
            sa.update(_DEVICES)
            .where(devices.id == device_id)
            .values(dtls_identity=None, dtls_psk=None, security_mode="psk")
        )
        _log.warning(
            "device %r lost DTLS identity %r (kept by the older device %r): it cannot "
            "authenticate until it is given credentials of its own",
            device_id,
            identity,
            keeper[identity],
        )


def downgrade() -> None:
    with op.batch_alter_table("devices", schema=None) as batch_op:
        batch_op.drop_index("uq_devices_dtls_identity")
        batch_op.create_index("ix_devices_dtls_identity", ["dtls_identity"], unique=False)
