"""Parsing a device import file: columns, rows and their lines, bad files."""

from __future__ import annotations

import pytest

from meadowlark.core.devices import MAX_IMPORT_ROWS, NewDevice, parse_device_csv
from meadowlark.core.errors import InvalidInput


def test_rows_become_new_devices_with_their_lines():
    rows = parse_device_csv(
        "Endpoint, dtlsPsk ,GROUPS,securitymode,dtlsIdentity,domain\n"
        "a,00ff,g1;g2 g3,psk,id-a,/root/x/\n"
        '"b\nstill b",,,,,\n'
        "c,,,nosec,,\n"
    )
    assert [line for line, _ in rows] == [2, 4, 5]
    first = rows[0][1]
    assert first == NewDevice(
        endpoint_name="a",
        domain="/root/x/",
        security_mode="psk",
        dtls_identity="id-a",
        dtls_psk={"HexadecimalPsk": "00ff"},
        groups=("g1", "g2", "g3"),
    )
    assert rows[1][1] == NewDevice(endpoint_name="b\nstill b")  # refused later: not printable
    assert rows[2][1] == NewDevice(endpoint_name="c", security_mode="nosec")


def test_bad_rows_are_entries_of_their_own():
    rows = parse_device_csv("endpoint,dtlsPsk\n,00\nx,00,extra\ny,\n")
    assert [(line, type(row).__name__) for line, row in rows] == [
        (2, "InvalidInput"),
        (3, "InvalidInput"),
        (4, "NewDevice"),
    ]
    assert rows[0][1].message == "endpoint is empty"  # type: ignore[union-attr]
    assert rows[1][1].message == "more cells than columns"  # type: ignore[union-attr]


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("", "needs a header row"),
        ("domain\n/root/\n", "needs a header row"),
        ("endpoint,key\nx,00\n", "unknown column 'key'"),
        ("endpoint,Endpoint\nx,y\n", "appears twice"),
        ("endpoint\nx\0\n", "NUL"),
        ('endpoint\n"x\n', "malformed CSV"),
        ('endpoint\n"x"y\n', "malformed CSV"),
    ],
)
def test_bad_files_are_refused_as_a_whole(text, message):
    with pytest.raises(InvalidInput, match=message):
        parse_device_csv(text)


def test_the_number_of_rows_is_bounded():
    with pytest.raises(InvalidInput, match="at most"):
        parse_device_csv("endpoint\n" + "x\n" * (MAX_IMPORT_ROWS + 1))
