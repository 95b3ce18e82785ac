"""Coiote v3 sessions API: ask a device to start a management session now."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Query
from fastapi.responses import JSONResponse

from meadowlark.api.deps import DbSession, RuntimeDep, SessionDep, require
from meadowlark.api.schemas.coiote_devices import SessionStarted
from meadowlark.auth.principal import Principal
from meadowlark.core import devices
from meadowlark.core.devices import SessionOutcome
from meadowlark.core.errors import NotFound
from meadowlark.runtime import Runtime

router = APIRouter(prefix="/api/coiotedm/v3", tags=["sessions"])

TaskIdQuery = Annotated[str | None, Query(max_length=512)]


async def _start(
    runtime: Runtime,
    session: DbSession,
    principal: Principal,
    device_id: str,
    task_id: str | None,
    *,
    allow_deregistered: bool,
) -> SessionOutcome:
    device = await devices.get_device(session, principal, device_id)
    if task_id is not None and not await runtime.tasks.targets(session, principal, task_id, device):
        raise NotFound(f"task {task_id[:255]!r} not found for this device", code=4040)
    await session.commit()  # ends the read transaction before waiting for the device
    return await devices.request_session(
        runtime.lwm2m, device, allow_deregistered=allow_deregistered
    )


@router.post(
    "/sessions/{device_id:path}/allow-deregistered",
    responses={200: {"model": SessionStarted}},
)
async def start_session_allow_deregistered(
    device_id: str,
    runtime: RuntimeDep,
    session: SessionDep,
    principal: Annotated[Principal, require("POST sessions/{deviceId}/allow-deregistered")],
    taskId: TaskIdQuery = None,
) -> SessionStarted:
    """Like ``sessions/{id}``, but an unregistered device gets the trigger when it registers."""
    outcome = await _start(runtime, session, principal, device_id, taskId, allow_deregistered=True)
    return SessionStarted(result=outcome.value)


@router.post(
    "/sessions/{device_id:path}",
    response_model=SessionStarted,
    responses={202: {"model": SessionStarted, "description": "queued for the next contact"}},
)
async def start_session(
    device_id: str,
    runtime: RuntimeDep,
    session: SessionDep,
    principal: Annotated[Principal, require("POST sessions/{deviceId}")],
    taskId: TaskIdQuery = None,
) -> JSONResponse:
    """Send the Registration Update Trigger: 200 when the device acknowledged it, 202 when
    it waits for a sleeping (queue mode) device; 404 (4041) if the device is not registered.

    ``taskId`` names a task of the device that the session carries out (404 (4040) if
    there is no such task); every due task of the device runs in the session anyway.
    """
    outcome = await _start(runtime, session, principal, device_id, taskId, allow_deregistered=False)
    status = 200 if outcome is SessionOutcome.TRIGGERED else 202
    return JSONResponse(SessionStarted(result=outcome.value).model_dump(), status_code=status)
