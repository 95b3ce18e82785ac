"""SQL repositories behind the LwM2M server: devices, value cache, request queue.

High-rate writes (values from notifications, last-contact times) go through one
``BatchWriter`` that coalesces them per key and flushes every ~100 ms in a single
transaction, so SQLite keeps up with thousands of notifications per second.
Registers, Updates and De-registers must be durable before they are answered: the
``SqlDeviceRegistry`` commits them in groups (many per transaction, each caller waiting
for its own group's commit).
"""

from __future__ import annotations

import asyncio
import sys
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from itertools import chain
from typing import Any, Protocol

import structlog
from sqlalchemy import bindparam, insert, select, update
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncSession

from meadowlark.lwm2m.node import ResourceType
from meadowlark.lwm2m.path import ROOT, LwM2mPath
from meadowlark.server.operations import Operation, QueuedRequest, QueuedRequestState
from meadowlark.server.registration import Registration, registered_links_text
from meadowlark.server.security import Admission, DeviceSecurity, check_peer_security
from meadowlark.server.values import CachedValue, value_from_json, value_to_json
from meadowlark.store.db import Database
from meadowlark.store.device_models import Device, QueuedRequestRow, ResourceValue
from meadowlark.store.models import AuditEvent

_log = structlog.get_logger("meadowlark.lwm2m")

DEVICE_INFO_COLUMNS = {
    LwM2mPath(3, 0, 0): "manufacturer",
    LwM2mPath(3, 0, 1): "model_name",
    LwM2mPath(3, 0, 2): "serial_number",
    LwM2mPath(3, 0, 3): "firmware_version",
    LwM2mPath(3, 0, 18): "hardware_version",
    LwM2mPath(3, 0, 19): "software_version",
}
"""Device object (/3) resources copied onto the device record (Core Appendix E.4)."""

_DEVICES = Device.__table__
_VALUES = ResourceValue.__table__
IDS_BY_ENDPOINT = select(_DEVICES.c.endpoint_name, _DEVICES.c.id).where(
    _DEVICES.c.endpoint_name.in_(bindparam("endpoints", expanding=True))
)
UPDATE_CONTACT = (
    _DEVICES.update()
    .where(_DEVICES.c.id == bindparam("device_key"))
    .values(last_contact_time=bindparam("contact_at"))
)
"""Hot statements are built once (SQLAlchemy caches their compiled form); the plan test
(``tests/integration/store/test_hot_query_plans.py``) proves each uses an index."""
REGISTRATION_REFUSED_EVENT = "device.registration_refused"
"""Audit event of a Register refused for the device's security mode (no secrets in it)."""


class DeviceIds:
    """Endpoint name -> device id, remembered after the first lookup."""

    def __init__(self, db: Database) -> None:
        self._db = db
        self._ids: dict[str, str] = {}

    def remember(self, endpoint: str, device_id: str) -> None:
        self._ids[endpoint] = device_id

    def known(self, endpoint: str) -> str | None:
        return self._ids.get(endpoint)

    def forget(self, endpoint: str) -> None:
        """The device was deleted: later writes for ``endpoint`` look its id up again."""
        self._ids.pop(endpoint, None)

    async def resolve(self, session: AsyncSession, endpoints: Sequence[str]) -> dict[str, str]:
        missing = [endpoint for endpoint in endpoints if endpoint not in self._ids]
        if missing:
            rows = await session.execute(IDS_BY_ENDPOINT, {"endpoints": missing})
            for endpoint, device_id in rows:
                self._ids[endpoint] = device_id
        return {endpoint: self._ids[endpoint] for endpoint in endpoints if endpoint in self._ids}

    async def require(self, endpoint: str) -> str:
        known = self._ids.get(endpoint)
        if known is not None:
            return known
        async with self._db.session() as session:
            resolved = await self.resolve(session, [endpoint])
        if endpoint not in resolved:
            raise LookupError(f"no device with endpoint name {endpoint!r}")
        return resolved[endpoint]


def _no_processing(value: Any) -> Any:
    return value


class _DriverStatement:
    """A Core statement compiled once for the engine's dialect and run as driver SQL.

    Through ``session.execute`` SQLAlchemy rebuilt the parameters of every row, which
    cost more than the database's own work (18% of the server's CPU in a notification
    flood). The columns' own bind processors (JSON, UTC datetimes) still convert the
    values, so the rows are the ones the engine would write.

    On PostgreSQL the rows go in one executemany. On SQLite they go ``_SQLITE_ROWS`` to a
    statement, given ``many``: the statement's text around one row's ``(?, ...)``
    placeholders (the first ``VALUES`` row when ``many`` is True). ``executemany``
    would run one step per row, and the sqlite3 module releases and retakes the GIL at
    each: the event loop then waited for the writer's thread at every row.

    ``names``: the statement's parameters in the order ``row`` takes them."""

    def __init__(
        self,
        statement: Any,
        dialect: Any,
        names: tuple[str, ...],
        many: bool | tuple[str, str] = False,
    ) -> None:
        compiled = statement.compile(dialect=dialect)
        self._sql = str(compiled)
        self._names = names
        self._positional = compiled.positiontup is not None
        if self._positional and tuple(compiled.positiontup) != names:
            raise RuntimeError(f"unexpected parameter order {compiled.positiontup}")
        self._processors = tuple(
            compiled.binds[name].type.dialect_impl(dialect).bind_processor(dialect)
            or _no_processing
            for name in names
        )
        self._placeholders = "(" + ", ".join("?" * len(names)) + ")"
        self._many: tuple[str, str] | None = None
        if dialect.name == "sqlite" and many is True:
            head, found, tail = self._sql.partition(" VALUES " + self._placeholders)
            if not found:
                raise RuntimeError(f"no VALUES row in {self._sql}")
            self._many = (head + " VALUES ", tail)
        elif dialect.name == "sqlite" and isinstance(many, tuple):
            self._many = many

    def row(self, *values: Any) -> Any:
        row = tuple(process(value) for process, value in zip(self._processors, values, strict=True))
        return row if self._positional else dict(zip(self._names, row, strict=True))

    async def run(self, session: AsyncSession, rows: list[Any]) -> None:
        connection = await session.connection()
        if self._many is None:
            await connection.exec_driver_sql(self._sql, rows)
            return
        head, tail = self._many
        for start in range(0, len(rows), _SQLITE_ROWS):
            chunk = rows[start : start + _SQLITE_ROWS]
            sql = head + ", ".join([self._placeholders] * len(chunk)) + tail
            await connection.exec_driver_sql(sql, tuple(chain.from_iterable(chunk)))


_SQLITE_CONTACTS = (
    "WITH contact(at, id) AS (VALUES ",
    ") UPDATE devices SET last_contact_time = "
    "(SELECT at FROM contact WHERE contact.id = devices.id) "
    "WHERE devices.id IN (SELECT id FROM contact)",
)
"""``UPDATE_CONTACT`` for many rows at once (same parameters, same order)."""
_SQLITE_ROWS = 199
"""Rows per multi-row statement on SQLite: under 999 parameters, the limit of SQLite
before 3.32."""


class BatchWriter:
    """Coalesces value and last-contact writes and flushes them together.

    Latency is bounded: a write waits at most ``interval`` plus the flush before it, and
    each flush is one transaction, each statement prepared once (``_DriverStatement``).
    """

    def __init__(self, db: Database, ids: DeviceIds, interval: float = 0.1) -> None:
        self._db = db
        self._ids = ids
        self._interval = interval
        self._values: dict[str, dict[LwM2mPath, CachedValue]] = {}
        # Values being written: still served by ``pending_values`` until committed.
        self._in_flight: dict[str, dict[LwM2mPath, CachedValue]] = {}
        self._contacts: dict[str, datetime] = {}
        self._wakeup = asyncio.Event()
        self._task: asyncio.Task[None] | None = None
        insert = (sqlite if db.is_sqlite else postgresql).insert(_VALUES)
        upsert = insert.on_conflict_do_update(
            index_elements=[_VALUES.c.device_id, _VALUES.c.path],
            set_={
                "type": insert.excluded.type,
                "value": insert.excluded.value,
                "updated_at": insert.excluded.updated_at,
            },
        )
        dialect = db.engine.dialect
        self._upsert_values = _DriverStatement(
            upsert, dialect, ("device_id", "path", "type", "value", "updated_at"), many=True
        )
        self._update_contacts = _DriverStatement(
            UPDATE_CONTACT, dialect, ("contact_at", "device_key"), many=_SQLITE_CONTACTS
        )

    def start(self) -> None:
        if self._task is None:
            self._task = asyncio.get_running_loop().create_task(self._run(), name="db-batch")

    async def stop(self) -> None:
        """Stop the background task, then write what is still pending."""
        task, self._task = self._task, None
        if task is not None:
            task.cancel()
            await asyncio.gather(task, return_exceptions=True)
        await self.flush()

    @property
    def pending_values_count(self) -> int:
        """Values waiting for the next flush."""
        return sum(len(paths) for paths in self._values.values())

    @property
    def pending_contacts_count(self) -> int:
        """Devices whose last-contact time waits for the next flush."""
        return len(self._contacts)

    def put_values(self, endpoint: str, values: Mapping[LwM2mPath, CachedValue]) -> None:
        pending = self._values.get(endpoint)
        if pending is None:
            self._values[endpoint] = dict(values)
        else:
            pending.update(values)
        self._wakeup.set()

    def put_contact(self, endpoint: str, at: datetime) -> None:
        self._contacts[endpoint] = at
        self._wakeup.set()

    def pending_values(self, endpoint: str, prefix: LwM2mPath) -> dict[LwM2mPath, CachedValue]:
        found: dict[LwM2mPath, CachedValue] = {}
        for pending in (self._in_flight.get(endpoint), self._values.get(endpoint)):
            if pending:
                found.update(
                    (path, value) for path, value in pending.items() if path.starts_with(prefix)
                )
        return found

    async def flush(self) -> None:
        values, self._values = self._values, {}
        contacts, self._contacts = self._contacts, {}
        if not values and not contacts:
            return
        endpoints = sorted(values.keys() | contacts.keys())
        for endpoint, paths in values.items():
            self._in_flight.setdefault(endpoint, {}).update(paths)
        try:
            async with self._db.transaction() as session:
                ids = await self._ids.resolve(session, endpoints)
                await self._write_values(session, ids, values)
                await self._write_contacts(session, ids, contacts)
        except Exception:  # keep serving devices; the next values overwrite these anyway
            count = sum(len(paths) for paths in values.values())
            _log.exception("value_flush_failed", values=count, contacts=len(contacts))
        finally:
            for endpoint, paths in values.items():
                in_flight = self._in_flight.get(endpoint)
                if in_flight is None:
                    continue
                for path, value in paths.items():
                    if in_flight.get(path) is value:
                        del in_flight[path]
                if not in_flight:
                    del self._in_flight[endpoint]

    async def _run(self) -> None:
        while True:
            await self._wakeup.wait()
            await asyncio.sleep(self._interval)
            self._wakeup.clear()
            await self.flush()

    async def _write_values(
        self,
        session: AsyncSession,
        ids: Mapping[str, str],
        values: Mapping[str, Mapping[LwM2mPath, CachedValue]],
    ) -> None:
        upsert = self._upsert_values
        rows = []
        # Device object resources copied onto the device row, grouped by the columns set
        # (one executemany per group).
        info: dict[tuple[str, ...], list[dict[str, Any]]] = {}
        for endpoint, paths in values.items():
            device_id = ids.get(endpoint)
            if device_id is None:
                continue
            columns: dict[str, Any] = {}
            for path, value in paths.items():
                kind = value.type
                rows.append(
                    upsert.row(
                        device_id,
                        str(path),
                        kind.value,
                        value_to_json(kind, value.value),
                        value.updated_at,
                    )
                )
                column = DEVICE_INFO_COLUMNS.get(path)
                if column is not None and isinstance(value.value, str):
                    columns[column] = value.value
            if columns:
                info.setdefault(tuple(sorted(columns)), []).append(
                    {"device_key": device_id, **columns}
                )
        if rows:
            await upsert.run(session, rows)
        for group in info.values():
            await session.execute(UPDATE_BY_ID, group)

    async def _write_contacts(
        self, session: AsyncSession, ids: Mapping[str, str], contacts: Mapping[str, datetime]
    ) -> None:
        update = self._update_contacts
        rows = [
            update.row(at, ids[endpoint]) for endpoint, at in contacts.items() if endpoint in ids
        ]
        if rows:
            await update.run(session, rows)


_ADMIT, _UPDATE, _DEREGISTER = "admit", "update", "deregister"
ADMISSION_ROWS = select(
    _DEVICES.c.endpoint_name,
    _DEVICES.c.id,
    _DEVICES.c.domain_id,
    _DEVICES.c.blacklisted,
    _DEVICES.c.management_enabled,
    _DEVICES.c.security_mode,
    _DEVICES.c.dtls_identity,
).where(_DEVICES.c.endpoint_name.in_(bindparam("endpoints", expanding=True)))
UPDATE_BY_ID = _DEVICES.update().where(_DEVICES.c.id == bindparam("device_key"))
OF_REGISTRATION = (
    _DEVICES.c.endpoint_name == bindparam("endpoint"),
    _DEVICES.c.registration_id == bindparam("current_registration"),
)
"""A device row still holding the registration an Update or De-register belongs to
(a later Register of the device, even in the same batch, is not overwritten)."""
UPDATE_REGISTRATION = _DEVICES.update().where(*OF_REGISTRATION)
DEREGISTER_ROW = (
    _DEVICES.update()
    .where(*OF_REGISTRATION)
    .values(
        registration_id=None,
        registration_transport=None,
        registration_identity_mode=None,
        registration_identity_name=None,
    )
)
_Write = tuple[str, Registration, "asyncio.Future[Admission | None]"]


class AdmissionCoWriter(Protocol):
    """More rows to write with admitted registrations, in the registry's own transaction
    (one commit a batch): e.g. which node holds each registration (``cluster/``)."""

    async def write_admitted(
        self, connection: AsyncConnection, registrations: Sequence[Registration]
    ) -> Callable[[], None]:
        """Write, within the batch's transaction; returns what to do once it committed."""
        ...


class SqlDeviceRegistry:
    """``DeviceRegistry`` on the ``devices`` table; unknown devices join ``default_domain``.

    Registers, Updates and De-registers are written by group commit: those arriving
    while a batch is being written wait, then go together in one transaction (one
    SELECT and one executemany per kind of row), and each caller gets its answer once
    that transaction is committed, so a 2.01 or 2.04 is never sent for a registration
    a crash could lose. Latency stays bounded by about two transactions.

    Each Register is checked on its own against its device's security mode
    (``security.check_peer_security``) before anything else: a device created here is
    NoSec, and one with another mode is refused unless the transport authenticated the
    request as that device. Such refusals are audited in the same transaction.
    """

    MAX_BATCH = 500
    """Writes per transaction (keeps the SELECT's IN list under SQLite's limits)."""

    def __init__(self, db: Database, ids: DeviceIds, writer: BatchWriter, default_domain: str):
        self._db = db
        self._ids = ids
        self._writer = writer
        self._default_domain = default_domain
        self._domains: dict[str, str] = {}
        self.co_writer: AdmissionCoWriter | None = None
        """Written with each batch's admitted registrations (set by the runtime)."""
        """Endpoint -> domain, for devices outside the default domain only."""
        self._waiting: list[_Write] = []
        self._committer: asyncio.Task[None] | None = None

    @property
    def waiting_count(self) -> int:
        """Registers, Updates and De-registers waiting for the next group commit."""
        return len(self._waiting)

    def domain_of(self, endpoint: str) -> str:
        """The domain of a device as of its last Register (the default one if never seen)."""
        return self._domains.get(endpoint, self._default_domain)

    async def admit_registration(self, registration: Registration) -> Admission:
        admission = await self._commit(_ADMIT, registration)
        assert admission is not None
        return admission

    async def record_update(self, registration: Registration) -> None:
        await self._commit(_UPDATE, registration)

    async def record_deregistration(self, registration: Registration, at: datetime) -> None:
        await self._commit(_DEREGISTER, registration)

    def record_contact(self, endpoint: str, at: datetime) -> None:
        self._writer.put_contact(endpoint, at)

    async def stop(self) -> None:
        """Wait for the writes being committed."""
        if self._committer is not None:
            await asyncio.gather(self._committer, return_exceptions=True)

    async def _commit(self, kind: str, registration: Registration) -> Admission | None:
        loop = asyncio.get_running_loop()
        future: asyncio.Future[Admission | None] = loop.create_future()
        self._waiting.append((kind, registration, future))
        if self._committer is None:
            self._committer = loop.create_task(self._commit_waiting(), name="db-registrations")
        return await future

    async def _commit_waiting(self) -> None:
        try:
            while self._waiting:
                await asyncio.sleep(0)  # writes made in the same loop turn join in
                batch = self._waiting[: self.MAX_BATCH]
                del self._waiting[: self.MAX_BATCH]
                await self._commit_batch(batch)
        finally:
            self._committer = None

    async def _commit_batch(self, batch: list[_Write]) -> None:
        try:
            results: list[Admission | None | Exception] = [*await self._write(batch)]
        except Exception as exc:
            if len(batch) > 1:  # one bad row must not fail the others: one at a time
                for single in batch:
                    await self._commit_batch([single])
                return
            results = [exc]
        for (_, _, future), result in zip(batch, results, strict=True):
            if future.done():  # the caller gave up (cancelled)
                continue
            if isinstance(result, Exception):
                future.set_exception(result)
            else:
                future.set_result(result)

    async def _write(self, batch: Sequence[_Write]) -> list[Admission | None]:
        """Write the batch in one transaction; each write's result, in order."""
        admitted = [registration for kind, registration, _ in batch if kind == _ADMIT]
        updated = [
            {
                "endpoint": registration.endpoint,
                "current_registration": registration.registration_id,
                "last_contact_time": registration.last_update,
                **_registration_columns(registration),
            }
            for kind, registration, _ in batch
            if kind == _UPDATE
        ]
        deregistered = [
            {
                "endpoint": registration.endpoint,
                "current_registration": registration.registration_id,
            }
            for kind, registration, _ in batch
            if kind == _DEREGISTER
        ]
        after_commit: Callable[[], None] | None = None
        async with self._db.engine.begin() as connection:
            admissions = await self._write_admissions(connection, admitted) if admitted else None
            if admissions is not None and self.co_writer is not None:
                allowed = [
                    registration
                    for registration, answer in zip(admitted, admissions.answers, strict=True)
                    if answer is Admission.ALLOWED
                ]
                if allowed:
                    after_commit = await self.co_writer.write_admitted(connection, allowed)
            if updated:
                await connection.execute(UPDATE_REGISTRATION, updated)
            if deregistered:
                await connection.execute(DEREGISTER_ROW, deregistered)
        if after_commit is not None:
            after_commit()
        if admissions is None:
            return [None] * len(batch)
        for endpoint, (device_id, domain_id) in admissions.devices.items():
            self._ids.remember(endpoint, device_id)
            if domain_id == self._default_domain:
                self._domains.pop(endpoint, None)
            else:
                self._domains[endpoint] = sys.intern(domain_id)
        answers = iter(admissions.answers)
        return [next(answers) if kind == _ADMIT else None for kind, _, _ in batch]

    async def _write_admissions(
        self, connection: AsyncConnection, registrations: Sequence[Registration]
    ) -> _Admissions:
        """Record the allowed registrations; their admissions in order."""
        admissions = _Admissions()
        inserts: dict[str, dict[str, Any]] = {}
        updates: dict[str, dict[str, Any]] = {}
        endpoints = list({registration.endpoint for registration in registrations})
        rows = {
            row.endpoint_name: row
            for row in await connection.execute(ADMISSION_ROWS, {"endpoints": endpoints})
        }
        refusals: list[dict[str, Any]] = []
        for registration in registrations:
            endpoint, now = registration.endpoint, registration.registered_at
            row = rows.get(endpoint)
            security = None if row is None else DeviceSecurity(row.security_mode, row.dtls_identity)
            # No row: the device is created below as NoSec, so plain UDP is enough.
            checked = check_peer_security(endpoint, security, registration.peer)
            if checked is not Admission.ALLOWED:
                admissions.answers.append(checked)
                refusals.append(_refusal_audit(registration, row, checked))
                continue
            if row is not None and row.blacklisted:
                admissions.answers.append(Admission.BLACKLISTED)
                continue
            if row is not None and not row.management_enabled:
                admissions.answers.append(Admission.MANAGEMENT_DISABLED)
                continue
            columns = {
                "last_register_time": now,
                "last_contact_time": now,
                "last_session_time": now,
                **_registration_columns(registration),
            }
            if row is not None:
                updates[endpoint] = {"device_key": row.id, **columns}
                admissions.devices[endpoint] = (row.id, row.domain_id)
            elif endpoint in inserts:  # registered twice in this batch: the last wins
                inserts[endpoint].update(columns)
            else:
                inserts[endpoint] = {
                    "id": endpoint,
                    "endpoint_name": endpoint,
                    "domain_id": self._default_domain,
                    "security_mode": "nosec",
                    "first_register_time": now,
                    "creation_time": now,
                    **columns,
                }
                admissions.devices[endpoint] = (endpoint, self._default_domain)
            admissions.answers.append(Admission.ALLOWED)
        if refusals:
            await connection.execute(insert(AuditEvent), refusals)
        if inserts:
            await connection.execute(_DEVICES.insert(), list(inserts.values()))
        if updates:
            await connection.execute(UPDATE_BY_ID, list(updates.values()))
        return admissions


@dataclass
class _Admissions:
    answers: list[Admission] = field(default_factory=list)
    """One per Register, in order."""
    devices: dict[str, tuple[str, str]] = field(default_factory=dict)
    """Endpoint -> (device id, domain id) of the admitted devices."""


def _refusal_audit(
    registration: Registration, row: Any | None, admission: Admission
) -> dict[str, Any]:
    """The audit row of a Register refused by ``check_peer_security`` (never the key).

    ``row`` is None for an endpoint without a device (a session authenticated as some
    device registering under an unknown name): no subject, no domain then.
    """
    peer = registration.peer
    return {
        "at": registration.registered_at,
        "event": REGISTRATION_REFUSED_EVENT,
        "actor": None,
        "subject": None if row is None else row.id,
        "domain_id": None if row is None else row.domain_id,
        "client_ip": peer.host[:64],
        "details": {
            "endpoint": registration.endpoint,
            "reason": admission.value,
            "securityMode": "nosec" if row is None else row.security_mode,
            "peer": str(peer),
            "transport": peer.transport,
            "authenticatedAs": None if peer.identity is None else peer.identity.name,
        },
    }


def _registration_columns(registration: Registration) -> dict[str, Any]:
    peer = registration.peer
    return {
        "registration_id": registration.registration_id,
        "ip_address": peer.host,
        "port": peer.port,
        "registration_transport": peer.transport,
        "registration_identity_mode": None if peer.identity is None else peer.identity.mode,
        "registration_identity_name": None if peer.identity is None else peer.identity.name,
        "lwm2m_version": registration.lwm2m_version,
        "binding": registration.binding,
        "lifetime": registration.lifetime,
        "queue_mode": registration.queue_mode,
        "registered_objects": registered_links_text(registration.objects),
    }


class SqlValueCache:
    """``ValueCache`` on ``resource_values``; writes are batched by the ``BatchWriter``."""

    def __init__(self, db: Database, ids: DeviceIds, writer: BatchWriter) -> None:
        self._db = db
        self._ids = ids
        self._writer = writer

    def put(self, endpoint: str, values: Mapping[LwM2mPath, CachedValue]) -> None:
        self._writer.put_values(endpoint, values)

    async def get(self, endpoint: str, prefix: LwM2mPath = ROOT) -> dict[LwM2mPath, CachedValue]:
        # Unwritten values are taken before and after the query: one being committed
        # meanwhile is in one of the three; per path the newest wins.
        before = self._writer.pending_values(endpoint, prefix)
        async with self._db.session() as session:
            ids = await self._ids.resolve(session, [endpoint])
            found: dict[LwM2mPath, CachedValue] = {}
            if endpoint in ids:
                query = select(ResourceValue).where(ResourceValue.device_id == ids[endpoint])
                if not prefix.is_root:
                    text = str(prefix)
                    query = query.where(
                        (ResourceValue.path == text) | ResourceValue.path.startswith(text + "/")
                    )
                for row in await session.scalars(query):
                    resource_type = ResourceType(row.type)
                    found[LwM2mPath.parse(row.path)] = CachedValue(
                        resource_type, value_from_json(resource_type, row.value), row.updated_at
                    )
        for unwritten in (before, self._writer.pending_values(endpoint, prefix)):
            for path, value in unwritten.items():
                stored = found.get(path)
                if stored is None or value.updated_at >= stored.updated_at:
                    found[path] = value
        return found


class SqlRequestQueue:
    """``RequestQueue`` on ``queued_requests``.

    The endpoints that may have pending requests are also kept in memory (loaded at
    ``start``, kept up to date by ``enqueue``, ``finish``, ``expire`` and ``pending``), so
    that most Registers need no query. Every write to ``queued_requests`` goes through
    this object, in this process; until the set is loaded every endpoint counts as one
    that may have pending requests.
    """

    def __init__(self, db: Database, ids: DeviceIds) -> None:
        self._db = db
        self._ids = ids
        # Endpoint -> ids of requests that may be pending (false positives are harmless:
        # ``pending`` drops them); request id -> endpoint.
        self._pending_ids: dict[str, set[str]] = {}
        self._endpoints: dict[str, str] = {}
        self._enqueuing: set[str] = set()  # inserted now: not yet visible to queries
        self._loaded = False
        self._loader: asyncio.Task[None] | None = None

    def start(self) -> None:
        if self._loader is None and not self._loaded:
            self._loader = asyncio.get_running_loop().create_task(
                self.load(), name="db-queue-index"
            )

    async def stop(self) -> None:
        loader, self._loader = self._loader, None
        if loader is not None:
            loader.cancel()
            await asyncio.gather(loader, return_exceptions=True)

    async def load(self) -> None:
        """Learn which endpoints have pending requests in the store."""
        try:
            async with self._db.session() as session:
                rows = await session.execute(
                    select(QueuedRequestRow.id, Device.endpoint_name)
                    .join(Device, Device.id == QueuedRequestRow.device_id)
                    .where(QueuedRequestRow.state == QueuedRequestState.PENDING.value)
                )
                for request_id, endpoint in rows:
                    self._track(endpoint, request_id)
        except Exception:  # keep querying on every Register rather than miss requests
            _log.exception("queue_index_load_failed")
            return
        self._loaded = True

    def may_have_pending(self, endpoint: str) -> bool:
        return not self._loaded or endpoint in self._pending_ids

    def _track(self, endpoint: str, request_id: str) -> None:
        self._pending_ids.setdefault(endpoint, set()).add(request_id)
        self._endpoints[request_id] = endpoint

    def _untrack(self, request_id: str) -> None:
        endpoint = self._endpoints.pop(request_id, None)
        ids = self._pending_ids.get(endpoint) if endpoint is not None else None
        if endpoint is not None and ids is not None:
            ids.discard(request_id)
            if not ids:
                del self._pending_ids[endpoint]

    async def enqueue(self, request: QueuedRequest) -> None:
        device_id = await self._ids.require(request.endpoint)
        tracked = request.state is QueuedRequestState.PENDING
        if tracked:  # before the insert: a Register meanwhile still looks
            self._track(request.endpoint, request.id)
            self._enqueuing.add(request.id)
        try:
            async with self._db.transaction() as session:
                session.add(
                    QueuedRequestRow(
                        id=request.id,
                        device_id=device_id,
                        kind=request.operation.kind.value,
                        request=request.operation.to_json(),
                        created_at=request.created_at,
                        expires_at=request.expires_at,
                        state=request.state.value,
                        result=request.result,
                    )
                )
        except BaseException:
            if tracked:
                self._untrack(request.id)
            raise
        finally:
            self._enqueuing.discard(request.id)

    async def pending(self, endpoint: str, now: datetime) -> list[QueuedRequest]:
        if not self.may_have_pending(endpoint):
            return []
        # Committed requests we believe pending: those the query does not return are
        # not (done, expired or deleted with their device) and are forgotten.
        believed = self._pending_ids.get(endpoint, set()) - self._enqueuing
        device_id = await self._ids.require(endpoint)
        async with self._db.session() as session:
            rows = await session.scalars(
                select(QueuedRequestRow)
                .where(
                    QueuedRequestRow.device_id == device_id,
                    QueuedRequestRow.state == QueuedRequestState.PENDING.value,
                    QueuedRequestRow.expires_at > now,
                )
                .order_by(QueuedRequestRow.created_at)
            )
            found = [_queued_request(endpoint, row) for row in rows]
        for request in found:
            self._track(endpoint, request.id)
        for request_id in believed - {request.id for request in found}:
            self._untrack(request_id)
        return found

    async def finish(
        self, request_id: str, state: QueuedRequestState, result: Mapping[str, Any]
    ) -> None:
        async with self._db.transaction() as session:
            await session.execute(
                update(QueuedRequestRow)
                .where(QueuedRequestRow.id == request_id)
                .values(state=state.value, result=dict(result))
            )
        if state is not QueuedRequestState.PENDING:
            self._untrack(request_id)

    async def expire(self, now: datetime) -> list[QueuedRequest]:
        async with self._db.transaction() as session:
            rows = (
                await session.execute(
                    select(QueuedRequestRow, Device.endpoint_name)
                    .join(Device, Device.id == QueuedRequestRow.device_id)
                    .where(
                        QueuedRequestRow.state == QueuedRequestState.PENDING.value,
                        QueuedRequestRow.expires_at <= now,
                    )
                )
            ).all()
            if rows:
                await session.execute(
                    update(QueuedRequestRow)
                    .where(QueuedRequestRow.id.in_([row.id for row, _ in rows]))
                    .values(state=QueuedRequestState.EXPIRED.value)
                )
        for row, _ in rows:
            self._untrack(row.id)
        return [
            _queued_request(endpoint, row, QueuedRequestState.EXPIRED) for row, endpoint in rows
        ]


def _queued_request(
    endpoint: str, row: QueuedRequestRow, state: QueuedRequestState | None = None
) -> QueuedRequest:
    return QueuedRequest(
        id=row.id,
        endpoint=endpoint,
        operation=Operation.from_json(row.request),
        created_at=row.created_at,
        expires_at=row.expires_at,
        state=state or QueuedRequestState(row.state),
        result=dict(row.result),
    )


class SqlDeviceStores:
    """The three repositories sharing one device-id cache and one batch writer."""

    def __init__(self, db: Database, default_domain: str, flush_interval: float = 0.1) -> None:
        self.ids = ids = DeviceIds(db)
        self.writer = BatchWriter(db, ids, flush_interval)
        self.devices = SqlDeviceRegistry(db, ids, self.writer, default_domain)
        self.values = SqlValueCache(db, ids, self.writer)
        self.queue = SqlRequestQueue(db, ids)

    def start(self) -> None:
        self.writer.start()
        self.queue.start()

    async def stop(self) -> None:
        await self.queue.stop()
        await self.devices.stop()
        await self.writer.stop()


async def device_domain(db: Database, endpoint: str) -> str | None:
    """The domain of the device with this endpoint name, None if there is none."""
    async with db.session() as session:
        domain_id: str | None = await session.scalar(
            select(Device.domain_id).where(Device.endpoint_name == endpoint)
        )
        return domain_id
