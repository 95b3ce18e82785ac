"""CoAP over UDP message format (RFC 7252 §3), parsed and built by hand for the hot path.

``parse`` reads a datagram in one pass without copying it: options are kept as
(number, start, end) offsets into the datagram, and only the values the caller asks
for become ``bytes``/``str``. It never raises: a datagram that is not a well-formed
CoAP message gives ``None`` (RFC 7252 §4.2: a message format error, to be rejected or
silently ignored by the caller). ``build`` encodes a message from its parts.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

CON, NON, ACK, RST = 0, 1, 2, 3
EMPTY = 0x00
POST, DELETE = 0x02, 0x04

IF_MATCH = 1
URI_HOST = 3
ETAG = 4
OBSERVE = 6
LOCATION_PATH = 8
URI_PATH = 11
CONTENT_FORMAT = 12
MAX_AGE = 14
URI_QUERY = 15
ACCEPT = 17
BLOCK1 = 27
SIZE1 = 60

LOCATION_QUERY = 20
PROXY_URI = 35
PROXY_SCHEME = 39

PAYLOAD_MARKER = 0xFF
STRING_OPTIONS = frozenset(
    {URI_HOST, LOCATION_PATH, URI_PATH, LOCATION_QUERY, URI_QUERY, PROXY_URI, PROXY_SCHEME}
)
"""Options whose values are UTF-8 strings (RFC 7252 §5.10)."""


@dataclass(slots=True)
class WireMessage:
    """A parsed datagram; option values are offsets into ``data`` (see ``option``)."""

    data: bytes
    mtype: int
    code: int
    mid: int
    token: bytes
    options: list[tuple[int, int, int]]
    """(option number, value start, value end), in the order received (ascending)."""
    payload_start: int

    @property
    def is_request(self) -> bool:
        return 1 <= self.code <= 31

    @property
    def is_response(self) -> bool:
        return self.code >= 64

    @property
    def payload(self) -> bytes:
        return self.data[self.payload_start :]

    @property
    def payload_length(self) -> int:
        return len(self.data) - self.payload_start

    def option_numbers(self) -> set[int]:
        return {number for number, _, _ in self.options}

    def values(self, number: int) -> list[bytes]:
        data = self.data
        return [data[start:end] for found, start, end in self.options if found == number]

    def uint(self, number: int) -> int | None:
        """The first ``number`` option as an unsigned integer (RFC 7252 §3.2), if any."""
        for found, start, end in self.options:
            if found == number:
                return int.from_bytes(self.data[start:end], "big")
        return None

    def strings(self, number: int) -> list[str] | None:
        """The values of a string option (Uri-Path, Uri-Query); ``None`` if one is not
        valid UTF-8 (a message format error)."""
        try:
            return [value.decode("utf-8") for value in self.values(number)]
        except UnicodeDecodeError:
            return None

    def strings_valid(self) -> bool:
        """Whether every string option (``STRING_OPTIONS``) is valid UTF-8."""
        data = self.data
        try:
            for number, start, end in self.options:
                if number in STRING_OPTIONS:
                    data[start:end].decode("utf-8")
        except UnicodeDecodeError:
            return False
        return True


def parse(data: bytes) -> WireMessage | None:
    """The message in ``data``, or ``None`` when it is not well-formed CoAP over UDP."""
    size = len(data)
    if size < 4:
        return None
    first = data[0]
    if first >> 6 != 1:
        return None
    tkl = first & 0x0F
    if tkl > 8:
        return None
    position = 4 + tkl
    if position > size:
        return None
    code = data[1]
    if code == EMPTY and size != 4:
        return None  # an Empty message has nothing after the Message ID (§4.1)
    options: list[tuple[int, int, int]] = []
    number = 0
    payload_start = size
    while position < size:
        byte = data[position]
        position += 1
        if byte == PAYLOAD_MARKER:
            if position == size:
                return None  # a marker followed by a zero-length payload (§3)
            payload_start = position
            break
        delta = byte >> 4
        length = byte & 0x0F
        if delta == 13:
            if position >= size:
                return None
            delta = data[position] + 13
            position += 1
        elif delta == 14:
            if position + 1 >= size:
                return None
            delta = ((data[position] << 8) | data[position + 1]) + 269
            position += 2
        elif delta == 15:
            return None
        if length == 13:
            if position >= size:
                return None
            length = data[position] + 13
            position += 1
        elif length == 14:
            if position + 1 >= size:
                return None
            length = ((data[position] << 8) | data[position + 1]) + 269
            position += 2
        elif length == 15:
            return None
        end = position + length
        if end > size:
            return None
        number += delta
        options.append((number, position, end))
        position = end
    return WireMessage(
        data,
        (first >> 4) & 0x03,
        code,
        (data[2] << 8) | data[3],
        data[4 : 4 + tkl],
        options,
        payload_start,
    )


def uint_bytes(value: int) -> bytes:
    """A uint option value: big-endian without leading zero bytes (0 is empty)."""
    return value.to_bytes((value.bit_length() + 7) // 8, "big")


def _extended(value: int) -> tuple[int, bytes]:
    if value < 13:
        return value, b""
    if value < 269:
        return 13, bytes((value - 13,))
    return 14, (value - 269).to_bytes(2, "big")


def build(
    mtype: int,
    code: int,
    mid: int,
    token: bytes,
    options: Iterable[tuple[int, bytes]] = (),
    payload: bytes = b"",
) -> bytes:
    """A message; ``options`` in ascending number order (repeated numbers allowed)."""
    parts = [bytes((0x40 | (mtype << 4) | len(token), code, mid >> 8, mid & 0xFF)), token]
    previous = 0
    for number, value in options:
        delta, delta_ext = _extended(number - previous)
        length, length_ext = _extended(len(value))
        parts.append(bytes(((delta << 4) | length,)))
        if delta_ext:
            parts.append(delta_ext)
        if length_ext:
            parts.append(length_ext)
        parts.append(value)
        previous = number
    if payload:
        parts.append(b"\xff")
        parts.append(payload)
    return b"".join(parts)


def empty(mtype: int, mid: int) -> bytes:
    """An Empty message: an ACK or a RST (RFC 7252 §4.2, §4.3)."""
    return bytes((0x40 | (mtype << 4), EMPTY, mid >> 8, mid & 0xFF))
