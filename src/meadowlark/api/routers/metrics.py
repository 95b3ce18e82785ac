"""Prometheus ``/metrics``: the node's figures, every tenant's together.

On the REST port (the default) a caller needs ``admin:GET /metrics`` and must belong to
the root domain: device counts, traffic and latencies of all tenants would tell one
tenant about the others. With ``MEADOWLARK_METRICS__LISTEN`` set, the figures are served
without authentication on that separate address only (``listener_app``), for a scraper
on a private network, and the REST port answers 404.
"""

from __future__ import annotations

from typing import Annotated

import structlog
from fastapi import APIRouter, Response
from starlette.types import ASGIApp, Receive, Scope, Send

from meadowlark import metrics
from meadowlark.api.deps import RuntimeDep, require
from meadowlark.auth.principal import Principal
from meadowlark.core.domains import ROOT
from meadowlark.core.errors import Forbidden
from meadowlark.runtime import Runtime

router = APIRouter(tags=["metrics"])
_log = structlog.get_logger("meadowlark.metrics")
PATH = "/metrics"


async def node_exposition(runtime: Runtime) -> bytes:
    """Fresh figures of this process's gauges, then the node's exposition."""
    runtime.gauges.sample()
    try:
        await runtime.gauges.sample_store()
    except Exception:  # the other figures are still worth a scrape
        _log.warning("queued_requests_not_counted")
    return metrics.exposition()


@router.get(PATH, response_class=Response)
async def read_metrics(
    runtime: RuntimeDep,
    principal: Annotated[Principal, require("admin:GET /metrics")],
) -> Response:
    """The Prometheus text exposition of this node (all worker processes)."""
    if principal.domain_id != ROOT:
        raise Forbidden("metrics cover every tenant: only the root domain may read them")
    return Response(await node_exposition(runtime), media_type=metrics.CONTENT_TYPE)


def listener_app(runtime: Runtime) -> ASGIApp:
    """The ASGI app of the separate metrics address: ``GET /metrics``, nothing else."""

    async def app(scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            return
        if scope["path"] != PATH:
            response = Response(b"not found\n", 404, media_type="text/plain")
        elif scope["method"] not in ("GET", "HEAD"):
            response = Response(b"method not allowed\n", 405, {"Allow": "GET, HEAD"})
        else:
            response = Response(await node_exposition(runtime), media_type=metrics.CONTENT_TYPE)
        await response(scope, receive, send)

    return app
