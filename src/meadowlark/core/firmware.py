"""Firmware update of one device through the LwM2M Firmware Update object (/5, OMA 5.xml).

The procedure: read the current version (/3/0/3) and state; hand the device the image
(Package URI /5/0/1 to pull it from us over CoAP or HTTP, or the Package /5/0/0 written
block-wise); wait for State (/5/0/3) Downloaded; Execute Update (/5/0/2); follow State
and Update Result (/5/0/5) to success (1) or a failure code; read the new version.
Progress comes from an observation of /5/0, with reads as a fallback (a device that
cannot observe, a lost notification, a device that re-registered after rebooting into
the new firmware).
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from enum import IntEnum
from typing import Any

import structlog

from meadowlark.core.errors import NotFound
from meadowlark.core.firmware_contract import FirmwareOutcome
from meadowlark.core.firmware_images import FirmwareImages
from meadowlark.lwm2m.codec.formats import ContentFormat
from meadowlark.lwm2m.node import Node, ObjectInstance, ResourceType, SingleResource
from meadowlark.lwm2m.path import LwM2mPath
from meadowlark.server.errors import Lwm2mServerError
from meadowlark.server.registration import Registration
from meadowlark.server.service import LwM2mServer, ServerListener
from meadowlark.store.db import Database
from meadowlark.store.device_models import Device
from meadowlark.store.firmware_models import FirmwareResource

_log = structlog.get_logger("meadowlark.firmware")

PACKAGE_ID, PACKAGE_URI_ID, STATE_ID, RESULT_ID = 0, 1, 3, 5
FIRMWARE_VERSION = LwM2mPath(3, 0, 3)
FIRMWARE_UPDATE = LwM2mPath(5, 0)
PACKAGE = LwM2mPath(5, 0, PACKAGE_ID)
PACKAGE_URI = LwM2mPath(5, 0, PACKAGE_URI_ID)
UPDATE = LwM2mPath(5, 0, 2)
URL_MARGIN = 60.0
"""Seconds a download URL outlives the update's timeout."""


class State(IntEnum):
    IDLE = 0
    DOWNLOADING = 1
    DOWNLOADED = 2
    UPDATING = 3


SUCCESS = 1
DEFERRED = 11
UPDATE_RESULTS: Mapping[int, str] = {
    0: "initial value",
    1: "firmware updated successfully",
    2: "not enough flash memory for the package",
    3: "out of RAM during download",
    4: "connection lost during download",
    5: "integrity check failure",
    6: "unsupported package type",
    7: "invalid URI",
    8: "firmware update failed",
    9: "unsupported protocol",
    10: "firmware update cancelled",
    11: "firmware update deferred",
}


def describe_result(result: int | None) -> str:
    if result is None:
        return "Update Result unknown"
    return f"Update Result {result} ({UPDATE_RESULTS.get(result, 'unknown code')})"


@dataclass
class _Progress:
    """What the device last told about /5/0/3 and /5/0/5, and whether it re-registered."""

    state: int | None = None
    result: int | None = None
    reregistered: bool = False
    changed: asyncio.Event = field(default_factory=asyncio.Event)

    def forget(self) -> None:
        self.state = self.result = None

    def feed(self, node: Node, path: LwM2mPath) -> None:
        values: dict[int, object] = {}
        if isinstance(node, ObjectInstance):
            values = {rid: getattr(res, "value", None) for rid, res in node.resources.items()}
        elif isinstance(node, SingleResource) and path.resource_id is not None:
            values = {path.resource_id: node.value}
        state, result = values.get(STATE_ID), values.get(RESULT_ID)
        if isinstance(state, int):
            self.state = state
        if isinstance(result, int):
            self.result = result
        if isinstance(state, int) or isinstance(result, int):
            self.changed.set()


Verdict = Callable[[_Progress], bool | None]
"""True: done; False: failed; None: keep waiting."""


class _Failed(Exception):
    """The procedure ends here; ``summary`` says why."""

    def __init__(self, summary: str, result: int | None = None) -> None:
        super().__init__(summary)
        self.summary = summary
        self.result = result


class FirmwareUpdates(ServerListener):
    """The ``FirmwareUpdater`` of the task engine (``core.firmware_contract``)."""

    def __init__(
        self,
        db: Database,
        lwm2m: LwM2mServer,
        images: FirmwareImages,
        *,
        poll_interval: float = 5.0,
    ) -> None:
        self._db = db
        self.lwm2m = lwm2m
        self.images = images
        self.poll_interval = poll_interval
        self._watching: dict[str, list[_Progress]] = {}
        self.on_firmware_updated: Callable[[str, str, dict[str, Any]], None] | None = None
        """Told ``(endpoint, domain id, details)`` after each successful update."""

    # --- ServerListener ----------------------------------------------------------------

    def on_notification(
        self, registration: Registration, paths: tuple[LwM2mPath, ...], nodes: dict[LwM2mPath, Node]
    ) -> None:
        for progress in self._watching.get(registration.endpoint, ()):
            for path, node in nodes.items():
                if FIRMWARE_UPDATE.starts_with(path) or path.starts_with(FIRMWARE_UPDATE):
                    progress.feed(node, path)

    def on_registered(self, registration: Registration, replaced: Registration | None) -> None:
        for progress in self._watching.get(registration.endpoint, ()):
            progress.reregistered = True
            progress.changed.set()

    # --- the procedure -----------------------------------------------------------------

    async def resolve(
        self, domain_id: str, device_id: str, resource_id: str
    ) -> tuple[Device, FirmwareResource]:
        """The device and resource, both within ``domain_id``'s subtree (else 404)."""
        async with self._db.session() as session:
            device = await session.get(Device, device_id)
            if device is None or not device.domain_id.startswith(domain_id):
                raise NotFound(f"device {device_id[:255]!r} not found", code=4041)
            resource = await self.images.get(session, domain_id, resource_id)
        return device, resource

    async def check_image(self, *, domain_id: str, resource_id: str) -> None:
        async with self._db.session() as session:
            await self.images.get(session, domain_id, resource_id)

    async def update(
        self,
        *,
        domain_id: str,
        device_id: str,
        resource_id: str,
        transfer_method: str,
        transfer_protocol: str,
        timeout_seconds: float,
    ) -> FirmwareOutcome:
        """Update the device's firmware; every failure is an outcome, never an exception."""
        method, protocol = transfer_method.capitalize(), transfer_protocol.upper()
        if method not in ("Pull", "Push"):
            return FirmwareOutcome(False, None, None, None, "transfer method must be Pull or Push")
        if method == "Pull" and protocol not in ("COAP", "HTTP", "HTTPS"):
            return FirmwareOutcome(
                False, None, None, None, "transfer protocol must be COAP, HTTP or HTTPS"
            )
        try:
            device, resource = await self.resolve(domain_id, device_id, resource_id)
        except NotFound as exc:
            return FirmwareOutcome(False, None, None, None, exc.message)
        if resource.blob_key is None:
            return FirmwareOutcome(
                False, None, None, None, f"resource {resource_id!r} has no data uploaded"
            )
        endpoint = device.endpoint_name
        procedure = _Procedure(self, endpoint, resource, method, protocol, timeout_seconds)
        progress = procedure.progress
        self._watching.setdefault(endpoint, []).append(progress)
        try:
            outcome = await procedure.run()
        finally:
            watchers = self._watching.get(endpoint, [])
            watchers.remove(progress)
            if not watchers:
                self._watching.pop(endpoint, None)
        _log.info(
            "firmware_update_finished",
            endpoint=endpoint,
            resource=resource_id,
            method=method,
            protocol=protocol,
            success=outcome.success,
            update_result=outcome.update_result,
        )
        if outcome.success and self.on_firmware_updated is not None:
            self.on_firmware_updated(
                endpoint,
                device.domain_id,
                {"resourceId": resource_id, "newFirmwareVersion": outcome.new_version},
            )
        return outcome


class _Procedure:
    """One run of the update procedure for one device."""

    def __init__(
        self,
        updates: FirmwareUpdates,
        endpoint: str,
        resource: FirmwareResource,
        method: str,
        protocol: str,
        timeout: float,
    ) -> None:
        self.updates = updates
        self.lwm2m = updates.lwm2m
        self.images = updates.images
        self.endpoint = endpoint
        self.resource = resource
        self.method = method
        self.protocol = protocol
        self.timeout = timeout
        self.progress = _Progress()
        self.old_version: str | None = None
        self._deadline = asyncio.get_running_loop().time() + timeout
        self._observing = False

    def remaining(self) -> float:
        return max(0.0, self._deadline - asyncio.get_running_loop().time())

    def _request_timeout(self) -> float:
        return max(0.1, min(self.lwm2m.options.request_timeout, self.remaining()))

    async def run(self) -> FirmwareOutcome:
        how = f"{self.method} over {self.protocol}" if self.method == "Pull" else "Push"
        try:
            if await self.lwm2m.get_registration(self.endpoint) is None:
                raise _Failed(f"device {self.endpoint!r} is not registered")
            self.old_version = await self._read_version()
            await self._start_following()
            await self._deliver()
            await self._await(_downloaded, "download")
            await self._execute_update()
            await self._await(_updated, "update")
            new_version = await self._new_version()
        except _Failed as failure:
            return FirmwareOutcome(
                False,
                failure.result,
                self.old_version,
                None,
                f"{failure.summary} ({how}, firmware {self.old_version or 'unknown'})",
            )
        finally:
            await self._stop_following()
        return FirmwareOutcome(
            True,
            SUCCESS,
            self.old_version,
            new_version,
            f"firmware updated from {self.old_version or 'unknown'} to "
            f"{new_version or 'unknown'} ({how}): {describe_result(SUCCESS)}",
        )

    async def _read_version(self) -> str | None:
        try:
            node = await self.lwm2m.read(
                self.endpoint, FIRMWARE_VERSION, timeout=self._request_timeout()
            )
        except Lwm2mServerError:
            return None
        value = getattr(node, "value", None)
        return value if isinstance(value, str) else None

    async def _start_following(self) -> None:
        """Read the state, observe /5/0 (if we can and nobody does yet)."""
        await self._read_progress(required=True)
        if self.progress.state in (State.DOWNLOADING, State.UPDATING):
            raise _Failed(
                f"the device is busy with another firmware update (State {self.progress.state})"
            )
        if (FIRMWARE_UPDATE,) in self.lwm2m.observed_paths(self.endpoint):
            return
        try:
            node = await self.lwm2m.observe(
                self.endpoint, FIRMWARE_UPDATE, timeout=self._request_timeout()
            )
        except Lwm2mServerError as exc:
            _log.info("firmware_observe_failed", endpoint=self.endpoint, error=exc.message)
            return
        self._observing = True
        self.progress.feed(node, FIRMWARE_UPDATE)

    async def _stop_following(self) -> None:
        if self._observing:
            await self.lwm2m.cancel_observation(self.endpoint, FIRMWARE_UPDATE)

    async def _read_progress(self, *, required: bool = False) -> None:
        try:
            node = await self.lwm2m.read(
                self.endpoint, FIRMWARE_UPDATE, timeout=self._request_timeout()
            )
        except Lwm2mServerError as exc:
            if required:
                raise _Failed(f"cannot read the Firmware Update object: {exc.message}") from None
            return
        self.progress.feed(node, FIRMWARE_UPDATE)

    async def _write(
        self, path: LwM2mPath, node: SingleResource, fmt: int, time_limit: float
    ) -> None:
        try:
            await self.lwm2m.write(self.endpoint, path, node, format=fmt, timeout=time_limit)
        except Lwm2mServerError as exc:
            raise _Failed(f"the device refused the write of {path}: {exc.message}") from None

    async def _deliver(self) -> None:
        if self.progress.state == State.DOWNLOADED:
            # A package from earlier: reset the state machine (empty Package URI) first,
            # or its Downloaded state would pass for the new package's.
            reset = SingleResource(PACKAGE_URI_ID, ResourceType.STRING, "")
            await self._write(PACKAGE_URI, reset, ContentFormat.TEXT, self._request_timeout())
        self.progress.forget()
        if self.method == "Pull":
            uri = self.images.download_url(self.resource, self.protocol, self.timeout + URL_MARGIN)
            node = SingleResource(PACKAGE_URI_ID, ResourceType.STRING, uri)
            await self._write(PACKAGE_URI, node, ContentFormat.TEXT, self._request_timeout())
        else:
            image = await self.images.image_bytes(self.resource)
            node = SingleResource(PACKAGE_ID, ResourceType.OPAQUE, image)
            await self._write(PACKAGE, node, ContentFormat.OPAQUE, max(0.1, self.remaining()))

    async def _execute_update(self) -> None:
        try:
            await self.lwm2m.execute(self.endpoint, UPDATE, timeout=self._request_timeout())
        except Lwm2mServerError as exc:
            raise _Failed(f"the device refused Execute Update: {exc.message}") from None

    async def _await(self, verdict: Verdict, phase: str) -> None:
        """Wait for ``verdict`` to decide, on notifications, re-registrations and reads."""
        progress = self.progress
        polling = self.updates.poll_interval if self._observing else 1.0
        while True:
            progress.changed.clear()
            decided = verdict(progress)
            if decided is True:
                return
            if decided is False:
                raise _Failed(
                    f"{phase} failed: {describe_result(progress.result)}", progress.result
                )
            remaining = self.remaining()
            if remaining <= 0:
                raise _Failed(
                    f"no {phase} outcome within {self.timeout:g} s (State {progress.state}, "
                    f"{describe_result(progress.result)})",
                    progress.result,
                )
            try:
                await asyncio.wait_for(progress.changed.wait(), min(polling, remaining))
            except TimeoutError:
                await self._read_progress()
                continue
            if progress.reregistered:
                # A new registration (a reboot into the new firmware): the device forgot
                # our observation (the server sets it up again), so ask for the state now.
                progress.reregistered = False
                await self._read_progress()

    async def _new_version(self) -> str | None:
        """/3/0/3 after the update; the device may still be rebooting and re-registering."""
        while True:
            version = await self._read_version()
            if version is not None or self.remaining() <= 0:
                return version
            await asyncio.sleep(min(0.5, self.remaining()))


def _downloaded(progress: _Progress) -> bool | None:
    if progress.state == State.DOWNLOADED:
        return True
    if progress.state == State.IDLE and progress.result not in (None, 0, SUCCESS):
        return False
    return None


def _updated(progress: _Progress) -> bool | None:
    if progress.result == SUCCESS:
        return True
    if progress.result not in (None, 0, DEFERRED) and progress.state != State.UPDATING:
        return False
    return None
