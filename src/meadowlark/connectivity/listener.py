"""What the LwM2M server sees, as the connectivity layer records it: registrations and
refusals of Things' devices become events, and devices naming an IMEI are linked."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable

from meadowlark.connectivity import cdr
from meadowlark.connectivity.enforcement import (
    IMEI_MISMATCH,
    THING_RETIRED,
    THING_SUSPENDED,
    ThingFacts,
    ThingIndex,
)
from meadowlark.connectivity.identifiers import validate_imei
from meadowlark.connectivity.recorder import ActivityRecorder
from meadowlark.core.errors import InvalidInput
from meadowlark.lwm2m.codec.timestamped import TimestampedNodes
from meadowlark.lwm2m.node import Node, SingleResource
from meadowlark.lwm2m.path import LwM2mPath
from meadowlark.server.registration import Registration
from meadowlark.server.service import ServerListener
from meadowlark.server.transport import Peer

POLICY_REASONS = frozenset({THING_SUSPENDED, THING_RETIRED, IMEI_MISMATCH})
REFUSAL_AUDIT_EVENT = "thing.registration_refused"
SERIAL_NUMBER = LwM2mPath(3, 0, 2)
"""Device object serial number: cellular modules report their IMEI there."""

AutoLink = Callable[[ThingFacts, str], Awaitable[None]]


class ConnectivityListener(ServerListener):
    def __init__(self, index: ThingIndex, recorder: ActivityRecorder, auto_link: AutoLink):
        self._index = index
        self._recorder = recorder
        self._auto_link = auto_link
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

    def on_notification(
        self, registration: Registration, paths: tuple[LwM2mPath, ...], nodes: dict[LwM2mPath, Node]
    ) -> None:
        self._note_imei(registration.endpoint, nodes)

    def on_send(self, registration: Registration, batches: list[TimestampedNodes]) -> None:
        for batch in batches:
            self._note_imei(registration.endpoint, batch.nodes)

    def _note_imei(self, endpoint: str, nodes: dict[LwM2mPath, Node]) -> None:
        node = nodes.get(SERIAL_NUMBER)
        if isinstance(node, SingleResource) and isinstance(node.value, str):
            try:
                imei = validate_imei(node.value)
            except InvalidInput:
                return
            if imei:
                self._index.note_reported_imei(endpoint, imei)

    def _spawn(self, work: Awaitable[None]) -> None:
        task = asyncio.ensure_future(work)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)
