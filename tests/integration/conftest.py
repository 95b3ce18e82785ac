"""Integration helpers: direct store access next to a running server, custom roles."""

from __future__ import annotations

import asyncio
import secrets
from collections.abc import Awaitable, Callable
from typing import Any

import pytest


def run_in_store(database_url: str, work: Callable[[Any], Awaitable[Any]]) -> Any:
    """Run ``work(session)`` on a separate engine (the server's own loop is elsewhere)."""
    from meadowlark.store.db import Database

    async def main() -> Any:
        db = Database(database_url)
        try:
            async with db.session() as session:
                result = await work(session)
                await session.commit()
                return result
        finally:
            await db.dispose()

    return asyncio.run(main())


@pytest.fixture(scope="module")
def store(server) -> Callable[[Callable[[Any], Awaitable[Any]]], Any]:
    """``store(async_fn)`` runs ``async_fn(session)`` against the module server's database."""
    url = server.settings.resolved_database_url
    return lambda work: run_in_store(url, work)


@pytest.fixture(scope="module")
def given_role(server) -> Callable[..., str]:
    """Create a custom role (as admin) with the given permissions; returns its name."""

    def create(
        permissions: list[str], name: str | None = None, profile: dict[str, list[str]] | None = None
    ) -> str:
        name = name or f"role-{secrets.token_hex(4)}"
        with server.admin() as http:
            body: dict[str, Any] = {"name": name, "permissions": permissions}
            if profile is not None:
                body["profile"] = profile
            response = http.post("/api/admin/roles", json=body)
        assert response.status_code == 201, response.text
        return name

    return create
