"""Sealing secrets for storage: AES-256-GCM under an HKDF-derived key, bound to a row."""

from __future__ import annotations

import base64

import pytest

from meadowlark.config import Settings
from meadowlark.core.secret_box import (
    PSK_PURPOSE,
    SEALED_PREFIX,
    SealError,
    SecretBox,
    derive_key,
    is_sealed,
)

KEY = bytes.fromhex("5ec2e7f0a1b2c3d4e5f60718293a4b5c")


def box(secret: str = "server-secret-" + "x" * 40) -> SecretBox:
    return SecretBox(derive_key(secret, PSK_PURPOSE))


def test_round_trip_in_a_versioned_text_form_that_hides_the_key():
    sealed = box().seal(KEY, "device-1")
    assert is_sealed(sealed) and sealed.startswith(SEALED_PREFIX)
    assert sealed.isascii() and "=" not in sealed and len(sealed) < 512
    assert KEY.hex() not in sealed and KEY not in sealed.encode()
    assert box().open(sealed, "device-1") == KEY


def test_every_seal_uses_a_fresh_nonce():
    assert box().seal(KEY, "d") != box().seal(KEY, "d")


def test_the_largest_key_fits_the_column():
    assert len(box().seal(b"\xff" * 256, "d" * 255)) <= 512


def test_a_value_copied_to_another_row_does_not_open():
    sealed = box().seal(KEY, "device-1")
    with pytest.raises(SealError, match="does not open"):
        box().open(sealed, "device-2")


def test_another_server_key_does_not_open_and_the_error_holds_no_secret():
    sealed = box("first-secret-" + "a" * 40).seal(KEY, "device-1")
    with pytest.raises(SealError) as raised:
        box("other-secret-" + "b" * 40).open(sealed, "device-1")
    assert KEY.hex() not in str(raised.value) and sealed not in str(raised.value)


def test_the_purpose_label_separates_keys():
    assert derive_key("s", PSK_PURPOSE) != derive_key("s", b"another purpose")
    assert len(derive_key("s", PSK_PURPOSE)) == 32


@pytest.mark.parametrize(
    "stored",
    [
        KEY.hex(),  # an unsealed (legacy) value
        "",
        SEALED_PREFIX,
        SEALED_PREFIX + "!!!!",
        SEALED_PREFIX + "a",
        SEALED_PREFIX + base64.urlsafe_b64encode(b"\0" * 20).decode(),
        "enc2:" + base64.urlsafe_b64encode(b"\0" * 40).decode(),
    ],
)
def test_anything_else_is_refused(stored):
    with pytest.raises(SealError):
        box().open(stored, "device-1")


def test_a_tampered_value_is_refused():
    sealed = box().seal(KEY, "d")
    raw = bytearray(base64.urlsafe_b64decode(sealed[len(SEALED_PREFIX) :] + "=="))
    raw[-1] ^= 1
    tampered = SEALED_PREFIX + base64.urlsafe_b64encode(bytes(raw)).decode().rstrip("=")
    with pytest.raises(SealError):
        box().open(tampered, "d")


def test_the_psk_box_uses_the_dedicated_key_when_set(tmp_path):
    secret = "server-secret-" + "s" * 40
    plain = Settings(data_dir=tmp_path, secret_key=secret)
    dedicated = Settings(data_dir=tmp_path, secret_key=secret, psk_key="psk-secret-" + "p" * 40)
    sealed = SecretBox.for_psks(plain).seal(KEY, "d")
    assert SecretBox.for_psks(plain).open(sealed, "d") == KEY
    with pytest.raises(SealError):
        SecretBox.for_psks(dedicated).open(sealed, "d")
    # never the signing key itself: a box keyed with the raw secret does not open it
    with pytest.raises(SealError):
        SecretBox(secret.encode()[:32]).open(sealed, "d")


def test_the_psk_box_of_a_generated_secret_key_is_stable(tmp_path):
    sealed = SecretBox.for_psks(Settings(data_dir=tmp_path)).seal(KEY, "d")
    assert SecretBox.for_psks(Settings(data_dir=tmp_path)).open(sealed, "d") == KEY


def test_a_placeholder_psk_key_is_refused(tmp_path):
    with pytest.raises(ValueError, match="PSK_KEY"):
        Settings(data_dir=tmp_path, psk_key="changethis")


def test_log_fields_named_like_a_psk_are_masked():
    from meadowlark.logging import _mask_secrets

    event = {"event": "x", "psk": "00ff", "dtlsPsk": "k", "dtls_psk": "k", "psk_key": "k"}
    assert _mask_secrets(None, "info", event) == {
        "event": "x",
        "psk": "***",
        "dtlsPsk": "***",
        "dtls_psk": "***",
        "psk_key": "***",
    }
