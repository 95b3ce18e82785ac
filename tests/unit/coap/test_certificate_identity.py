"""A device certificate's identity (common name, alternative names) and what it may
register as."""

from __future__ import annotations

import datetime as dt

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from meadowlark.coap.peer_certificates import certificate_identity
from meadowlark.server.security import Admission, DeviceSecurity, check_peer_security
from meadowlark.server.transport import Peer, PeerIdentity


def certificate(common_name: str | None, *alternatives: x509.GeneralName) -> bytes:
    key = ec.generate_private_key(ec.SECP256R1())
    attributes = (
        [] if common_name is None else [x509.NameAttribute(NameOID.COMMON_NAME, common_name)]
    )
    name = x509.Name(attributes)
    now = dt.datetime.now(dt.UTC)
    builder = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "ca")]))
        .public_key(key.public_key())
        .serial_number(1)
        .not_valid_before(now)
        .not_valid_after(now + dt.timedelta(days=1))
    )
    if alternatives:
        builder = builder.add_extension(x509.SubjectAlternativeName(list(alternatives)), False)
    return builder.sign(key, hashes.SHA256()).public_bytes(serialization.Encoding.DER)


def test_the_identity_is_the_common_name_with_the_alternative_names():
    der = certificate(
        "sensor-1",
        x509.DNSName("sensor-1.devices.example"),
        x509.UniformResourceIdentifier("urn:dev:ops:32473-sensor-1"),
    )
    assert certificate_identity(der) == PeerIdentity(
        "cert", "sensor-1", ("sensor-1.devices.example", "urn:dev:ops:32473-sensor-1")
    )


def test_without_a_common_name_the_first_alternative_name_identifies():
    der = certificate(None, x509.DNSName("sensor-2.devices.example"))
    identity = certificate_identity(der)
    assert identity is not None and identity.name == "sensor-2.devices.example"
    assert certificate_identity(certificate(None)) is None


def test_a_record_may_name_an_alternative_name_but_only_the_cn_matches_the_endpoint():
    identity = PeerIdentity("cert", "serial-0042", ("urn:dev:ops:sensor-3",))
    peer = Peer("192.0.2.1", 1, "dtls", identity=identity)
    named = DeviceSecurity("cert", "urn:dev:ops:sensor-3")
    assert check_peer_security("sensor-3", named, peer) is Admission.ALLOWED
    assert check_peer_security("sensor-3", DeviceSecurity("cert"), peer) is (
        Admission.IDENTITY_MISMATCH  # no record name: the CN must be the endpoint
    )
    other = DeviceSecurity("cert", "urn:dev:ops:sensor-4")
    assert check_peer_security("sensor-3", other, peer) is Admission.IDENTITY_MISMATCH
    by_cn = DeviceSecurity("cert", "serial-0042")
    assert check_peer_security("sensor-3", by_cn, peer) is Admission.ALLOWED
