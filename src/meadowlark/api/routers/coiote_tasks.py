"""Coiote v3 tasks, tasks from templates and task reports.

Task ids contain ``:`` (``d:<hash>:<n>``, ``g:<group>:<n>``); clients URL-encode them.
Reports exist once a device's run has finished; before that ``taskReports/{t}/{d}``
answers 404 with code 4041 (not executed yet).
"""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Any

from fastapi import APIRouter, Query, Request, Response
from fastapi.responses import JSONResponse
from pydantic import BaseModel, ConfigDict, Field

from meadowlark.api.deps import RuntimeDep, SessionDep, require
from meadowlark.auth.principal import Principal
from meadowlark.core.errors import InvalidInput
from meadowlark.core.tasks.definitions import (
    TRANSFER_METHODS,
    TRANSFER_PROTOCOLS,
    enum_text,
    parse_duration,
)
from meadowlark.core.tasks.engine import DEVICE, GROUP
from meadowlark.core.tasks.service import NewTask, parse_callback, task_view

router = APIRouter(prefix="/api/coiotedm/v3", tags=["tasks"])

Flag = Annotated[bool | None, Query()]
Criteria = Annotated[str | None, Query(max_length=4096)]


class TaskDefinition(BaseModel):
    model_config = ConfigDict(extra="ignore")

    name: str = Field(min_length=1, max_length=255)
    batchRequests: bool = True
    executeImmediately: bool = True
    operations: list[dict[str, Any]] = Field(max_length=100)
    callback: dict[str, Any] | None = None
    maxAttempts: int = Field(default=3, ge=1, le=100)


class ConfigureRequest(BaseModel):
    taskDefinition: TaskDefinition


class TaskConfig(BaseModel):
    model_config = ConfigDict(extra="ignore")

    taskName: str | None = Field(default=None, max_length=255)
    parameters: list[dict[str, Any]] = Field(default_factory=list, max_length=100)
    properties: dict[str, Any] = Field(default_factory=dict)
    isActive: bool | None = True


class TemplateDefinition(BaseModel):
    description: str = Field(default="", max_length=2048)
    parameters: list[dict[str, Any]] = Field(default_factory=list, max_length=50)
    operations: list[dict[str, Any]] = Field(min_length=1, max_length=100)


class TemplatePublic(BaseModel):
    name: str
    description: str
    parameters: list[dict[str, Any]]
    operations: list[dict[str, Any]]
    builtin: bool


# --- tasks ------------------------------------------------------------------------------------


@router.get("/tasks")
async def list_tasks(
    runtime: RuntimeDep,
    session: SessionDep,
    principal: Annotated[Principal, require("GET tasks")],
    searchCriteria: Criteria = None,
) -> list[str]:
    """Ids of the tasks in your domains (fields: id, taskName, domain, isActive, templateName,
    targetKind, targetId)."""
    return await runtime.tasks.list_ids(session, principal, searchCriteria)


@router.post("/tasks/configure/{deviceId}", status_code=201)
async def configure_device_task(
    deviceId: str,
    body: ConfigureRequest,
    runtime: RuntimeDep,
    session: SessionDep,
    principal: Annotated[Principal, require("POST tasks/configure/{deviceId}")],
    rerunIfExists: Flag = None,
    executeImmediately: Flag = None,
    batchRequests: Flag = None,
) -> str:
    """Create a task on one device; its id (a JSON string). It runs at the device's next
    management moment, at once if it is reachable."""
    definition = body.taskDefinition
    new = NewTask(
        name=definition.name,
        operations=definition.operations,
        parameters=[],
        properties={},
        batch_requests=definition.batchRequests if batchRequests is None else batchRequests,
        callback=parse_callback(definition.callback),
        max_attempts=definition.maxAttempts,
    )
    immediately = (
        definition.executeImmediately if executeImmediately is None else executeImmediately
    )
    return await runtime.tasks.create_for_device(
        session,
        principal,
        deviceId,
        new,
        rerun_if_exists=bool(rerunIfExists),
        execute_immediately=immediately,
    )


@router.post("/tasks/upgrade/{deviceId}/{resourceId}", status_code=201)
async def upgrade_firmware(
    deviceId: str,
    resourceId: str,
    runtime: RuntimeDep,
    session: SessionDep,
    principal: Annotated[Principal, require("POST tasks/upgrade/{deviceId}/{resourceId}")],
    transferMethod: Annotated[str, Query(max_length=64)] = "Pull",
    transferProtocol: Annotated[str, Query(max_length=64)] = "COAP",
    timeout: Annotated[str, Query(max_length=32)] = "20m",  # noqa: ASYNC109 - the reference names it
    executeImmediately: Flag = True,
) -> str:
    """Update the device's firmware (object 5) with the uploaded image ``resourceId``;
    503 (5030) when this server has no firmware updater. python-coiote's enum spelling
    (``TransferMethod.Pull``, ``TransferProtocol.COAP``) is accepted; its other query
    parameters (``upgradeStrategy``, ``blocking``, ``useQuota``, ...) are ignored."""
    transferMethod = enum_text(transferMethod, "TransferMethod")
    transferProtocol = enum_text(transferProtocol, "TransferProtocol")
    if transferMethod not in TRANSFER_METHODS:
        raise InvalidInput("transferMethod is Pull or Push", code=4000)
    if transferProtocol.upper() not in TRANSFER_PROTOCOLS:
        raise InvalidInput("transferProtocol is COAP or HTTP", code=4000)
    parse_duration(timeout)
    operation = {
        "firmwareUpdate": {
            "resourceId": resourceId,
            "transferMethod": transferMethod,
            "transferProtocol": transferProtocol.upper(),
            "timeout": timeout,
        }
    }
    new = NewTask(
        name=None,
        operations=[operation],
        parameters=[],
        properties={},
        template_name="Lwm2mFirmwareUpdate",
        max_attempts=1,
    )
    return await runtime.tasks.create_for_device(
        session,
        principal,
        deviceId,
        new,
        rerun_if_exists=False,
        execute_immediately=executeImmediately is not False,
    )


@router.delete("/tasks/callback/{taskId}/{callbackName}", status_code=204, response_class=Response)
async def delete_task_callback(
    taskId: str,
    callbackName: str,
    runtime: RuntimeDep,
    session: SessionDep,
    principal: Annotated[Principal, require("DELETE tasks/callback/{taskId}/{callbackName}")],
) -> Response:
    """Remove the task's callback; reports not delivered yet are dropped."""
    await runtime.tasks.delete_callback(session, principal, taskId, callbackName)
    return Response(status_code=204)


@router.get("/tasks/{taskId}")
async def get_task(
    taskId: str,
    runtime: RuntimeDep,
    session: SessionDep,
    principal: Annotated[Principal, require("GET tasks/{id}")],
) -> dict[str, Any]:
    """One task: ``{id, config:{taskName, parameters, properties, isActive}}``."""
    return task_view(await runtime.tasks.get(session, principal, taskId))


@router.put("/tasks/{taskId}", status_code=204, response_class=Response)
async def update_task(
    taskId: str,
    body: TaskConfig,
    runtime: RuntimeDep,
    session: SessionDep,
    principal: Annotated[Principal, require("PUT tasks/{id}")],
) -> Response:
    """Change a task's name, parameters (a template task is expanded again), properties
    or whether it is active."""
    await runtime.tasks.update(session, principal, taskId, body.model_dump())
    return Response(status_code=204)


@router.delete("/tasks/{taskId}", status_code=204, response_class=Response)
async def delete_task(
    taskId: str,
    runtime: RuntimeDep,
    session: SessionDep,
    principal: Annotated[Principal, require("DELETE tasks/{id}")],
) -> Response:
    """Delete a task with its reports and pending callbacks."""
    await runtime.tasks.delete(session, principal, taskId)
    return Response(status_code=204)


# --- tasks from templates ------------------------------------------------------------------------


async def _invocation(request: Request) -> tuple[str, dict[str, Any], object]:
    """``{templateName, config, callback}`` as JSON, or as the form python-coiote's
    ``run_on_group`` sends (``templateName`` plus the names of the config's keys)."""
    content_type = request.headers.get("content-type", "")
    if content_type.startswith("application/x-www-form-urlencoded") or content_type.startswith(
        "multipart/form-data"
    ):
        form = await request.form()
        name = form.get("templateName")
        if not isinstance(name, str) or not name:
            raise InvalidInput("templateName is required", code=4000)
        return name, {}, None
    try:
        body = await request.json()
    except ValueError:
        raise InvalidInput("the body must be JSON {templateName, config, callback}") from None
    if not isinstance(body, dict) or not isinstance(body.get("templateName"), str):
        raise InvalidInput("templateName is required", code=4000)
    config = body.get("config") or {}
    if not isinstance(config, dict):
        raise InvalidInput("config must be an object", code=4000)
    return body["templateName"], config, body.get("callback")


@router.get("/tasksFromTemplates/templates")
async def list_templates(
    runtime: RuntimeDep,
    session: SessionDep,
    principal: Annotated[Principal, require("GET tasksFromTemplates/templates")],
) -> list[TemplatePublic]:
    """The built-in templates and those of your domains."""
    templates = await runtime.tasks.templates(session, principal)
    return [
        TemplatePublic(
            name=template.name,
            description=template.description,
            parameters=[
                {"name": p.name, **({"default": p.default} if p.default is not None else {})}
                for p in template.parameters
            ],
            operations=list(template.operations),
            builtin=template.builtin,
        )
        for template in templates
    ]


@router.put("/tasksFromTemplates/templates/{name}", status_code=204, response_class=Response)
async def put_template(
    name: str,
    body: TemplateDefinition,
    runtime: RuntimeDep,
    session: SessionDep,
    principal: Annotated[Principal, require("PUT tasksFromTemplates/templates/{name}")],
) -> Response:
    """Add or replace a template of your domain (operations may use ``${parameter}``)."""
    await runtime.tasks.put_template(
        session, principal, name, body.description, body.parameters, body.operations
    )
    await session.commit()
    return Response(status_code=204)


@router.delete("/tasksFromTemplates/templates/{name}", status_code=204, response_class=Response)
async def delete_template(
    name: str,
    runtime: RuntimeDep,
    session: SessionDep,
    principal: Annotated[Principal, require("DELETE tasksFromTemplates/templates/{name}")],
) -> Response:
    """Delete a template of your domain (tasks made from it keep their operations)."""
    await runtime.tasks.delete_template(session, principal, name)
    await session.commit()
    return Response(status_code=204)


@router.post("/tasksFromTemplates/device/{deviceId}", status_code=201)
async def task_from_template_for_device(
    deviceId: str,
    request: Request,
    runtime: RuntimeDep,
    session: SessionDep,
    principal: Annotated[Principal, require("POST tasksFromTemplates/device/{id}")],
    executeImmediately: Flag = True,
    rerunIfExists: Flag = None,
    waitTimeSeconds: Annotated[str | None, Query(max_length=32)] = None,
) -> Any:
    """Create a task on a device from a template: its id, or with ``waitTimeSeconds`` the
    report (202 with the task id if the device has not finished in that time)."""
    wait = parse_duration(waitTimeSeconds, "waitTimeSeconds") if waitTimeSeconds else None
    name, config, callback = await _invocation(request)
    task_id = await runtime.tasks.from_template(
        session,
        principal,
        DEVICE,
        deviceId,
        name,
        config,
        callback,
        rerun_if_exists=bool(rerunIfExists),
        execute_immediately=executeImmediately is not False or wait is not None,
    )
    if wait is None:
        return JSONResponse(task_id, status_code=201)
    report = await runtime.tasks.wait_for_report(principal, task_id, deviceId, wait)
    if report is None:
        return JSONResponse({"taskId": task_id, "deviceId": deviceId}, status_code=202)
    return JSONResponse(report, status_code=201)


@router.post("/tasksFromTemplates/group/{groupId}", status_code=201)
async def task_from_template_for_group(
    groupId: str,
    request: Request,
    runtime: RuntimeDep,
    session: SessionDep,
    principal: Annotated[Principal, require("POST tasksFromTemplates/group/{groupId}")],
    executeImmediately: Flag = True,
    rerunIfExists: Flag = None,
) -> str:
    """Create a task on every member of the group and its sub-groups, now and later; its id."""
    name, config, callback = await _invocation(request)
    return await runtime.tasks.from_template(
        session,
        principal,
        GROUP,
        groupId,
        name,
        config,
        callback,
        rerun_if_exists=bool(rerunIfExists),
        execute_immediately=executeImmediately is not False,
    )


# --- reports --------------------------------------------------------------------------------------


@router.get("/taskReports")
async def list_reports(
    runtime: RuntimeDep,
    session: SessionDep,
    principal: Annotated[Principal, require("GET taskReports")],
    searchCriteria: Criteria = None,
) -> list[dict[str, str]]:
    """``[{taskId, deviceId}]`` of finished runs (fields: taskId, deviceId, status, domain,
    lastUpdateTime, finishTime)."""
    return await runtime.tasks.executed(session, principal, searchCriteria)


@router.get("/taskReports/findReports")
async def find_reports(
    runtime: RuntimeDep,
    session: SessionDep,
    principal: Annotated[Principal, require("GET taskReports/findReports")],
    searchCriteria: Criteria = None,
) -> int:
    """A cursor over the matching reports, read with ``moreReports``."""
    return await runtime.tasks.open_cursor(session, principal, searchCriteria)


@router.get("/taskReports/moreReports")
async def more_reports(
    runtime: RuntimeDep,
    session: SessionDep,
    principal: Annotated[Principal, require("GET taskReports/moreReports")],
    cursor: Annotated[int, Query()],
    count: Annotated[int, Query()] = 100,
) -> dict[str, Any]:
    """The next ``count`` reports of a cursor: ``{batch, nextCursor}`` (empty at the end)."""
    return await runtime.tasks.more(session, principal, cursor, count)


@router.get("/taskReports/findSince")
async def find_since(
    runtime: RuntimeDep,
    session: SessionDep,
    principal: Annotated[Principal, require("GET taskReports/findSince")],
    lastUpdateTime: Annotated[datetime, Query()],
    taskId: Annotated[str | None, Query(max_length=320)] = None,
    deviceId: Annotated[str | None, Query(max_length=255)] = None,
    limit: Annotated[int, Query()] = 512,
    pollingInterval: Annotated[float | None, Query()] = None,
    directTasksOnly: Flag = False,
) -> list[dict[str, Any]]:
    """Reports updated after ``lastUpdateTime``, oldest first; with ``pollingInterval``
    (seconds, at most 30) the call waits that long for one."""
    if lastUpdateTime.tzinfo is None:
        raise InvalidInput("lastUpdateTime needs a time zone (e.g. 2024-01-01T00:00:00Z)")
    await session.close()
    return await runtime.tasks.since(
        principal,
        lastUpdateTime,
        taskId,
        deviceId,
        limit,
        pollingInterval or 0.0,
        bool(directTasksOnly),
    )


@router.get("/taskReports/summary")
async def report_summary(
    runtime: RuntimeDep,
    session: SessionDep,
    principal: Annotated[Principal, require("GET taskReports/summary")],
    taskId: Annotated[str, Query(max_length=320)],
) -> dict[str, int]:
    """Counts and rates (percent) of the task's runs."""
    return await runtime.tasks.summary(session, principal, taskId)


@router.get("/taskReports/{taskId}/{deviceId}")
async def get_report(
    taskId: str,
    deviceId: str,
    runtime: RuntimeDep,
    session: SessionDep,
    principal: Annotated[Principal, require("GET taskReports/{taskId}/{deviceId}")],
) -> dict[str, Any]:
    """The device's report: 404 with 4040 (unknown task or device) or 4041 (not executed
    yet)."""
    return await runtime.tasks.report(session, principal, taskId, deviceId)
