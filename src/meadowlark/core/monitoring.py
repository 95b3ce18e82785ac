"""Monitoring (Coiote ``deviceMonitoring``, ``monitoring`` and ``monitoringData``): which
devices and resources are sampled, the samples' ingest, and the queries over them.

What is sampled: every value a device reports (notification, Send, the answer to a read)
when monitoring is on for it: set on the device itself, else on the nearest of its
groups (a group's setting covers its sub-groups' members too). Besides, a named
monitoring configuration samples its resources on the devices of its group, from their
notifications or from reads the server sends every ``readInterval`` seconds. Object 0
(Security) is never sampled.

The decision is taken on the notification path without I/O: ``MonitoringIndex`` holds
the (small) settings in memory, and each device's id and groups once it has been seen
(loaded at its Register; values of a device not loaded yet wait for the lookup). A
change of settings reloads them on this node and, through ``Cluster.share``, on the
others; a change of a device's groups forgets what was loaded for it.
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import hashlib
import hmac
import json
import time
from collections.abc import Callable, Coroutine, Iterable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, Literal

import structlog
from sqlalchemy import delete, select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncSession

from meadowlark.auth.principal import Principal
from meadowlark.config import MonitoringSettings
from meadowlark.core.devices import get_device
from meadowlark.core.domains import in_scope
from meadowlark.core.errors import Conflict, InvalidInput, NotFound, Unavailable
from meadowlark.core.groups import get_group
from meadowlark.lwm2m.path import InvalidPathError, LwM2mPath
from meadowlark.server.errors import Lwm2mServerError
from meadowlark.server.ports import ValueCache
from meadowlark.server.registration import Registration
from meadowlark.server.service import LwM2mServer, ServerListener
from meadowlark.server.values import CachedValue
from meadowlark.store.coiote_models import GroupMembership
from meadowlark.store.db import Database, rows_affected
from meadowlark.store.device_models import Device
from meadowlark.store.monitoring import (
    Sample,
    SampleRetention,
    SampleWindow,
    SampleWriter,
    epoch_ms,
    from_epoch_ms,
    numeric_aggregates_query,
    samples_after,
    textual_aggregates_query,
)
from meadowlark.store.monitoring_models import (
    MonitoringAlias,
    MonitoringConfiguration,
    MonitoringDevice,
    MonitoringGroup,
)

_log = structlog.get_logger("meadowlark.monitoring")

MONITORING_TOPIC = "monitoring"
"""Cluster topic of monitoring changes (key: a device id whose groups changed, or None
when the settings changed)."""
BAD_PAYLOAD_CODE = 4000
BAD_LIMIT_CODE = 4001
BAD_URL_CODE = 4003
NO_PERMISSION_CODE = 4030
OBJECT_RANGE_CODE = 4042
MONITORING_OFF_CODE = 5031
MAX_LIMIT = 2048
MAX_BUCKETS = 10_000
NOTIFICATIONS = "notifications"
PERIODIC_READS = "periodicReads"
SOURCES = (NOTIFICATIONS, PERIODIC_READS)
ALL = "*"
"""Selection of a device whose every reported value is sampled."""


# --- input ------------------------------------------------------------------------------


def parse_monitored_url(url: str) -> str:
    """A numeric resource URL (``/3303/0/5700`` or with a resource instance) as stored.

    400 code 4003 if it is not one, 4042 if its object is outside 1..65534."""
    try:
        path = LwM2mPath.parse(url)
    except InvalidPathError as exc:
        raise InvalidInput(f"invalid LwM2M URL {url[:120]!r}: {exc}", code=BAD_URL_CODE) from None
    if path.depth < 3:
        raise InvalidInput(
            f"invalid LwM2M URL {url[:120]!r}: name a resource (/object/instance/resource)",
            code=BAD_URL_CODE,
        )
    assert path.object_id is not None
    if not 1 <= path.object_id <= 65534:
        raise InvalidInput(
            f"object {path.object_id} cannot be monitored (objects 1..65534)",
            code=OBJECT_RANGE_CODE,
        )
    return str(path)


def parse_time(text: str, name: str) -> int:
    """Epoch milliseconds from ``text``: a number of milliseconds or an ISO 8601 time."""
    stripped = text.strip()
    try:
        if stripped.lstrip("-").isdigit():
            value = int(stripped)
        else:
            parsed = datetime.fromisoformat(stripped.replace("Z", "+00:00"))
            if parsed.tzinfo is None:
                parsed = parsed.replace(tzinfo=UTC)
            value = epoch_ms(parsed)
    except (ValueError, OverflowError):
        raise InvalidInput(
            f"{name}: give epoch milliseconds or an ISO 8601 time", code=BAD_PAYLOAD_CODE
        ) from None
    if not 0 <= value < 2**53:
        raise InvalidInput(f"{name} is out of range", code=BAD_PAYLOAD_CODE)
    return value


def time_range(start: str | None, end: str | None) -> tuple[int, int]:
    """(exclusive start, inclusive end) in epoch ms; the end defaults to now."""
    if start is None or not start.strip():
        raise InvalidInput("timeRangeStart is required", code=BAD_PAYLOAD_CODE)
    start_ms = parse_time(start, "timeRangeStart")
    end_ms = int(time.time() * 1000) if end is None else parse_time(end, "timeRangeEnd")
    if end_ms < start_ms:
        raise InvalidInput("timeRangeEnd is before timeRangeStart", code=BAD_PAYLOAD_CODE)
    return start_ms, end_ms


def check_limit(limit: int) -> int:
    if not 1 <= limit <= MAX_LIMIT:
        raise InvalidInput(f"limit must be 1..{MAX_LIMIT}", code=BAD_LIMIT_CODE)
    return limit


def iso_ms(at_ms: int) -> str:
    return from_epoch_ms(at_ms).isoformat(timespec="milliseconds").replace("+00:00", "Z")


class Cursors:
    """Opaque, signed page cursors of ``monitoringData/samples``: a client can neither
    forge one nor move it to another device or configuration."""

    def __init__(self, signing_key: str) -> None:
        self._key = hashlib.sha256(
            b"meadowlark monitoring cursor\0" + signing_key.encode()
        ).digest()

    def encode(self, state: Mapping[str, Any]) -> str:
        body = json.dumps(state, separators=(",", ":"), sort_keys=True).encode()
        mac = hmac.new(self._key, body, hashlib.sha256).digest()[:16]
        return base64.urlsafe_b64encode(mac + body).decode().rstrip("=")

    def decode(self, cursor: str) -> dict[str, Any]:
        try:
            raw = base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4))
            mac, body = raw[:16], raw[16:]
            expected = hmac.new(self._key, body, hashlib.sha256).digest()[:16]
            if not hmac.compare_digest(mac, expected):
                raise ValueError("bad signature")
            state = json.loads(body)
            if not isinstance(state, dict):
                raise ValueError("not an object")
        except (ValueError, binascii.Error):
            raise InvalidInput("cursor is invalid", code=BAD_PAYLOAD_CODE) from None
        return state


# --- the in-memory decision -------------------------------------------------------------


def group_lineage(group_ids: Iterable[str]) -> set[str]:
    """The groups and every group above them (``a.b.c`` is inside ``a.b`` and ``a``)."""
    lineage: set[str] = set()
    for group_id in group_ids:
        segments = group_id.split(".")
        lineage.update(".".join(segments[:depth]) for depth in range(1, len(segments) + 1))
    return lineage


@dataclass(frozen=True, slots=True)
class Settings:
    """Every monitoring setting, as loaded from the store."""

    devices: Mapping[str, bool]
    groups: Mapping[str, bool]
    configured: Mapping[str, frozenset[str]]
    """Group id -> resource paths its named configurations sample."""
    periodic_reads: bool = False
    """Whether some named configuration samples by periodic reads."""

    @property
    def any(self) -> bool:
        return any(self.devices.values()) or any(self.groups.values()) or bool(self.configured)

    def selection(self, device_id: str, groups: Iterable[str]) -> str | frozenset[str] | None:
        """``ALL``, the paths to sample, or None for a device in ``groups``."""
        lineage = group_lineage(groups)
        enabled = self.devices.get(device_id)
        if enabled is None:
            nearest = max((g for g in lineage if g in self.groups), key=len, default=None)
            enabled = self.groups[nearest] if nearest is not None else False
        if enabled:
            return ALL
        paths = frozenset().union(*(self.configured.get(g, frozenset()) for g in lineage))
        return paths or None


NO_SETTINGS = Settings({}, {}, {})


async def load_settings(session: AsyncSession) -> Settings:
    devices: dict[str, bool] = {
        device_id: enabled
        for device_id, enabled in await session.execute(
            select(MonitoringDevice.device_id, MonitoringDevice.enabled)
        )
    }
    groups: dict[str, bool] = {
        group_id: enabled
        for group_id, enabled in await session.execute(
            select(MonitoringGroup.group_id, MonitoringGroup.enabled)
        )
    }
    configured: dict[str, set[str]] = {}
    periodic_reads = False
    rows = await session.execute(
        select(
            MonitoringConfiguration.group_id,
            MonitoringConfiguration.resources,
            MonitoringConfiguration.source,
        )
    )
    for group_id, resources, source in rows:
        configured.setdefault(group_id, set()).update(resources)
        periodic_reads = periodic_reads or source == PERIODIC_READS
    return Settings(
        devices, groups, {g: frozenset(p) for g, p in configured.items()}, periodic_reads
    )


class MonitoringIndex(ServerListener):
    """Which values of which device to sample, answered from memory."""

    def __init__(self, db: Database) -> None:
        self._db = db
        self.settings = NO_SETTINGS
        self.active = False
        """Whether anything at all is monitored (checked first on the hot path)."""
        self._devices: dict[str, tuple[str, tuple[str, ...]]] = {}
        """Endpoint -> (device id, direct groups), loaded at Register or first values."""
        self._selections: dict[str, tuple[str, str | frozenset[str]] | None] = {}
        self._waiting: dict[str, list[Mapping[LwM2mPath, CachedValue]]] = {}
        self._lookups: set[asyncio.Task[None]] = set()
        self._reload: asyncio.Task[None] | None = None
        self._dirty = False
        self.deliver: Callable[[str, Mapping[LwM2mPath, CachedValue]], None] = lambda *_: None
        self._listeners: list[Callable[[Any], None]] = []

    async def load(self) -> None:
        async with self._db.session() as session:
            self.settings = await load_settings(session)
        self.active = self.settings.any
        self._selections.clear()

    # cluster: ``Cluster.share(MONITORING_TOPIC, index.on_local_change, index.apply)``
    def on_local_change(self, listener: Callable[[Any], None]) -> None:
        self._listeners.append(listener)

    def apply(self, device_id: str | None) -> None:
        """A change announced by another node (or made here): forget what it affects."""
        if device_id is None:
            self._schedule_reload()
            return
        for endpoint, (known_id, _) in list(self._devices.items()):
            if known_id == device_id:
                del self._devices[endpoint]
                self._selections.pop(endpoint, None)

    def changed(self, device_id: str | None = None) -> None:
        """Settings (``None``) or one device's groups changed here: apply and announce."""
        self.apply(device_id)
        for listener in self._listeners:
            listener(device_id)

    def _schedule_reload(self) -> None:
        self._dirty = True
        if self._reload is None or self._reload.done():
            self._reload = asyncio.get_running_loop().create_task(self._reload_while_dirty())

    async def _reload_while_dirty(self) -> None:
        """Reload until no change came in meanwhile (a reload may have read the store
        before the latest change was committed)."""
        while self._dirty:
            self._dirty = False
            await self.load()

    async def settled(self) -> None:
        """Wait for a reload under way (tests, and the REST calls that changed settings)."""
        if self._reload is not None:
            await asyncio.gather(self._reload, return_exceptions=True)

    def selection(self, endpoint: str) -> tuple[str, str | frozenset[str]] | None | Literal[False]:
        """(device id, selection), None (not sampled) or False (not known yet)."""
        if endpoint in self._selections:
            return self._selections[endpoint]
        known = self._devices.get(endpoint)
        if known is None:
            return False
        chosen = self.settings.selection(*known)
        found = None if chosen is None else (known[0], chosen)
        self._selections[endpoint] = found
        return found

    def wait_for(self, endpoint: str, values: Mapping[LwM2mPath, CachedValue]) -> None:
        waiting = self._waiting.get(endpoint)
        if waiting is not None:
            waiting.append(values)
            return
        self._waiting[endpoint] = [values]
        self._spawn(self._look_up(endpoint))

    def on_registered(self, registration: Registration, replaced: Registration | None) -> None:
        endpoint = registration.endpoint
        if endpoint not in self._devices and endpoint not in self._waiting and self.active:
            self._waiting[endpoint] = []
            self._spawn(self._look_up(endpoint))

    async def _look_up(self, endpoint: str) -> None:
        try:
            async with self._db.session() as session:
                rows = (
                    await session.execute(
                        select(Device.id, GroupMembership.group_id)
                        .outerjoin(GroupMembership, GroupMembership.device_id == Device.id)
                        .where(Device.endpoint_name == endpoint)
                    )
                ).all()
            if rows:
                groups = tuple(group for _, group in rows if group is not None)
                self._devices[endpoint] = (rows[0][0], groups)
                self._selections.pop(endpoint, None)
            else:  # no such device (any more): not sampled, until the next reload
                self._selections[endpoint] = None
        finally:
            waiting = self._waiting.pop(endpoint, [])
            if endpoint in self._devices:
                for values in waiting:
                    self.deliver(endpoint, values)

    def _spawn(self, work: Coroutine[Any, Any, None]) -> None:
        task = asyncio.get_running_loop().create_task(work)
        self._lookups.add(task)
        task.add_done_callback(self._lookups.discard)

    async def stop(self) -> None:
        for task in [*self._lookups, *([self._reload] if self._reload else [])]:
            task.cancel()
        await asyncio.gather(*self._lookups, return_exceptions=True)


class MonitoredValueCache:
    """A ``ValueCache`` that also hands monitored values to the sample writer."""

    def __init__(self, inner: ValueCache, index: MonitoringIndex, writer: SampleWriter) -> None:
        self._inner = inner
        self._index = index
        self._writer = writer
        index.deliver = self._sample

    def put(self, endpoint: str, values: Mapping[LwM2mPath, CachedValue]) -> None:
        self._inner.put(endpoint, values)
        if not self._index.active:
            return
        chosen = self._index.selection(endpoint)
        if chosen is False:
            self._index.wait_for(endpoint, values)
        elif chosen is not None:
            self._write(chosen, values)

    async def get(
        self, endpoint: str, prefix: LwM2mPath = LwM2mPath()
    ) -> dict[LwM2mPath, CachedValue]:
        return await self._inner.get(endpoint, prefix)

    def _sample(self, endpoint: str, values: Mapping[LwM2mPath, CachedValue]) -> None:
        """Values that waited for the device's lookup."""
        chosen = self._index.selection(endpoint)
        if chosen is not False and chosen is not None:
            self._write(chosen, values)

    def _write(
        self, chosen: tuple[str, str | frozenset[str]], values: Mapping[LwM2mPath, CachedValue]
    ) -> None:
        device_id, selection = chosen
        if selection is ALL:
            wanted = {p: v for p, v in values.items() if p.object_id != 0}
        else:
            wanted = {p: v for p, v in values.items() if str(p) in selection}
        if wanted:
            self._writer.add(device_id, wanted)


# --- the service ------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class DataPage:
    device_id: str
    url: str
    alias: str | None
    samples: list[Sample]
    has_next: bool


@dataclass(frozen=True, slots=True)
class SamplesPage:
    samples: list[Sample]
    cursor: str | None


@dataclass(frozen=True, slots=True)
class NewConfiguration:
    name: str
    group_id: str
    resources: list[str]
    source: str
    read_interval: int | None
    description: str


class Monitoring:
    """Monitoring settings, aliases, named configurations, the sample queries, and the
    background duties: sample writes, retention, periodic reads."""

    def __init__(
        self,
        db: Database,
        options: MonitoringSettings,
        signing_key: str,
    ) -> None:
        self._db = db
        self._options = options
        self.index = MonitoringIndex(db)
        self.window = SampleWindow(options.retention_days, options.partitions_ahead)
        self.writer = SampleWriter(
            db,
            batch_size=options.batch_size,
            flush_interval=options.flush_interval,
            max_buffered=options.max_buffered,
            window=self.window,
        )
        self.retention = SampleRetention(db, self.window, options.delete_batch)
        self._cursors = Cursors(signing_key)
        self._server: LwM2mServer | None = None
        self._tasks: list[asyncio.Task[None]] = []
        self._reads: set[asyncio.Task[None]] = set()
        self._last_read: dict[tuple[str, str], float] = {}

    def values(self, inner: ValueCache) -> MonitoredValueCache:
        """``inner`` with monitored values sampled on their way in."""
        return MonitoredValueCache(inner, self.index, self.writer)

    def attach(self, server: LwM2mServer) -> None:
        self._server = server
        server.add_listener(self.index)

    async def start(self) -> None:
        if not self._db.is_sqlite:  # the partitions exist before any write
            await self.retention.ensure_partitions(*self.window.days())
        await self.index.load()
        self.writer.start()
        loop = asyncio.get_running_loop()
        self._tasks = [
            loop.create_task(self._retain(), name="monitoring-retention"),
            loop.create_task(self._read_periodically(), name="monitoring-reads"),
        ]

    async def stop(self) -> None:
        for task in [*self._tasks, *self._reads]:
            task.cancel()
        await asyncio.gather(*self._tasks, *self._reads, return_exceptions=True)
        self._tasks = []
        await self.index.stop()
        await self.writer.stop()

    async def _retain(self) -> None:
        """Retention at start (in the background: deleting a backlog on SQLite takes a
        while) and every ``retention_interval`` seconds."""
        while True:
            try:
                await self.retention.run()
            except Exception:  # retried at the next round
                _log.exception("monitoring_retention_failed")
            await asyncio.sleep(self._options.retention_interval)

    # --- periodic reads -------------------------------------------------------------------

    async def _read_periodically(self) -> None:
        while True:
            await asyncio.sleep(1.0)
            try:
                await self.read_due()
            except Exception:  # retried at the next round
                _log.exception("monitoring_reads_failed")

    async def read_due(self, now: float | None = None) -> int:
        """Send the reads that are due (at most a second's worth of the rate); how many."""
        server = self._server
        if server is None or not self.index.settings.periodic_reads:
            return 0
        now = time.monotonic() if now is None else now
        budget = max(1, int(self._options.max_periodic_reads_per_second))
        async with self._db.session() as session:
            configurations = (
                await session.scalars(
                    select(MonitoringConfiguration).where(
                        MonitoringConfiguration.source == PERIODIC_READS
                    )
                )
            ).all()
            sent = 0
            for configuration in configurations:
                endpoints = await _registered_members(session, configuration.group_id)
                for endpoint in endpoints:
                    for url in configuration.resources:
                        key = (endpoint, url)
                        interval = configuration.read_interval or self._options.min_read_interval
                        if now - self._last_read.get(key, -interval) < interval:
                            continue
                        if sent >= budget:
                            return sent
                        self._last_read[key] = now
                        self._spawn_read(server, endpoint, url)
                        sent += 1
        return sent

    def _spawn_read(self, server: LwM2mServer, endpoint: str, url: str) -> None:
        async def read() -> None:
            registration = await server.get_registration(endpoint)
            if registration is None:
                return
            remote = server.downlink.remote
            if remote is not None and not await remote.holds(registration):
                return  # the node holding the device reads it
            try:
                await server.downlink.read(endpoint, LwM2mPath.parse(url), wait=False)
            except Lwm2mServerError as exc:  # queued for a sleeping device, or failed
                _log.debug("monitoring_read", endpoint=endpoint, url=url, outcome=str(exc))

        task = asyncio.get_running_loop().create_task(read())
        self._reads.add(task)
        task.add_done_callback(self._reads.discard)

    # --- deviceMonitoring -----------------------------------------------------------------

    async def _changed(self) -> None:
        self.index.changed(None)
        await self.index.settled()

    async def set_device(self, principal: Principal, device_id: str, enabled: bool) -> None:
        async with self._db.transaction() as session:
            device = await get_device(session, principal, device_id)
            row = await session.get(MonitoringDevice, device.id)
            if row is None:
                session.add(MonitoringDevice(device_id=device.id, enabled=enabled))
            else:
                row.enabled = enabled
        await self._changed()

    async def set_group(self, principal: Principal, group_id: str, enabled: bool) -> None:
        async with self._db.transaction() as session:
            group = await get_group(session, principal, group_id)
            row = await session.get(MonitoringGroup, group.id)
            if row is None:
                session.add(MonitoringGroup(group_id=group.id, enabled=enabled))
            else:
                row.enabled = enabled
        await self._changed()

    async def device_enabled(self, principal: Principal, device_id: str) -> bool:
        async with self._db.session() as session:
            device = await get_device(session, principal, device_id)
            return await _selection(session, device.id) == ALL

    async def set_alias(self, principal: Principal, device_id: str, url: str, alias: str) -> None:
        path = parse_monitored_url(url)
        alias = alias.strip()
        if not alias or len(alias) > 255 or "/" in alias:
            raise InvalidInput("alias must be 1..255 characters without '/'", code=BAD_PAYLOAD_CODE)
        try:
            async with self._db.transaction() as session:
                device = await get_device(session, principal, device_id)
                taken = await session.scalar(
                    select(MonitoringAlias.lwm2m_url).where(
                        MonitoringAlias.device_id == device.id, MonitoringAlias.alias == alias
                    )
                )
                if taken is not None and taken != path:
                    raise Conflict(f"alias {alias!r} already names {taken}")
                row = await session.get(MonitoringAlias, (device.id, path))
                if row is None:
                    session.add(MonitoringAlias(device_id=device.id, lwm2m_url=path, alias=alias))
                else:
                    row.alias = alias
        except IntegrityError:
            raise Conflict(f"alias {alias!r} is already in use") from None

    async def aliases(self, principal: Principal, device_id: str) -> list[tuple[str, str]]:
        async with self._db.session() as session:
            device = await get_device(session, principal, device_id)
            rows = await session.execute(
                select(MonitoringAlias.lwm2m_url, MonitoringAlias.alias)
                .where(MonitoringAlias.device_id == device.id)
                .order_by(MonitoringAlias.lwm2m_url)
            )
            return [(url, alias) for url, alias in rows]

    async def delete_alias(self, principal: Principal, device_id: str, url: str) -> None:
        path = parse_monitored_url(url)
        async with self._db.transaction() as session:
            device = await get_device(session, principal, device_id)
            result = await session.execute(
                delete(MonitoringAlias).where(
                    MonitoringAlias.device_id == device.id, MonitoringAlias.lwm2m_url == path
                )
            )
            if not rows_affected(result):
                raise NotFound(f"no alias for {path}", code=4041)

    async def device_data(
        self,
        principal: Principal,
        device_id: str,
        *,
        url: str | None = None,
        alias: str | None = None,
        start: str | None,
        end: str | None,
        limit: int,
    ) -> DataPage:
        """Samples of one resource of a device, by URL or by alias, oldest first."""
        check_limit(limit)
        start_ms, end_ms = time_range(start, end)
        path = parse_monitored_url(url) if url is not None else None
        async with self._db.session() as session:
            device = await get_device(session, principal, device_id)
            if path is None:
                path = await session.scalar(
                    select(MonitoringAlias.lwm2m_url).where(
                        MonitoringAlias.device_id == device.id, MonitoringAlias.alias == alias
                    )
                )
                if path is None:
                    raise NotFound(f"no alias {str(alias)[:255]!r} on this device", code=4041)
            else:
                alias = await session.scalar(
                    select(MonitoringAlias.alias).where(
                        MonitoringAlias.device_id == device.id, MonitoringAlias.lwm2m_url == path
                    )
                )
            selection = await _selection(session, device.id)
            if selection is None or (selection != ALL and path not in selection):
                raise Unavailable(
                    f"monitoring is off for device {device.id!r}", code=MONITORING_OFF_CODE
                )
            samples = await samples_after(
                session, device.id, [path], (start_ms, None), end_ms, limit + 1
            )
        return DataPage(device.id, path, alias, samples[:limit], len(samples) > limit)

    # --- named configurations -------------------------------------------------------------

    def validate(self, body: NewConfiguration) -> NewConfiguration:
        name = body.name.strip()
        if not name or len(name) > 255 or "/" in name:
            raise InvalidInput("name must be 1..255 characters without '/'", code=BAD_PAYLOAD_CODE)
        if not body.resources or len(body.resources) > 100:
            raise InvalidInput("resources: give 1..100 LwM2M URLs", code=BAD_PAYLOAD_CODE)
        resources = list(dict.fromkeys(parse_monitored_url(url) for url in body.resources))
        if body.source not in SOURCES:
            raise InvalidInput(f"source must be one of {', '.join(SOURCES)}", code=BAD_PAYLOAD_CODE)
        interval = body.read_interval
        if body.source == PERIODIC_READS:
            if interval is None or not self._options.min_read_interval <= interval <= 7 * 86400:
                raise InvalidInput(
                    f"readInterval must be {self._options.min_read_interval}..604800 seconds "
                    "for periodic reads",
                    code=BAD_PAYLOAD_CODE,
                )
        elif interval is not None:
            raise InvalidInput("readInterval is for periodic reads only", code=BAD_PAYLOAD_CODE)
        if len(body.description) > 4096:
            raise InvalidInput("description is too long", code=BAD_PAYLOAD_CODE)
        return NewConfiguration(
            name, body.group_id, resources, body.source, interval, body.description
        )

    async def configurations(self, principal: Principal) -> list[MonitoringConfiguration]:
        async with self._db.session() as session:
            rows = await session.scalars(
                select(MonitoringConfiguration)
                .where(in_scope(MonitoringConfiguration.domain_id, principal.domain_id))
                .order_by(MonitoringConfiguration.name)
            )
            return list(rows.all())

    async def configuration(self, principal: Principal, name: str) -> MonitoringConfiguration:
        async with self._db.session() as session:
            return await _configuration(session, principal, name)

    async def create_configuration(
        self, principal: Principal, body: NewConfiguration
    ) -> MonitoringConfiguration:
        wanted = self.validate(body)
        try:
            async with self._db.transaction() as session:
                group = await get_group(session, principal, wanted.group_id)
                if await session.get(MonitoringConfiguration, wanted.name) is not None:
                    raise Conflict(f"monitoring {wanted.name!r} already exists")
                row = MonitoringConfiguration(
                    name=wanted.name,
                    domain_id=group.domain_id,
                    group_id=group.id,
                    resources=wanted.resources,
                    source=wanted.source,
                    read_interval=wanted.read_interval,
                    description=wanted.description,
                )
                session.add(row)
        except IntegrityError:
            raise Conflict(f"monitoring {wanted.name!r} already exists") from None
        await self._changed()
        return row

    async def update_configuration(
        self, principal: Principal, name: str, body: NewConfiguration
    ) -> MonitoringConfiguration:
        wanted = self.validate(NewConfiguration(name, *_fields_after_name(body)))
        if body.name.strip() and body.name.strip() != name:
            raise InvalidInput("a monitoring cannot be renamed", code=BAD_PAYLOAD_CODE)
        async with self._db.transaction() as session:
            row = await _configuration(session, principal, name)
            group = await get_group(session, principal, wanted.group_id)
            row.domain_id = group.domain_id
            row.group_id = group.id
            row.resources = wanted.resources
            row.source = wanted.source
            row.read_interval = wanted.read_interval
            row.description = wanted.description
        await self._changed()
        return row

    async def delete_configuration(self, principal: Principal, name: str) -> None:
        async with self._db.transaction() as session:
            row = await _configuration(session, principal, name)
            await session.delete(row)
        await self._changed()

    # --- monitoringData -------------------------------------------------------------------

    async def samples(
        self,
        principal: Principal,
        name: str,
        device_id: str,
        start: str | None,
        end: str | None,
        limit: int,
    ) -> SamplesPage:
        check_limit(limit)
        start_ms, end_ms = time_range(start, end)
        state = {"n": name, "d": device_id, "t": start_ms, "p": None, "e": end_ms, "l": limit}
        return await self._samples_page(principal, state)

    async def more_samples(self, principal: Principal, cursor: str) -> SamplesPage:
        state = self._cursors.decode(cursor)
        shape = {"n": str, "d": str, "t": int, "p": str, "e": int, "l": int}
        if set(state) != set(shape) or not all(
            type(state[key]) is kind for key, kind in shape.items()
        ):
            raise InvalidInput("cursor is invalid", code=BAD_PAYLOAD_CODE)
        return await self._samples_page(principal, state)

    async def _samples_page(self, principal: Principal, state: dict[str, Any]) -> SamplesPage:
        async with self._db.session() as session:
            configuration = await _configuration(session, principal, state["n"])
            device = await get_device(session, principal, state["d"])
            await _require_member(session, device.id, configuration.group_id)
            limit = state["l"]
            found = await samples_after(
                session,
                device.id,
                configuration.resources,
                (state["t"], state["p"]),
                state["e"],
                limit + 1,
            )
        page = found[:limit]
        cursor = None
        if len(found) > limit:
            last = page[-1]
            cursor = self._cursors.encode({**state, "t": last.at_ms, "p": last.path})
        return SamplesPage(page, cursor)

    async def aggregates(
        self,
        principal: Principal,
        kind: str,
        name: str,
        group_id: str,
        resource: str,
        start: str | None,
        end: str | None,
        interval: int,
    ) -> list[tuple[int, int, Any]]:
        """Per bucket of ``interval`` seconds: (bucket start ms, bucket end ms, figures)."""
        start_ms, end_ms = time_range(start, end)
        path = parse_monitored_url(resource)
        if interval < 1:
            raise InvalidInput("interval must be at least 1 second", code=BAD_PAYLOAD_CODE)
        interval_ms = interval * 1000
        if (end_ms - start_ms) // interval_ms > MAX_BUCKETS:
            raise InvalidInput(
                f"at most {MAX_BUCKETS} intervals per query; widen the interval",
                code=BAD_PAYLOAD_CODE,
            )
        async with self._db.session() as session:
            configuration = await _configuration(session, principal, name)
            group = await get_group(session, principal, group_id)
            inside = group.id == configuration.group_id or group.id.startswith(
                configuration.group_id + "."
            )
            if not inside:
                raise InvalidInput(
                    f"group {group.id!r} is not in the monitoring's group", code=BAD_PAYLOAD_CODE
                )
            if path not in configuration.resources:
                raise NotFound(f"the monitoring does not sample {path}", code=4041)
            query = (numeric_aggregates_query if kind == "numerical" else textual_aggregates_query)(
                group.id, path, start_ms, end_ms, interval_ms
            )
            rows = (await session.execute(query)).all()
        results: list[tuple[int, int, Any]] = []
        if kind == "numerical":
            for bucket, low, high, mean, count in rows:
                first = start_ms + int(bucket) * interval_ms
                results.append((first, first + interval_ms, (low, high, float(mean), count)))
            return results
        counts: dict[int, dict[str, int]] = {}
        for bucket, value, count in rows:
            counts.setdefault(int(bucket), {})[value] = count
        for bucket, values in counts.items():
            first = start_ms + bucket * interval_ms
            results.append((first, first + interval_ms, values))
        return results


def _fields_after_name(body: NewConfiguration) -> tuple[Any, ...]:
    return (body.group_id, body.resources, body.source, body.read_interval, body.description)


async def _configuration(
    session: AsyncSession, principal: Principal, name: str
) -> MonitoringConfiguration:
    row = await session.scalar(
        select(MonitoringConfiguration).where(
            MonitoringConfiguration.name == name,
            in_scope(MonitoringConfiguration.domain_id, principal.domain_id),
        )
    )
    if row is None:
        raise NotFound(f"monitoring {name[:255]!r} not found", code=4041)
    return row


async def _device_groups(session: AsyncSession, device_id: str) -> list[str]:
    return list(
        (
            await session.scalars(
                select(GroupMembership.group_id).where(GroupMembership.device_id == device_id)
            )
        ).all()
    )


async def _selection(session: AsyncSession, device_id: str) -> str | frozenset[str] | None:
    settings = await load_settings(session)
    return settings.selection(device_id, await _device_groups(session, device_id))


async def _require_member(session: AsyncSession, device_id: str, group_id: str) -> None:
    if group_id not in group_lineage(await _device_groups(session, device_id)):
        raise NotFound(f"device {device_id!r} is not in the monitoring's group", code=4041)


async def _registered_members(session: AsyncSession, group_id: str) -> list[str]:
    rows = await session.scalars(
        select(Device.endpoint_name)
        .join(GroupMembership, GroupMembership.device_id == Device.id)
        .where(
            (GroupMembership.group_id == group_id)
            | GroupMembership.group_id.startswith(group_id + ".", autoescape=True),
            Device.registration_id.is_not(None),
        )
        .distinct()
        .order_by(Device.endpoint_name)
    )
    return list(rows.all())
