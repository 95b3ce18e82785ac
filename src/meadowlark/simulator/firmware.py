"""Firmware images as the simulator understands them, and how a device may be told to fail.

An image may start with a one-line header, ``MLFW1 version=<v> sha256=<hex>\\n``: the
device then checks the SHA-256 of the rest (Update Result 5 on mismatch) and reports
``<v>`` as its firmware version (/3/0/3) once updated. Any other image is accepted as
is, and the update bumps the last number of the current version (1.0.0 -> 1.0.1).
"""

from __future__ import annotations

import hashlib
import re
from dataclasses import dataclass

MAGIC = b"MLFW1 "
_MAX_HEADER = 256
_HEADER = re.compile(rb"MLFW1 version=([!-~]{1,64}) sha256=([0-9a-f]{64})")

INTEGRITY_FAILURE = 5
CONNECTION_LOST = 4
UPDATE_FAILED = 8
DOWNLOAD_FAILURES = frozenset({2, 3, 4, 5, 6, 7, 9})
"""Update Result codes a download (or push) can end with (OMA 5.xml /5/0/5)."""


@dataclass(frozen=True, slots=True)
class FirmwareBehaviour:
    """How a simulated device's Firmware Update object behaves; one may be shared."""

    download_failure: int | None = None
    """Report this Update Result (one of ``DOWNLOAD_FAILURES``) instead of Downloaded,
    after receiving the whole image."""
    update_failure: bool = False
    """Execute Update fails: State back to Downloaded, Update Result 8."""
    reboot_after_update: bool = False
    """After a successful update, reboot and register again, as real devices do."""

    def __post_init__(self) -> None:
        if self.download_failure is not None and self.download_failure not in DOWNLOAD_FAILURES:
            raise ValueError(
                f"download failure must be one of {sorted(DOWNLOAD_FAILURES)}, "
                f"got {self.download_failure}"
            )


def build_image(version: str, body: bytes) -> bytes:
    """An image the simulator verifies and installs as firmware ``version``."""
    header = f"MLFW1 version={version} sha256={hashlib.sha256(body).hexdigest()}\n"
    if not _HEADER.fullmatch(header.encode().rstrip(b"\n")):
        raise ValueError(
            f"version must be 1 to 64 printable characters without spaces: {version!r}"
        )
    return header.encode() + body


class ImageReceiver:
    """Takes an image chunk by chunk (never keeping it) and checks it at the end."""

    __slots__ = ("size", "version", "_expected_sha256", "_digest", "_head", "_in_body")

    def __init__(self) -> None:
        self.size = 0
        self.version: str | None = None
        self._expected_sha256: str | None = None
        self._digest = hashlib.sha256()
        self._head = bytearray()
        self._in_body = False

    def feed(self, chunk: bytes) -> None:
        self.size += len(chunk)
        if self._in_body:
            self._digest.update(chunk)
            return
        self._head += chunk
        may_be_header = MAGIC.startswith(self._head) or self._head.startswith(MAGIC)
        if not may_be_header:
            self._body_from(bytes(self._head))
        elif b"\n" in self._head:
            header, _, rest = bytes(self._head).partition(b"\n")
            match = _HEADER.fullmatch(header)
            if match is None:
                self._body_from(bytes(self._head))
                return
            self.version = match.group(1).decode()
            self._expected_sha256 = match.group(2).decode()
            self._body_from(rest)
        elif len(self._head) > _MAX_HEADER:
            self._body_from(bytes(self._head))

    def _body_from(self, data: bytes) -> None:
        self._in_body = True
        self._head.clear()
        self._digest.update(data)

    def problem(self, expected_size: int | None = None) -> int | None:
        """The Update Result code of what is wrong with the image received, if anything."""
        if not self._in_body:
            self._body_from(bytes(self._head))
        if self.size == 0 or (expected_size is not None and self.size != expected_size):
            return CONNECTION_LOST
        if self._expected_sha256 is not None:
            if self._digest.hexdigest() != self._expected_sha256:
                return INTEGRITY_FAILURE
        return None
