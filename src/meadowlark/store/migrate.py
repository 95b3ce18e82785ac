"""Apply Alembic migrations programmatically (``serve`` and ``db upgrade`` both call this).

There is no downgrade: a database whose revision this code does not know was migrated
by a newer Meadowlark, and every entry point refuses it with ``SchemaTooNew`` rather
than let Alembic fail with a traceback (or run old code on a newer schema).
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import cache
from pathlib import Path

from alembic import command
from alembic.config import Config
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory
from sqlalchemy.engine import Connection
from sqlalchemy.ext.asyncio import AsyncEngine

MIGRATIONS_DIR = Path(__file__).parent / "migrations"


class SchemaTooNew(Exception):
    """The database was migrated by a newer Meadowlark than this one."""

    def __init__(self, revision: str, head: str) -> None:
        self.revision = revision
        self.head = head
        self.message = (
            f"this database was migrated by a newer Meadowlark (revision {revision}); "
            f"this version knows up to {head}; upgrade Meadowlark or restore a backup"
        )
        super().__init__(self.message)


@dataclass(frozen=True, slots=True)
class SchemaState:
    """Where a database stands against this code's migrations."""

    revision: str | None
    """The database's revision; None for a database no migration has touched."""
    head: str

    @property
    def at_head(self) -> bool:
        return self.revision == self.head

    @property
    def known(self) -> bool:
        """Whether this code knows the revision (false: a newer Meadowlark migrated it)."""
        return self.revision is None or self.revision in known_revisions()


def alembic_config(url: str) -> Config:
    config = Config()
    config.set_main_option("script_location", str(MIGRATIONS_DIR))
    config.set_main_option("sqlalchemy.url", url.replace("%", "%%"))
    return config


@cache
def _scripts() -> ScriptDirectory:
    config = Config()
    config.set_main_option("script_location", str(MIGRATIONS_DIR))
    return ScriptDirectory.from_config(config)


def head_revision() -> str:
    head = _scripts().get_current_head()
    assert head is not None, "the migration chain has one head"
    return head


def known_revisions() -> frozenset[str]:
    return frozenset(script.revision for script in _scripts().walk_revisions())


def schema_state_of(connection: Connection) -> SchemaState:
    """The revision stored in ``connection``'s database against this code's head."""
    revision = MigrationContext.configure(connection).get_current_revision()
    return SchemaState(revision=revision, head=head_revision())


async def schema_state(engine: AsyncEngine) -> SchemaState:
    async with engine.connect() as connection:
        return await connection.run_sync(schema_state_of)


def refuse_newer(state: SchemaState) -> None:
    """Raise ``SchemaTooNew`` if a newer Meadowlark migrated the database."""
    if not state.known:
        assert state.revision is not None
        raise SchemaTooNew(state.revision, state.head)


def _upgrade(connection: Connection, config: Config) -> None:
    refuse_newer(schema_state_of(connection))
    config.attributes["connection"] = connection
    command.upgrade(config, "head")


async def upgrade_to_head(engine: AsyncEngine) -> None:
    """Bring the schema to the newest revision on an already-open engine; raise
    ``SchemaTooNew`` for a database of a newer Meadowlark."""
    config = alembic_config(str(engine.url.render_as_string(hide_password=False)))
    async with engine.begin() as connection:
        await connection.run_sync(_upgrade, config)
