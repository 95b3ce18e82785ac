"""Tasks and reports as the Coiote API sees them: creation (direct, from templates,
firmware upgrade), changes, deletion, report queries and domain templates.

Every query is limited to the caller's domain subtree; another domain's task, device or
group answers exactly like a nonexistent one.
"""

from __future__ import annotations

import asyncio
import hashlib
import re
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any
from urllib.parse import urlsplit

from sqlalchemy import delete, func, literal, or_, select
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncSession

from meadowlark.auth.principal import Principal
from meadowlark.core.data_model import device_data_model
from meadowlark.core.devices import get_device
from meadowlark.core.domains import in_scope
from meadowlark.core.errors import Conflict, InvalidInput, NotFound, Unavailable
from meadowlark.core.groups import get_group
from meadowlark.core.object_models import ModelCatalog
from meadowlark.core.search_criteria import Field, compile_criteria
from meadowlark.core.tasks.callbacks import report_payload
from meadowlark.core.tasks.definitions import (
    BUILTIN_TEMPLATES,
    INVALID_PAYLOAD,
    MAX_OPERATIONS,
    ModelLookup,
    Template,
    operation_kind,
    template_parameters,
    uses_firmware,
    validate_operations,
)
from meadowlark.core.tasks.engine import (
    DEVICE,
    FINISHED,
    GROUP,
    IN_PROGRESS,
    SCHEDULED,
    SUCCESS,
    TaskEngine,
    group_run_defaults,
    insert_group_runs,
)
from meadowlark.server.service import LwM2mServer
from meadowlark.store.coiote_models import GroupMembership
from meadowlark.store.db import Database, rows_affected
from meadowlark.store.device_models import Device
from meadowlark.store.task_models import (
    CallbackDelivery,
    ReportCursor,
    TaskCounter,
    TaskRow,
    TaskRun,
    TaskTemplateRow,
)

NOT_FOUND = 4040
NOT_EXECUTED = 4041
MAX_NAME = 255
MAX_WAIT_SECONDS = 300.0
MAX_FIND_SINCE = 2048
MAX_POLL_SECONDS = 30.0
_NAME = re.compile(r"[^\x00-\x1f]{1,255}")

TASK_FIELDS = {
    "id": Field(TaskRow.id),
    "taskName": Field(TaskRow.name),
    "name": Field(TaskRow.name),
    "domain": Field(TaskRow.domain_id),
    "isActive": Field(TaskRow.is_active, "boolean"),
    "templateName": Field(TaskRow.template_name),
    "targetKind": Field(TaskRow.target_kind),
    "targetId": Field(TaskRow.target_id),
}
REPORT_FIELDS = {
    "taskId": Field(TaskRun.task_id),
    "deviceId": Field(TaskRun.device_id),
    "status": Field(TaskRun.status),
    "domain": Field(TaskRun.domain_id),
    "lastUpdateTime": Field(TaskRun.last_update_time, "datetime"),
    "finishTime": Field(TaskRun.finish_time, "datetime"),
}


@dataclass(frozen=True, slots=True)
class Callback:
    name: str
    url: str
    secret: str


@dataclass(frozen=True, slots=True)
class NewTask:
    name: str | None
    operations: list[dict[str, Any]]
    parameters: list[dict[str, str]]
    properties: dict[str, str]
    is_active: bool = True
    batch_requests: bool = True
    template_name: str | None = None
    callback: Callback | None = None
    max_attempts: int = 3


def parse_callback(raw: object) -> Callback | None:
    """``{name?, url, secret}``: an http(s) URL and the HMAC key of its signatures."""
    if raw is None:
        return None
    if not isinstance(raw, dict):
        raise InvalidInput("callback must be an object {name, url, secret}", code=INVALID_PAYLOAD)
    url, secret, name = raw.get("url"), raw.get("secret"), raw.get("name") or "default"
    if not isinstance(url, str) or len(url) > 2048:
        raise InvalidInput("callback.url must be an http or https URL", code=INVALID_PAYLOAD)
    parts = urlsplit(url)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise InvalidInput("callback.url must be an http or https URL", code=INVALID_PAYLOAD)
    if not isinstance(secret, str) or not 16 <= len(secret) <= 512:
        raise InvalidInput(
            "callback.secret (16..512 characters) is needed: reports are signed with it",
            code=INVALID_PAYLOAD,
        )
    if not isinstance(name, str) or not _NAME.fullmatch(name):
        raise InvalidInput("callback.name must be 1..255 characters", code=INVALID_PAYLOAD)
    return Callback(name, url, secret)


def _check_name(name: str) -> str:
    if not _NAME.fullmatch(name):
        raise InvalidInput("taskName must be 1..255 printable characters", code=INVALID_PAYLOAD)
    return name


def _parameters(raw: object) -> list[dict[str, str]]:
    if raw is None:
        return []
    if not isinstance(raw, list):
        raise InvalidInput("parameters must be a list of {name, value}", code=INVALID_PAYLOAD)
    parameters = []
    for item in raw:
        if not isinstance(item, dict) or not isinstance(item.get("name"), str):
            raise InvalidInput("parameters must be a list of {name, value}", code=INVALID_PAYLOAD)
        value = item.get("value", "")
        if not isinstance(value, str | int | float) or isinstance(value, bool):
            raise InvalidInput(f"parameter {item['name'][:64]!r} needs a text value", code=4000)
        parameters.append({"name": item["name"], "value": str(value)})
    return parameters


def task_view(task: TaskRow) -> dict[str, Any]:
    """``GET tasks/{id}``: ``{id, config:{taskName, parameters, properties, isActive}}``."""
    properties = {str(key): str(value) for key, value in (task.properties or {}).items()}
    properties.setdefault("target", f"{task.target_kind}:{task.target_id}")
    if task.template_name:
        properties.setdefault("templateName", task.template_name)
    if task.callback:
        properties.setdefault("callbackName", task.callback["name"])
        properties.setdefault("callbackUrl", task.callback["url"])
    return {
        "id": task.id,
        "config": {
            "taskName": task.name,
            "parameters": list(task.parameters or []),
            "properties": properties,
            "isActive": task.is_active,
        },
    }


class TaskService:
    def __init__(
        self, db: Database, server: LwM2mServer, catalog: ModelCatalog, engine: TaskEngine
    ) -> None:
        self._db = db
        self._server = server
        self._catalog = catalog
        self.engine = engine

    # --- templates -----------------------------------------------------------------------

    async def templates(self, session: AsyncSession, principal: Principal) -> list[Template]:
        rows = await session.scalars(
            select(TaskTemplateRow)
            .where(in_scope(TaskTemplateRow.domain_id, principal.domain_id))
            .order_by(TaskTemplateRow.name)
        )
        own = [
            Template(
                row.name,
                row.description,
                template_parameters(row.parameters),
                tuple(row.operations),
            )
            for row in rows
        ]
        return [*BUILTIN_TEMPLATES.values(), *own]

    async def template(
        self, session: AsyncSession, principal: Principal, name: str, domain_id: str
    ) -> Template:
        """A template by name: the target's domain's own (nearest first), else built-in."""
        rows = list(
            await session.scalars(
                select(TaskTemplateRow).where(
                    TaskTemplateRow.name == name,
                    in_scope(TaskTemplateRow.domain_id, principal.domain_id),
                )
            )
        )
        usable = [row for row in rows if domain_id.startswith(row.domain_id)]
        if usable:
            row = max(usable, key=lambda row: len(row.domain_id))
            return Template(
                row.name,
                row.description,
                template_parameters(row.parameters),
                tuple(row.operations),
            )
        if name in BUILTIN_TEMPLATES:
            return BUILTIN_TEMPLATES[name]
        raise NotFound(f"unknown template {name[:MAX_NAME]!r}", code=NOT_FOUND)

    async def put_template(
        self,
        session: AsyncSession,
        principal: Principal,
        name: str,
        description: str,
        parameters: object,
        operations: object,
    ) -> Template:
        _check_name(name)
        if name in BUILTIN_TEMPLATES:
            raise Conflict(f"{name!r} is a built-in template and cannot be changed")
        parsed = template_parameters(parameters)
        if not isinstance(operations, list) or not operations:
            raise InvalidInput("a template needs at least one operation", code=INVALID_PAYLOAD)
        if len(operations) > MAX_OPERATIONS:
            raise InvalidInput(f"at most {MAX_OPERATIONS} operations", code=INVALID_PAYLOAD)
        for position, operation in enumerate(operations, start=1):
            operation_kind(operation, position)  # paths are checked when a task is made
        template = Template(name, description, parsed, tuple(operations))
        row = await session.scalar(
            select(TaskTemplateRow).where(
                TaskTemplateRow.domain_id == principal.domain_id, TaskTemplateRow.name == name
            )
        )
        stored = [{"name": p.name, **({"default": p.default} if p.default else {})} for p in parsed]
        if row is None:
            session.add(
                TaskTemplateRow(
                    domain_id=principal.domain_id,
                    name=name,
                    description=description,
                    parameters=stored,
                    operations=list(operations),
                )
            )
        else:
            row.description, row.parameters, row.operations = description, stored, list(operations)
        return template

    async def delete_template(self, session: AsyncSession, principal: Principal, name: str) -> None:
        result = await session.execute(
            delete(TaskTemplateRow).where(
                TaskTemplateRow.domain_id == principal.domain_id, TaskTemplateRow.name == name
            )
        )
        if rows_affected(result) == 0:
            raise NotFound(f"no template {name[:MAX_NAME]!r} in your domain", code=NOT_FOUND)

    # --- creating tasks ------------------------------------------------------------------

    async def _device_models(self, device: Device) -> ModelLookup:
        return (await device_data_model(device, self._catalog, self._server)).models

    async def _check_firmware(
        self, operations: Sequence[Mapping[str, Any]], domain_id: str
    ) -> None:
        """Firmware operations need an updater and an image the target's domain sees."""
        if not uses_firmware(operations):
            return
        if self.engine.firmware is None:
            raise Unavailable("firmware update is not configured on this server", code=5030)
        for operation in operations:
            if "firmwareUpdate" in operation:
                await self.engine.firmware.check_image(
                    domain_id=domain_id, resource_id=str(operation["firmwareUpdate"]["resourceId"])
                )

    async def create_for_device(
        self,
        session: AsyncSession,
        principal: Principal,
        device_id: str,
        new: NewTask,
        *,
        rerun_if_exists: bool,
        execute_immediately: bool,
    ) -> str:
        device = await get_device(session, principal, device_id)
        operations = validate_operations(new.operations, await self._device_models(device))
        await self._check_firmware(operations, device.domain_id)
        prefix = "d:" + hashlib.sha256(device.id.encode()).hexdigest()[:16]
        task_id = await self._save(
            session, device.domain_id, DEVICE, device.id, prefix, new, operations, rerun_if_exists
        )
        if new.is_active and not await self._has_run(session, task_id, device.id):
            session.add(_direct_run(task_id, device.id, device.domain_id))
        await session.commit()
        if execute_immediately and new.is_active:
            await self.engine.attempt_now(device_ids=[device.id])
        return task_id

    async def create_for_group(
        self,
        session: AsyncSession,
        principal: Principal,
        group_id: str,
        new: NewTask,
        *,
        rerun_if_exists: bool,
        execute_immediately: bool,
    ) -> str:
        group = await get_group(session, principal, group_id)
        models = self._catalog.registry_for(group.domain_id).with_versions({})
        operations = validate_operations(new.operations, models)
        await self._check_firmware(operations, group.domain_id)
        task_id = await self._save(
            session,
            group.domain_id,
            GROUP,
            group.id,
            f"g:{group.id}",
            new,
            operations,
            rerun_if_exists,
        )
        if new.is_active:
            await self._schedule_members(session, task_id, group.id, group.domain_id)
        await session.commit()
        if execute_immediately and new.is_active:
            await self.engine.attempt_now(group_id=group.id)
        return task_id

    async def _save(
        self,
        session: AsyncSession,
        domain_id: str,
        kind: str,
        target: str,
        prefix: str,
        new: NewTask,
        operations: list[dict[str, Any]],
        rerun_if_exists: bool,
    ) -> str:
        name = _check_name(new.name) if new.name else None
        if name is not None:
            existing = await session.scalar(
                select(TaskRow).where(
                    TaskRow.target_kind == kind, TaskRow.target_id == target, TaskRow.name == name
                )
            )
            if existing is not None:
                if not rerun_if_exists:
                    raise Conflict(
                        f"task {name!r} exists for this {kind} ({existing.id}); "
                        "rerunIfExists=true runs it again",
                    )
                existing.operations = operations
                existing.parameters = new.parameters
                existing.properties = new.properties
                existing.is_active = new.is_active
                existing.template_name = new.template_name
                existing.callback = _callback_json(new.callback)
                await session.execute(delete(TaskRun).where(TaskRun.task_id == existing.id))
                await session.flush()
                return existing.id
        number = await self._next_number(session, prefix)
        task_id = f"{prefix}:{number}"
        session.add(
            TaskRow(
                id=task_id,
                domain_id=domain_id,
                name=name or f"{new.template_name or 'task'} {task_id}",
                target_kind=kind,
                target_id=target,
                operations=operations,
                parameters=new.parameters,
                properties=new.properties,
                is_active=new.is_active,
                batch_requests=new.batch_requests,
                template_name=new.template_name,
                max_attempts=new.max_attempts,
                callback=_callback_json(new.callback),
            )
        )
        await session.flush()
        return task_id

    async def _next_number(self, session: AsyncSession, prefix: str) -> int:
        dialect = sqlite if self._db.is_sqlite else postgresql
        statement = (
            dialect.insert(TaskCounter)
            .values(prefix=prefix, last=1)
            .on_conflict_do_update(
                index_elements=[TaskCounter.prefix], set_={"last": TaskCounter.last + 1}
            )
            .returning(TaskCounter.last)
        )
        return int((await session.execute(statement)).scalar_one())

    @staticmethod
    async def _has_run(session: AsyncSession, task_id: str, device_id: str) -> bool:
        found = await session.scalar(
            select(TaskRun.id).where(TaskRun.task_id == task_id, TaskRun.device_id == device_id)
        )
        return found is not None

    async def _schedule_members(
        self, session: AsyncSession, task_id: str, group_id: str, domain_id: str
    ) -> None:
        """One Scheduled run per member of the group or its sub-groups (one INSERT)."""
        now = datetime.now(UTC)
        members = (
            select(GroupMembership.device_id)
            .where(
                or_(
                    GroupMembership.group_id == group_id,
                    GroupMembership.group_id.startswith(group_id + ".", autoescape=True),
                )
            )
            .distinct()
            .subquery()
        )
        existing = select(TaskRun.device_id).where(TaskRun.task_id == task_id)
        rows = select(
            literal(task_id), members.c.device_id, literal(domain_id), *group_run_defaults(now)
        ).where(members.c.device_id.not_in(existing))
        await session.execute(insert_group_runs(rows))

    async def from_template(
        self,
        session: AsyncSession,
        principal: Principal,
        target_kind: str,
        target_id: str,
        template_name: str,
        config: Mapping[str, Any],
        callback: object,
        *,
        rerun_if_exists: bool,
        execute_immediately: bool,
    ) -> str:
        if target_kind == DEVICE:
            domain_id = (await get_device(session, principal, target_id)).domain_id
        else:
            domain_id = (await get_group(session, principal, target_id)).domain_id
        template = await self.template(session, principal, template_name, domain_id)
        parameters = _parameters(config.get("parameters"))
        operations = template.expand({item["name"]: item["value"] for item in parameters})
        properties = config.get("properties") or {}
        if not isinstance(properties, dict):
            raise InvalidInput("config.properties must be an object", code=INVALID_PAYLOAD)
        new = NewTask(
            name=config.get("taskName") or None,
            operations=operations,
            parameters=parameters,
            properties={str(k): str(v) for k, v in properties.items()},
            is_active=config.get("isActive") is not False,
            template_name=template.name,
            callback=parse_callback(callback),
        )
        create = self.create_for_device if target_kind == DEVICE else self.create_for_group
        return await create(
            session,
            principal,
            target_id,
            new,
            rerun_if_exists=rerun_if_exists,
            execute_immediately=execute_immediately,
        )

    # --- reading, changing, deleting tasks ---------------------------------------------------

    async def get(self, session: AsyncSession, principal: Principal, task_id: str) -> TaskRow:
        task = await session.scalar(
            select(TaskRow).where(
                TaskRow.id == task_id, in_scope(TaskRow.domain_id, principal.domain_id)
            )
        )
        if task is None:
            raise NotFound(f"task {task_id[:320]!r} not found", code=NOT_FOUND)
        return task

    async def targets(
        self, session: AsyncSession, principal: Principal, task_id: str, device: Device
    ) -> bool:
        """Whether ``task_id`` is a task of the caller's scope with a run on ``device``."""
        found = await session.scalar(
            select(TaskRun.id).where(
                TaskRun.task_id == task_id,
                TaskRun.device_id == device.id,
                in_scope(TaskRun.domain_id, principal.domain_id),
            )
        )
        return found is not None

    async def list_ids(
        self, session: AsyncSession, principal: Principal, search_criteria: str | None
    ) -> list[str]:
        rows = await session.scalars(
            select(TaskRow.id)
            .where(
                in_scope(TaskRow.domain_id, principal.domain_id),
                compile_criteria(search_criteria, TASK_FIELDS),
            )
            .order_by(TaskRow.created_at, TaskRow.id)
        )
        return list(rows)

    async def update(
        self, session: AsyncSession, principal: Principal, task_id: str, config: Mapping[str, Any]
    ) -> None:
        task = await self.get(session, principal, task_id)
        parameters = _parameters(config.get("parameters"))
        properties = config.get("properties") or {}
        if not isinstance(properties, dict):
            raise InvalidInput("properties must be an object", code=INVALID_PAYLOAD)
        if task.template_name and parameters != list(task.parameters or []):
            template = await self.template(session, principal, task.template_name, task.domain_id)
            operations = template.expand({item["name"]: item["value"] for item in parameters})
            models = self._catalog.registry_for(task.domain_id).with_versions({})
            task.operations = validate_operations(operations, models)
            await self._check_firmware(task.operations, task.domain_id)
        name = config.get("taskName")
        if isinstance(name, str) and name != task.name:
            task.name = _check_name(name)
        task.parameters = parameters
        task.properties = {str(k): str(v) for k, v in properties.items()}
        was_active = task.is_active
        task.is_active = config.get("isActive") is not False
        if task.is_active and not was_active:
            if task.target_kind == GROUP:
                await self._schedule_members(session, task.id, task.target_id, task.domain_id)
            elif not await self._has_run(session, task.id, task.target_id):
                session.add(_direct_run(task.id, task.target_id, task.domain_id))
        try:
            await session.commit()
        except IntegrityError:
            await session.rollback()
            raise Conflict(f"task {task_id!r} changed concurrently; retry") from None
        if task.is_active:
            if task.target_kind == GROUP:
                await self.engine.attempt_now(group_id=task.target_id)
            else:
                await self.engine.attempt_now(device_ids=[task.target_id])

    async def delete(self, session: AsyncSession, principal: Principal, task_id: str) -> None:
        task = await self.get(session, principal, task_id)
        await session.execute(delete(CallbackDelivery).where(CallbackDelivery.task_id == task.id))
        await session.execute(delete(TaskRun).where(TaskRun.task_id == task.id))
        await session.delete(task)
        await session.commit()

    async def delete_callback(
        self, session: AsyncSession, principal: Principal, task_id: str, name: str
    ) -> None:
        task = await self.get(session, principal, task_id)
        if not task.callback or task.callback.get("name") != name:
            raise NotFound(f"task {task_id!r} has no callback {name[:MAX_NAME]!r}", code=NOT_FOUND)
        task.callback = None
        await session.execute(
            delete(CallbackDelivery).where(
                CallbackDelivery.task_id == task.id, CallbackDelivery.delivered_at.is_(None)
            )
        )
        await session.commit()

    # --- reports -------------------------------------------------------------------------------

    async def report(
        self, session: AsyncSession, principal: Principal, task_id: str, device_id: str
    ) -> dict[str, Any]:
        run = await session.scalar(
            select(TaskRun).where(
                TaskRun.task_id == task_id,
                TaskRun.device_id == device_id,
                in_scope(TaskRun.domain_id, principal.domain_id),
            )
        )
        if run is None:
            raise NotFound(
                f"no task {task_id[:320]!r} for device {device_id[:255]!r}", code=NOT_FOUND
            )
        if run.status not in FINISHED:
            raise NotFound(
                f"task {task_id!r} has not been executed on {device_id!r} yet ({run.status})",
                code=NOT_EXECUTED,
            )
        return report_payload(run)

    async def wait_for_report(
        self, principal: Principal, task_id: str, device_id: str, seconds: float
    ) -> dict[str, Any] | None:
        deadline = time.monotonic() + min(seconds, MAX_WAIT_SECONDS)
        while True:
            async with self._db.session() as session:
                try:
                    return await self.report(session, principal, task_id, device_id)
                except NotFound as exc:
                    if exc.code != NOT_EXECUTED:
                        raise
            if time.monotonic() >= deadline:
                return None
            await asyncio.sleep(0.1)

    def _finished(self, principal: Principal, search_criteria: str | None) -> list[Any]:
        return [
            TaskRun.status.in_(FINISHED),
            in_scope(TaskRun.domain_id, principal.domain_id),
            compile_criteria(search_criteria, REPORT_FIELDS),
        ]

    async def executed(
        self, session: AsyncSession, principal: Principal, search_criteria: str | None
    ) -> list[dict[str, str]]:
        rows = await session.execute(
            select(TaskRun.task_id, TaskRun.device_id)
            .where(*self._finished(principal, search_criteria))
            .order_by(TaskRun.id)
        )
        return [{"taskId": task_id, "deviceId": device_id} for task_id, device_id in rows]

    async def open_cursor(
        self, session: AsyncSession, principal: Principal, search_criteria: str | None
    ) -> int:
        compile_criteria(search_criteria, REPORT_FIELDS)  # refuse bad criteria now
        cursor = ReportCursor(
            domain_id=principal.domain_id,
            owner=principal.login,
            search_criteria=(search_criteria or "").strip(),
        )
        session.add(cursor)
        await session.commit()
        return cursor.id

    async def more(
        self, session: AsyncSession, principal: Principal, cursor_id: int, count: int
    ) -> dict[str, Any]:
        if not 1 <= count <= 2048:
            raise InvalidInput("count must be 1..2048", code=4001)
        cursor = await session.scalar(
            select(ReportCursor).where(
                ReportCursor.id == cursor_id,
                ReportCursor.owner == principal.login,
                ReportCursor.domain_id == principal.domain_id,
            )
        )
        if cursor is None:
            raise NotFound(f"unknown cursor {cursor_id}", code=NOT_FOUND)
        runs = list(
            await session.scalars(
                select(TaskRun)
                .where(
                    *self._finished(principal, cursor.search_criteria or None),
                    TaskRun.id > cursor.position,
                )
                .order_by(TaskRun.id)
                .limit(count)
            )
        )
        if runs:
            cursor.position = runs[-1].id
        await session.commit()
        return {"batch": [report_payload(run) for run in runs], "nextCursor": cursor.id}

    async def since(
        self,
        principal: Principal,
        last_update: datetime,
        task_id: str | None,
        device_id: str | None,
        limit: int,
        polling_seconds: float,
        direct_only: bool,
    ) -> list[dict[str, Any]]:
        if not 1 <= limit <= MAX_FIND_SINCE:
            raise InvalidInput(f"limit must be 1..{MAX_FIND_SINCE}", code=4001)
        if not 0 <= polling_seconds <= MAX_POLL_SECONDS:  # also refuses NaN
            raise InvalidInput(
                f"pollingInterval must be 0..{MAX_POLL_SECONDS:g} seconds", code=4000
            )
        conditions = [
            TaskRun.status.in_(FINISHED),
            in_scope(TaskRun.domain_id, principal.domain_id),
            TaskRun.last_update_time > last_update,
        ]
        if task_id:
            conditions.append(TaskRun.task_id == task_id)
        if device_id:
            conditions.append(TaskRun.device_id == device_id)
        if direct_only:
            conditions.append(TaskRun.direct.is_(True))
        deadline = time.monotonic() + polling_seconds
        while True:
            async with self._db.session() as session:
                runs = list(
                    await session.scalars(
                        select(TaskRun)
                        .where(*conditions)
                        .order_by(TaskRun.last_update_time, TaskRun.id)
                        .limit(limit)
                    )
                )
            if runs or time.monotonic() >= deadline:
                return [report_payload(run) for run in runs]
            await asyncio.sleep(0.25)

    async def summary(
        self, session: AsyncSession, principal: Principal, task_id: str
    ) -> dict[str, int]:
        task = await self.get(session, principal, task_id)
        rows = await session.execute(
            select(TaskRun.status, func.count())
            .where(TaskRun.task_id == task.id)
            .group_by(TaskRun.status)
        )
        counts = {status: count for status, count in rows.all()}
        total = sum(counts.values())
        completed = sum(counts.get(status, 0) for status in FINISHED)
        successes = counts.get(SUCCESS, 0)
        failures = completed - successes

        def rate(part: int) -> int:
            return round(100 * part / total) if total else 0

        return {
            "totalScheduled": total,
            "inProgress": counts.get(IN_PROGRESS, 0),
            "completed": completed,
            "successes": successes,
            "failures": failures,
            "notCompleted": total - completed,
            "completionRate": rate(completed),
            "successRate": rate(successes),
            "failureRate": rate(failures),
        }


def _direct_run(task_id: str, device_id: str, domain_id: str) -> TaskRun:
    return TaskRun(
        task_id=task_id, device_id=device_id, domain_id=domain_id, direct=True, status=SCHEDULED
    )


def _callback_json(callback: Callback | None) -> dict[str, str] | None:
    if callback is None:
        return None
    return {"name": callback.name, "url": callback.url, "secret": callback.secret}
