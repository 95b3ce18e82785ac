"""One log line per device lifecycle event, with what an operator searches logs by.

Lines (event names): ``device.registered``, ``device.updated``, ``device.deregistered``,
``device.registration_expired``, ``device.awake``, ``device.sleeping``; the bootstrap
server's ``device.bootstrap_finished`` is written by ``core.bootstrap``. Each names the
endpoint, the device id (when this process knows it), the domain and the transport
(``udp``, ``dtls``, ``tcp``, ``tls``).
"""

from __future__ import annotations

from collections.abc import Callable

import structlog

from meadowlark.server.context import ServerListener
from meadowlark.server.registration import Registration

_log = structlog.get_logger("meadowlark.devices")


class LifecycleLog(ServerListener):
    """Writes the lifecycle lines of the LwM2M server's registrations."""

    def __init__(
        self, domain_of: Callable[[str], str], device_id_of: Callable[[str], str | None]
    ) -> None:
        self._domain_of = domain_of
        self._device_id_of = device_id_of

    def _line(self, event: str, registration: Registration, **fields: object) -> None:
        endpoint = registration.endpoint
        _log.info(
            event,
            endpoint=endpoint,
            device_id=self._device_id_of(endpoint),
            domain=self._domain_of(endpoint),
            transport=registration.peer.transport,
            peer=str(registration.peer),
            **fields,
        )

    def on_registered(self, registration: Registration, replaced: Registration | None) -> None:
        self._line(
            "device.registered",
            registration,
            registration_id=registration.registration_id,
            lwm2m=registration.lwm2m_version,
            binding=registration.binding,
            lifetime=registration.lifetime,
            queue_mode=registration.queue_mode,
            replaced=replaced is not None,
        )

    def on_updated(self, registration: Registration, previous: Registration) -> None:
        self._line("device.updated", registration, registration_id=registration.registration_id)

    def on_deregistered(self, registration: Registration, *, expired: bool) -> None:
        event = "device.registration_expired" if expired else "device.deregistered"
        self._line(event, registration, registration_id=registration.registration_id)

    def on_awake(self, registration: Registration) -> None:
        self._line("device.awake", registration)

    def on_sleeping(self, registration: Registration) -> None:
        self._line("device.sleeping", registration)
