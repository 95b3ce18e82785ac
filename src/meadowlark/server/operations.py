"""Downlink operations as data, so that a sleeping device's requests can be persisted."""

from __future__ import annotations

import base64
from dataclasses import dataclass, field
from datetime import datetime
from enum import Enum
from typing import Any

from meadowlark.lwm2m.path import LwM2mPath
from meadowlark.server.transport import DownlinkRequest, Method


class OperationKind(Enum):
    READ = "read"
    DISCOVER = "discover"
    WRITE = "write"
    WRITE_ATTRIBUTES = "write_attributes"
    EXECUTE = "execute"
    CREATE = "create"
    DELETE = "delete"
    READ_COMPOSITE = "read_composite"
    WRITE_COMPOSITE = "write_composite"
    OBSERVE = "observe"
    OBSERVE_COMPOSITE = "observe_composite"


@dataclass(frozen=True, slots=True)
class Operation:
    """One LwM2M operation: the CoAP request plus what is needed to read its answer.

    ``paths`` are the target path(s) (several for composite operations); ``reobserve``
    says whether an observation is re-established after the device re-registers.
    """

    kind: OperationKind
    request: DownlinkRequest
    paths: tuple[LwM2mPath, ...] = ()
    reobserve: bool = False

    @property
    def path(self) -> LwM2mPath:
        return self.paths[0]

    def to_json(self) -> dict[str, Any]:
        request = self.request
        return {
            "kind": self.kind.value,
            "paths": [str(path) for path in self.paths],
            "reobserve": self.reobserve,
            "method": request.method.value,
            "uri_path": list(request.uri_path),
            "query": list(request.query),
            "payload": base64.b64encode(request.payload).decode("ascii"),
            "content_format": request.content_format,
            "accept": request.accept,
            "observe": request.observe,
            "confirmable": request.confirmable,
        }

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> Operation:
        request = DownlinkRequest(
            method=Method(data["method"]),
            uri_path=tuple(data["uri_path"]),
            query=tuple(data["query"]),
            payload=base64.b64decode(data["payload"]),
            content_format=data["content_format"],
            accept=data["accept"],
            observe=data["observe"],
            confirmable=data["confirmable"],
        )
        return cls(
            kind=OperationKind(data["kind"]),
            request=request,
            paths=tuple(LwM2mPath.parse(path) for path in data["paths"]),
            reobserve=data["reobserve"],
        )


class QueuedRequestState(Enum):
    PENDING = "pending"
    DONE = "done"
    FAILED = "failed"
    EXPIRED = "expired"


@dataclass(frozen=True, slots=True)
class QueuedRequest:
    """A request waiting for a queue-mode device to wake up (or its recorded outcome)."""

    id: str
    endpoint: str
    operation: Operation
    created_at: datetime
    expires_at: datetime
    state: QueuedRequestState = QueuedRequestState.PENDING
    result: dict[str, Any] = field(default_factory=dict)
