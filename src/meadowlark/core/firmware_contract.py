"""The interface between firmware update (core/firmware.py) and the task engine."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol


@dataclass(frozen=True)
class FirmwareOutcome:
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
    ) -> FirmwareOutcome: ...
