"""``meadowlark db``: schema upgrades, backups and restores of the database.

There is no downgrade command: a database migrated by a newer Meadowlark is refused
(``SchemaTooNew``) by ``db upgrade``, ``serve`` and ``doctor``; the way back is a backup.
"""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Annotated

import typer

from meadowlark.cli.runner import load_settings
from meadowlark.cli.serving import prepare_store, safe_url
from meadowlark.config import Settings
from meadowlark.core.secret_box import SecretBox
from meadowlark.runtime import Runtime
from meadowlark.store.backup import BackupError, backup, restore
from meadowlark.store.db import Database
from meadowlark.store.migrate import SchemaTooNew, head_revision, upgrade_to_head
from meadowlark.store.psk_keyring import BOOTSTRAP_PSKS, DEVICE_PSKS, check_stored_psks

db_app = typer.Typer(help="Database schema, backups and restores.", no_args_is_help=True)

NOT_IN_BACKUP = (
    "not in the backup: the data dir's secret_key, tls/ and firmware/ (copy those files "
    "yourself); sealed PSKs open only with the same MEADOWLARK_SECRET_KEY / secret_key "
    "file / MEADOWLARK_PSK_KEY"
)


def _fail(message: str) -> typer.Exit:
    typer.echo(f"error: {message}", err=True)
    return typer.Exit(1)


@db_app.command("upgrade")
def db_upgrade() -> None:
    """Apply all migrations (creates the store and first administrator if missing)."""
    settings = load_settings()

    async def upgrade() -> None:
        runtime = Runtime.from_settings(settings)
        try:
            await prepare_store(runtime)
        finally:
            await runtime.close()

    asyncio.run(upgrade())
    typer.echo(f"database at head: {safe_url(settings.resolved_database_url)}")


@db_app.command("backup")
def db_backup(
    file: Annotated[Path, typer.Argument(help="Backup file to write (replaced if it exists)")],
) -> None:
    """Back up the database to FILE, online: the server may keep running.

    SQLite: a consistent copy through SQLite's backup API. PostgreSQL: pg_dump's custom
    format. The data dir's files (secret_key, tls/, firmware/) are not included."""
    settings = load_settings()
    url = settings.resolved_database_url
    try:
        revision = backup(url, file)
    except BackupError as exc:
        raise _fail(exc.message) from exc
    size = file.stat().st_size
    typer.echo(f"backed up {safe_url(url)} (schema {revision}) to {file} ({size} bytes)")
    typer.echo(NOT_IN_BACKUP, err=True)


@db_app.command("restore")
def db_restore(
    file: Annotated[Path, typer.Argument(help="A file written by `meadowlark db backup`")],
    force: Annotated[
        bool, typer.Option("--force", help="Replace a database that is not empty")
    ] = False,
) -> None:
    """Restore the database from FILE (the server must be stopped), then migrate it to
    this version's schema if the backup is older."""
    settings = load_settings()
    url = settings.resolved_database_url
    try:
        revision = restore(url, file, force=force)
    except (BackupError, SchemaTooNew) as exc:
        raise _fail(exc.message) from exc
    typer.echo(f"restored {file} (schema {revision}) into {safe_url(url)}")
    locked = asyncio.run(_migrate_and_check_keys(settings))
    head = head_revision()
    if revision != head:
        typer.echo(f"migrated from {revision} to {head}")
    if locked:
        typer.echo(
            f"warning: {locked} stored PSK(s) do not open with the current key: set the "
            "MEADOWLARK_SECRET_KEY (or the data dir's secret_key file, or MEADOWLARK_PSK_KEY) "
            "of the server the backup was taken from; `meadowlark doctor` lists them",
            err=True,
        )


async def _migrate_and_check_keys(settings: Settings) -> int:
    """Migrate the restored database to head; how many stored PSKs do not open."""
    db = Database(settings.resolved_database_url)
    try:
        await upgrade_to_head(db.engine)
        box = SecretBox.for_psks(settings)
        locked = 0
        for source in (DEVICE_PSKS, BOOTSTRAP_PSKS):
            locked += len((await check_stored_psks(db, box, source)).unreadable)
        return locked
    finally:
        await db.dispose()
