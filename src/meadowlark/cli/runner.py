"""What the one-shot commands share: their settings, their principal, and running their
work on a prepared runtime."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from typing import Any, TypeVar

import typer

from meadowlark.auth import permissions as catalog
from meadowlark.auth.principal import Principal
from meadowlark.cli.serving import prepare_store
from meadowlark.config import Settings
from meadowlark.core.errors import ServiceError
from meadowlark.runtime import Runtime

T = TypeVar("T")
SYSTEM = Principal(
    user_id="system",
    login="system",
    domain_id="/root/",
    account_type="admin",
    permissions=catalog.ALL,
    via="cli",
)
"""The principal of the commands (whoever can run them owns the data dir)."""


def load_settings(**overrides: Any) -> Settings:
    """The settings (environment, config file, ``overrides``); exit code 2 if invalid."""
    try:
        return Settings(**{k: v for k, v in overrides.items() if v is not None})
    except ValueError as exc:
        typer.echo(f"configuration error: {exc}", err=True)
        raise typer.Exit(2) from exc


def run_on_runtime(work: Callable[[Runtime], Awaitable[T]], *, service_error_exit: int = 1) -> T:
    """Run ``work`` on a prepared runtime (migrated store), then close it. A service error
    is a one-line message and exit code ``service_error_exit``."""
    settings = load_settings()

    async def main() -> T:
        runtime = Runtime.from_settings(settings)
        try:
            await prepare_store(runtime)
            return await work(runtime)
        finally:
            await runtime.close()

    try:
        return asyncio.run(main())
    except ServiceError as exc:
        typer.echo(f"error: {exc.message}", err=True)
        raise typer.Exit(service_error_exit) from None
