"""The identity a client certificate authenticates, shared by the DTLS and TLS transports."""

from __future__ import annotations

from cryptography import x509
from cryptography.x509.oid import NameOID

from meadowlark.server.transport import PeerIdentity


def certificate_identity(der: bytes) -> PeerIdentity | None:
    """The ``cert`` identity of a DER certificate: its subject common name (without
    one, its first subject alternative name) and its subject alternative names."""
    certificate = x509.load_der_x509_certificate(der)
    try:
        extension = certificate.extensions.get_extension_for_class(x509.SubjectAlternativeName)
    except x509.ExtensionNotFound:
        alternatives: tuple[str, ...] = ()
    else:
        alternatives = tuple(
            str(name)
            for kind in (x509.DNSName, x509.UniformResourceIdentifier, x509.RFC822Name)
            for name in extension.value.get_values_for_type(kind)
        )
    common_names = certificate.subject.get_attributes_for_oid(NameOID.COMMON_NAME)
    if common_names:
        return PeerIdentity("cert", str(common_names[0].value), alternatives)
    if alternatives:
        return PeerIdentity("cert", alternatives[0], alternatives)
    return None
