"""The registration service: Register, Update, De-register and Send from devices
(Transport 1.1 §6.4, Core 1.1 §6.2, §6.4.1), and the end of a registration's lifetime.

It is the ``UplinkHandler`` part of ``LwM2mServer``: admission (registry, admission
policy, optional per-address limit), the registration store, lifetime expiry, the
listeners' registration events, and what a (re-)registration means for the device's
observations and queued requests.
"""

from __future__ import annotations

import asyncio
import contextlib
import random
import time
from collections.abc import Callable, Sequence
from dataclasses import replace

import structlog

from meadowlark.lwm2m.codec.errors import CodecError
from meadowlark.server import content
from meadowlark.server.context import ServerContext, utcnow
from meadowlark.server.downlink_sender import DownlinkSender
from meadowlark.server.errors import Lwm2mServerError
from meadowlark.server.observation_service import Observation, ObservationService
from meadowlark.server.operations import OperationKind
from meadowlark.server.queue_mode_sender import QueueModeSender
from meadowlark.server.registration import (
    Registration,
    RegistrationRateLimiter,
    RegistrationRejected,
    new_registration_id,
    parse_register,
    parse_update,
)
from meadowlark.server.scheduling import DeadlineScheduler
from meadowlark.server.security import Admission, same_principal
from meadowlark.server.transport import (
    BAD_REQUEST,
    CHANGED,
    CREATED,
    DELETED,
    FORBIDDEN,
    NOT_FOUND,
    SERVICE_UNAVAILABLE,
    UNSUPPORTED_CONTENT_FORMAT,
    Peer,
    UplinkResult,
)

_log = structlog.get_logger("meadowlark.lwm2m")


class RegistrationService:
    """Device-initiated requests of the Registration and Information Reporting interfaces."""

    def __init__(
        self,
        context: ServerContext,
        queue_mode: QueueModeSender,
        observations: ObservationService,
        downlink: DownlinkSender,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._context = context
        self._queue_mode = queue_mode
        self._observations = observations
        self._downlink = downlink
        per_address = context.options.max_registrations_per_address_per_minute
        self._limiter = RegistrationRateLimiter(per_address, clock) if per_address else None
        self._pending = 0
        """Register and Update requests in process (admitted, not yet answered)."""
        self._quiet = asyncio.Event()
        """Set while no Register or Update is in process."""
        self._quiet.set()
        self._expiry: DeadlineScheduler[str] = DeadlineScheduler(self._on_lifetime_over, clock)

    def start(self) -> None:
        self._expiry.start()

    async def stop(self) -> None:
        await self._expiry.stop()

    async def forget(self, endpoint: str) -> bool:
        """Drop the registration of a deleted or barred device; False if not registered.

        Nothing is sent: the device learns it from 4.04 on its next Update.
        """
        registration = await self._context.registrations.get_by_endpoint(endpoint)
        if registration is None:
            return False
        await self._context.registrations.remove(registration.registration_id)
        await self.deregistered(registration, expired=False)
        return True

    @property
    def pending(self) -> int:
        """Register and Update requests in process now."""
        return self._pending

    async def quiet(self, at_most: float) -> None:
        """Return once no Register or Update is in process, or after ``at_most`` seconds
        (work that can wait yields to registrations this way)."""
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self._quiet.wait(), at_most)

    def _admitted(self) -> None:
        self._pending += 1
        self._quiet.clear()

    def _answered(self) -> None:
        self._pending -= 1
        if not self._pending:
            self._quiet.set()

    def _overloaded(self) -> UplinkResult | None:
        """5.03 with a random Max-Age when too many uplinks are in process already."""
        if self._pending < self._context.options.max_pending_uplinks:
            return None
        low, high = self._context.options.overload_max_age
        return UplinkResult(SERVICE_UNAVAILABLE, max_age=random.randint(low, high))  # noqa: S311

    async def on_register(
        self, peer: Peer, query: Sequence[str], payload: bytes, content_format: int | None
    ) -> UplinkResult:
        shed = self._overloaded()
        if shed is not None:
            return shed
        self._admitted()
        try:
            return await self._register(peer, query, payload, content_format)
        finally:
            self._answered()

    async def on_update(
        self,
        peer: Peer,
        location: str,
        query: Sequence[str],
        payload: bytes,
        content_format: int | None,
    ) -> UplinkResult:
        shed = self._overloaded()
        if shed is not None:
            return shed
        self._admitted()
        try:
            return await self._update(peer, location, query, payload, content_format)
        finally:
            self._answered()

    async def _register(
        self, peer: Peer, query: Sequence[str], payload: bytes, content_format: int | None
    ) -> UplinkResult:
        retry_after = None if self._limiter is None else self._limiter.retry_after(peer.host)
        if retry_after is not None:
            _log.warning("registration_throttled", peer=str(peer), retry_after=retry_after)
            return UplinkResult(SERVICE_UNAVAILABLE, max_age=retry_after)
        try:
            params = parse_register(
                query, payload, content_format, self._context.options.supported_versions
            )
        except RegistrationRejected as exc:
            _log.info(
                "registration_rejected", peer=str(peer), code=str(exc.code), reason=exc.message
            )
            return UplinkResult(exc.code, diagnostic=exc.message)
        now = utcnow()
        registration = Registration(
            registration_id=new_registration_id(),
            endpoint=params.endpoint,
            lwm2m_version=params.lwm2m_version,
            binding=params.binding,
            lifetime=params.lifetime,
            queue_mode=params.queue_mode,
            sms_number=params.sms_number,
            objects=params.objects,
            peer=peer,
            registered_at=now,
            last_update=now,
        )
        refused = self._policy_refusal(registration, "register")
        if refused is not None:
            return refused
        # The registry checks the device's security mode against peer.identity (the
        # transport's authentication) along with its other admission rules.
        admission = await self._context.devices.admit_registration(registration)
        if admission is not Admission.ALLOWED:
            return self._refuse(params.endpoint, peer, admission, "register")
        replaced = await self._context.registrations.add(registration)
        if replaced is not None:
            self._expiry.cancel(replaced.registration_id)
        self._schedule_expiry(registration)
        # Protocol details at debug; the lifecycle line (``observability.lifecycle``)
        # is the operator's record.
        _log.debug(
            "device_registered",
            endpoint=registration.endpoint,
            registration_id=registration.registration_id,
            lwm2m=registration.lwm2m_version,
            binding=registration.binding,
            lifetime=registration.lifetime,
            queue_mode=registration.queue_mode,
            peer=str(peer),
            replaced=replaced is not None,
        )
        self._context.emit(lambda listener: listener.on_registered(registration, replaced))
        reobserve = self._observations.device_registered(registration.endpoint)
        self._queue_mode.after_uplink(registration)
        if not registration.queue_mode:
            # Requests queued while the device was away or in queue mode go out now.
            self._queue_mode.drain_if_queued(registration.endpoint)
        if reobserve:
            self._context.spawn(self._reobserve(registration, reobserve))
        return UplinkResult(CREATED, location_path=registration.location_path)

    async def _update(
        self,
        peer: Peer,
        location: str,
        query: Sequence[str],
        payload: bytes,
        content_format: int | None,
    ) -> UplinkResult:
        previous = await self._context.registrations.get(location)
        if previous is None:
            return UplinkResult(NOT_FOUND, diagnostic="unknown registration")
        if not same_principal(previous.peer, peer):
            return self._refuse(previous.endpoint, peer, Admission.IDENTITY_MISMATCH, "update")
        try:
            params = parse_update(query, payload, content_format, previous.lwm2m_version)
        except RegistrationRejected as exc:
            return UplinkResult(exc.code, diagnostic=exc.message)
        registration = params.applied_to(previous, peer, utcnow())
        refused = self._policy_refusal(registration, "update")
        if refused is not None:  # e.g. its SIM was suspended: the registration ends
            if await self._context.registrations.remove(previous.registration_id) is not None:
                await self.deregistered(previous, expired=False)
            return refused
        await self._context.registrations.replace(registration)
        self._schedule_expiry(registration)
        self._observations.registration_updated(registration)
        await self._context.devices.record_update(registration)
        _log.debug("device_updated", endpoint=registration.endpoint, peer=str(peer))
        if peer.address != previous.peer.address:
            self._address_changed(registration, previous.peer, "update")
        self._context.emit(lambda listener: listener.on_updated(registration, previous))
        self._queue_mode.after_uplink(registration)
        return UplinkResult(CHANGED)

    async def on_deregister(self, peer: Peer, location: str) -> UplinkResult:
        found = await self._context.registrations.get(location)
        if found is None:
            return UplinkResult(NOT_FOUND, diagnostic="unknown registration")
        if not same_principal(found.peer, peer):
            return self._refuse(found.endpoint, peer, Admission.IDENTITY_MISMATCH, "deregister")
        registration = await self._context.registrations.remove(location)
        if registration is None:  # gone meanwhile (expired, replaced)
            return UplinkResult(NOT_FOUND, diagnostic="unknown registration")
        registered_peer = registration.peer
        if peer.address != registered_peer.address:
            # Accepted all the same (the location is the NoSec device's only proof), but
            # the events name the address the De-register came from.
            registration = replace(registration, peer=peer)
            self._address_changed(registration, registered_peer, "deregister")
        await self.deregistered(registration, expired=False, registered_peer=registered_peer)
        return UplinkResult(DELETED)

    async def on_send(self, peer: Peer, payload: bytes, content_format: int | None) -> UplinkResult:
        registration = await self._context.registrations.get_by_peer(peer.host, peer.port)
        if registration is None:
            return UplinkResult(NOT_FOUND, diagnostic="no registration from this address")
        if not same_principal(registration.peer, peer):
            return self._refuse(registration.endpoint, peer, Admission.IDENTITY_MISMATCH, "send")
        if content_format is None or content_format not in content.TIMESTAMPED_CODECS:
            return UplinkResult(UNSUPPORTED_CONTENT_FORMAT, diagnostic="use SenML or LwM2M CBOR")
        now = utcnow()
        try:
            batches = content.decode_timestamped(
                content_format, payload, self._context.models_for(registration), now
            )
        except CodecError as exc:
            return UplinkResult(BAD_REQUEST, diagnostic=str(exc))
        oldest_first = sorted(batches, key=lambda batch: batch.timestamp or now)
        for batch in oldest_first:
            self._context.cache(registration, batch.nodes, batch.timestamp or now)
        _log.debug("device_sent_data", endpoint=registration.endpoint, batches=len(batches))
        self._context.emit(lambda listener: listener.on_send(registration, batches))
        self._queue_mode.after_uplink(registration)
        return UplinkResult(CHANGED)

    def _schedule_expiry(self, registration: Registration) -> None:
        self._expiry.schedule_in(
            registration.registration_id,
            registration.lifetime + self._context.options.lifetime_grace,
        )

    def _on_lifetime_over(self, registration_id: str) -> None:
        self._context.spawn(self._expire(registration_id))

    async def _expire(self, registration_id: str) -> None:
        registration = await self._context.registrations.remove(registration_id)
        if registration is not None:
            await self.deregistered(registration, expired=True)

    def _refuse(
        self, endpoint: str, peer: Peer, admission: Admission, operation: str
    ) -> UplinkResult:
        """Answer 4.03 and report why (log line, ``on_registration_refused``)."""
        log = _log.warning if admission.is_security_refusal else _log.info
        log(
            "registration_forbidden",
            endpoint=endpoint,
            peer=str(peer),
            secure=peer.secure,
            operation=operation,
            reason=admission.value,
        )
        self._context.emit(
            lambda listener: listener.on_registration_refused(
                endpoint, peer, admission.value, operation
            )
        )
        return UplinkResult(FORBIDDEN, diagnostic=admission.diagnostic)

    def _policy_refusal(self, registration: Registration, operation: str) -> UplinkResult | None:
        """4.03 (reported like a registry refusal) if the admission policy refuses."""
        if self._context.admission_policy is None:
            return None
        refusal = self._context.admission_policy.refusal(registration, operation)
        if refusal is None:
            return None
        endpoint, peer = registration.endpoint, registration.peer
        _log.info(
            "registration_forbidden",
            endpoint=endpoint,
            peer=str(peer),
            operation=operation,
            reason=refusal.reason,
        )
        self._context.emit(
            lambda listener: listener.on_registration_refused(
                endpoint, peer, refusal.reason, operation
            )
        )
        return UplinkResult(FORBIDDEN, diagnostic=refusal.diagnostic)

    def _address_changed(self, registration: Registration, previous: Peer, operation: str) -> None:
        _log.info(
            "registration_address_changed",
            endpoint=registration.endpoint,
            registration_id=registration.registration_id,
            operation=operation,
            previous_peer=str(previous),
            peer=str(registration.peer),
        )
        self._context.emit(
            lambda listener: listener.on_address_changed(registration, previous, operation)
        )

    async def deregistered(
        self,
        registration: Registration,
        *,
        expired: bool,
        registered_peer: Peer | None = None,
    ) -> None:
        """``registered_peer``: the registration's address when a De-register came from
        another one (``registration.peer``)."""
        self._expiry.cancel(registration.registration_id)
        self._queue_mode.forget(registration.endpoint)
        self._observations.device_deregistered(registration.endpoint, expired=expired)
        await self._context.devices.record_deregistration(registration, utcnow())
        _log.debug(
            "device_deregistered",
            endpoint=registration.endpoint,
            registration_id=registration.registration_id,
            expired=expired,
            peer=str(registration.peer),
            registered_peer=str(registered_peer or registration.peer),
        )
        self._context.emit(lambda listener: listener.on_deregistered(registration, expired=expired))

    async def _reobserve(self, registration: Registration, observations: list[Observation]) -> None:
        for observation in observations:
            paths = observation.operation.paths
            fmt = observation.requested_format
            try:
                if observation.operation.kind is OperationKind.OBSERVE_COMPOSITE:
                    await self._downlink.observe_composite(registration.endpoint, paths, format=fmt)
                else:
                    await self._downlink.observe(registration.endpoint, paths[0], format=fmt)
            except Lwm2mServerError as exc:
                _log.info(
                    "reobserve_failed",
                    endpoint=registration.endpoint,
                    paths=[str(path) for path in paths],
                    error=exc.message,
                )
