"""The server's X.509 material for DTLS and TLS: configured, or generated once.

Devices in ``cert`` mode and CoAP-over-TLS clients authenticate the server by its
certificate. An operator configures one (``MEADOWLARK_TLS__CERTIFICATE`` and
``..._PRIVATE_KEY``); without it, a self-signed ECDSA P-256 certificate is generated
into the data dir on first use, the way the token signing key is, so the secure
transports work out of the box and keep their identity across restarts.
"""

from __future__ import annotations

import datetime as dt
import fcntl
import os
from dataclasses import dataclass
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from meadowlark.config import Settings

GENERATED_VALIDITY = dt.timedelta(days=3650)


@dataclass(frozen=True, slots=True)
class ServerCredentials:
    """Paths of the PEM files the secure transports load."""

    certificate: Path
    private_key: Path
    ca_bundle: Path | None
    """CAs that sign device client certificates; None: no client certificate is accepted."""
    generated: bool
    """Whether the certificate is the self-signed one from the data dir."""


def server_credentials(settings: Settings) -> ServerCredentials:
    """The configured certificate and key, or the generated ones (created when missing)."""
    tls = settings.tls
    if tls.certificate is not None and tls.private_key is not None:
        return ServerCredentials(tls.certificate, tls.private_key, tls.ca_bundle, False)
    directory = settings.data_dir / "tls"
    certificate, key = directory / "server.pem", directory / "server.key"
    if not (certificate.exists() and key.exists()):
        directory.mkdir(parents=True, exist_ok=True)
        # Workers of one node (and nodes sharing a data dir) start together: one of them
        # generates, the others wait and read its files, which appear whole (renamed).
        with open(directory / ".generating", "a") as lock:
            fcntl.flock(lock, fcntl.LOCK_EX)
            if not (certificate.exists() and key.exists()):
                issued = issue_certificate(
                    tls.server_name, dns_names=(tls.server_name,), server=True
                )
                _write_whole(key, issued.key_pem, 0o600)
                _write_whole(certificate, issued.certificate_pem, 0o644)
    return ServerCredentials(certificate, key, tls.ca_bundle, True)


@dataclass(frozen=True, slots=True)
class IssuedCertificate:
    certificate: x509.Certificate
    key: ec.EllipticCurvePrivateKey

    @property
    def certificate_pem(self) -> bytes:
        return self.certificate.public_bytes(serialization.Encoding.PEM)

    @property
    def key_pem(self) -> bytes:
        return self.key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )


def issue_certificate(
    common_name: str,
    *,
    issuer: IssuedCertificate | None = None,
    dns_names: tuple[str, ...] = (),
    server: bool = False,
    ca: bool = False,
    validity: dt.timedelta = GENERATED_VALIDITY,
    not_before: dt.datetime | None = None,
) -> IssuedCertificate:
    """An ECDSA P-256 certificate for ``common_name``, signed by ``issuer`` (None: itself).

    ``ca`` makes a certificate authority; ``server``/client picks the extended key usage.
    """
    key = ec.generate_private_key(ec.SECP256R1())
    subject = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, common_name)])
    start = not_before or dt.datetime.now(dt.UTC) - dt.timedelta(minutes=5)
    builder = (
        x509.CertificateBuilder()
        .subject_name(subject)
        .issuer_name(subject if issuer is None else issuer.certificate.subject)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(start)
        .not_valid_after(start + validity)
        .add_extension(x509.BasicConstraints(ca=ca, path_length=None), critical=True)
    )
    if ca:
        builder = builder.add_extension(
            x509.KeyUsage(
                digital_signature=True, key_cert_sign=True, crl_sign=True,
                content_commitment=False, key_encipherment=False, data_encipherment=False,
                key_agreement=False, encipher_only=False, decipher_only=False,
            ),
            critical=True,
        )  # fmt: skip
    else:
        usage = ExtendedKeyUsageOID.SERVER_AUTH if server else ExtendedKeyUsageOID.CLIENT_AUTH
        builder = builder.add_extension(x509.ExtendedKeyUsage([usage]), critical=False)
    if dns_names:
        builder = builder.add_extension(
            x509.SubjectAlternativeName([x509.DNSName(name) for name in dns_names]),
            critical=False,
        )
    signer = key if issuer is None else issuer.key
    return IssuedCertificate(builder.sign(signer, hashes.SHA256()), key)


def _write_whole(path: Path, data: bytes, mode: int) -> None:
    """Write ``path`` so that readers see either no file or all of it."""
    partial = path.with_name(f".{path.name}.{os.getpid()}")
    fd = os.open(partial, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, mode)
    with os.fdopen(fd, "wb") as handle:
        handle.write(data)
    os.replace(partial, path)


EXPIRY_WARNING = dt.timedelta(days=30)


def check_server_credentials(
    credentials: ServerCredentials, now: dt.datetime | None = None
) -> list[str]:
    """What is wrong with the server's certificate, key and CA bundle (empty: nothing).

    For ``meadowlark doctor``: files that do not load, a key that is not the
    certificate's, a certificate outside its validity (or within 30 days of its end), and
    a CA bundle without a usable CA certificate.
    """
    now = now or dt.datetime.now(dt.UTC)
    problems: list[str] = []
    try:
        certificates = x509.load_pem_x509_certificates(credentials.certificate.read_bytes())
    except (OSError, ValueError) as exc:
        return [f"certificate {credentials.certificate}: cannot load ({_reason(exc)})"]
    leaf = certificates[0]
    try:
        key = serialization.load_pem_private_key(credentials.private_key.read_bytes(), None)
    except (OSError, ValueError, TypeError) as exc:
        problems.append(f"private key {credentials.private_key}: cannot load ({_reason(exc)})")
    else:
        if key.public_key() != leaf.public_key():
            problems.append(f"private key {credentials.private_key} is not the certificate's key")
    if now < leaf.not_valid_before_utc:
        problems.append(f"certificate is not valid before {leaf.not_valid_before_utc:%Y-%m-%d}")
    elif now > leaf.not_valid_after_utc:
        problems.append(f"certificate expired on {leaf.not_valid_after_utc:%Y-%m-%d}")
    elif now + EXPIRY_WARNING > leaf.not_valid_after_utc:
        problems.append(f"certificate expires on {leaf.not_valid_after_utc:%Y-%m-%d}: renew it")
    if credentials.ca_bundle is not None:
        problems.extend(_check_ca_bundle(credentials.ca_bundle, now))
    return problems


def _check_ca_bundle(path: Path, now: dt.datetime) -> list[str]:
    try:
        authorities = x509.load_pem_x509_certificates(path.read_bytes())
    except (OSError, ValueError) as exc:
        return [f"CA bundle {path}: cannot load ({_reason(exc)})"]
    usable = [
        authority
        for authority in authorities
        if _is_ca(authority)
        and authority.not_valid_before_utc <= now <= authority.not_valid_after_utc
    ]
    if not usable:
        return [f"CA bundle {path}: no CA certificate that is valid now"]
    return []


def _is_ca(certificate: x509.Certificate) -> bool:
    try:
        return bool(certificate.extensions.get_extension_for_class(x509.BasicConstraints).value.ca)
    except x509.ExtensionNotFound:
        return False


def _reason(exc: Exception) -> str:
    return exc.strerror if isinstance(exc, OSError) and exc.strerror else type(exc).__name__
