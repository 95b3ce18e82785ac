"""Liveness and readiness probes."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter

from meadowlark.api.deps import RuntimeDep, public
from meadowlark.api.errors import error_response

router = APIRouter(tags=["health"])


@router.get("/health", dependencies=[public("health:GET /health")])
async def health() -> dict[str, str]:
    """Liveness: the process answers."""
    return {"status": "ok"}


@router.get("/ready", dependencies=[public("health:GET /ready")], response_model=None)
async def ready(runtime: RuntimeDep) -> Any:
    """Readiness: the database answers."""
    try:
        await runtime.db.ping()
    except Exception:  # any database failure means "not ready", never a 500
        return error_response(503, "database unavailable", 5030)
    return {"status": "ready"}
