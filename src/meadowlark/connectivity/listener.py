"""What the LwM2M server sees, as the connectivity layer records it: registrations and
refusals of Things' devices become events, and devices naming an IMEI (in their endpoint
name, or as the serial number /3/0/2 in anything they report) are linked."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Mapping

from meadowlark.connectivity import cdr
from meadowlark.connectivity.enforcement import (
    IMEI_MISMATCH,
    THING_RETIRED,
    THING_SUSPENDED,
    ThingFacts,
    ThingIndex,
)
from meadowlark.connectivity.identifiers import imei_of_endpoint, validate_imei
from meadowlark.connectivity.recorder import ActivityRecorder
from meadowlark.core.errors import InvalidInput
from meadowlark.lwm2m.node import Node
from meadowlark.lwm2m.path import LwM2mPath
from meadowlark.server.registration import Registration
from meadowlark.server.service import ServerListener
from meadowlark.server.transport import Peer
from meadowlark.server.values import flatten

POLICY_REASONS = frozenset({THING_SUSPENDED, THING_RETIRED, IMEI_MISMATCH})
REFUSAL_AUDIT_EVENT = "thing.registration_refused"
SERIAL_NUMBER = LwM2mPath(3, 0, 2)
"""Device object serial number: cellular modules report their IMEI there."""
_DEVICE_OBJECT_OR_ROOT = (3, None)

AutoLink = Callable[[ThingFacts, str], Awaitable[None]]
DomainOf = Callable[[str], str]
"""The domain of a device, by endpoint name."""


def reported_serial(nodes: Mapping[LwM2mPath, Node]) -> str | None:
    """The serial number (/3/0/2) among reported values, whichever level was read."""
    for path, node in nodes.items():
        if path.object_id not in _DEVICE_OBJECT_OR_ROOT:
            continue  # most reports (every notification of a sensor value)
        if SERIAL_NUMBER.ids[: path.depth] == path.ids:
            leaf = flatten(node, path).get(SERIAL_NUMBER)
            if leaf is not None and isinstance(leaf[1], str):
                return leaf[1]
    return None


def imei_in_serial(serial: str) -> str | None:
    """An IMEI given as a serial number: its digits, or a ``urn:imei:`` name."""
    text = serial.strip()
    urn = imei_of_endpoint(text)
    if urn is not None:
        return urn
    try:
        return validate_imei(text) or None
    except InvalidInput:
        return None


class ConnectivityListener(ServerListener):
    def __init__(
        self,
        index: ThingIndex,
        recorder: ActivityRecorder,
        auto_link: AutoLink,
        domain_of: DomainOf | None = None,
    ):
        self._index = index
        self._recorder = recorder
        self._auto_link = auto_link
        self._domain_of = domain_of
        self._tasks: set[asyncio.Task[None]] = set()

    def on_registered(self, registration: Registration, replaced: Registration | None) -> None:
        endpoint = registration.endpoint
        self._recorder.seen_at(registration.peer.address, endpoint)
        facts = self._index.for_endpoint(endpoint)
        if facts is None:
            return
        if facts.endpoint != endpoint:
            self._spawn(self._auto_link(facts, endpoint))
        self._recorder.event(
            cdr.DataType.REGISTRATION,
            domain_id=facts.domain_id,
            thing_id=facts.id,
            endpoint=endpoint,
            message=f"registered from {registration.peer.host}",
            ip=registration.peer.host,
            registrationId=registration.registration_id,
        )

    def on_updated(self, registration: Registration, previous: Registration) -> None:
        self._recorder.seen_at(registration.peer.address, registration.endpoint)

    def on_deregistered(self, registration: Registration, *, expired: bool) -> None:
        self._recorder.left(registration.peer.address)
        facts = self._index.for_endpoint(registration.endpoint)
        if facts is not None:
            self._recorder.event(
                cdr.DataType.DEREGISTRATION,
                domain_id=facts.domain_id,
                thing_id=facts.id,
                endpoint=registration.endpoint,
                message="registration expired" if expired else "registration ended",
            )

    def on_registration_refused(
        self, endpoint: str, peer: Peer, reason: str, operation: str
    ) -> None:
        if reason not in POLICY_REASONS:
            return
        facts = self._index.for_endpoint(endpoint)
        if facts is None:
            return
        imei = self._index.reported_imei(endpoint)
        violation = reason == IMEI_MISMATCH
        self._recorder.event(
            cdr.DataType.IMEI_VIOLATION if violation else cdr.DataType.REGISTRATION_REFUSED,
            domain_id=facts.domain_id,
            thing_id=facts.id,
            endpoint=endpoint,
            severity="Warning",
            message=f"{operation} refused: {reason}",
            reason=reason,
            imei=imei,
            peer=str(peer),
        )
        self._recorder.audit(
            REFUSAL_AUDIT_EVENT,
            subject=facts.id,
            domain_id=facts.domain_id,
            client_ip=peer.host[:64],
            details={"endpoint": endpoint, "reason": reason, "operation": operation, "imei": imei},
        )

    def on_values_cached(self, registration: Registration, nodes: Mapping[LwM2mPath, Node]) -> None:
        serial = reported_serial(nodes)
        imei = None if serial is None else imei_in_serial(serial)
        if imei is None:
            return
        endpoint = registration.endpoint
        self._index.note_reported_imei(endpoint, imei)
        self._link_reported(endpoint, imei)

    def _link_reported(self, endpoint: str, imei: str) -> None:
        """Link the free Thing of ``imei`` to the device that reported it, if the device is
        free too and sits in the Thing's domain (or below): a device of another tenant
        reporting the same number links nothing."""
        facts = self._index.for_imei(imei)
        if facts is None or facts.endpoint or self._index.for_endpoint(endpoint) is not None:
            return
        if self._domain_of is not None and not self._domain_of(endpoint).startswith(
            facts.domain_id
        ):
            return
        self._spawn(self._auto_link(facts, endpoint))

    def _spawn(self, work: Awaitable[None]) -> None:
        task = asyncio.ensure_future(work)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)
