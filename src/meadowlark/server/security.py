"""Who may register as which device: the transport's authentication against the device's
security mode.

The transport reports in ``Peer.identity`` whether, and as whom, it authenticated a
request (plain UDP: not at all). A device record's ``securityMode`` says how the device
must prove who it is. Only a NoSec device (or one without a record yet: it is created
as NoSec) may register over an unauthenticated transport; any other mode needs a
session authenticated as that very device. Otherwise anyone could register with the
endpoint name of a PSK device and receive its management traffic.

The decision is a pure function so that every ``DeviceRegistry`` (in memory, SQL,
batched) applies the same one; the registry supplies the device's ``DeviceSecurity``.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import Enum

from meadowlark.server.transport import Peer, PeerIdentity

NOSEC = "nosec"
_CREDENTIAL_KINDS = {"psk": "psk", "rpk": "rpk", "cert": "cert", "x509": "cert"}
"""Security mode -> the kind of credential a DTLS session of that device presents."""


class Admission(Enum):
    """Whether a device may register; every value but ``ALLOWED`` answers 4.03."""

    ALLOWED = "allowed"
    BLACKLISTED = "blacklisted"
    MANAGEMENT_DISABLED = "management_disabled"
    UNSECURED_TRANSPORT = "unsecured_transport"
    """The device's security mode needs an authenticated (DTLS) session; this was not one."""
    IDENTITY_MISMATCH = "identity_mismatch"
    """The session was authenticated, but not as this device."""

    @property
    def is_security_refusal(self) -> bool:
        return self in (Admission.UNSECURED_TRANSPORT, Admission.IDENTITY_MISMATCH)

    @property
    def diagnostic(self) -> str:
        """The diagnostic payload of the 4.03 answer (no secrets, nothing about others)."""
        if self is Admission.UNSECURED_TRANSPORT:
            return "this device must register over a secure (DTLS) session"
        if self is Admission.IDENTITY_MISMATCH:
            return "the session is not authenticated as this device"
        return f"device is {self.value}"


@dataclass(frozen=True, slots=True)
class DeviceSecurity:
    """The security settings of a device record (``securityMode``, ``dtlsIdentity``)."""

    mode: str | None = None
    """``nosec``, ``psk``, ``rpk``, ``cert``; ``None`` when the record has none."""
    dtls_identity: str | None = None


def requires_secure_transport(mode: str | None) -> bool:
    """Every mode but NoSec (or none set) needs an authenticated session.

    Modes this server does not know, including an empty string, fail closed.
    """
    return mode is not None and mode.lower() != NOSEC


def check_peer_security(endpoint: str, device: DeviceSecurity | None, peer: Peer) -> Admission:
    """May ``peer`` register as ``endpoint``, whose record has ``device`` (None: no record)?

    ``ALLOWED``, ``UNSECURED_TRANSPORT`` or ``IDENTITY_MISMATCH``.
    """
    identity = peer.identity
    if device is None or not requires_secure_transport(device.mode):
        # A NoSec endpoint has no credentials, so an authenticated session is someone
        # else's: that device must not take over another endpoint name.
        return Admission.ALLOWED if identity is None else Admission.IDENTITY_MISMATCH
    if identity is None:
        return Admission.UNSECURED_TRANSPORT
    assert device.mode is not None  # requires_secure_transport said so
    if _identity_matches(endpoint, device.mode.lower(), device.dtls_identity, identity):
        return Admission.ALLOWED
    return Admission.IDENTITY_MISMATCH


def same_principal(registered: Peer, requester: Peer) -> bool:
    """Whether a request on an existing registration comes as whom it was made.

    Updates, De-registers and Sends of a registration made over an authenticated
    session must come over one authenticated as the same device; those of a plain-UDP
    registration must not claim an identity (that device registers anew instead).
    """
    return registered.identity == requester.identity


def _identity_matches(
    endpoint: str, mode: str, dtls_identity: str | None, identity: PeerIdentity
) -> bool:
    kind = _CREDENTIAL_KINDS.get(mode)
    if kind is None or identity.mode.lower() != kind:
        return False
    if kind == "psk":
        return dtls_identity is not None and identity.name == dtls_identity
    if kind == "cert":
        # X.509: the certificate's subject common name is the endpoint name (the usual
        # convention for LwM2M client certificates), unless the record names another:
        # the common name or one of the certificate's subject alternative names.
        if dtls_identity is None:
            return identity.name == endpoint
        return identity.name == dtls_identity or dtls_identity in identity.alternative_names
    # RPK: the record must hold the device's key; until it can, nothing matches.
    return dtls_identity is not None and identity.name == dtls_identity
