"""Secrets the server must read back (device PSKs), sealed for storage.

AES-256-GCM with a key derived by HKDF-SHA256 from a configured secret and a purpose
label, so the token signing key itself never encrypts anything. The stored text is
versioned: ``enc1:`` + base64url(nonce || ciphertext and tag), unpadded. The caller's
``context`` (a device id) is the associated data: a sealed value copied to another row
does not open there.
"""

from __future__ import annotations

import base64
import binascii
import os

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from cryptography.hazmat.primitives.kdf.hkdf import HKDF

from meadowlark.config import Settings

SEALED_PREFIX = "enc1:"
PSK_PURPOSE = b"meadowlark device psk v1"
_NONCE_BYTES = 12
_TAG_BYTES = 16


class SealError(ValueError):
    """A sealed value did not open: another server key, another row, or not sealed.

    The message never holds the value or the key."""


def derive_key(secret: str | bytes, purpose: bytes) -> bytes:
    """A 256-bit key for ``purpose`` from a configured ``secret`` (HKDF-SHA256)."""
    material = secret.encode("utf-8") if isinstance(secret, str) else secret
    return HKDF(algorithm=hashes.SHA256(), length=32, salt=None, info=purpose).derive(material)


def is_sealed(text: str) -> bool:
    return text.startswith(SEALED_PREFIX)


class SecretBox:
    """Seals and opens values under one derived key."""

    __slots__ = ("_aead",)
    sealed_prefix = SEALED_PREFIX

    def __init__(self, key: bytes) -> None:
        self._aead = AESGCM(key)

    @classmethod
    def for_psks(cls, settings: Settings) -> SecretBox:
        """The box of device PSKs: ``MEADOWLARK_PSK_KEY`` if set, else the secret key."""
        secret = (
            settings.psk_key.get_secret_value()
            if settings.psk_key is not None
            else settings.signing_key
        )
        return cls(derive_key(secret, PSK_PURPOSE))

    def seal(self, plaintext: bytes, context: str) -> str:
        nonce = os.urandom(_NONCE_BYTES)
        sealed = nonce + self._aead.encrypt(nonce, plaintext, context.encode("utf-8"))
        return SEALED_PREFIX + base64.urlsafe_b64encode(sealed).decode("ascii").rstrip("=")

    def open(self, sealed: str, context: str) -> bytes:
        """The plaintext of ``sealed`` made for ``context``; ``SealError`` otherwise."""
        if not is_sealed(sealed):
            raise SealError("value is not sealed")
        body = sealed[len(SEALED_PREFIX) :]
        try:
            raw = base64.urlsafe_b64decode(body + "=" * (-len(body) % 4))
        except (ValueError, binascii.Error):
            raise SealError("sealed value is malformed") from None
        if len(raw) < _NONCE_BYTES + _TAG_BYTES:
            raise SealError("sealed value is truncated")
        try:
            return self._aead.decrypt(
                raw[:_NONCE_BYTES], raw[_NONCE_BYTES:], context.encode("utf-8")
            )
        except InvalidTag:
            raise SealError(
                "sealed value does not open with the current key (another "
                "MEADOWLARK_PSK_KEY / MEADOWLARK_SECRET_KEY, or copied from another row)"
            ) from None
