"""The services of one running node, built from settings and shared by API and CLI."""

from __future__ import annotations

from dataclasses import dataclass

from meadowlark.config import Settings
from meadowlark.core.identity import Identity
from meadowlark.core.roles import RoleCache
from meadowlark.core.users import Users, bootstrap
from meadowlark.store.db import Database
from meadowlark.store.migrate import upgrade_to_head


@dataclass
class Runtime:
    settings: Settings
    db: Database
    roles: RoleCache
    identity: Identity
    users: Users

    @classmethod
    def from_settings(cls, settings: Settings) -> Runtime:
        db = Database(settings.resolved_database_url)
        roles = RoleCache(db)
        identity = Identity(db, settings, roles)
        return cls(
            settings=settings, db=db, roles=roles, identity=identity, users=Users(identity, roles)
        )

    async def prepare_store(self) -> str | None:
        """Migrate to the newest schema and create the first administrator if needed.

        Returns the administrator's password if it was generated just now.
        """
        await upgrade_to_head(self.db.engine)
        async with self.db.session() as session:
            generated = await bootstrap(
                session,
                self.settings.admin_password.get_secret_value()
                if self.settings.admin_password
                else None,
            )
        self.roles.invalidate()
        return generated

    async def close(self) -> None:
        await self.db.dispose()
