"""What a bootstrap provisions: one LwM2M Server account, as Security (0) and Server (1)
object instances (OMA-TS-LightweightM2M-Core 1.1 Appendix E.1 and E.2).

Pure data: the session (``session.py``) writes these instances to the device, and the
pack (``pack_nodes``) returns them in a Bootstrap-Pack-Request answer.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from enum import IntEnum

from meadowlark.lwm2m.node import (
    LwM2mObject,
    Node,
    ObjectInstance,
    ResourceType,
    SingleResource,
    Value,
)
from meadowlark.lwm2m.path import LwM2mPath

SECURITY_OBJECT = 0
SERVER_OBJECT = 1


class SecurityMode(IntEnum):
    """Security Mode (/0/x/2)."""

    PSK = 0
    RPK = 1
    CERTIFICATE = 2
    NOSEC = 3


class SecurityResource(IntEnum):
    URI = 0
    BOOTSTRAP_SERVER = 1
    SECURITY_MODE = 2
    PUBLIC_KEY_OR_IDENTITY = 3
    SERVER_PUBLIC_KEY = 4
    SECRET_KEY = 5
    SHORT_SERVER_ID = 10


class ServerResource(IntEnum):
    SHORT_SERVER_ID = 0
    LIFETIME = 1
    NOTIFICATION_STORING = 6
    BINDING = 7


@dataclass(frozen=True, slots=True)
class ServerAccount:
    """The management server a device is given: where it is and how to prove who it is.

    ``public_key_or_identity`` is the PSK identity (PSK mode) or the client certificate;
    ``secret_key`` the PSK itself or the client's private key. Neither is ever logged
    (``repr`` leaves them out).
    """

    uri: str
    security_mode: SecurityMode
    short_server_id: int
    lifetime: int
    binding: str = "U"
    notification_storing: bool = True
    public_key_or_identity: bytes = field(default=b"", repr=False)
    server_public_key: bytes = field(default=b"", repr=False)
    secret_key: bytes = field(default=b"", repr=False)

    def security_instance(self, instance_id: int) -> ObjectInstance:
        values: list[tuple[SecurityResource, ResourceType, Value]] = [
            (SecurityResource.URI, ResourceType.STRING, self.uri),
            (SecurityResource.BOOTSTRAP_SERVER, ResourceType.BOOLEAN, False),
            (SecurityResource.SECURITY_MODE, ResourceType.INTEGER, int(self.security_mode)),
            (
                SecurityResource.PUBLIC_KEY_OR_IDENTITY,
                ResourceType.OPAQUE,
                self.public_key_or_identity,
            ),
            (SecurityResource.SERVER_PUBLIC_KEY, ResourceType.OPAQUE, self.server_public_key),
            (SecurityResource.SECRET_KEY, ResourceType.OPAQUE, self.secret_key),
            (SecurityResource.SHORT_SERVER_ID, ResourceType.INTEGER, self.short_server_id),
        ]
        return _instance(instance_id, values)

    def server_instance(self, instance_id: int) -> ObjectInstance:
        values: list[tuple[ServerResource, ResourceType, Value]] = [
            (ServerResource.SHORT_SERVER_ID, ResourceType.INTEGER, self.short_server_id),
            (ServerResource.LIFETIME, ResourceType.INTEGER, self.lifetime),
            (ServerResource.NOTIFICATION_STORING, ResourceType.BOOLEAN, self.notification_storing),
            (ServerResource.BINDING, ResourceType.STRING, self.binding),
        ]
        return _instance(instance_id, values)


def _instance(
    instance_id: int, values: Sequence[tuple[IntEnum, ResourceType, Value]]
) -> ObjectInstance:
    resources = {int(rid): SingleResource(int(rid), rtype, value) for rid, rtype, value in values}
    return ObjectInstance(instance_id, resources)


@dataclass(frozen=True, slots=True)
class AccountPlacement:
    """Instance ids the account's Security and Server instances are written to."""

    security_instance: int
    server_instance: int


def place_account(taken_security: set[int], taken_server: set[int]) -> AccountPlacement:
    """The lowest instance ids not held by what survives a Bootstrap-Delete (the
    bootstrap account's Security instance; Server instances are all deleted)."""
    return AccountPlacement(_lowest_free(taken_security), _lowest_free(taken_server))


def _lowest_free(taken: set[int]) -> int:
    return next(candidate for candidate in range(65535) if candidate not in taken)


def pack_nodes(account: ServerAccount, placement: AccountPlacement) -> dict[LwM2mPath, Node]:
    """The whole configuration as a composite (Bootstrap-Pack-Request, Core 1.2 §6.1.7)."""
    security = account.security_instance(placement.security_instance)
    server = account.server_instance(placement.server_instance)
    return {
        LwM2mPath(SECURITY_OBJECT): LwM2mObject(SECURITY_OBJECT, {security.id: security}),
        LwM2mPath(SERVER_OBJECT): LwM2mObject(SERVER_OBJECT, {server.id: server}),
    }
