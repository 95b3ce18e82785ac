"""Coiote v3 groups API. Group ids are dotted (``root.acme.sensors``)."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Query, Response

from meadowlark.api.deps import RuntimeDep, SessionDep, require
from meadowlark.api.routers.coiote_devices import reconcile_observations
from meadowlark.api.schemas.coiote_devices import (
    GroupCreate,
    GroupPublic,
    GroupUpdateRequest,
    StringResult,
)
from meadowlark.auth.principal import Principal
from meadowlark.core import groups

router = APIRouter(prefix="/api/coiotedm/v3", tags=["groups"])


@router.get("/groups")
async def list_groups(
    session: SessionDep,
    principal: Annotated[Principal, require("GET groups")],
    searchCriteria: Annotated[str | None, Query(max_length=4096)] = None,
) -> list[str]:
    """Ids of the groups in your domain subtree, filtered by ``searchCriteria``."""
    return await groups.list_groups(session, principal, searchCriteria)


@router.post("/groups", status_code=201)
async def create_group(
    body: GroupCreate,
    session: SessionDep,
    principal: Annotated[Principal, require("POST groups")],
) -> StringResult:
    """Create a group; a dotted id needs its parent group (``a.b`` needs ``a``)."""
    group = await groups.create_group(
        session, principal, body.id, body.description or "", body.domain
    )
    await session.commit()
    return StringResult(result=group.id)


@router.get("/groups/{group_id:path}")
async def get_group(
    group_id: str,
    session: SessionDep,
    principal: Annotated[Principal, require("GET groups/{id}")],
) -> GroupPublic:
    """One group."""
    group = await groups.get_group(session, principal, group_id)
    return GroupPublic(id=group.id, description=group.description)


@router.put("/groups/{group_id:path}", status_code=204, response_class=Response)
async def update_group(
    group_id: str,
    body: GroupUpdateRequest,
    session: SessionDep,
    principal: Annotated[Principal, require("PUT groups/{id}")],
) -> Response:
    """Change a group's description."""
    await groups.update_group(session, principal, group_id, body.description or "")
    await session.commit()
    return Response(status_code=204)


@router.delete("/groups/{group_id:path}", status_code=204, response_class=Response)
async def delete_group(
    group_id: str,
    runtime: RuntimeDep,
    session: SessionDep,
    principal: Annotated[Principal, require("DELETE groups/{id}")],
) -> Response:
    """Delete a group without sub-groups; its devices leave it."""
    members = await groups.delete_group(session, principal, group_id)
    await session.commit()
    await reconcile_observations(runtime, members)
    return Response(status_code=204)
