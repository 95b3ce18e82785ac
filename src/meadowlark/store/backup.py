"""Backups of the database: ``meadowlark db backup`` and ``meadowlark db restore``.

A backup holds the database only (every table: users, domains, devices with their
sealed PSKs, groups, tasks, cached values, monitoring samples...). It does not hold
what the data dir keeps beside it: ``secret_key`` (the generated signing key, from which
the PSK sealing key is derived unless ``MEADOWLARK_PSK_KEY`` is set), ``tls/`` (the
generated server certificate) and ``firmware/`` (uploaded firmware images). Those are
plain files, copied as they are; sealed PSKs open only with the key they were sealed
with, so a restored database needs the same ``MEADOWLARK_SECRET_KEY`` (or ``secret_key``
file, or ``MEADOWLARK_PSK_KEY``) as the server it was taken from.

SQLite is copied online through its backup API: one read transaction, so a running
server (WAL mode) keeps writing meanwhile and the copy is one consistent snapshot.
PostgreSQL goes through ``pg_dump --format=custom`` and ``pg_restore``.
"""

from __future__ import annotations

import contextlib
import glob
import os
import re
import shutil
import sqlite3
import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any

from sqlalchemy.engine import URL, make_url

from meadowlark.store.migrate import SchemaState, head_revision, refuse_newer

SQLITE_HEADER = b"SQLite format 3\x00"
PG_CUSTOM_HEADER = b"PGDMP"
if TYPE_CHECKING:
    import psycopg

_COPY_LINE = re.compile(r"^COPY \S*alembic_version \(version_num\) FROM stdin;$")


class BackupError(Exception):
    """A backup or restore that cannot be done; ``message`` says why and what to do."""

    def __init__(self, message: str) -> None:
        self.message = message
        super().__init__(message)


def is_sqlite(url: str) -> bool:
    return make_url(url).get_backend_name() == "sqlite"


def backup(url: str, target: Path) -> str:
    """Write a backup of the database at ``url`` to ``target`` (replaced whole, only
    once the backup is complete); the database's schema revision."""
    partial = target.with_name(f".{target.name}.partial")
    try:
        with _reported("back up the database"):
            if is_sqlite(url):
                revision = _backup_sqlite(_sqlite_path(url), partial)
            else:
                revision = _backup_postgres(make_url(url), partial)
            os.replace(partial, target)
    finally:
        partial.unlink(missing_ok=True)
    return revision


def restore(url: str, source: Path, *, force: bool = False) -> str:
    """Replace the database at ``url`` with the backup ``source``; the backup's schema
    revision (older ones still need migrating to head). Refuses a file that is not a
    Meadowlark backup for this kind of database, a backup of a newer Meadowlark, a
    database in use, and one that is not empty unless ``force``."""
    try:
        with source.open("rb") as handle:
            header = handle.read(len(SQLITE_HEADER))
    except OSError as exc:
        raise BackupError(f"cannot read {source}: {exc.strerror}") from exc
    sqlite = is_sqlite(url)
    expected = SQLITE_HEADER if sqlite else PG_CUSTOM_HEADER
    if not header.startswith(expected):
        kind = "an SQLite database" if sqlite else "a pg_dump custom-format archive"
        raise BackupError(
            f"{source} is not a Meadowlark backup for this database (expected {kind}, "
            f"as `meadowlark db backup` writes for {make_url(url).get_backend_name()})"
        )
    with _reported("restore the database"):
        if sqlite:
            return _restore_sqlite(source, _sqlite_path(url), force=force)
        return _restore_postgres(source, make_url(url), force=force)


@contextlib.contextmanager
def _reported(action: str) -> Iterator[None]:
    """Errors of the file system and the database drivers become a ``BackupError``."""
    try:
        yield
    except (OSError, sqlite3.Error) as exc:
        raise BackupError(f"cannot {action}: {exc}") from exc
    except Exception as exc:
        if type(exc).__module__.startswith("psycopg"):
            raise BackupError(f"cannot {action}: {exc}".strip()) from exc
        raise


def _check_revision(revision: str | None, source: Path) -> str:
    if revision is None:
        raise BackupError(f"{source} is not a Meadowlark backup (no schema revision in it)")
    refuse_newer(SchemaState(revision=revision, head=head_revision()))
    return revision


# -- SQLite -------------------------------------------------------------------------------


def _sqlite_path(url: str) -> Path:
    database = make_url(url).database
    if not database or database == ":memory:":
        raise BackupError("an in-memory SQLite database has nothing to back up")
    return Path(database)


@contextlib.contextmanager
def _sqlite(path: Path, *, read_only: bool = False) -> Iterator[sqlite3.Connection]:
    uri = f"{path.resolve().as_uri()}?mode={'ro' if read_only else 'rwc'}"
    connection = sqlite3.connect(uri, uri=True, timeout=30)
    try:
        yield connection
    finally:
        connection.close()


def _sqlite_revision(connection: sqlite3.Connection) -> str | None:
    try:
        row = connection.execute("SELECT version_num FROM alembic_version").fetchone()
    except sqlite3.DatabaseError:  # no such table, or not a database at all
        return None
    return None if row is None else str(row[0])


def _backup_sqlite(path: Path, partial: Path) -> str:
    if not path.exists():
        raise BackupError(f"no database at {path}")
    partial.unlink(missing_ok=True)
    with _sqlite(path, read_only=True) as source, _sqlite(partial) as copy:
        revision = _sqlite_revision(source)
        if revision is None:
            raise BackupError(f"{path} is not a Meadowlark database (no schema revision)")
        source.backup(copy)  # one step: one read transaction, one snapshot
        copy.execute("PRAGMA journal_mode=DELETE")  # a single self-contained file
        if copy.execute("PRAGMA quick_check").fetchone() != ("ok",):
            raise BackupError(f"the copy of {path} does not pass SQLite's quick_check")
    return revision


def sqlite_in_use(path: Path) -> bool:
    """Whether another connection has ``path`` open (a running server keeps its pool's
    connections open): such a connection stops us from taking the exclusive lock."""
    connection = sqlite3.connect(path, timeout=0)
    try:
        connection.execute("PRAGMA locking_mode=EXCLUSIVE")
        connection.execute("BEGIN EXCLUSIVE")
        connection.rollback()
    except sqlite3.OperationalError:
        return True
    finally:
        connection.close()
    return False


def _restore_sqlite(source: Path, target: Path, *, force: bool) -> str:
    with _sqlite(source, read_only=True) as backup_file:
        revision = _check_revision(_sqlite_revision(backup_file), source)
        if target.exists():
            if sqlite_in_use(target):
                raise BackupError(
                    f"{target} is in use (a running `meadowlark serve`?); stop it first"
                )
            with _sqlite(target, read_only=True) as current:
                tables = current.execute("SELECT count(*) FROM sqlite_master").fetchone()[0]
            if tables and not force:
                raise BackupError(
                    f"the database at {target} is not empty; pass --force to replace it"
                )
        target.parent.mkdir(parents=True, exist_ok=True)
        partial = target.with_name(f".{target.name}.restoring")
        partial.unlink(missing_ok=True)
        try:
            with _sqlite(partial) as copy:
                backup_file.backup(copy)
            for leftover in ("-wal", "-shm"):  # of the replaced database; none is open
                target.with_name(target.name + leftover).unlink(missing_ok=True)
            os.replace(partial, target)
        finally:
            partial.unlink(missing_ok=True)
    return revision


# -- PostgreSQL ---------------------------------------------------------------------------


def postgres_tool(name: str) -> str:
    """``pg_dump`` or ``pg_restore``: on the PATH, else the newest under Debian's
    ``/usr/lib/postgresql/<version>/bin`` (a newer one reads older servers)."""
    found = shutil.which(name)
    if found:
        return found
    versions = glob.glob(f"/usr/lib/postgresql/*/bin/{name}")
    if versions:
        return max(versions, key=lambda path: int(re.sub(r"\D", "", Path(path).parts[-3]) or 0))
    raise BackupError(f"{name} not found: install the PostgreSQL client (postgresql-client)")


def _libpq(url: URL) -> tuple[str, dict[str, str]]:
    """A libpq URI without the password, and an environment carrying it (a password on
    the command line would show in ``ps``)."""
    conninfo = url._replace(drivername="postgresql", password=None).render_as_string(
        hide_password=False
    )
    env = dict(os.environ)
    if url.password:
        env["PGPASSWORD"] = str(url.password)
    return conninfo, env


def _run(command: list[str], env: dict[str, str]) -> str:
    done = subprocess.run(command, env=env, capture_output=True, text=True, check=False)  # noqa: S603 - fixed tools, arguments are ours
    if done.returncode != 0:
        tool = Path(command[0]).name
        raise BackupError(f"{tool} failed: {done.stderr.strip() or done.returncode}")
    return done.stdout


def _postgres_connect(url: URL) -> psycopg.Connection[tuple[Any, ...]]:
    import psycopg

    conninfo, env = _libpq(url)
    return psycopg.connect(conninfo, password=env.get("PGPASSWORD"), autocommit=True)


def _postgres_revision(url: URL) -> str | None:
    import psycopg

    with _postgres_connect(url) as connection:
        try:
            row = connection.execute("SELECT version_num FROM alembic_version").fetchone()
        except psycopg.errors.UndefinedTable:
            return None
    return None if row is None else str(row[0])


def _backup_postgres(url: URL, partial: Path) -> str:
    revision = _postgres_revision(url)
    if revision is None:
        raise BackupError(f"{url.database} is not a Meadowlark database (no schema revision)")
    conninfo, env = _libpq(url)
    _run([postgres_tool("pg_dump"), "--format=custom", f"--file={partial}", conninfo], env)
    return revision


def _archive_revision(source: Path) -> str | None:
    """The alembic revision inside a pg_dump archive (its one-row table's data)."""
    script = _run(
        [
            postgres_tool("pg_restore"),
            "--data-only",
            "--table=alembic_version",
            "--file=-",
            str(source),
        ],
        dict(os.environ),
    )
    lines = script.splitlines()
    for index, line in enumerate(lines):
        if _COPY_LINE.match(line) and index + 1 < len(lines) and lines[index + 1] != "\\.":
            return lines[index + 1].strip()
    return None


def _restore_postgres(source: Path, url: URL, *, force: bool) -> str:
    revision = _check_revision(_archive_revision(source), source)
    with _postgres_connect(url) as connection:
        others = connection.execute(
            "SELECT count(*) FROM pg_stat_activity WHERE datname = current_database() "
            "AND pid <> pg_backend_pid() AND backend_type = 'client backend'"
        ).fetchone()
        if others and others[0]:
            raise BackupError(
                f"{others[0]} other session(s) are connected to {url.database} "
                "(a running `meadowlark serve`?); stop them first"
            )
        tables = [
            name
            for (name,) in connection.execute(
                "SELECT tablename FROM pg_tables WHERE schemaname = current_schema()"
            ).fetchall()
        ]
        if tables and not force:
            raise BackupError(
                f"the database {url.database} is not empty; pass --force to replace it"
            )
        if tables:  # tables newer than the backup would stand in the way of migrating it
            quoted = ", ".join(f'"{name}"' for name in tables)
            connection.execute(f"DROP TABLE IF EXISTS {quoted} CASCADE")
    conninfo, env = _libpq(url)
    _run(
        [
            postgres_tool("pg_restore"),
            "--clean",
            "--if-exists",
            "--no-owner",
            "--no-acl",
            "--single-transaction",
            "--exit-on-error",
            f"--dbname={conninfo}",
            str(source),
        ],
        env,
    )
    return revision
