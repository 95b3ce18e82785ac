"""Pure parts of the devices service: page bookmarks, PSK parsing, field selection."""

from __future__ import annotations

import base64
import json

import pytest

from meadowlark.core.devices import (
    decode_bookmark,
    device_properties,
    encode_bookmark,
    parse_field_selection,
    psk_to_hex,
    software_version,
    update_trigger_path,
)
from meadowlark.core.errors import InvalidInput
from meadowlark.lwm2m.codec.link_format import parse_registration_links
from meadowlark.lwm2m.path import LwM2mPath
from meadowlark.store.device_models import Device

CRITERIA = "properties.site eq 'north'"


@pytest.mark.parametrize("last_id", ["dev-001", "urn:imei:1/2", "ü ' \" ,", ""])
def test_bookmark_round_trip(last_id):
    bookmark = encode_bookmark(last_id, CRITERIA)
    assert bookmark.isascii() and "=" not in bookmark
    assert decode_bookmark(bookmark, CRITERIA) == last_id
    assert decode_bookmark(bookmark, f"  {CRITERIA} ") == last_id


def test_bookmark_of_other_criteria_is_refused():
    bookmark = encode_bookmark("dev-001", CRITERIA)
    with pytest.raises(InvalidInput):
        decode_bookmark(bookmark, "id startswith 'dev'")
    with pytest.raises(InvalidInput):
        decode_bookmark(bookmark, None)
    assert decode_bookmark(encode_bookmark("x", None), "") == "x"


def test_tampered_bookmark_is_refused():
    bookmark = encode_bookmark("dev-001", CRITERIA)
    last_id, check = json.loads(base64.urlsafe_b64decode(bookmark + "=" * (-len(bookmark) % 4)))
    forged = base64.urlsafe_b64encode(json.dumps(["dev-900", check]).encode()).decode()
    for bad in (
        forged,
        bookmark[:-3],
        "!!!",
        "e30",
        base64.b64encode(b"[1, 2]").decode(),
        base64.b64encode(b'["a", "b", "c"]').decode(),
    ):
        with pytest.raises(InvalidInput, match="pageBookmark"):
            decode_bookmark(bad, CRITERIA)


@pytest.mark.parametrize(
    ("psk", "expected"),
    [
        ({"PlainTextPsk": "secret"}, b"secret".hex()),
        ({"PlainTextPsk": "ü"}, "c3bc"),
        ({"HexadecimalPsk": "00A1ff"}, "00a1ff"),
        ({"BinaryPsk": [0, 1, 255]}, "0001ff"),
    ],
)
def test_psk_to_hex(psk, expected):
    assert psk_to_hex(psk) == expected


@pytest.mark.parametrize(
    "psk",
    [
        {},
        {"PlainTextPsk": "a", "HexadecimalPsk": "00"},
        {"PlainTextPsk": ""},
        {"HexadecimalPsk": "abc"},
        {"HexadecimalPsk": "0g"},
        {"HexadecimalPsk": ""},
        {"HexadecimalPsk": " 00"},
        {"BinaryPsk": []},
        {"BinaryPsk": [256]},
        {"BinaryPsk": [-1]},
        {"BinaryPsk": [True]},
        {"BinaryPsk": "0001"},
        {"PlainTextPsk": 5},
        {"ExternalPsk": {}},
        {"GlobalPsk": {}},
        {"HexadecimalPsk": "00" * 257},
    ],
)
def test_bad_psk_is_invalid_input(psk):
    with pytest.raises(InvalidInput):
        psk_to_hex(psk)


def test_field_selection():
    known = {"id", "friendlyName", "properties"}
    assert parse_field_selection(None, known) is None
    assert parse_field_selection("", known) is None
    assert parse_field_selection(" , ", known) is None
    assert parse_field_selection("friendlyName", known) == {"id", "friendlyName"}
    assert parse_field_selection(" properties ,id", known) == {"id", "properties"}
    with pytest.raises(InvalidInput, match="colour"):
        parse_field_selection("id,colour", known)


def test_update_trigger_uses_the_server_object_instance():
    links = parse_registration_links(b"</1/3>,</1/5>,</3/0>")
    assert update_trigger_path(links) == LwM2mPath(1, 3, 8)
    assert update_trigger_path(parse_registration_links(b"</3/0>")) == LwM2mPath(1, 0, 8)
    assert update_trigger_path(None) == LwM2mPath(1, 0, 8)


def test_properties_are_strings_and_derived_from_the_record():
    device = Device(
        id="d",
        endpoint_name="ep",
        properties={"site": "north"},
        queue_mode=True,
        lwm2m_version="1.1",
        binding="U",
        lifetime=300,
        registered_objects="</3/0>",
    )
    assert device_properties(device) == {
        "site": "north",
        "endpointName": "ep",
        "lwm2mVersion": "1.1",
        "registeredQueueMode": "true",
        "binding": "U",
        "lifetime": "300",
        "registeredObjects": "</3/0>",
    }
    assert device_properties(Device(id="d", endpoint_name="ep", properties={})) == {
        "endpointName": "ep"
    }


def test_software_version_prefers_firmware_version():
    assert software_version(Device(firmware_version="1.2", software_version="9")) == "1.2"
    assert software_version(Device(firmware_version="", software_version="9")) == "9"
    assert software_version(Device()) is None
