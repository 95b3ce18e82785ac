"""The simulator's image check: header version, SHA-256 and size, chunk by chunk."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from meadowlark.simulator.firmware import FirmwareBehaviour, ImageReceiver, build_image


def _received(image: bytes, cuts: list[int]) -> ImageReceiver:
    receiver = ImageReceiver()
    start = 0
    for cut in sorted({c % (len(image) + 1) for c in cuts}) + [len(image)]:
        receiver.feed(image[start:cut])
        start = cut
    return receiver


@given(st.binary(max_size=2000), st.lists(st.integers(min_value=0), max_size=8))
def test_a_built_image_checks_out_however_it_is_cut(body, cuts):
    image = build_image("2.1.0-rc1", body)
    receiver = _received(image, cuts)
    assert receiver.problem(len(image)) is None
    assert receiver.version == "2.1.0-rc1"


@given(st.binary(min_size=1, max_size=2000), st.lists(st.integers(min_value=0), max_size=8))
def test_any_bytes_without_a_header_are_accepted_as_they_are(body, cuts):
    receiver = _received(b"\x7f" + body, cuts)
    assert receiver.problem() is None
    assert receiver.version is None


def test_a_corrupted_image_fails_the_integrity_check():
    image = bytearray(build_image("2.0", b"payload"))
    image[-1] ^= 1
    assert _received(bytes(image), [10]).problem() == 5


def test_a_short_or_empty_image_is_a_lost_connection():
    image = build_image("2.0", b"payload")
    assert _received(image, []).problem(len(image) + 1) == 4
    assert ImageReceiver().problem() == 4


def test_behaviour_refuses_codes_that_are_not_download_failures():
    with pytest.raises(ValueError):
        FirmwareBehaviour(download_failure=1)
    with pytest.raises(ValueError):
        build_image("has space", b"")
