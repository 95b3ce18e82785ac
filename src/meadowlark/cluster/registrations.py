"""Registrations of a scaled-out deployment: held in memory by the node that received
them, with that node recorded in the store (``registration_owners``).

The node that receives a device's Register (or an Update for a registration it does not
hold: a NAT rebinding moved the device to another worker, or its node died) becomes its
owner: the registration itself is in the device's row (written before the 2.01), so the
new node rebuilds it from there and claims it. The node that held it before is told and
forgets it silently (no De-register is recorded: the device is still registered).
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable, Sequence
from datetime import UTC, datetime
from typing import Any

import structlog
from sqlalchemy import Select, and_, bindparam, delete, select
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.ext.asyncio import AsyncConnection

from meadowlark.lwm2m.codec.errors import DecodeError
from meadowlark.server.registration import (
    InMemoryRegistrationStore,
    Registration,
    shared_object_list,
)
from meadowlark.server.transport import Peer, PeerIdentity
from meadowlark.store.cluster_models import RegistrationOwner
from meadowlark.store.db import Database
from meadowlark.store.device_models import Device

_log = structlog.get_logger("meadowlark.cluster")

_OWNERS = RegistrationOwner.__table__

ReleaseNotice = Callable[[str, list[tuple[str, str]]], None]
"""(node id, [(endpoint, registration id)]): tell a node it no longer holds these."""


class SharedRegistrationStore:
    """``RegistrationStore`` for one node of many; see the module docstring.

    Lookups by endpoint (and ``all``) see every node's registrations, as their devices'
    rows record them: the REST API, the task engine and the Things service of any node
    know a device is registered wherever it is. ``holds`` tells the registrations this
    node holds (whose downlinks it sends itself) from the others.

    Claims of Registers read in the same loop turn are written together in one
    statement, and each Register is answered once its claim is committed.
    """

    MAX_BATCH = 500
    LOCATE_CACHE_SECONDS = 1.0
    LOCATE_CACHE_SIZE = 10_000

    def __init__(self, db: Database, node_id: str, release: ReleaseNotice) -> None:
        self.node_id = node_id
        self._db = db
        self._release = release
        self._local = InMemoryRegistrationStore()
        # Registrations handed to another node; their expiry timers here end nothing.
        self._released: set[str] = set()
        # Endpoint -> (valid until, holding node, registration) of recent lookups.
        self._located: dict[str, tuple[float, str, Registration]] = {}
        self.on_moved_here: Callable[[str], None] = lambda endpoint: None
        """Told of each device whose registration another node held before this one."""
        self._claims: list[tuple[Registration, asyncio.Future[None]]] = []
        # Registered devices whose claim went into the registry's batch transaction.
        self._claimed_on_admission: set[str] = set()
        self._claimer: asyncio.Task[None] | None = None

    # --- RegistrationStore -------------------------------------------------------------

    async def add(self, registration: Registration) -> Registration | None:
        replaced = await self._local.add(registration)
        if registration.registration_id in self._claimed_on_admission:
            self._claimed_on_admission.discard(registration.registration_id)
        else:
            await self._claim(registration)
        return replaced

    async def replace(self, registration: Registration) -> None:
        await self._local.replace(registration)

    async def get(self, registration_id: str) -> Registration | None:
        found = await self._local.get(registration_id)
        if found is not None:
            return found
        return await self._adopt(registration_id)

    async def get_by_endpoint(self, endpoint: str) -> Registration | None:
        held = await self._local.get_by_endpoint(endpoint)
        if held is not None:
            return held
        located = await self.locate(endpoint)
        if located is None or located[0] == self.node_id:
            # What this node holds is in memory. A row naming it but not held is a
            # Register between its commit and ``add`` (or a De-register between
            # ``remove`` and the row's delete); rebuilt from the row it would lack the
            # transport's own address object (``Peer.handle``) its answers need.
            return None
        return located[1]

    async def get_by_peer(self, host: str, port: int) -> Registration | None:
        return await self._local.get_by_peer(host, port)

    async def remove(self, registration_id: str) -> Registration | None:
        """End a registration: one this node holds, or (a device deleted or barred
        through this node) one another node holds, which is told to forget it. One this
        node handed over (``release``) is not ended: its old expiry timer lands here."""
        registration = await self._local.remove(registration_id)
        if registration is None:
            if registration_id in self._released:
                self._released.discard(registration_id)
                return None
            return await self._end_elsewhere(registration_id)
        async with self._db.transaction() as session:
            await session.execute(
                delete(RegistrationOwner).where(
                    RegistrationOwner.endpoint_name == registration.endpoint,
                    RegistrationOwner.registration_id == registration_id,
                    RegistrationOwner.node_id == self.node_id,
                )
            )
        return registration

    async def _end_elsewhere(self, registration_id: str) -> Registration | None:
        async with self._db.transaction() as session:
            row = (await session.execute(_by_registration_id(registration_id))).first()
            if row is None:
                return None
            await session.execute(
                delete(RegistrationOwner).where(
                    RegistrationOwner.endpoint_name == row.endpoint_name,
                    RegistrationOwner.registration_id == registration_id,
                )
            )
        self._located.pop(row.endpoint_name, None)
        self._release(row.node_id, [(row.endpoint_name, registration_id)])
        return _registration_from(row, secure_too=True)

    async def all(self) -> list[Registration]:
        held = await self._local.all()
        [rows] = await self._db.hot_reads.rows((_HELD_ELSEWHERE, {"node_id": self.node_id}))
        elsewhere = [_registration_from(row, secure_too=True) for row in rows]
        mine = {registration.endpoint for registration in held}
        return held + [r for r in elsewhere if r is not None and r.endpoint not in mine]

    def held(self) -> int:
        return self._local.held()

    async def holds(self, registration: Registration) -> bool:
        """Whether this node holds ``registration`` (its socket reaches the device)."""
        return await self._local.get(registration.registration_id) is not None

    # --- between nodes -----------------------------------------------------------------

    async def release(self, endpoint: str, registration_id: str) -> None:
        """Another node holds this registration now: forget it without a trace."""
        held = await self._local.get_by_endpoint(endpoint)
        if held is not None and held.registration_id == registration_id:
            await self._local.remove(registration_id)
            self._released.add(registration_id)
            _log.info("registration_moved_away", endpoint=endpoint)

    async def locate(
        self, endpoint: str, *, fresh: bool = False
    ) -> tuple[str, Registration] | None:
        """The node holding ``endpoint``'s current registration, and that registration
        as its device's row records it; None if the device is not registered.

        An answer is reused for ``LOCATE_CACHE_SECONDS`` unless ``fresh`` (a REST call
        looks a device up more than once); a caller that finds it stale asks again.
        """
        now = time.monotonic()
        if not fresh:
            known = self._located.get(endpoint)
            if known is not None and known[0] > now:
                return known[1], known[2]
        async with self._db.session() as session:
            row = (
                await session.execute(_registered().where(Device.endpoint_name == endpoint))
            ).first()
        registration = None if row is None else _registration_from(row, secure_too=True)
        if row is None or registration is None:
            self._located.pop(endpoint, None)
            return None
        if len(self._located) >= self.LOCATE_CACHE_SIZE:
            self._located.clear()
        self._located[endpoint] = (now + self.LOCATE_CACHE_SECONDS, row.node_id, registration)
        return row.node_id, registration

    async def _adopt(self, registration_id: str) -> Registration | None:
        """Take over a registration another node holds (or held), as its device's row
        records it; None if there is none with this id (or it is not takeable)."""
        async with self._db.session() as session:
            row = (await session.execute(_by_registration_id(registration_id))).first()
        registration = None if row is None else _registration_from(row)
        if row is None or registration is None:
            return None
        self._located.pop(registration.endpoint, None)
        await self._local.add(registration)
        await self._claim(registration)
        _log.info(
            "registration_taken_over",
            endpoint=registration.endpoint,
            previous_node=row.node_id,
        )
        return registration

    async def _claim(self, registration: Registration) -> None:
        loop = asyncio.get_running_loop()
        future: asyncio.Future[None] = loop.create_future()
        self._claims.append((registration, future))
        if self._claimer is None:
            self._claimer = loop.create_task(self._write_claims(), name="cluster-claims")
        await future

    async def _write_claims(self) -> None:
        try:
            while self._claims:
                await asyncio.sleep(0)  # Registers read in the same loop turn join in
                batch = self._claims[: self.MAX_BATCH]
                del self._claims[: self.MAX_BATCH]
                try:
                    await self._write_batch([registration for registration, _ in batch])
                except Exception as exc:
                    for _, future in batch:
                        if not future.done():
                            future.set_exception(exc)
                    continue
                for _, future in batch:
                    if not future.done():
                        future.set_result(None)
        finally:
            self._claimer = None

    async def _write_batch(self, registrations: Sequence[Registration]) -> None:
        async with self._db.engine.begin() as connection:
            after_commit = await self._claim_rows(connection, registrations)
        after_commit()

    async def write_admitted(
        self, connection: AsyncConnection, registrations: Sequence[Registration]
    ) -> Callable[[], None]:
        """The registry's ``AdmissionCoWriter``: claims the newly registered devices in
        the transaction that admits them, so a Register costs one commit."""
        after_commit = await self._claim_rows(connection, registrations)

        def claimed() -> None:
            self._claimed_on_admission.update(r.registration_id for r in registrations)
            after_commit()

        return claimed

    async def _claim_rows(
        self, connection: AsyncConnection, registrations: Sequence[Registration]
    ) -> Callable[[], None]:
        """Record this node as the holder of ``registrations``; what to do once that
        committed (tell the nodes that held them before)."""
        now = datetime.now(UTC)
        rows: dict[str, dict[str, Any]] = {}
        for registration in registrations:  # the same endpoint twice: the last wins
            rows[registration.endpoint] = {
                "endpoint_name": registration.endpoint,
                "registration_id": registration.registration_id,
                "node_id": self.node_id,
                "claimed_at": now,
            }
        insert = (sqlite if self._db.is_sqlite else postgresql).insert(_OWNERS)
        statement = insert.on_conflict_do_update(
            index_elements=[_OWNERS.c.endpoint_name],
            set_={
                "registration_id": insert.excluded.registration_id,
                "node_id": insert.excluded.node_id,
                "claimed_at": insert.excluded.claimed_at,
            },
        )
        previous = (
            await connection.execute(
                select(_OWNERS.c.endpoint_name, _OWNERS.c.registration_id, _OWNERS.c.node_id)
                .where(_OWNERS.c.endpoint_name.in_(list(rows)))
                .where(_OWNERS.c.node_id != self.node_id)
            )
        ).all()
        await connection.execute(statement, list(rows.values()))

        def tell_previous_holders() -> None:
            moved: dict[str, list[tuple[str, str]]] = {}
            for endpoint, registration_id, node_id in previous:
                moved.setdefault(node_id, []).append((endpoint, registration_id))
                self.on_moved_here(endpoint)
            for node_id, released in moved.items():
                self._release(node_id, released)

        return tell_previous_holders


_REGISTRATION_COLUMNS = (
    Device.endpoint_name,
    Device.registration_id,
    Device.security_mode,
    Device.ip_address,
    Device.port,
    Device.registration_transport,
    Device.registration_identity_mode,
    Device.registration_identity_name,
    Device.lwm2m_version,
    Device.binding,
    Device.lifetime,
    Device.queue_mode,
    Device.registered_objects,
    Device.last_register_time,
    Device.last_contact_time,
)


def _registered() -> Select:
    """Registered devices (their registration columns) with the node holding each."""
    return select(*_REGISTRATION_COLUMNS, RegistrationOwner.node_id).join(
        RegistrationOwner,
        and_(
            RegistrationOwner.endpoint_name == Device.endpoint_name,
            RegistrationOwner.registration_id == Device.registration_id,
        ),
    )


_HELD_ELSEWHERE = _registered().where(RegistrationOwner.node_id != bindparam("node_id"))
"""Registrations held by other nodes (a hot read: every clients list on every node)."""


def _by_registration_id(registration_id: str) -> Select:
    return _registered().where(RegistrationOwner.registration_id == registration_id)


def _registration_from(device: Any, *, secure_too: bool = False) -> Registration | None:
    """The registration recorded in a device's row (``_REGISTRATION_COLUMNS``).

    Only plain-UDP ones can be taken over (``secure_too`` False): a session
    authenticated by another node's DTLS cannot be carried over, so such a device gets
    4.04 and registers anew. Any will do to build an operation that its owner sends
    (``secure_too``)."""
    if (
        device.registration_id is None
        or (device.security_mode != "nosec" and not secure_too)
        or device.ip_address is None
        or device.port is None
        or device.lwm2m_version is None
        or device.binding is None
        or device.lifetime is None
    ):
        return None
    try:
        objects = shared_object_list((device.registered_objects or "").encode())
    except DecodeError:
        return None
    registered_at = device.last_register_time or datetime.now(UTC)
    return Registration(
        registration_id=device.registration_id,
        endpoint=device.endpoint_name,
        lwm2m_version=device.lwm2m_version,
        binding=device.binding,
        lifetime=device.lifetime,
        queue_mode=device.queue_mode,
        sms_number=None,
        objects=objects,
        peer=_peer_from(device),
        registered_at=registered_at,
        last_update=device.last_contact_time or registered_at,
    )


def _peer_from(device: Any) -> Peer:
    """The device's address as its row records it, with the transport it registered over
    and whom that transport authenticated it as (rows from before migration 0016 have
    neither: plain UDP)."""
    identity = None
    if device.registration_identity_mode is not None:
        identity = PeerIdentity(
            device.registration_identity_mode, device.registration_identity_name
        )
    return Peer(
        device.ip_address,
        device.port,
        device.registration_transport or "udp",
        identity=identity,
    )
