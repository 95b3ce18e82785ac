"""The server's certificate: generated once into the data dir, or taken from settings."""

from __future__ import annotations

import datetime as dt
import multiprocessing
import stat
from dataclasses import replace
from pathlib import Path

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import serialization
from cryptography.x509.oid import NameOID

from meadowlark.certificates import (
    ServerCredentials,
    check_server_credentials,
    issue_certificate,
    server_credentials,
)
from meadowlark.config import Settings


def test_generated_once_and_kept(tmp_path: Path) -> None:
    settings = Settings(data_dir=tmp_path, dev=True)
    first = server_credentials(settings)
    assert first.generated and first.ca_bundle is None
    assert stat.S_IMODE(first.private_key.stat().st_mode) == 0o600
    pem = first.certificate.read_bytes()
    certificate = x509.load_pem_x509_certificate(pem)
    name = certificate.subject.get_attributes_for_oid(NameOID.COMMON_NAME)[0].value
    assert name == "meadowlark"
    key = serialization.load_pem_private_key(first.private_key.read_bytes(), None)
    assert key.public_key() == certificate.public_key()
    again = server_credentials(Settings(data_dir=tmp_path, dev=True))
    assert again.certificate.read_bytes() == pem


def test_configured_files_are_used_as_given(tmp_path: Path) -> None:
    cert, key = tmp_path / "c.pem", tmp_path / "k.pem"
    settings = Settings(
        data_dir=tmp_path / "data",
        dev=True,
        tls={"certificate": cert, "private_key": key, "ca_bundle": tmp_path / "ca.pem"},
    )
    credentials = server_credentials(settings)
    assert (credentials.certificate, credentials.private_key) == (cert, key)
    assert credentials.ca_bundle == tmp_path / "ca.pem" and not credentials.generated
    assert not (tmp_path / "data" / "tls").exists()


def test_certificate_without_key_is_refused(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="go together"):
        Settings(data_dir=tmp_path, dev=True, tls={"certificate": tmp_path / "c.pem"})


def test_issued_by_a_ca_verifies_against_it() -> None:
    authority = issue_certificate("Test CA", ca=True)
    device = issue_certificate("urn:dev:1", issuer=authority)
    assert device.certificate.issuer == authority.certificate.subject
    device.certificate.verify_directly_issued_by(authority.certificate)


def _write(path: Path, data: bytes) -> Path:
    path.write_bytes(data)
    return path


def test_doctor_finds_nothing_wrong_with_generated_material(tmp_path: Path) -> None:
    credentials = server_credentials(Settings(data_dir=tmp_path, dev=True))
    assert check_server_credentials(credentials) == []


def test_doctor_reports_each_problem(tmp_path: Path) -> None:
    authority = issue_certificate("Test CA", ca=True)
    server = issue_certificate("srv", issuer=authority, server=True)
    other = issue_certificate("other")
    good = ServerCredentials(
        _write(tmp_path / "s.pem", server.certificate_pem),
        _write(tmp_path / "s.key", server.key_pem),
        _write(tmp_path / "ca.pem", authority.certificate_pem),
        generated=False,
    )
    assert check_server_credentials(good) == []
    wrong_key = replace(good, private_key=_write(tmp_path / "o.key", other.key_pem))
    assert check_server_credentials(wrong_key) == [
        f"private key {tmp_path / 'o.key'} is not the certificate's key"
    ]
    missing = replace(good, certificate=tmp_path / "absent.pem")
    assert "cannot load" in check_server_credentials(missing)[0]
    not_a_ca = replace(good, ca_bundle=_write(tmp_path / "leaf.pem", other.certificate_pem))
    assert "no CA certificate" in check_server_credentials(not_a_ca)[0]
    garbage = replace(good, ca_bundle=_write(tmp_path / "junk.pem", b"\x00junk"))
    assert "cannot load" in check_server_credentials(garbage)[0]
    later = dt.datetime.now(dt.UTC) + dt.timedelta(days=3640)
    assert "renew it" in check_server_credentials(good, now=later)[0]
    expired = dt.datetime.now(dt.UTC) + dt.timedelta(days=3700)
    assert any("expired" in problem for problem in check_server_credentials(good, now=expired))


def _credentials_in(data_dir: str) -> tuple[bytes, bytes]:
    credentials = server_credentials(Settings(data_dir=Path(data_dir), dev=True))
    return credentials.certificate.read_bytes(), credentials.private_key.read_bytes()


def test_workers_starting_together_share_one_generated_pair(tmp_path: Path) -> None:
    """Every worker of ``serve --workers N`` asks at once; one generates, all read it whole."""
    context = multiprocessing.get_context("spawn")
    with context.Pool(6) as pool:
        pairs = pool.map(_credentials_in, [str(tmp_path)] * 12)
    assert len(set(pairs)) == 1
    certificate_pem, key_pem = pairs[0]
    certificate = x509.load_pem_x509_certificate(certificate_pem)
    assert serialization.load_pem_private_key(key_pem, None).public_key() == (
        certificate.public_key()
    )
    assert sorted(path.name for path in (tmp_path / "tls").iterdir()) == [
        ".generating",
        "server.key",
        "server.pem",
    ]
