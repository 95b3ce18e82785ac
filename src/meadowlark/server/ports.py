"""Persistence the server needs, as Protocols with in-memory implementations.

``store/devices.py`` implements them on the SQL database.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from datetime import datetime
from typing import Any, Protocol

from meadowlark.lwm2m.path import ROOT, LwM2mPath
from meadowlark.server.operations import QueuedRequest, QueuedRequestState
from meadowlark.server.registration import Registration
from meadowlark.server.security import Admission, DeviceSecurity, check_peer_security
from meadowlark.server.values import CachedValue


class DeviceRegistry(Protocol):
    """The device records behind registrations (created on first Register)."""

    async def admit_registration(self, registration: Registration) -> Admission:
        """Whether the device may register; if so, record the registration in one go.

        Must apply ``security.check_peer_security`` to the device's security settings
        and ``registration.peer`` first (a device without a record counts as NoSec),
        so that only the device itself can register under a secured endpoint name.
        """

    async def record_update(self, registration: Registration) -> None: ...

    async def record_deregistration(self, registration: Registration, at: datetime) -> None: ...

    def record_contact(self, endpoint: str, at: datetime) -> None:
        """Note that the device talked to us; may be written later in a batch."""


@dataclass(frozen=True, slots=True)
class PolicyRefusal:
    """Why an admission policy refuses a device: ``reason`` for events, ``diagnostic``
    for the 4.03 answer."""

    reason: str
    diagnostic: str


class AdmissionPolicy(Protocol):
    """Rules beyond the device registry's, checked on every Register and Update (e.g.
    the state of the SIM card a device uses). Must answer from memory: no I/O."""

    def refusal(self, registration: Registration, operation: str) -> PolicyRefusal | None:
        """None admits the device; ``operation`` is ``register`` or ``update``."""


class ValueCache(Protocol):
    """Last known resource values per device and leaf path."""

    def put(self, endpoint: str, values: Mapping[LwM2mPath, CachedValue]) -> None:
        """Remember values; must not block (persistent caches write in batches)."""

    async def get(
        self, endpoint: str, prefix: LwM2mPath = ROOT
    ) -> dict[LwM2mPath, CachedValue]: ...


class RequestQueue(Protocol):
    """Requests for sleeping devices, kept until delivered or expired."""

    async def enqueue(self, request: QueuedRequest) -> None: ...

    def may_have_pending(self, endpoint: str) -> bool:
        """False only if ``endpoint`` certainly has no pending request (no I/O; cheap
        enough to ask on every Register). True may be a false positive."""

    async def pending(self, endpoint: str, now: datetime) -> list[QueuedRequest]:
        """Pending, unexpired requests for ``endpoint``, oldest first."""

    async def finish(
        self, request_id: str, state: QueuedRequestState, result: Mapping[str, Any]
    ) -> None: ...

    async def expire(self, now: datetime) -> list[QueuedRequest]:
        """Mark pending requests past their expiry as expired and return them."""


@dataclass
class InMemoryDeviceRegistry:
    """Allows every device unless its endpoint name is listed as refused, or its
    ``security`` settings are not met by the registering peer (unlisted: NoSec)."""

    refused: dict[str, Admission] = field(default_factory=dict)
    contacts: dict[str, datetime] = field(default_factory=dict)
    registrations: dict[str, Registration] = field(default_factory=dict)
    security: dict[str, DeviceSecurity] = field(default_factory=dict)

    async def admit_registration(self, registration: Registration) -> Admission:
        endpoint = registration.endpoint
        admission = check_peer_security(endpoint, self.security.get(endpoint), registration.peer)
        if admission is Admission.ALLOWED:
            admission = self.refused.get(endpoint, Admission.ALLOWED)
        if admission is Admission.ALLOWED:
            self.registrations[registration.endpoint] = registration
        return admission

    async def record_update(self, registration: Registration) -> None:
        self.registrations[registration.endpoint] = registration

    async def record_deregistration(self, registration: Registration, at: datetime) -> None:
        self.registrations.pop(registration.endpoint, None)

    def record_contact(self, endpoint: str, at: datetime) -> None:
        self.contacts[endpoint] = at


@dataclass
class InMemoryValueCache:
    values: dict[str, dict[LwM2mPath, CachedValue]] = field(default_factory=dict)

    def put(self, endpoint: str, values: Mapping[LwM2mPath, CachedValue]) -> None:
        self.values.setdefault(endpoint, {}).update(values)

    async def get(self, endpoint: str, prefix: LwM2mPath = ROOT) -> dict[LwM2mPath, CachedValue]:
        return {
            path: value
            for path, value in self.values.get(endpoint, {}).items()
            if path.starts_with(prefix)
        }


@dataclass
class InMemoryRequestQueue:
    requests: dict[str, QueuedRequest] = field(default_factory=dict)
    # Endpoint -> ids of its pending requests, for ``may_have_pending``.
    _pending_ids: dict[str, set[str]] = field(default_factory=dict, repr=False)

    async def enqueue(self, request: QueuedRequest) -> None:
        self.requests[request.id] = request
        if request.state is QueuedRequestState.PENDING:
            self._pending_ids.setdefault(request.endpoint, set()).add(request.id)

    def may_have_pending(self, endpoint: str) -> bool:
        return endpoint in self._pending_ids

    async def pending(self, endpoint: str, now: datetime) -> list[QueuedRequest]:
        found = [
            request
            for request_id in self._pending_ids.get(endpoint, ())
            if (request := self.requests[request_id]).state is QueuedRequestState.PENDING
            and request.expires_at > now
        ]
        return sorted(found, key=lambda request: request.created_at)

    async def finish(
        self, request_id: str, state: QueuedRequestState, result: Mapping[str, Any]
    ) -> None:
        request = self.requests.get(request_id)
        if request is not None:
            self.requests[request_id] = replace(request, state=state, result=dict(result))
            if state is not QueuedRequestState.PENDING:
                self._forget(request)

    async def expire(self, now: datetime) -> list[QueuedRequest]:
        expired = [
            request
            for request in self.requests.values()
            if request.state is QueuedRequestState.PENDING and request.expires_at <= now
        ]
        for request in expired:
            self.requests[request.id] = replace(request, state=QueuedRequestState.EXPIRED)
            self._forget(request)
        return expired

    def _forget(self, request: QueuedRequest) -> None:
        ids = self._pending_ids.get(request.endpoint)
        if ids is not None:
            ids.discard(request.id)
            if not ids:
                del self._pending_ids[request.endpoint]
