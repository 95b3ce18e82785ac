"""Which devices may use the network: the admission policy the LwM2M server asks on
every Register and Update.

It answers from memory (the server must not wait for the database on that path): an
index of every Thing linked to a device or naming an IMEI, with its state and IMEI
lock, kept current by the Things service after each change it commits and loaded at
start-up. Other nodes of a cluster see a change when they reload (at start-up).
"""

from __future__ import annotations

from dataclasses import dataclass

from sqlalchemy import select

from meadowlark.connectivity.identifiers import imei_of_endpoint
from meadowlark.connectivity.states import ThingState
from meadowlark.server.ports import PolicyRefusal
from meadowlark.server.registration import Registration
from meadowlark.store.connectivity_models import Thing, ThingsGroup
from meadowlark.store.db import Database

THING_SUSPENDED = "thing_suspended"
THING_RETIRED = "thing_retired"
IMEI_MISMATCH = "imei_mismatch"


@dataclass(frozen=True, slots=True)
class ThingFacts:
    """What admission needs to know of one Thing."""

    id: str
    domain_id: str
    state: ThingState
    imei: str
    master_imei: str
    lock_master_imei: bool
    group_id: str | None
    endpoint: str | None

    @classmethod
    def of(cls, thing: Thing) -> ThingFacts:
        return cls(
            thing.id,
            thing.domain_id,
            ThingState(thing.state),
            thing.imei,
            thing.master_imei,
            thing.lock_master_imei,
            thing.group_id,
            thing.device_endpoint,
        )


@dataclass(frozen=True, slots=True)
class GroupLock:
    imei_prefix: str
    locked: bool


class ThingIndex:
    """Things by id, by linked endpoint and by IMEI; group IMEI locks by group id."""

    def __init__(self) -> None:
        self._by_id: dict[str, ThingFacts] = {}
        self._by_endpoint: dict[str, ThingFacts] = {}
        self._by_imei: dict[str, ThingFacts] = {}
        self._groups: dict[str, GroupLock] = {}
        self._reported_imei: dict[str, str] = {}

    async def load(self, db: Database) -> None:
        async with db.session() as session:
            things = (await session.scalars(select(Thing))).all()
            groups = (await session.scalars(select(ThingsGroup))).all()
        for group in groups:
            self.put_group(group.id, group.imei_prefix, group.lock_master_imei)
        for thing in things:
            self.put(ThingFacts.of(thing))

    def put(self, facts: ThingFacts) -> None:
        self.remove(facts.id)
        self._by_id[facts.id] = facts
        if facts.endpoint:
            self._by_endpoint[facts.endpoint] = facts
        if facts.imei:
            self._by_imei[facts.imei] = facts

    def remove(self, thing_id: str) -> None:
        old = self._by_id.pop(thing_id, None)
        if old is None:
            return
        if old.endpoint and self._by_endpoint.get(old.endpoint) is old:
            del self._by_endpoint[old.endpoint]
        if old.imei and self._by_imei.get(old.imei) is old:
            del self._by_imei[old.imei]

    def put_group(self, group_id: str, imei_prefix: str, locked: bool) -> None:
        self._groups[group_id] = GroupLock(imei_prefix, locked)

    def remove_group(self, group_id: str) -> None:
        self._groups.pop(group_id, None)

    def note_reported_imei(self, endpoint: str, imei: str) -> None:
        """The IMEI a device reported (Device object's serial number)."""
        self._reported_imei[endpoint] = imei

    def reported_imei(self, endpoint: str) -> str | None:
        return imei_of_endpoint(endpoint) or self._reported_imei.get(endpoint)

    def for_endpoint(self, endpoint: str) -> ThingFacts | None:
        """The Thing linked to ``endpoint``, or the one whose IMEI its name states."""
        facts = self._by_endpoint.get(endpoint)
        if facts is not None:
            return facts
        imei = imei_of_endpoint(endpoint)
        return None if imei is None else self._by_imei.get(imei)

    def for_imei(self, imei: str) -> ThingFacts | None:
        """The Thing whose inventory IMEI is ``imei``."""
        return self._by_imei.get(imei)

    def get(self, thing_id: str) -> ThingFacts | None:
        return self._by_id.get(thing_id)

    def imei_violation(self, facts: ThingFacts, imei: str | None) -> str | None:
        """Why ``imei`` may not use this SIM (its own lock, its group's), or None."""
        if facts.lock_master_imei and facts.master_imei and imei != facts.master_imei:
            return f"IMEI {imei or 'unknown'} is not the SIM's master IMEI"
        group = self._groups.get(facts.group_id) if facts.group_id else None
        if group is not None and group.locked and group.imei_prefix:
            if imei is None or not imei.startswith(group.imei_prefix):
                return f"IMEI {imei or 'unknown'} is outside the group's IMEI range"
        return None


class ThingAdmissionPolicy:
    """``server.ports.AdmissionPolicy``: SIM state and IMEI lock of the device's Thing."""

    def __init__(self, index: ThingIndex) -> None:
        self._index = index

    def refusal(self, registration: Registration, operation: str) -> PolicyRefusal | None:
        facts = self._index.for_endpoint(registration.endpoint)
        if facts is None:
            return None
        if facts.state is ThingState.SUSPENDED:
            return PolicyRefusal(THING_SUSPENDED, "the device's SIM is suspended")
        if facts.state is ThingState.RETIRED:
            return PolicyRefusal(THING_RETIRED, "the device's SIM is retired")
        violation = self._index.imei_violation(
            facts, self._index.reported_imei(registration.endpoint)
        )
        if violation is not None:
            return PolicyRefusal(IMEI_MISMATCH, violation)
        return None
