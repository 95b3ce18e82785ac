"""The hand-made CoAP parser and builder: round trips, agreement with aiocoap, and
garbage that never raises."""

from __future__ import annotations

from aiocoap import Message
from hypothesis import given
from hypothesis import strategies as st

from meadowlark.coap import wire

option_numbers = st.sampled_from(
    [wire.IF_MATCH, wire.ETAG, wire.OBSERVE, wire.LOCATION_PATH, wire.URI_PATH,
     wire.CONTENT_FORMAT, wire.MAX_AGE, wire.URI_QUERY, wire.ACCEPT, wire.BLOCK1, wire.SIZE1,
     300, 2048, 65000]
)  # fmt: skip
options = st.lists(st.tuples(option_numbers, st.binary(max_size=300)), max_size=8).map(
    lambda found: sorted(found, key=lambda option: option[0])
)
messages = st.tuples(
    st.integers(0, 3),
    st.integers(1, 255),
    st.integers(0, 0xFFFF),
    st.binary(max_size=8),
    options,
    st.binary(max_size=600),
)


@given(messages)
def test_what_build_makes_parse_reads_back(parts):
    mtype, code, mid, token, opts, payload = parts
    data = wire.build(mtype, code, mid, token, opts, payload)
    message = wire.parse(data)
    assert message is not None
    assert (message.mtype, message.code, message.mid, message.token) == (mtype, code, mid, token)
    assert [(number, data[start:end]) for number, start, end in message.options] == opts
    assert message.payload == payload


text_options = st.lists(
    st.tuples(
        st.sampled_from([wire.LOCATION_PATH, wire.URI_PATH, wire.URI_QUERY, 2048]),
        st.text(max_size=40).map(str.encode),
    ),
    max_size=8,
).map(lambda found: sorted(found, key=lambda option: option[0]))


@given(messages, text_options)
def test_aiocoap_decodes_what_build_makes_to_the_same_message(parts, opts):
    mtype, code, mid, token, _, payload = parts
    decoded = Message.decode(wire.build(mtype, code, mid, token, opts, payload))
    assert (int(decoded.mtype), int(decoded.code), decoded.mid, decoded.token) == (
        mtype, code, mid, token
    )  # fmt: skip
    assert decoded.payload == payload
    paths = [value.decode() for number, value in opts if number == wire.URI_PATH]
    assert list(decoded.opt.uri_path) == paths


@given(st.binary(max_size=200))
def test_garbage_parses_to_a_message_or_none_and_never_raises(data):
    message = wire.parse(data)
    if message is not None:
        assert message.payload_start <= len(data)
        for _, start, end in message.options:
            assert 4 <= start <= end <= len(data)
        message.strings(wire.URI_PATH)
        message.uint(wire.CONTENT_FORMAT)


@given(messages, st.integers(0, 2000), st.integers(0, 255))
def test_a_corrupted_message_never_raises(parts, position, byte):
    data = bytearray(wire.build(*parts))
    data[position % len(data)] = byte
    message = wire.parse(bytes(data))
    if message is not None:
        assert message.strings(wire.URI_QUERY) is None or isinstance(
            message.strings(wire.URI_QUERY), list
        )


def test_format_errors_are_refused():
    assert wire.parse(b"\x40\x01\x00") is None  # shorter than a header
    assert wire.parse(b"\x80\x01\x00\x00") is None  # version 2
    assert wire.parse(b"\x49\x01\x00\x00" + b"t" * 9) is None  # token length 9
    assert wire.parse(b"\x40\x01\x00\x00\xff") is None  # payload marker without payload
    assert wire.parse(b"\x40\x00\x00\x00\xb1r") is None  # an Empty message with options
    assert wire.parse(b"\x40\x01\x00\x00\xf1x") is None  # option delta 15
    assert wire.parse(b"\x40\x01\x00\x00\xb5rd") is None  # option past the end
    assert wire.parse(wire.empty(wire.RST, 7)) is not None
