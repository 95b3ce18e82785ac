"""The PSK of each DTLS identity, for handshakes: a synchronous ``Mapping[str, bytes]``.

The DTLS library asks for a key inside the handshake, synchronously, so every PSK
device's identity, device id and sealed key are held in memory (loaded with one query)
and a key is opened only when asked for. Keys stay sealed in memory too.

The keyring stays current:

- changes committed in this process through ``note_psk_change`` (the devices service
  calls it) are applied when their session commits, and passed to ``on_local_change``
  listeners (the cluster announces them; other nodes call ``refresh`` with the device
  id and re-read that row);
- a full re-read every ``RESYNC_SECONDS`` catches writers no notice reaches (a CLI
  command next to a single-process server, a lost notice).

``on_change(callback)`` hears of every identity whose key changed or went away, so
that the transport can end the DTLS sessions made with the old key.

A keyring reads one ``PskSource``: the device registry's PSKs (``DEVICE_PSKS``, the
management DTLS port) or the bootstrap accounts' (``BOOTSTRAP_PSKS``, the bootstrap
server's DTLS port). Both tables have ``id``, ``dtls_identity`` and a sealed ``dtls_psk``.
"""

from __future__ import annotations

import asyncio
import re
from collections.abc import Callable, Collection, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol

import structlog
from sqlalchemy import Select, Table, bindparam, event, select, update
from sqlalchemy.ext.asyncio import AsyncSession
from sqlalchemy.orm import Session

from meadowlark.store.bootstrap_models import BootstrapAccount
from meadowlark.store.db import Database
from meadowlark.store.device_models import Device

_log = structlog.get_logger("meadowlark.dtls")

PSK_TOPIC = "psks_changed"
"""Cluster notice topic; its key is the id of the device whose credentials changed."""
BOOTSTRAP_PSK_TOPIC = "bootstrap_psks_changed"
"""Cluster notice topic of bootstrap accounts' credentials (key: the account id)."""


@dataclass(frozen=True, slots=True)
class PskSource:
    """Where a keyring's identities and sealed keys live."""

    table: Table
    pending_key: str
    """``session.info`` entry: row id -> (identity, sealed key) as the session leaves it."""
    context_prefix: str = ""
    """A key of row ``id`` is sealed for ``context_prefix + id`` (``SecretBox`` context):
    a key copied from one table to the other does not open there."""
    rows: Select = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        columns = self.table.c
        rows = select(columns.id, columns.dtls_identity, columns.dtls_psk).where(
            columns.dtls_identity.is_not(None), columns.dtls_psk.is_not(None)
        )
        object.__setattr__(self, "rows", rows)

    def context(self, row_id: str) -> str:
        return self.context_prefix + row_id


DEVICE_PSKS = PskSource(Device.__table__, "meadowlark.psk_changes")
BOOTSTRAP_PSKS = PskSource(
    BootstrapAccount.__table__, "meadowlark.bootstrap_psk_changes", "bootstrap-account:"
)


class KeyOpener(Protocol):
    def open(self, sealed: str, context: str) -> bytes:
        """The key sealed for device ``context``; ``ValueError`` if it does not open."""


class KeySealer(KeyOpener, Protocol):
    sealed_prefix: str
    """How every sealed key begins; a stored key without it is one in clear."""

    def seal(self, key: bytes, context: str) -> str:
        """``key`` sealed for ``context``, in its stored (text) form."""


SEAL_BATCH = 500
"""Rows sealed per transaction by ``seal_stored_psks``."""
_HEX_KEY = re.compile(r"(?:[0-9A-Fa-f]{2})+")


async def seal_stored_psks(db: Database, box: KeySealer, source: PskSource = DEVICE_PSKS) -> int:
    """Seal the PSKs of ``source`` stored in clear (hex) by earlier versions,
    ``SEAL_BATCH`` rows per transaction; how many were sealed. Sealed rows are left
    alone, so it can run at every start."""
    columns = source.table.c
    seal = (
        update(source.table)
        .where(columns.id == bindparam("row_id"))
        .values(dtls_psk=bindparam("sealed"))
    )
    sealed_count, after = 0, ""
    while True:
        async with db.transaction() as session:
            rows = (
                await session.execute(
                    select(columns.id, columns.dtls_psk)
                    .where(
                        columns.id > after,
                        columns.dtls_psk.is_not(None),
                        columns.dtls_psk.not_like(box.sealed_prefix + "%"),
                    )
                    .order_by(columns.id)
                    .limit(SEAL_BATCH)
                )
            ).all()
            if not rows:
                return sealed_count
            after = rows[-1].id
            batch = []
            for row_id, stored in rows:
                if not _HEX_KEY.fullmatch(stored):  # not a key any version wrote: left as is
                    _log.error("psk_not_sealable", table=source.table.name, row=row_id)
                    continue
                sealed = box.seal(bytes.fromhex(stored), source.context(row_id))
                batch.append({"row_id": row_id, "sealed": sealed})
            if batch:
                await session.execute(seal, batch)
            sealed_count += len(batch)


@dataclass(frozen=True, slots=True)
class PskHealth:
    stored: int
    unreadable: list[str]
    """Ids of the rows whose stored PSK does not open with the current key."""


async def check_stored_psks(
    db: Database, box: KeyOpener, source: PskSource = DEVICE_PSKS
) -> PskHealth:
    """Try to open every stored PSK of ``source`` with the current key (nothing is kept)."""
    columns = source.table.c
    async with db.engine.connect() as connection:
        rows = (
            await connection.execute(
                select(columns.id, columns.dtls_psk).where(columns.dtls_psk.is_not(None))
            )
        ).all()
    unreadable = []
    for row_id, stored in rows:
        try:
            box.open(stored, source.context(row_id))
        except ValueError:
            unreadable.append(row_id)
    return PskHealth(len(rows), unreadable)


def note_psk_change(
    session: AsyncSession,
    device_id: str,
    identity: str | None,
    sealed: str | None,
    source: PskSource = DEVICE_PSKS,
) -> None:
    """Record that ``device_id`` (a row of ``source``) will have ``identity``/``sealed``
    (None, None: no PSK, or deleted) once ``session`` commits; keyrings of this process
    apply it then. Call it within the unit of work that makes the change: its rollback
    forgets it."""
    session.info.setdefault(source.pending_key, {})[device_id] = (identity, sealed)


class PskKeyring(Mapping[str, bytes]):
    """DTLS identity -> PSK of every row of ``source`` with a PSK (see the module
    docstring); ``device`` below means such a row."""

    RESYNC_SECONDS = 60.0
    START_SAMPLE = 100
    """Keys opened at start to detect a changed server key."""
    LOAD_SLICE = 10_000
    """Rows applied between two yields to the event loop while loading."""
    REFRESH_CHUNK = 500
    """Devices re-read per query after notices; more pending than 4 chunks: all of them."""

    def __init__(self, db: Database, opener: KeyOpener, source: PskSource = DEVICE_PSKS) -> None:
        self._db = db
        self._opener = opener
        self._source = source
        self._entries: dict[str, tuple[str, str]] = {}
        """Identity -> (device id, sealed key)."""
        self._identities: dict[str, str] = {}
        """Device id -> its identity in ``_entries``."""
        self._version = 0
        self._touched: dict[str, int] = {}
        """Device id -> ``_version`` of its last change by a commit here or a notice (a
        re-read that started before it must not undo it)."""
        self._unreadable: set[tuple[str, str]] = set()
        self._change_listeners: list[Callable[[str], object]] = []
        self._local_listeners: list[Callable[[str], None]] = []
        self._attached = False
        self._to_refresh: set[str | None] = set()
        self._refresher: asyncio.Task[None] | None = None
        self._resync: asyncio.Task[None] | None = None

    # --- Mapping -------------------------------------------------------------------------

    def __getitem__(self, identity: str) -> bytes:
        device_id, sealed = self._entries[identity]
        try:
            return self._opener.open(sealed, self._source.context(device_id))
        except ValueError as exc:
            if (device_id, sealed) not in self._unreadable:  # once, not at every handshake
                self._unreadable.add((device_id, sealed))
                _log.error("psk_unreadable", device=device_id, identity=identity, error=str(exc))
            raise KeyError(identity) from None

    def __iter__(self) -> Iterator[str]:
        return iter(list(self._entries))

    def __len__(self) -> int:
        return len(self._entries)

    def __contains__(self, identity: object) -> bool:
        return identity in self._entries

    def device_of(self, identity: str) -> str | None:
        """The id of the device that has ``identity``."""
        entry = self._entries.get(identity)
        return None if entry is None else entry[0]

    # --- listeners -----------------------------------------------------------------------

    def on_change(self, callback: Callable[[str], object]) -> None:
        """``callback(identity)`` for each identity whose key changed or was removed (what
        it returns is ignored)."""
        self._change_listeners.append(callback)

    def on_local_change(self, listener: Callable[[str], None]) -> None:
        """``listener(device_id)`` for credential changes committed in this process."""
        self._local_listeners.append(listener)

    # --- life cycle ----------------------------------------------------------------------

    def attach(self) -> None:
        """Start applying the changes that sessions of this store commit here."""
        if not self._attached:
            event.listen(Session, "after_commit", self._committed)
            event.listen(Session, "after_rollback", self._rolled_back)
            self._attached = True

    async def start(self) -> None:
        """Load every PSK device, then re-read them every ``RESYNC_SECONDS``."""
        self.attach()
        await self.load()
        self._check_sample()
        if self._resync is None:
            self._resync = asyncio.get_running_loop().create_task(
                self._resync_periodically(), name="psk-keyring-resync"
            )

    async def stop(self) -> None:
        if self._attached:
            event.remove(Session, "after_commit", self._committed)
            event.remove(Session, "after_rollback", self._rolled_back)
            self._attached = False
        tasks = [task for task in (self._resync, self._refresher) if task is not None]
        self._resync = self._refresher = None
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)

    async def load(self) -> None:
        """Read every PSK device (one query, plain rows) and apply the differences."""
        started = self._version
        async with self._db.engine.connect() as connection:
            rows = (await connection.execute(self._source.rows)).all()
        current = self._by_device(rows)
        for device_id in self._identities.keys() - current.keys():
            if self._touched.get(device_id, -1) <= started:
                self._set(device_id, None, None)
        for count, (device_id, (identity, sealed)) in enumerate(current.items(), 1):
            if self._touched.get(device_id, -1) <= started:
                self._set(device_id, identity, sealed)
            if count % self.LOAD_SLICE == 0:
                await asyncio.sleep(0)  # let handshakes and requests through meanwhile
        self._touched = {key: at for key, at in self._touched.items() if at > started}

    @staticmethod
    def _by_device(rows: Sequence[Any]) -> dict[str, tuple[str | None, str | None]]:
        """Device id -> (identity, sealed key) of ``rows``. An identity names one row of
        its table (a unique index: ``uq_devices_dtls_identity``, migration 0015, and
        ``uq_bootstrap_accounts_dtls_identity``), so no two rows of one read share it."""
        return {device_id: (identity, sealed) for device_id, identity, sealed in rows}

    def _check_sample(self) -> None:
        """Say at start when stored keys do not open (a changed server key): otherwise
        it shows only as failing handshakes. A sample, so that starting stays fast."""
        sample = list(self._entries.values())[: self.START_SAMPLE]
        unreadable = 0
        for device_id, sealed in sample:
            try:
                self._opener.open(sealed, self._source.context(device_id))
            except ValueError:
                unreadable += 1
        if unreadable:
            _log.error(
                "psks_unreadable_at_start",
                sampled=len(sample),
                unreadable=unreadable,
                hint="those devices cannot authenticate; `meadowlark doctor` counts them all",
            )

    def refresh(self, device_id: str | None) -> None:
        """Another node changed ``device_id`` (None: anything): re-read it soon. Notices
        arriving meanwhile are re-read together."""
        self._to_refresh.add(device_id)
        if self._refresher is None:
            self._refresher = asyncio.get_running_loop().create_task(
                self._refresh_pending(), name="psk-keyring-refresh"
            )

    async def refreshed(self) -> None:
        """Wait until the notices received so far are applied."""
        while self._refresher is not None:
            await asyncio.gather(self._refresher, return_exceptions=True)

    async def _refresh_pending(self) -> None:
        try:
            while self._to_refresh:
                pending, self._to_refresh = self._to_refresh, set()
                try:
                    if None in pending or len(pending) > 4 * self.REFRESH_CHUNK:
                        await self.load()
                        continue
                    device_ids = sorted(key for key in pending if key is not None)
                    for start in range(0, len(device_ids), self.REFRESH_CHUNK):
                        await self._reload(device_ids[start : start + self.REFRESH_CHUNK])
                except Exception:  # the periodic re-read catches up
                    _log.exception("psk_keyring_refresh_failed")
        finally:
            self._refresher = None

    async def _reload(self, device_ids: Collection[str]) -> None:
        """Re-read ``device_ids``."""
        started = self._version
        ids = list(device_ids)
        query = self._source.rows.where(self._source.table.c.id.in_(ids))
        async with self._db.engine.connect() as connection:
            rows = (await connection.execute(query)).all()
        found = self._by_device(rows)
        for device_id in ids:
            if self._touched.get(device_id, -1) <= started:
                self._version += 1
                self._touched[device_id] = self._version
                self._set(device_id, *found.get(device_id, (None, None)))

    async def _resync_periodically(self) -> None:
        while True:
            await asyncio.sleep(self.RESYNC_SECONDS)
            try:
                await self.load()
            except Exception:  # retried at the next round
                _log.exception("psk_keyring_resync_failed")

    # --- changes -------------------------------------------------------------------------

    def _mine(self, session: Session) -> bool:
        return session.bind is self._db.engine.sync_engine

    def _committed(self, session: Session) -> None:
        if not self._mine(session):
            return
        changes: dict[str, tuple[str | None, str | None]] | None = session.info.pop(
            self._source.pending_key, None
        )
        if not changes:
            return
        for device_id, (identity, sealed) in changes.items():
            self._version += 1
            self._touched[device_id] = self._version
            self._set(device_id, identity, sealed)
        for device_id in changes:
            self._notify(self._local_listeners, device_id)

    def _rolled_back(self, session: Session) -> None:
        if self._mine(session):
            session.info.pop(self._source.pending_key, None)

    def _set(self, device_id: str, identity: str | None, sealed: str | None) -> None:
        """Make ``device_id`` hold ``identity`` with ``sealed`` (None: no PSK)."""
        changed: list[str] = []
        old_identity = self._identities.get(device_id)
        if old_identity is not None and (old_identity != identity or sealed is None):
            del self._identities[device_id]
            if self._entries.get(old_identity, ("",))[0] == device_id:
                del self._entries[old_identity]
                changed.append(old_identity)
        if identity is not None and sealed is not None:
            previous = self._entries.get(identity)
            if previous != (device_id, sealed):
                if previous is not None:
                    if previous[0] != device_id:  # taken over before its owner's change arrived
                        self._identities.pop(previous[0], None)
                    changed.append(identity)
                self._entries[identity] = (device_id, sealed)
                self._identities[device_id] = identity
        for changed_identity in changed:
            self._notify(self._change_listeners, changed_identity)

    @staticmethod
    def _notify(listeners: list[Callable[[str], Any]], key: str) -> None:
        for listener in listeners:
            try:
                listener(key)
            except Exception:  # one broken listener must not stop the others
                _log.exception("psk_keyring_listener_failed")
