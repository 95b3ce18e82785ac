"""Alembic migrations on empty SQLite and PostgreSQL databases."""

from __future__ import annotations

import asyncio

from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext
from alembic.script import ScriptDirectory
from sqlalchemy import inspect, text

from meadowlark.store.db import Database
from meadowlark.store.migrate import alembic_config, upgrade_to_head
from meadowlark.store.models import Base

TABLES = {
    "domains",
    "roles",
    "users",
    "recovery_codes",
    "auth_sessions",
    "refresh_tokens",
    "api_tokens",
    "service_accounts",
    "audit_log",
    "alembic_version",
}


def _url(database_url, tmp_path):
    return database_url or f"sqlite+aiosqlite:///{tmp_path / 'fresh.db'}"


def test_upgrade_on_an_empty_database_is_idempotent_and_matches_the_models(database_url, tmp_path):
    async def main():
        db = Database(_url(database_url, tmp_path))
        try:
            await upgrade_to_head(db.engine)
            await upgrade_to_head(db.engine)  # a second run changes nothing
            async with db.engine.connect() as connection:
                tables = await connection.run_sync(lambda c: set(inspect(c).get_table_names()))
                version = (
                    (await connection.execute(text("SELECT version_num FROM alembic_version")))
                    .scalars()
                    .all()
                )
                diff = await connection.run_sync(
                    lambda c: compare_metadata(MigrationContext.configure(c), Base.metadata)
                )
            return tables, version, diff
        finally:
            await db.dispose()

    tables, version, diff = asyncio.run(main())
    assert TABLES <= tables
    head = ScriptDirectory.from_config(alembic_config("sqlite://")).get_current_head()
    assert version == [head]
    assert diff == [], diff


def test_prepare_store_bootstraps_once(database_url, tmp_path, settings_for):
    from meadowlark.runtime import Runtime
    from meadowlark.store.models import Domain, Role, User

    async def main():
        settings = settings_for(
            tmp_path / "d", database_url=_url(database_url, tmp_path), admin_password=None
        )
        runtime = Runtime.from_settings(settings)
        try:
            generated = await runtime.prepare_store()
            again = await runtime.prepare_store()
            async with runtime.db.session() as session:
                from sqlalchemy import select

                users = (await session.scalars(select(User))).all()
                roles = (await session.scalars(select(Role))).all()
                root = await session.get(Domain, "/root/")
            return generated, again, users, roles, root
        finally:
            await runtime.close()

    generated, again, users, roles, root = asyncio.run(main())
    assert generated and len(generated) >= 20 and again is None
    assert [(u.login, u.account_type, u.roles) for u in users] == [("admin", "admin", ["Admin"])]
    assert (
        users[0].password_hash.startswith("$argon2id$") and generated not in users[0].password_hash
    )
    assert {r.name for r in roles} == {
        "Admin",
        "Customer Admin",
        "Developer",
        "Business",
        "Standard",
        "Group",
        "Monitor",
        "API user",
    }
    assert root is not None


def test_custom_roles_made_before_role_domains_belong_to_the_root_domain(database_url, tmp_path):
    """0005 gives existing custom roles to /root/ (only root administrators made them)."""
    from alembic import command

    def to(revision):
        def run(connection):
            config = alembic_config(str(connection.engine.url))
            config.attributes["connection"] = connection
            command.upgrade(config, revision)

        return run

    def down_to_base(connection):
        config = alembic_config(str(connection.engine.url))
        config.attributes["connection"] = connection
        command.downgrade(config, "base")

    async def main(url):
        db = Database(url)
        try:
            async with db.engine.begin() as connection:
                # The module's PostgreSQL database is at head already (the tests above).
                await connection.run_sync(down_to_base)
                await connection.run_sync(to("0004"))
                await connection.execute(
                    text(
                        "INSERT INTO domains (id, description, customer_id, organization_id,"
                        " created_at) VALUES ('/root/', '', 'c', 'o', CURRENT_TIMESTAMP)"
                    )
                )
                for role_id, builtin in (("custom", False), ("UserProfileId_admin", True)):
                    await connection.execute(
                        text(
                            "INSERT INTO roles (id, name, realm, permissions, builtin,"
                            " things_group_scoped, created_at, modified_at, cas) VALUES"
                            " (:id, :id, 'customer', '[]', :builtin, false,"
                            " CURRENT_TIMESTAMP, CURRENT_TIMESTAMP, 1)"
                        ),
                        {"id": role_id, "builtin": builtin},
                    )
                await connection.run_sync(to("head"))
                rows = await connection.execute(text("SELECT id, domain_id FROM roles"))
                return dict(rows.all())
        finally:
            await db.dispose()

    assert asyncio.run(main(_url(database_url, tmp_path))) == {
        "custom": "/root/",
        "UserProfileId_admin": None,
    }
