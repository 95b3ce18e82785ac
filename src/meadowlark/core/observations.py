"""Wanted observations (Coiote ``observations``) and the LwM2M Observes that carry them out.

An observation is configured on a device or on a group (then it applies to every device
in the group or one of its sub-groups). ``ObservationManager`` keeps each registered
device's Observes in line with the configurations: it reconciles a device when it
registers, when a configuration changes and when its groups change
(``reconcile_device``). Reconciling writes the notification attributes first
(Write-Attributes), then sends Observe; a configuration that goes away is cancelled
actively and the attributes it wrote are cleared.

Most fleets configure no observation at all: a Register then costs one shared
existence check (``SharedQuery``: one query for all devices registering meanwhile)
instead of three queries of its own.
"""

from __future__ import annotations

import asyncio
from collections.abc import Coroutine, Sequence
from dataclasses import dataclass
from typing import Any

import structlog
from sqlalchemy import case, exists, or_, select
from sqlalchemy.exc import IntegrityError

from meadowlark.auth.principal import Principal
from meadowlark.core.data_model import device_data_model
from meadowlark.core.devices import get_device
from meadowlark.core.domains import in_scope
from meadowlark.core.errors import Conflict, InvalidInput, NotFound
from meadowlark.core.groups import get_group
from meadowlark.core.object_models import ModelCatalog
from meadowlark.core.search_criteria import Field, compile_criteria
from meadowlark.lwm2m.codec.attributes import (
    InvalidAttributeError,
    NotificationAttributes,
    from_query,
    parse_attributes,
    to_query,
)
from meadowlark.lwm2m.model import NamedModels, ReadablePathError, from_readable, to_readable
from meadowlark.lwm2m.path import InvalidPathError, LwM2mPath
from meadowlark.server.errors import Lwm2mServerError, RequestQueuedError
from meadowlark.server.registration import Registration
from meadowlark.server.service import LwM2mServer, ServerListener
from meadowlark.store.coiote_models import GroupMembership, ObservationConfig
from meadowlark.store.db import Database, SharedQuery
from meadowlark.store.device_models import Device

_log = structlog.get_logger("meadowlark.observations")

DEVICE = "device"
GROUP = "group"
ATTRIBUTE_NAMES = ("pmin", "pmax", "gt", "lt", "st")
"""The notification attributes an observation may set, in the order they are listed."""
INVALID_PAYLOAD_CODE = 4000
INVALID_URL_CODE = 4003
NOT_FOUND_CODE = 4040
MAX_PATH_LENGTH = 512

_TARGET_DEVICE_ID = case((ObservationConfig.target_kind == DEVICE, ObservationConfig.target_id))
_TARGET_GROUP_ID = case((ObservationConfig.target_kind == GROUP, ObservationConfig.target_id))
SEARCHABLE = {
    "deviceId": Field(_TARGET_DEVICE_ID),
    "groupId": Field(_TARGET_GROUP_ID),
    "path": Field(ObservationConfig.path),
    "url": Field(ObservationConfig.lwm2m_path),
    "domain": Field(ObservationConfig.domain_id),
}
ANY_CONFIGURED = select(exists().where(ObservationConfig.target_kind.in_((DEVICE, GROUP))))
"""Whether any observation is configured (reads one index entry at most)."""


@dataclass(frozen=True, slots=True)
class Observation:
    """A configured observation as the API shows it."""

    target_kind: str
    target_id: str
    path: str
    attributes: list[tuple[str, str]]


def _view(config: ObservationConfig) -> Observation:
    return Observation(
        config.target_kind,
        config.target_id,
        config.path,
        [(name, config.attributes[name]) for name in ATTRIBUTE_NAMES if name in config.attributes],
    )


def parse_observation_attributes(
    pairs: Sequence[tuple[str, str]], path: LwM2mPath
) -> NotificationAttributes:
    """Validated attributes from ``(name, value)`` pairs; ``InvalidInput`` explains a refusal
    (unknown or repeated names, non-numbers, ``pmin > pmax``, ``lt >= gt``, ``gt`` above a
    resource...)."""
    query: dict[str, str | None] = {}
    for name, value in pairs:
        if name not in ATTRIBUTE_NAMES:
            raise InvalidInput(
                f"unknown attribute {name[:40]!r}; use {', '.join(ATTRIBUTE_NAMES)}",
                code=INVALID_PAYLOAD_CODE,
            )
        if name in query:
            raise InvalidInput(f"attribute {name!r} given twice", code=INVALID_PAYLOAD_CODE)
        if not value.strip():
            raise InvalidInput(f"attribute {name!r} needs a value", code=INVALID_PAYLOAD_CODE)
        query[name] = value.strip()
    try:
        return parse_attributes(query, path)
    except InvalidAttributeError as exc:
        raise InvalidInput(f"invalid attributes: {exc}", code=INVALID_PAYLOAD_CODE) from None


def _stored(attributes: NotificationAttributes) -> dict[str, str]:
    return dict(option.split("=", 1) for option in to_query(attributes))


def _loaded(stored: dict[str, str]) -> NotificationAttributes:
    return from_query([f"{name}={value}" for name, value in stored.items()])


def _observed_path(text: str, models: NamedModels) -> LwM2mPath:
    if len(text) > MAX_PATH_LENGTH:
        raise InvalidInput(f"path longer than {MAX_PATH_LENGTH} characters")
    try:
        path = from_readable(text, models)
    except ReadablePathError as exc:
        raise InvalidInput(f"invalid path {text[:120]!r}: {exc}") from None
    if path.is_root:
        raise InvalidInput("an observation needs an object, instance or resource path")
    return path


def parse_resource_url(url: str) -> LwM2mPath:
    """A numeric LwM2M URL such as ``/3303/0/5700`` (400, code 4003, otherwise)."""
    try:
        path = LwM2mPath.parse(url)
    except InvalidPathError as exc:
        raise InvalidInput(
            f"invalid LwM2M URL {url[:120]!r}: {exc}", code=INVALID_URL_CODE
        ) from None
    if path.is_root:
        raise InvalidInput(
            "the LwM2M URL must name an object, instance or resource", code=INVALID_URL_CODE
        )
    return path


def _group_lineage(group_ids: Sequence[str]) -> set[str]:
    """The groups and every group above them (``a.b.c`` is inside ``a.b`` and ``a``)."""
    lineage: set[str] = set()
    for group_id in group_ids:
        segments = group_id.split(".")
        lineage.update(".".join(segments[:depth]) for depth in range(1, len(segments) + 1))
    return lineage


class ObservationManager(ServerListener):
    """Stores observation configurations and applies them to registered devices."""

    def __init__(self, db: Database, server: LwM2mServer, catalog: ModelCatalog) -> None:
        self._db = db
        self._server = server
        self._catalog = catalog
        # What this manager established per endpoint: path -> attributes it wrote.
        self._applied: dict[str, dict[LwM2mPath, NotificationAttributes]] = {}
        self._dirty: set[str] = set()
        self._running: set[str] = set()
        self._tasks: set[asyncio.Task[Any]] = set()
        self._any_configured = SharedQuery(self._query_any_configured)
        server.add_listener(self)

    async def stop(self) -> None:
        tasks = list(self._tasks)
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)

    # --- server events -------------------------------------------------------------------

    def on_registered(self, registration: Registration, replaced: Registration | None) -> None:
        # A (re-)registered device holds no observations of ours any more.
        self._applied.pop(registration.endpoint, None)
        self._schedule(registration.endpoint)

    def on_deregistered(self, registration: Registration, *, expired: bool) -> None:
        self._applied.pop(registration.endpoint, None)

    # --- reconciling -----------------------------------------------------------------------

    async def reconcile_device(self, device_id: str) -> None:
        """Bring the device's Observes in line with its and its groups' configurations
        (call after its group memberships changed); the device is contacted in the
        background."""
        async with self._db.session() as session:
            endpoint = await session.scalar(
                select(Device.endpoint_name).where(Device.id == device_id)
            )
        if endpoint is not None:
            self._schedule(endpoint)

    def _schedule(self, endpoint: str) -> None:
        """Reconcile ``endpoint`` soon; requests made meanwhile fold into one more pass."""
        self._dirty.add(endpoint)
        if endpoint not in self._running:
            self._running.add(endpoint)
            self._spawn(self._reconcile_while_dirty(endpoint))

    async def _reconcile_while_dirty(self, endpoint: str) -> None:
        try:
            while endpoint in self._dirty:
                self._dirty.discard(endpoint)
                await self._reconcile(endpoint)
        finally:
            self._running.discard(endpoint)

    async def _reconcile(self, endpoint: str) -> None:
        registration = await self._server.get_registration(endpoint)
        if registration is None:
            self._applied.pop(endpoint, None)
            return
        if not self._applied.get(endpoint) and not await self._any_configured():
            return  # nothing established, nothing wanted
        wanted = await self._wanted(endpoint)
        applied = self._applied.setdefault(endpoint, {})
        if not registration.queue_mode:
            # Observations the device or the network ended must be set up again.
            active = {key[0] for key in self._server.observed_paths(endpoint) if len(key) == 1}
            for path in [path for path in applied if path not in active]:
                del applied[path]
        for path in [path for path in applied if path not in wanted]:
            await self._stop(endpoint, path, applied.pop(path))
        for path, attributes in wanted.items():
            previous = applied.get(path)
            if previous != attributes and await self._start(endpoint, path, attributes, previous):
                applied[path] = attributes
        if not applied and self._applied.get(endpoint) is applied:
            del self._applied[endpoint]  # no empty entry per registered device

    async def _query_any_configured(self) -> bool:
        async with self._db.engine.connect() as connection:
            return bool(await connection.scalar(ANY_CONFIGURED))

    async def _wanted(self, endpoint: str) -> dict[LwM2mPath, NotificationAttributes]:
        """Configured observations of the device: its own win over its groups', a deeper
        group's over a group above it."""
        async with self._db.session() as session:
            device_id = await session.scalar(
                select(Device.id).where(Device.endpoint_name == endpoint)
            )
            if device_id is None:
                return {}
            direct_groups = list(
                await session.scalars(
                    select(GroupMembership.group_id).where(GroupMembership.device_id == device_id)
                )
            )
            configs = list(
                await session.scalars(
                    select(ObservationConfig).where(
                        or_(
                            (ObservationConfig.target_kind == DEVICE)
                            & (ObservationConfig.target_id == device_id),
                            (ObservationConfig.target_kind == GROUP)
                            & ObservationConfig.target_id.in_(
                                sorted(_group_lineage(direct_groups))
                            ),
                        )
                    )
                )
            )

        def precedence(config: ObservationConfig) -> tuple[int, int, str]:
            if config.target_kind == DEVICE:
                return (1, 0, "")
            return (0, config.target_id.count("."), config.target_id)

        wanted: dict[LwM2mPath, NotificationAttributes] = {}
        for config in sorted(configs, key=precedence):
            wanted[LwM2mPath.parse(config.lwm2m_path)] = _loaded(config.attributes)
        return wanted

    async def _start(
        self,
        endpoint: str,
        path: LwM2mPath,
        attributes: NotificationAttributes,
        previous: NotificationAttributes | None,
    ) -> bool:
        """Write the attributes (clearing those no longer wanted), then Observe.

        Returns False when the device refused or did not answer (retried on its next
        registration). A queued request for a sleeping device counts as done.
        """
        kept = {name for name in ATTRIBUTE_NAMES if getattr(attributes, name) is not None}
        dropped = set()
        if previous is not None:
            dropped = {name for name in ATTRIBUTE_NAMES if getattr(previous, name) is not None}
        update = NotificationAttributes(
            **{name: getattr(attributes, name) for name in kept},
            cleared=frozenset(dropped - kept),
        )
        try:
            if not update.is_empty():
                await self._queued_ok(
                    self._server.write_attributes(endpoint, path, update, wait=False)
                )
            await self._queued_ok(self._server.observe(endpoint, path, reobserve=True, wait=False))
        except Lwm2mServerError as exc:
            _log.info(
                "observation_not_started", endpoint=endpoint, path=str(path), error=exc.message
            )
            return False
        _log.debug("observation_applied", endpoint=endpoint, path=str(path))
        return True

    async def _stop(self, endpoint: str, path: LwM2mPath, written: NotificationAttributes) -> None:
        await self._server.cancel_observation(endpoint, path, active=True)
        cleared = frozenset(name for name in ATTRIBUTE_NAMES if getattr(written, name) is not None)
        if cleared:
            try:
                await self._queued_ok(
                    self._server.write_attributes(
                        endpoint, path, NotificationAttributes(cleared=cleared), wait=False
                    )
                )
            except Lwm2mServerError as exc:
                _log.info(
                    "observation_attributes_not_cleared",
                    endpoint=endpoint,
                    path=str(path),
                    error=exc.message,
                )
        _log.debug("observation_removed", endpoint=endpoint, path=str(path))

    @staticmethod
    async def _queued_ok(request: Coroutine[Any, Any, object]) -> None:
        try:
            await request
        except RequestQueuedError:
            pass  # delivered when the sleeping device wakes up, in order

    def _spawn(self, work: Coroutine[Any, Any, None]) -> None:
        task = asyncio.get_running_loop().create_task(work)
        self._tasks.add(task)
        task.add_done_callback(self._task_done)

    def _task_done(self, task: asyncio.Task[Any]) -> None:
        self._tasks.discard(task)
        if not task.cancelled() and task.exception() is not None:
            _log.error("observation_reconcile_failed", error=repr(task.exception()))

    # --- configurations (API) ------------------------------------------------------------

    async def list_observations(
        self, principal: Principal, search_criteria: str | None
    ) -> list[Observation]:
        async with self._db.session() as session:
            configs = await session.scalars(
                select(ObservationConfig)
                .where(
                    in_scope(ObservationConfig.domain_id, principal.domain_id),
                    compile_criteria(search_criteria, SEARCHABLE),
                )
                .order_by(
                    ObservationConfig.target_kind,
                    ObservationConfig.target_id,
                    ObservationConfig.lwm2m_path,
                )
            )
            return [_view(config) for config in configs]

    async def _device_target(
        self, principal: Principal, device_id: str, path_text: str
    ) -> tuple[Device, LwM2mPath, str]:
        """The device, the numeric path and its readable name for a device route."""
        async with self._db.session() as session:
            device = await get_device(session, principal, device_id)
        data_model = await device_data_model(device, self._catalog, self._server)
        path = _observed_path(path_text, data_model.models)
        return device, path, to_readable(path, data_model.models)

    async def get_for_device(
        self, principal: Principal, device_id: str, path_text: str
    ) -> Observation:
        device, path, _ = await self._device_target(principal, device_id, path_text)
        async with self._db.session() as session:
            config = await self._config(session, DEVICE, device.id, path)
        if config is None:
            raise NotFound(f"no observation of {path_text[:120]!r}", code=NOT_FOUND_CODE)
        return _view(config)

    async def set_for_device(
        self,
        principal: Principal,
        device_id: str,
        path_text: str,
        attributes: Sequence[tuple[str, str]],
    ) -> Observation:
        device, path, readable = await self._device_target(principal, device_id, path_text)
        parsed = parse_observation_attributes(attributes, path)
        config = await self._save(device.domain_id, DEVICE, device.id, path, readable, parsed)
        self._schedule(device.endpoint_name)
        return _view(config)

    async def delete_for_device(self, principal: Principal, device_id: str, path_text: str) -> None:
        device, path, _ = await self._device_target(principal, device_id, path_text)
        async with self._db.transaction() as session:
            config = await self._config(session, DEVICE, device.id, path)
            if config is None:
                raise NotFound(f"no observation of {path_text[:120]!r}", code=NOT_FOUND_CODE)
            await session.delete(config)
        self._schedule(device.endpoint_name)

    async def set_for_group(
        self,
        principal: Principal,
        group_id: str,
        path: str | LwM2mPath,
        min_period: int | None,
        max_period: int | None,
    ) -> Observation:
        """Observe ``path`` (readable text, or a numeric ``LwM2mPath``) on every member."""
        async with self._db.session() as session:
            group = await get_group(session, principal, group_id)
        models = self._catalog.registry_for(group.domain_id).with_versions({})
        lwm2m_path = path if isinstance(path, LwM2mPath) else _observed_path(path, models)
        pairs = [
            (name, str(value))
            for name, value in (("pmin", min_period), ("pmax", max_period))
            if value is not None
        ]
        parsed = parse_observation_attributes(pairs, lwm2m_path)
        readable = to_readable(lwm2m_path, models)
        config = await self._save(group.domain_id, GROUP, group.id, lwm2m_path, readable, parsed)
        async with self._db.session() as session:
            members = await session.scalars(
                select(Device.endpoint_name)
                .join(GroupMembership, GroupMembership.device_id == Device.id)
                .where(
                    or_(
                        GroupMembership.group_id == group.id,
                        GroupMembership.group_id.startswith(group.id + ".", autoescape=True),
                    )
                )
                .distinct()
            )
            for endpoint in members:
                self._schedule(endpoint)
        return _view(config)

    @staticmethod
    async def _config(
        session: Any, kind: str, target_id: str, path: LwM2mPath
    ) -> ObservationConfig | None:
        config: ObservationConfig | None = await session.scalar(
            select(ObservationConfig).where(
                ObservationConfig.target_kind == kind,
                ObservationConfig.target_id == target_id,
                ObservationConfig.lwm2m_path == str(path),
            )
        )
        return config

    async def _save(
        self,
        domain_id: str,
        kind: str,
        target_id: str,
        path: LwM2mPath,
        readable: str,
        attributes: NotificationAttributes,
    ) -> ObservationConfig:
        """Create the configuration or replace the attributes of the existing one."""
        try:
            async with self._db.transaction() as session:
                config = await self._config(session, kind, target_id, path)
                if config is None:
                    config = ObservationConfig(
                        domain_id=domain_id,
                        target_kind=kind,
                        target_id=target_id,
                        lwm2m_path=str(path),
                        path=readable,
                        attributes=_stored(attributes),
                    )
                    session.add(config)
                else:
                    config.path = readable
                    config.attributes = _stored(attributes)
        except IntegrityError:  # the same observation was created concurrently
            raise Conflict(f"observation of {readable!r} changed concurrently; retry") from None
        return config
