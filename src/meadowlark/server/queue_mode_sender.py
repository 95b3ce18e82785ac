"""Queue mode (Transport 1.1 §6.5): which devices are awake, and requests for sleepers.

A queue-mode device is reachable for ``awake_window`` seconds after each message it
sends. Requests for a sleeping device are stored in the ``RequestQueue`` and delivered,
oldest first, when it talks again; the caller may wait for the answer meanwhile.
"""

from __future__ import annotations

import asyncio
import time
import uuid
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field, replace
from datetime import timedelta
from typing import Any

import structlog

from meadowlark.server.context import ServerContext, utcnow
from meadowlark.server.errors import (
    DeviceErrorResponse,
    DeviceUnreachableError,
    Lwm2mServerError,
    QueuedRequestExpiredError,
    RequestQueuedError,
    RequestTimeoutError,
)
from meadowlark.server.operations import Operation, QueuedRequest, QueuedRequestState
from meadowlark.server.registration import Registration
from meadowlark.server.scheduling import DeadlineScheduler
from meadowlark.server.transport import DownlinkResponse, Peer

_log = structlog.get_logger("meadowlark.lwm2m")

SendNow = Callable[[Registration, Operation, float], Awaitable[tuple[object, DownlinkResponse]]]
"""Sends an operation to an awake device now: the downlink sender's ``send_now``."""


@dataclass
class _Waiters:
    futures: dict[str, asyncio.Future[object]] = field(default_factory=dict)

    def resolve(self, request_id: str, result: object, error: Exception | None) -> None:
        future = self.futures.get(request_id)
        if future is None or future.done():
            return
        if error is None:
            future.set_result(result)
        else:
            future.set_exception(error)


class QueueModeSender:
    """Presence (awake/sleeping) of queue-mode devices and their request queue."""

    def __init__(
        self, context: ServerContext, send_now: SendNow, clock: Callable[[], float] = time.monotonic
    ) -> None:
        self._context = context
        self._send_now = send_now
        self._presence: DeadlineScheduler[str] = DeadlineScheduler(self._on_awake_over, clock)
        self._awake: dict[str, Peer] = {}
        """Awake queue-mode devices: endpoint -> the peer they were last heard from."""
        self._draining: set[str] = set()
        self._waiters = _Waiters()
        self._sweeper: asyncio.Task[None] | None = None

    def start(self) -> None:
        self._presence.start()
        if self._sweeper is None:
            self._sweeper = asyncio.get_running_loop().create_task(
                self._sweep_queue(), name="lwm2m-queue-sweeper"
            )

    async def stop(self) -> None:
        await self._presence.stop()
        sweeper, self._sweeper = self._sweeper, None
        if sweeper is not None:
            sweeper.cancel()
            await asyncio.gather(sweeper, return_exceptions=True)

    def is_awake(self, registration: Registration) -> bool:
        """Whether requests go out now (always, unless the device is in queue mode)."""
        return not registration.queue_mode or registration.endpoint in self._awake

    @property
    def awake_count(self) -> int:
        """Queue-mode devices in their awake window now."""
        return len(self._awake)

    # --- presence ------------------------------------------------------------------------

    def after_uplink(self, registration: Registration) -> None:
        """The device sent a request: it is awake, and its queue (if any) goes out."""
        self.heard_from(registration)
        if registration.queue_mode:
            self.drain_if_queued(registration.endpoint)

    def heard_from(self, registration: Registration) -> None:
        """Record the contact; a queue-mode device stays awake for the awake window."""
        self._context.devices.record_contact(registration.endpoint, utcnow())
        if not registration.queue_mode:
            return
        self._presence.schedule_in(registration.endpoint, self._context.options.awake_window)
        awake = registration.endpoint in self._awake
        self._awake[registration.endpoint] = registration.peer
        if not awake:
            _log.debug("device_awake", endpoint=registration.endpoint)
            self._context.emit(lambda listener: listener.on_awake(registration))

    def forget(self, endpoint: str) -> None:
        """The device's registration ended: it is neither awake nor sleeping."""
        self._presence.cancel(endpoint)
        self._awake.pop(endpoint, None)

    def peer_closed(self, peer: Peer) -> None:
        """The connection of ``peer`` closed: the devices last heard through it sleep
        now (their requests wait in the queue until they connect again)."""
        gone = [
            endpoint
            for endpoint, heard in self._awake.items()
            if heard == peer and heard.handle is peer.handle
        ]
        for endpoint in gone:
            self._presence.cancel(endpoint)
            self._on_awake_over(endpoint)

    def _on_awake_over(self, endpoint: str) -> None:
        if self._awake.pop(endpoint, None) is None:
            return
        self._context.spawn(self._report_sleeping(endpoint))

    async def _report_sleeping(self, endpoint: str) -> None:
        registration = await self._context.registrations.get_by_endpoint(endpoint)
        if registration is not None:
            _log.debug("device_sleeping", endpoint=endpoint)
            self._context.emit(lambda listener: listener.on_sleeping(registration))

    # --- the request queue -----------------------------------------------------------------

    async def enqueue(
        self, registration: Registration, operation: Operation, wait_seconds: float
    ) -> object:
        """Queue ``operation``; wait up to ``wait_seconds`` for its delivery's result,
        else raise ``RequestQueuedError`` (it stays queued)."""
        now = utcnow()
        request = QueuedRequest(
            id=uuid.uuid4().hex,
            endpoint=registration.endpoint,
            operation=operation,
            created_at=now,
            expires_at=now + timedelta(seconds=self._context.options.queued_request_ttl),
        )
        await self._context.queue.enqueue(request)
        _log.info(
            "request_queued",
            endpoint=registration.endpoint,
            request_id=request.id,
            kind=operation.kind.value,
        )
        if wait_seconds <= 0:
            raise RequestQueuedError(registration.endpoint, request.id)
        future: asyncio.Future[object] = asyncio.get_running_loop().create_future()
        self._waiters.futures[request.id] = future
        try:
            return await asyncio.wait_for(asyncio.shield(future), wait_seconds)
        except TimeoutError:
            raise RequestQueuedError(registration.endpoint, request.id) from None
        finally:
            del self._waiters.futures[request.id]

    def drain_if_queued(self, endpoint: str) -> None:
        """Drain the device's queue unless the queue knows (without I/O) it is empty."""
        if self._context.queue.may_have_pending(endpoint):
            self._context.spawn(self._drain_queue(endpoint))

    async def _drain_queue(self, endpoint: str) -> None:
        """Send the queued requests of a device that just talked to us, oldest first."""
        if endpoint in self._draining:
            return
        self._draining.add(endpoint)
        try:
            for request in await self._context.queue.pending(endpoint, utcnow()):
                registration = await self._context.registrations.get_by_endpoint(endpoint)
                if registration is None or not self.is_awake(registration):
                    return
                if not await self._deliver(registration, request):
                    return
        finally:
            self._draining.discard(endpoint)

    async def _deliver(self, registration: Registration, request: QueuedRequest) -> bool:
        """Send one queued request; False when the device did not answer (keep it queued)."""
        try:
            result, response = await self._send_now(
                registration, request.operation, self._context.options.request_timeout
            )
        except (RequestTimeoutError, DeviceUnreachableError) as exc:
            _log.info("queued_request_undelivered", request_id=request.id, error=exc.message)
            return False
        except DeviceErrorResponse as exc:
            await self._finish(
                request, QueuedRequestState.FAILED, None, exc, {"code": str(exc.code)}
            )
            return True
        except Lwm2mServerError as exc:
            await self._finish(
                request, QueuedRequestState.FAILED, None, exc, {"error": exc.message}
            )
            return True
        outcome = {
            "code": str(response.code),
            "content_format": response.content_format,
            "payload_hex": response.payload.hex(),
        }
        await self._finish(request, QueuedRequestState.DONE, result, None, outcome)
        return True

    async def _finish(
        self,
        request: QueuedRequest,
        state: QueuedRequestState,
        result: object,
        error: Lwm2mServerError | None,
        outcome: dict[str, Any],
    ) -> None:
        await self._context.queue.finish(request.id, state, outcome)
        finished = replace(request, state=state, result=outcome)
        _log.info("queued_request_finished", request_id=request.id, state=state.value)
        self._waiters.resolve(request.id, result, error)
        self._context.emit(
            lambda listener: listener.on_queued_request_done(finished, result, error)
        )

    async def _sweep_queue(self) -> None:
        while True:
            await asyncio.sleep(self._context.options.queue_sweep_interval)
            try:
                for request in await self._context.queue.expire(utcnow()):
                    self._expired(request)
            except Exception:  # a failing store must not end the sweeper for good
                _log.exception("queue_sweep_failed")

    def _expired(self, request: QueuedRequest) -> None:
        error = QueuedRequestExpiredError(f"queued request {request.id} expired")
        self._waiters.resolve(request.id, None, error)
        self._context.emit(lambda listener: listener.on_queued_request_done(request, None, error))
