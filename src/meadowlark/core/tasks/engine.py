"""Carries tasks out on devices, in their management moments, with a bounded worker pool.

A device's moment is its Register, Update, queue-mode wake-up or a triggered session
(which arrives as an Update), plus an immediate attempt when a task is created for a
device that is reachable. Each moment puts the endpoint name in a queue (once, however
often it is poked); ``workers`` coroutines take names from it, read the device's due
runs from the store and carry them out in order. Idle devices cost nothing but their
rows: there is no coroutine per device or per run.

A run is claimed with a compare-and-set (``Scheduled`` -> ``InProgress``) and finished
in one transaction with its report and, if the task has a callback, the outbox row of
the delivery. Runs found ``InProgress`` at start-up were interrupted by a restart and
are scheduled again.

On a device's (re-)registration the engine first reads the paths of the registration
task (setting ``registrationRead``, default ``/3/0,/5/0``; ``off`` switches it off),
which fills the device's manufacturer, model, serial number and versions.

Most moments find nothing to do: whether any ``registrationRead`` setting, active group
task or scheduled run exists at all is asked with one shared query
(``SharedQuery``) for every device served meanwhile, and a device's own rows are only
read when the answer says there may be something.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Mapping
from dataclasses import dataclass, replace
from datetime import UTC, datetime
from typing import Any

import structlog
from sqlalchemy import Insert, Select, exists, insert, literal, or_, select, update

from meadowlark.core.data_model import render_value
from meadowlark.core.domains import domain_lineage
from meadowlark.core.errors import InvalidInput
from meadowlark.core.firmware_contract import FirmwareUpdater
from meadowlark.core.observations import parse_observation_attributes
from meadowlark.core.setting_values import MissingSetting, device_settings, substitute
from meadowlark.core.tasks.callbacks import CallbackSender, report_payload
from meadowlark.core.tasks.definitions import PlannedOperation, plan
from meadowlark.lwm2m.codec import text
from meadowlark.lwm2m.codec.errors import CodecError
from meadowlark.lwm2m.model import VersionedModels, to_readable
from meadowlark.lwm2m.node import Node, ObjectInstance
from meadowlark.lwm2m.path import InvalidPathError, LwM2mPath
from meadowlark.server.errors import (
    DeviceErrorResponse,
    DeviceNotRegisteredError,
    DeviceUnreachableError,
    Lwm2mServerError,
    RequestQueuedError,
    RequestTimeoutError,
)
from meadowlark.server.operations import QueuedRequestState
from meadowlark.server.registration import Registration
from meadowlark.server.service import LwM2mServer, ServerListener
from meadowlark.server.values import flatten_all
from meadowlark.store.coiote_models import GroupMembership
from meadowlark.store.db import Database, SharedQuery, rows_affected
from meadowlark.store.device_models import Device
from meadowlark.store.task_models import CallbackDelivery, SettingValueRow, TaskRow, TaskRun

_log = structlog.get_logger("meadowlark.tasks")

SCHEDULED = "Scheduled"
IN_PROGRESS = "InProgress"
SUCCESS = "Success"
FAILURE = "Failure"
TIMEOUT = "Timeout"
FINISHED = (SUCCESS, FAILURE, TIMEOUT)
DEVICE = "device"
GROUP = "group"
REGISTRATION_READ_SETTING = "registrationRead"


@dataclass(frozen=True, slots=True)
class FinishedRun:
    """A task run's outcome, as told to ``TaskEngine.finished_listeners``."""

    task_id: str
    device_id: str
    status: str
    summary: str
    properties: list[dict[str, str]]


@dataclass(frozen=True, slots=True)
class EngineOptions:
    workers: int = 16
    registration_reads: str = "/3/0,/5/0"
    """Paths read at every (re-)registration unless the setting ``registrationRead``
    says otherwise (``off``: none)."""
    registration_read_delay: float = 10.0
    """Seconds at most a registration read waits for a moment without Registers or
    Updates in process: in a registration storm the reads yield to the Registers (whose
    clients retransmit when answered late) and go out once it has passed."""


PENDING_WORK = select(
    exists().where(SettingValueRow.name == REGISTRATION_READ_SETTING),
    exists().where(TaskRow.target_kind == GROUP, TaskRow.is_active.is_(True)),
    exists().where(TaskRun.status == SCHEDULED),
)
"""Whether any device's moment may have work (``_PendingWork``), asked once for many."""


@dataclass(frozen=True, slots=True)
class _PendingWork:
    """Whether the store holds anything a device's moment may have to act on."""

    read_settings: bool
    """Some domain, group or device sets ``registrationRead``."""
    group_tasks: bool
    """Some group task is active (a device may have to join it)."""
    scheduled_runs: bool


class _RetryLater(Exception):
    """The device cannot be reached now; the run waits for its next moment."""

    def __init__(self, reason: str, *, counts: bool) -> None:
        super().__init__(reason)
        self.reason = reason
        self.counts = counts


class _OperationFailed(Exception):
    pass


def _now() -> datetime:
    return datetime.now(UTC)


def group_run_defaults(now: datetime) -> tuple[Any, ...]:
    """The columns after task, device and domain of a new run from a group task."""
    return (
        literal(False),
        literal(SCHEDULED),
        literal(0),
        literal(now, TaskRun.created_at.type),
        literal(now, TaskRun.last_update_time.type),
        literal(""),
    )


def insert_group_runs(rows: Select[Any]) -> Insert:
    """INSERT ... SELECT of Scheduled runs; ``rows`` selects task id, device id, domain id,
    then ``group_run_defaults``."""
    columns = [
        "task_id",
        "device_id",
        "domain_id",
        "direct",
        "status",
        "attempts",
        "created_at",
        "last_update_time",
        "summary",
    ]
    return insert(TaskRun).from_select(columns, rows)


class TaskEngine(ServerListener):
    """Runs due task runs of devices in their management moments."""

    def __init__(
        self,
        db: Database,
        server: LwM2mServer,
        callbacks: CallbackSender,
        options: EngineOptions | None = None,
        firmware: FirmwareUpdater | None = None,
    ) -> None:
        self._db = db
        self._server = server
        self.callbacks = callbacks
        self.options = options or EngineOptions()
        self.firmware = firmware
        """The firmware updater; None: ``firmwareUpdate`` operations are refused (503)."""
        self._queue: asyncio.Queue[str] = asyncio.Queue()
        self._queued: set[str] = set()
        self._fresh: set[str] = set()
        self._workers: list[asyncio.Task[None]] = []
        self._stopping = False
        self.runs_finished = 0
        self.finished_listeners: list[Callable[[FinishedRun], None]] = []
        """Told of every finished run, after its report is committed (must not block)."""
        self._pending_work = SharedQuery(self._query_pending_work)
        server.add_listener(self)

    # --- lifecycle -------------------------------------------------------------------------

    async def start(self) -> None:
        async with self._db.transaction() as session:
            interrupted = await session.execute(
                update(TaskRun).where(TaskRun.status == IN_PROGRESS).values(status=SCHEDULED)
            )
        if rows_affected(interrupted):
            _log.info("task_runs_resumed", runs=rows_affected(interrupted))
        loop = asyncio.get_running_loop()
        self._workers = [
            loop.create_task(self._work(), name=f"task-worker-{n}")
            for n in range(self.options.workers)
        ]
        self.callbacks.start()

    async def stop(self) -> None:
        # A driver may turn the cancellation into its own error (psycopg: QueryCanceled);
        # the flag ends the worker's loop anyway.
        self._stopping = True
        for worker in self._workers:
            worker.cancel()
        await asyncio.gather(*self._workers, return_exceptions=True)
        self._workers = []
        await self.callbacks.stop()

    # --- management moments ----------------------------------------------------------------

    def on_registered(self, registration: Registration, replaced: Registration | None) -> None:
        self._fresh.add(registration.endpoint)
        self.poke(registration.endpoint)

    def on_updated(self, registration: Registration, previous: Registration) -> None:
        self.poke(registration.endpoint)

    def on_awake(self, registration: Registration) -> None:
        self.poke(registration.endpoint)

    def on_deregistered(self, registration: Registration, *, expired: bool) -> None:
        self._fresh.discard(registration.endpoint)

    def poke(self, endpoint: str) -> None:
        """Look at the device's due work soon (once, however often it is poked)."""
        if endpoint not in self._queued:
            self._queued.add(endpoint)
            self._queue.put_nowait(endpoint)

    async def attempt_now(
        self, device_ids: list[str] | None = None, group_id: str | None = None
    ) -> int:
        """Poke the reachable devices among ``device_ids`` or the members of ``group_id``
        (and its sub-groups); returns how many were poked."""
        async with self._db.session() as session:
            query = select(Device.endpoint_name)
            if group_id is not None:
                query = query.where(
                    Device.id.in_(
                        select(GroupMembership.device_id).where(
                            or_(
                                GroupMembership.group_id == group_id,
                                GroupMembership.group_id.startswith(
                                    group_id + ".", autoescape=True
                                ),
                            )
                        )
                    )
                )
            else:
                query = query.where(Device.id.in_(device_ids or []))
            endpoints = list(await session.scalars(query))
        poked = 0
        for endpoint in endpoints:
            registration = await self._server.get_registration(endpoint)
            if registration is not None and self._server.is_awake(registration):
                self.poke(endpoint)
                poked += 1
        return poked

    # --- workers -----------------------------------------------------------------------------

    async def _work(self) -> None:
        while not self._stopping:
            endpoint = await self._queue.get()
            self._queued.discard(endpoint)
            try:
                await self._serve(endpoint)
            except Exception:  # one device's trouble must not stop the worker
                if not self._stopping:
                    _log.exception("task_worker_failed", endpoint=endpoint)

    async def _serve(self, endpoint: str) -> None:
        registration = await self._server.get_registration(endpoint)
        if registration is None or not self._server.is_awake(registration):
            return
        fresh = endpoint in self._fresh
        self._fresh.discard(endpoint)
        work = await self._pending_work()
        device = None
        if fresh:
            await self._server.registration_service.quiet(self.options.registration_read_delay)
            if work.read_settings:
                device = await self._device(endpoint)
                if device is None:
                    return
            await self._registration_reads(registration, device)
        if not work.group_tasks and not work.scheduled_runs:
            return
        device = device or await self._device(endpoint)
        if device is None:
            return
        if work.group_tasks:
            await self._join_group_tasks(device)
        while True:
            claimed = await self._claim_next(device.id)
            if claimed is None:
                return
            run, task = claimed
            if not await self._carry_out(run, task, device):
                return

    async def _query_pending_work(self) -> _PendingWork:
        async with self._db.engine.connect() as connection:
            row = (await connection.execute(PENDING_WORK)).one()
        return _PendingWork(*(bool(flag) for flag in row))

    async def _device(self, endpoint: str) -> Device | None:
        async with self._db.session() as session:
            device = await session.scalar(select(Device).where(Device.endpoint_name == endpoint))
            if device is not None:
                session.expunge(device)
            return device

    async def _registration_reads(self, registration: Registration, device: Device | None) -> None:
        """Read the registration task's paths; ``device`` (None: no ``registrationRead``
        setting exists anywhere) is looked up for its settings."""
        spec = self.options.registration_reads
        if device is not None:
            async with self._db.session() as session:
                settings = await device_settings(session, device)
            configured = settings.get(REGISTRATION_READ_SETTING)
            if configured is not None:
                spec = configured.value
        if spec.strip().lower() in ("", "off", "none", "false"):
            return
        for item in spec.split(","):
            try:
                path = LwM2mPath.parse(item.strip())
            except InvalidPathError:
                _log.info(
                    "registration_read_invalid", endpoint=registration.endpoint, path=item[:40]
                )
                continue
            if path.object_id not in registration.objects.objects:
                continue
            try:
                await self._server.read(registration.endpoint, path, wait=False)
            except RequestQueuedError as exc:
                await self._withdraw(exc)
                return
            except Lwm2mServerError as exc:  # a line per device: debug
                _log.debug(
                    "registration_read_failed",
                    endpoint=registration.endpoint,
                    path=str(path),
                    error=exc.message,
                )

    async def _join_group_tasks(self, device: Device) -> None:
        """Schedule the active tasks of the device's groups it has no run of yet."""
        async with self._db.transaction() as session:
            direct = list(
                await session.scalars(
                    select(GroupMembership.group_id).where(GroupMembership.device_id == device.id)
                )
            )
            if not direct:
                return
            lineage = {
                ".".join(group_id.split(".")[:depth])
                for group_id in direct
                for depth in range(1, group_id.count(".") + 2)
            }
            now = _now()
            missing = select(
                TaskRow.id, literal(device.id), TaskRow.domain_id, *group_run_defaults(now)
            ).where(
                TaskRow.target_kind == GROUP,
                TaskRow.target_id.in_(sorted(lineage)),
                # A group id reused by another domain does not inherit the old owner's tasks.
                TaskRow.domain_id.in_(domain_lineage(device.domain_id)),
                TaskRow.is_active.is_(True),
                ~exists().where(TaskRun.task_id == TaskRow.id, TaskRun.device_id == device.id),
            )
            await session.execute(insert_group_runs(missing))

    async def _claim_next(self, device_id: str) -> tuple[TaskRun, TaskRow] | None:
        async with self._db.transaction() as session:
            while True:
                row = (
                    await session.execute(
                        select(TaskRun, TaskRow)
                        .join(TaskRow, TaskRow.id == TaskRun.task_id)
                        .where(
                            TaskRun.device_id == device_id,
                            TaskRun.status == SCHEDULED,
                            TaskRow.is_active.is_(True),
                        )
                        .order_by(TaskRun.id)
                        .limit(1)
                    )
                ).first()
                if row is None:
                    return None
                run, task = row
                now = _now()
                claimed = await session.execute(
                    update(TaskRun)
                    .where(TaskRun.id == run.id, TaskRun.status == SCHEDULED)
                    .values(
                        status=IN_PROGRESS,
                        attempts=TaskRun.attempts + 1,
                        start_time=now,
                        last_update_time=now,
                    )
                    .execution_options(synchronize_session=False)
                )
                if rows_affected(claimed) == 1:
                    await session.refresh(run)
                    session.expunge(run)
                    session.expunge(task)
                    return run, task

    # --- one run ---------------------------------------------------------------------------

    async def _carry_out(self, run: TaskRun, task: TaskRow, device: Device) -> bool:
        """Run the task's operations in order; False when the device went out of reach."""
        endpoint = device.endpoint_name
        properties: list[dict[str, str]] = []
        try:
            registration = await self._server.get_registration(endpoint)
            if registration is None:
                raise _RetryLater("the device is not registered", counts=False)
            models = self._server.models_for(registration)
            settings = None
            operations = list(task.operations)
            for position, operation in enumerate(operations, start=1):
                try:
                    planned = plan(operation, models, position)
                except InvalidInput as exc:
                    raise _OperationFailed(exc.message) from None
                if settings is None and "${sv." in repr(operation):
                    async with self._db.session() as session:
                        settings = await device_settings(session, device)
                try:
                    planned = _with_settings(planned, settings or {})
                except MissingSetting as exc:
                    raise _OperationFailed(
                        f"operation {position} ({planned.label}): {exc}"
                    ) from None
                await self._perform(endpoint, device, task, planned, position, models, properties)
        except _RetryLater as exc:
            await self._reschedule(run, task, exc)
            return False
        except _OperationFailed as exc:
            await self._finish(run, task, FAILURE, str(exc), properties)
            return True
        count = len(task.operations)
        summary = f"{count} operation{'s' if count != 1 else ''} succeeded"
        await self._finish(run, task, SUCCESS, summary, properties)
        return True

    async def _perform(
        self,
        endpoint: str,
        device: Device,
        task: TaskRow,
        planned: PlannedOperation,
        position: int,
        models: VersionedModels,
        properties: list[dict[str, str]],
    ) -> None:
        server = self._server
        where = f"operation {position} ({planned.label})"
        try:
            match planned.kind:
                case "read" | "observe":
                    assert planned.path is not None
                    if planned.kind == "read":
                        node: Node = await server.read(endpoint, planned.path, wait=False)
                    else:
                        node = await server.observe(endpoint, planned.path, wait=False)
                    for path, cached in sorted(flatten_all({planned.path: node}, _now()).items()):
                        properties.append(
                            {"name": to_readable(path, models), "value": render_value(cached.value)}
                        )
                case "write":
                    assert planned.path is not None and planned.value is not None
                    value = text.decode(planned.value.encode("utf-8"), planned.path, models)
                    await server.write(endpoint, planned.path, value, wait=False)
                case "execute":
                    assert planned.path is not None
                    await server.execute(endpoint, planned.path, planned.arguments, wait=False)
                case "create":
                    assert planned.path is not None and planned.path.object_id is not None
                    resources = {}
                    for resource_id, raw in planned.values.items():
                        resource_path = LwM2mPath(
                            planned.path.object_id, planned.instance_id, resource_id
                        )
                        resources[resource_id] = text.decode(raw.encode(), resource_path, models)
                    instance = ObjectInstance(planned.instance_id, resources)  # type: ignore[arg-type]
                    await server.create(endpoint, planned.path, instance, wait=False)
                case "delete":
                    assert planned.path is not None
                    await server.delete(endpoint, planned.path, wait=False)
                case "writeAttributes":
                    assert planned.path is not None
                    attributes = parse_observation_attributes(planned.attributes, planned.path)
                    await server.write_attributes(endpoint, planned.path, attributes, wait=False)
                case "cancelObserve":
                    assert planned.path is not None
                    await server.cancel_observation(endpoint, planned.path, active=True)
                case _:
                    await self._update_firmware(device, task, planned, where, properties)
        except CodecError as exc:
            raise _OperationFailed(f"{where}: invalid value: {exc}") from None
        except InvalidInput as exc:
            raise _OperationFailed(f"{where}: {exc.message}") from None
        except RequestQueuedError as exc:
            await self._withdraw(exc)
            raise _RetryLater("the device fell asleep", counts=False) from None
        except DeviceNotRegisteredError:
            raise _RetryLater("the device is not registered", counts=False) from None
        except (RequestTimeoutError, DeviceUnreachableError) as exc:
            raise _RetryLater(f"{where}: {exc.message}", counts=True) from None
        except DeviceErrorResponse as exc:
            raise _OperationFailed(f"{where} failed: the device answered {exc.code}") from None
        except Lwm2mServerError as exc:
            raise _OperationFailed(f"{where} failed: {exc.message}") from None

    async def _update_firmware(
        self,
        device: Device,
        task: TaskRow,
        planned: PlannedOperation,
        where: str,
        properties: list[dict[str, str]],
    ) -> None:
        request = planned.firmware
        assert request is not None
        if self.firmware is None:
            raise _OperationFailed(f"{where}: firmware update is not configured on this server")
        outcome = await self.firmware.update(
            domain_id=device.domain_id,
            device_id=device.id,
            resource_id=request.resource_id,
            transfer_method=request.transfer_method,
            transfer_protocol=request.transfer_protocol,
            timeout_seconds=request.timeout_seconds,
        )
        properties.extend(
            [
                {"name": "oldFirmwareVersion", "value": outcome.old_version or ""},
                {"name": "newFirmwareVersion", "value": outcome.new_version or ""},
                {
                    "name": "result",
                    "value": "" if outcome.update_result is None else str(outcome.update_result),
                },
                {"name": "resultDetails", "value": outcome.summary},
            ]
        )
        if not outcome.success:
            raise _OperationFailed(f"{where} failed: {outcome.summary}")

    async def _withdraw(self, error: RequestQueuedError) -> None:
        """Take back a request the server queued for a device that just fell asleep: the
        run is retried as a whole at the device's next moment."""
        await self._server.queue.finish(
            error.request_id, QueuedRequestState.FAILED, {"error": "withdrawn by the task engine"}
        )

    async def _reschedule(self, run: TaskRun, task: TaskRow, reason: _RetryLater) -> None:
        attempts = run.attempts if reason.counts else run.attempts - 1
        if attempts >= task.max_attempts:
            summary = f"no answer after {attempts} attempts: {reason.reason}"
            await self._finish(run, task, TIMEOUT, summary, [], attempts=attempts)
            return
        async with self._db.transaction() as session:
            await session.execute(
                update(TaskRun)
                .where(TaskRun.id == run.id)
                .values(
                    status=SCHEDULED,
                    attempts=attempts,
                    last_update_time=_now(),
                    summary=f"attempt {attempts} of {task.max_attempts} did not finish: "
                    f"{reason.reason}; retried at the device's next contact",
                )
            )

    async def _finish(
        self,
        run: TaskRun,
        task: TaskRow,
        status: str,
        summary: str,
        properties: list[dict[str, str]],
        attempts: int | None = None,
    ) -> None:
        now = _now()
        values: dict[str, Any] = {
            "status": status,
            "finish_time": now,
            "last_update_time": now,
            "summary": summary,
            "properties": properties,
        }
        if attempts is not None:
            values["attempts"] = attempts
        async with self._db.transaction() as session:
            await session.execute(update(TaskRun).where(TaskRun.id == run.id).values(**values))
            if task.callback:
                run.status, run.finish_time, run.last_update_time = status, now, now
                run.summary, run.properties = summary, properties
                session.add(
                    CallbackDelivery(
                        task_id=task.id,
                        device_id=run.device_id,
                        callback_name=task.callback["name"],
                        url=task.callback["url"],
                        secret=task.callback["secret"],
                        payload=report_payload(run),
                        next_attempt_at=now,
                    )
                )
        self.runs_finished += 1
        _log.info("task_run_finished", task_id=task.id, device_id=run.device_id, status=status)
        finished = FinishedRun(task.id, run.device_id, status, summary, properties)
        for listener in self.finished_listeners:
            listener(finished)
        if task.callback:
            self.callbacks.notify()


def _with_settings(planned: PlannedOperation, settings: Mapping[str, Any]) -> PlannedOperation:
    return replace(
        planned,
        value=None if planned.value is None else substitute(planned.value, settings),
        arguments=None if planned.arguments is None else substitute(planned.arguments, settings),
        values={key: substitute(value, settings) for key, value in planned.values.items()},
    )
