"""Values reported with a time: Send (``/dp``) payloads and notifications with history."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from meadowlark.lwm2m.node import Node
from meadowlark.lwm2m.path import LwM2mPath


@dataclass(frozen=True, slots=True)
class TimestampedNodes:
    """Nodes measured at one time; ``timestamp`` is ``None`` when the payload gave no time."""

    timestamp: datetime | None
    nodes: dict[LwM2mPath, Node]
