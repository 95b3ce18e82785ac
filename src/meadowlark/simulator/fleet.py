"""Many simulated devices in one process: ramp-up, a value-change driver, stats, stop.

Devices are named ``{prefix}-0000``, ``{prefix}-0001``, ... Each has its own UDP socket,
so the process needs one file descriptor per device; ``start`` raises the soft limit
(and the hard limit where permitted) as far as needed, and refuses a fleet that cannot fit.

The value-change driver makes ``rate`` changes per second across the fleet, visiting
registered devices round-robin. A change drifts the sensor value /3303/0/5700 and moves
/3/0/13 (whose clock is driven by these changes, not by wall time, in a fleet), so an
observation of either resource (or of an instance or object above it) yields one
notification per change, subject to its pmin/pmax/gt/lt/st attributes.
"""

from __future__ import annotations

import asyncio
import logging
import random
import resource
import ssl
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from meadowlark.simulator.bootstrap import BootstrapError, bootstrap_into, start_bootstrapped
from meadowlark.simulator.client import (
    DeviceState,
    DeviceStats,
    DeviceTiming,
    RegistrationError,
    SimulatedDevice,
)
from meadowlark.simulator.coap import CoapError
from meadowlark.simulator.firmware import FirmwareBehaviour
from meadowlark.simulator.objects import DeviceObjects

if TYPE_CHECKING:
    from meadowlark.simulator.dtls import FleetSecurity

log = logging.getLogger(__name__)

_SPARE_FILE_DESCRIPTORS = 256
_DRIVER_TICK = 0.05


@dataclass(frozen=True, slots=True)
class FleetConfig:
    devices: int
    server_uri: str
    prefix: str = "sim"
    lwm2m_version: str = "1.1"
    fallback_lwm2m_version: str | None = None
    lifetime: int = 300
    binding: str = "U"
    queue_mode: bool = False
    content_formats: Sequence[int] | None = None
    confirmable_notifications: bool = False
    rate: float = 0.0
    """Value changes per second across the fleet (0: values stay still)."""
    ramp_rate: float = 200.0
    """Registrations started per second."""
    max_pending_registrations: int = 500
    first_index: int = 0
    seed: int = 0
    timing: DeviceTiming = field(default_factory=DeviceTiming)
    firmware: FirmwareBehaviour = field(default_factory=FirmwareBehaviour)
    tls: ssl.SSLContext | None = None
    """For a ``coaps+tcp://`` server: trusted CAs and the client certificate to present."""
    tls_server_name: str | None = None
    """The name the server's TLS certificate must carry (default: the URI's host)."""
    security: FleetSecurity | None = None
    """DTLS credentials per device, for a ``coaps://`` server."""
    bootstrap_uri: str | None = None
    """Bootstrap each device from this server first (``server_uri`` is then replaced by
    the account it is given)."""
    bootstrap_pack: bool = False
    """Bootstrap with Bootstrap-Pack-Request (LwM2M 1.2) instead of Bootstrap-Request."""


@dataclass(frozen=True, slots=True)
class FleetSnapshot:
    devices: int
    registered: int
    failed: int
    registrations: int
    notifications_sent: int
    requests_answered: int
    sends: int
    value_changes: int


class Fleet:
    """Start, drive and stop ``config.devices`` simulated devices."""

    def __init__(self, config: FleetConfig) -> None:
        if config.devices < 0:
            raise ValueError("the number of devices must not be negative")
        self.config = config
        self.stats = DeviceStats()
        self.devices: list[SimulatedDevice] = []
        self.value_changes = 0
        self._random = random.Random(config.seed)  # noqa: S311 - simulated sensor noise
        self._driver: asyncio.Task[None] | None = None
        self._cursor = 0
        self.last_failure: str | None = None
        """Why the latest device that failed to start failed."""

    @staticmethod
    def device_name(prefix: str, index: int) -> str:
        return f"{prefix}-{index:04d}"

    def _new_device(self, index: int) -> SimulatedDevice:
        config = self.config
        name = self.device_name(config.prefix, index)
        objects = DeviceObjects(
            name,
            config.server_uri,
            lifetime=config.lifetime,
            binding=config.binding,
            lwm2m_version=config.lwm2m_version,
            live_clock=False,
            temperature=round(self._random.uniform(18.0, 24.0), 2),
            firmware=config.firmware,
        )
        return SimulatedDevice(
            name,
            config.server_uri,
            lwm2m_version=config.lwm2m_version,
            binding=config.binding,
            lifetime=config.lifetime,
            queue_mode=config.queue_mode,
            content_formats=config.content_formats,
            objects=objects,
            fallback_lwm2m_version=config.fallback_lwm2m_version,
            confirmable_notifications=config.confirmable_notifications,
            stats=self.stats,
            timing=config.timing,
            tls=config.tls,
            tls_server_name=config.tls_server_name,
            security=None if config.security is None else config.security.credentials(name),
        )

    async def start(self) -> None:
        """Register every device at ``ramp_rate`` per second; failures are counted, not raised.

        Starts the value-change driver when ``rate`` is positive.
        """
        config = self.config
        needed = config.devices + _SPARE_FILE_DESCRIPTORS
        available = ensure_file_limit(needed)
        if available < needed:
            raise ValueError(
                f"{config.devices} devices need {needed} file descriptors but the limit is "
                f"{available}: run several fleets (processes) with distinct prefixes"
            )
        self.devices = [self._new_device(config.first_index + i) for i in range(config.devices)]
        pending = asyncio.Semaphore(max(1, config.max_pending_registrations))
        loop = asyncio.get_running_loop()
        began = loop.time()

        async def start_one(device: SimulatedDevice) -> None:
            try:
                if config.bootstrap_uri is None:
                    await device.start()
                else:
                    await bootstrap_into(device, config.bootstrap_uri, pack=config.bootstrap_pack)
                    await start_bootstrapped(device)
            except (RegistrationError, BootstrapError, CoapError, OSError) as error:
                log.debug("%s: %s", device.endpoint_name, error)
                self.last_failure = f"{device.endpoint_name}: {error}"
                if isinstance(error, BootstrapError):
                    device.state = DeviceState.FAILED
                    log.warning("%s: bootstrap failed: %s", device.endpoint_name, error)
            finally:
                pending.release()

        starting: set[asyncio.Task[None]] = set()
        try:
            for position, device in enumerate(self.devices):
                if config.ramp_rate > 0:
                    delay = began + position / config.ramp_rate - loop.time()
                    if delay > 0:
                        await asyncio.sleep(delay)
                await pending.acquire()
                task = loop.create_task(start_one(device))
                starting.add(task)
                task.add_done_callback(starting.discard)
            if starting:
                await asyncio.gather(*starting)
        except asyncio.CancelledError:
            for task in starting:
                task.cancel()
            await asyncio.gather(*starting, return_exceptions=True)
            raise
        if config.rate > 0:
            self._driver = loop.create_task(self._drive())

    async def stop(self, *, deregister: bool = True) -> None:
        """Stop the driver, then De-register and close every device."""
        if self._driver is not None:
            self._driver.cancel()
            try:
                await self._driver
            except asyncio.CancelledError:
                pass
            self._driver = None
        pending = asyncio.Semaphore(max(1, self.config.max_pending_registrations))

        async def stop_one(device: SimulatedDevice) -> None:
            async with pending:
                await device.stop(deregister=deregister)

        await asyncio.gather(*(stop_one(device) for device in self.devices))

    async def _drive(self) -> None:
        loop = asyncio.get_running_loop()
        began = loop.time()
        while True:
            await asyncio.sleep(_DRIVER_TICK)
            due = int((loop.time() - began) * self.config.rate) - self.value_changes
            registered = [d for d in self.devices if d.state is DeviceState.REGISTERED]
            if not registered:
                continue
            for _ in range(due):
                device = registered[self._cursor % len(registered)]
                self._cursor += 1
                device.touch(round(self._random.gauss(0.0, 0.3), 2))
                self.value_changes += 1

    def snapshot(self) -> FleetSnapshot:
        states = [device.state for device in self.devices]
        return FleetSnapshot(
            devices=len(self.devices),
            registered=states.count(DeviceState.REGISTERED),
            failed=states.count(DeviceState.FAILED),
            registrations=self.stats.registrations,
            notifications_sent=self.stats.notifications_sent,
            requests_answered=self.stats.requests_answered,
            sends=self.stats.sends,
            value_changes=self.value_changes,
        )


def ensure_file_limit(needed: int) -> int:
    """Raise RLIMIT_NOFILE towards ``needed``; returns the soft limit now in force."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft >= needed:
        return soft
    target = needed if hard == resource.RLIM_INFINITY else min(needed, hard)
    try:
        if hard != resource.RLIM_INFINITY and hard < needed:
            resource.setrlimit(resource.RLIMIT_NOFILE, (needed, needed))
            return needed
    except (ValueError, OSError):
        log.warning("cannot raise the hard file limit to %d (have %d)", needed, hard)
    resource.setrlimit(resource.RLIMIT_NOFILE, (target, hard))
    return target
