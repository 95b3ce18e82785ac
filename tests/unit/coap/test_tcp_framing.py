"""RFC 8323 frame checks of the CoAP-over-TCP listener, and its settings."""

from __future__ import annotations

import pytest
from aiocoap import Code, Message
from aiocoap.transports.tcp import _serialize

from meadowlark.coap.tcp import MAX_OPTIONS, _frame_size, _options_countable, _parse_frame
from meadowlark.config import Settings


def encoded(payload: bytes = b"", **options: object) -> bytes:
    message = Message(code=Code.POST, payload=payload, **options)
    message.token = b"\x01\x02"
    return _serialize(message)


@pytest.mark.parametrize("payload_size", [0, 1, 12, 13, 268, 269, 65804, 65805, 70000])
def test_frame_size_covers_every_length_encoding(payload_size):
    frame = encoded(b"x" * payload_size, uri_path=("rd",))
    assert _frame_size(bytearray(frame)) == len(frame)
    assert _parse_frame(frame) is not None


def test_frame_size_waits_for_the_extended_length():
    assert _frame_size(bytearray(b"\xe0\x01")) is None  # 2 length bytes announced, 1 here
    assert _frame_size(bytearray(b"\xf0\xff\xff\xff\xff")) == 2 + 4 + 0xFFFFFFFF + 65805


def test_well_formed_options_are_counted():
    frame = encoded(b"</1/0>", uri_path=("rd",), uri_query=("ep=a", "lt=60"), content_format=40)
    assert _options_countable(frame)
    message = _parse_frame(frame)
    assert message is not None and message.opt.uri_query == ("ep=a", "lt=60")


@pytest.mark.parametrize(
    "frame",
    [
        bytes((0x10, 0x02, 0xFF)),  # payload marker without payload
        bytes((0x10, 0x02, 0xF0)),  # option delta 15 is reserved
        bytes((0x20, 0x02, 0xB5, 0x61)),  # Uri-Path of 5 bytes, 1 present
        bytes((0x20, 0x02, 0xBD, 0x01)),  # extended length byte promises more
        bytes((0x19, 0x02)) + bytes(9),  # token of 9 bytes
    ],
)
def test_malformed_frames_do_not_parse(frame):
    assert _parse_frame(frame) is None


def test_too_many_options_are_refused_before_decoding():
    options = bytes((0x01, 0x61)) * (MAX_OPTIONS + 1)  # If-Match, repeated
    frame = bytes((0xD0, len(options) - 13, 0x02)) + options
    assert _frame_size(bytearray(frame)) == len(frame)
    assert not _options_countable(frame) and _parse_frame(frame) is None
    fewer = bytes((0x01, 0x61)) * MAX_OPTIONS
    assert _options_countable(bytes((0xD0, len(fewer) - 13, 0x02)) + fewer)


def test_stream_listeners_default_on_and_can_be_turned_off(monkeypatch):
    defaults = Settings()
    assert (defaults.coap_tcp.host, defaults.coap_tcp.port) == ("0.0.0.0", 5683)  # noqa: S104
    assert (defaults.coap_tls.host, defaults.coap_tls.port) == ("0.0.0.0", 5684)  # noqa: S104
    monkeypatch.setenv("MEADOWLARK_COAP_TCP", "off")
    monkeypatch.setenv("MEADOWLARK_COAP_TLS", "[::1]:15684")
    configured = Settings()
    assert configured.coap_tcp is None
    assert (configured.coap_tls.host, configured.coap_tls.port) == ("::1", 15684)
    monkeypatch.setenv("MEADOWLARK_COAP_TCP", "no-port")
    with pytest.raises(ValueError, match="host:port"):
        Settings()


class _Owner:
    max_message_size = 5120
    block_size_exp = 6


def test_blocks_fit_the_max_message_size_the_device_announced():
    from meadowlark.coap.tcp import Lwm2mTcpConnection

    connection = Lwm2mTcpConnection(_Owner(), None, None)  # type: ignore[arg-type]
    assert (connection.maximum_block_size_exp, connection.maximum_payload_size) == (6, 1024)
    connection._remote_settings = {"max-message-size": 1152}
    assert connection.maximum_block_size_exp == 6
    connection._remote_settings = {"max-message-size": 400}
    assert (connection.maximum_block_size_exp, connection.maximum_payload_size) == (4, 256)
    connection.maximum_block_size_exp = 2  # the server's configured block size (64 bytes)
    assert connection.maximum_payload_size == 64
