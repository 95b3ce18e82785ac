"""The contract between the task engine and a firmware updater (LwM2M object 5).

The task engine runs a ``firmwareUpdate`` operation by calling the ``FirmwareUpdater``
it was given; the updater moves the image to the device (pull or push), executes
Update (/5/0/2) and follows State and Update Result until the device is done.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol


@dataclass(frozen=True)
class FirmwareOutcome:
    """How one device's update ended; ``update_result`` is /5/0/5 as the device set it."""

    success: bool
    update_result: int | None
    old_version: str | None
    new_version: str | None
    summary: str


class FirmwareUpdater(Protocol):
    async def update(
        self,
        *,
        domain_id: str,
        device_id: str,
        resource_id: str,
        transfer_method: str,  # "Pull" | "Push"
        transfer_protocol: str,  # "COAP" | "HTTP"
        timeout_seconds: float,
    ) -> FirmwareOutcome:
        """Update the device's firmware with the image ``resource_id``; never raises for a
        device-side failure (that is an unsuccessful outcome)."""
        ...

    async def check_image(self, *, domain_id: str, resource_id: str) -> None:
        """Raise ``NotFound`` unless the image ``resource_id`` is visible from ``domain_id``
        (checked when a firmware task is created, so a bad id is refused at once)."""
        ...
