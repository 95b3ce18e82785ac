"""CoRE link format (RFC 6690), Register/Update payloads and Discover responses."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from meadowlark.lwm2m.codec.errors import DecodeError, EncodeError
from meadowlark.lwm2m.codec.link_format import (
    Link,
    ObjectEntry,
    attributes_by_path,
    decode_links,
    discover_links,
    encode_links,
    format_links,
    parse_links,
    parse_registration_links,
)
from meadowlark.lwm2m.path import LwM2mPath

# --- parser -------------------------------------------------------------------------


def test_rfc6690_example() -> None:
    # RFC 6690 §5 example.
    text = (
        '</sensors/temp>;rt="temperature-c";if="sensor",</sensors/light>;rt="light-lux";if="sensor"'
    )
    assert parse_links(text) == [
        Link("/sensors/temp", {"rt": "temperature-c", "if": "sensor"}),
        Link("/sensors/light", {"rt": "light-lux", "if": "sensor"}),
    ]


def test_quoted_values_keep_commas_semicolons_and_escapes() -> None:
    text = r'</a>;title="x, y; z";rt="say \"hi\" \\ bye",</b>'
    assert parse_links(text) == [
        Link("/a", {"title": "x, y; z", "rt": 'say "hi" \\ bye'}),
        Link("/b"),
    ]


def test_parameters_without_value_repeated_parameters_and_case() -> None:
    assert parse_links("</a>;obs;RT=x;rt=y;rt") == [
        Link("/a", {"obs": None, "rt": ["x", "y", None]})
    ]


def test_whitespace_around_separators_is_tolerated() -> None:
    text = ' \n</1/0> ; ver = 1.1 ,\r\n\t</3/0>;ct = "60 110" \n'
    assert parse_links(text) == [
        Link("/1/0", {"ver": "1.1"}),
        Link("/3/0", {"ct": "60 110"}),
    ]


def test_empty_document() -> None:
    assert parse_links("") == []
    assert parse_links("  ") == []


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("/1/0", "expected '<'"),
        ("</1/0", "unterminated <uri>"),
        ("</1/0>,", "expected '<'"),
        ("</1/0></2/0>", "expected ','"),
        ("</1/0>;", "parameter name"),
        ("</1/0>;=1", "parameter name"),
        ("</1/0>;ver=", "expected a value"),
        ("</1/0>;ver=,</2>", "expected a value"),
        ('</1/0>;rt="open', "unterminated quoted string"),
        ('</1/0>;rt="open\\', "unterminated quoted string"),
        ("</1 0>", "invalid character"),
        ('</1">', "invalid character"),
        ("<</1>>", "invalid character"),
        ("</1>;ver=1.1 x", "expected ','"),
    ],
)
def test_malformed(text: str, message: str) -> None:
    with pytest.raises(DecodeError, match=message):
        parse_links(text)


def test_invalid_utf8() -> None:
    with pytest.raises(DecodeError, match="UTF-8"):
        decode_links(b"</1>;title=\xff")


def test_format_quotes_where_needed() -> None:
    links = [
        Link("/", {"rt": "oma.lwm2m", "ct": "60 110"}),
        Link("/1", {"ver": "1.1", "obs": None, "title": 'a "b"', "x": ""}),
    ]
    assert format_links(links) == (
        '</>;rt="oma.lwm2m";ct="60 110",</1>;ver=1.1;obs;title="a \\"b\\"";x=""'
    )


@pytest.mark.parametrize(
    "link",
    [Link("/a b"), Link("/a>"), Link("/a", {"bad name": "1"}), Link("/a", {"Upper": "1"})],
)
def test_format_refuses_unrepresentable_links(link: Link) -> None:
    with pytest.raises(EncodeError):
        format_links([link])


URIS = st.text(
    st.characters(min_codepoint=0x21, exclude_characters='<>"\x7f', exclude_categories=["Cs"]),
    max_size=12,
)
NAMES = st.from_regex(r"[a-z0-9!#$&+\-.^_`|~]{1,8}\*?", fullmatch=True)
VALUES = st.none() | st.text(st.characters(exclude_categories=["Cs"]), max_size=12)
PARAMS = st.dictionaries(NAMES, VALUES | st.lists(VALUES, min_size=2, max_size=3), max_size=4)
LINKS = st.lists(st.builds(Link, URIS, PARAMS), max_size=5)


@given(LINKS)
def test_format_then_parse_round_trips(links: list[Link]) -> None:
    assert parse_links(format_links(links)) == links
    assert decode_links(encode_links(links)) == links


@settings(max_examples=300)
@given(st.text(alphabet='<>;,="\\ /0123abcrt.\n', max_size=40) | st.text(max_size=40))
def test_arbitrary_text_parses_or_raises_decode_error(text: str) -> None:
    try:
        links = parse_links(text)
    except DecodeError:
        return
    assert all(isinstance(link, Link) for link in links)


@settings(max_examples=200)
@given(st.binary(max_size=60))
def test_arbitrary_registration_payload_parses_or_raises_decode_error(payload: bytes) -> None:
    try:
        parse_registration_links(payload)
    except DecodeError:
        pass


# --- registration -------------------------------------------------------------------


def test_lwm2m_1_0_registration() -> None:
    # Core 1.0 §5.3.1 example payload.
    payload = b"</1/0>,</1/1>,</2/0>,</2/1>,</2/2>,</2/3>,</2/4>,</3/0>,</4/0>,</5>"
    registered = parse_registration_links(payload)
    assert registered.root_path == "/"
    assert registered.content_formats == ()
    assert registered.objects == {
        1: ObjectEntry(None, (0, 1)),
        2: ObjectEntry(None, (0, 1, 2, 3, 4)),
        3: ObjectEntry(None, (0,)),
        4: ObjectEntry(None, (0,)),
        5: ObjectEntry(None, ()),
    }
    assert len(registered.links) == 10


def test_lwm2m_1_1_registration_with_ct_and_versions() -> None:
    # Core 1.1 §6.2.1 example: optional data formats announced on the root link.
    payload = b"</>;ct=110, </1/0>,</1/1>,</2/0>,</3/0>,</4/0>,</5>,</3303>;ver=1.1,</3303/0>"
    registered = parse_registration_links(payload)
    assert registered.root_path == "/"
    assert registered.content_formats == (110,)
    assert registered.objects[3303] == ObjectEntry("1.1", (0,))
    assert registered.objects[5] == ObjectEntry(None, ())


def test_alternate_root_path() -> None:
    payload = (
        b'</lwm2m>;rt="oma.lwm2m";ct="60 110 112",</lwm2m/1/101>,</lwm2m/1/102>,'
        b"</lwm2m/2/0>,</lwm2m/3/0>;ver=1.1,</other/5/0>,</lwm2m/3/0/1>,</lwm2m/x>"
    )
    registered = parse_registration_links(payload)
    assert registered.root_path == "/lwm2m"
    assert registered.content_formats == (60, 110, 112)
    assert registered.objects == {
        1: ObjectEntry(None, (101, 102)),
        2: ObjectEntry(None, (0,)),
        3: ObjectEntry("1.1", (0,)),
    }


def test_root_path_with_trailing_slash_and_repeated_ct() -> None:
    registered = parse_registration_links(b'</lwm2m/>;rt="oma.lwm2m";ct=110;ct=11542,</lwm2m/3/0>')
    assert registered.root_path == "/lwm2m"
    assert registered.content_formats == (110, 11542)
    assert registered.objects == {3: ObjectEntry(None, (0,))}


def test_rt_may_list_several_types() -> None:
    registered = parse_registration_links(b'</r>;rt="core.rd oma.lwm2m",</r/3/0>')
    assert registered.root_path == "/r"


@pytest.mark.parametrize(
    ("payload", "message"),
    [
        (b"</1/0>,,</2/0>", "expected '<'"),
        (b'</a>;rt="oma.lwm2m",</b>;rt="oma.lwm2m"', "several links"),
        (b'<lwm2m>;rt="oma.lwm2m"', "absolute"),
        (b"</>;ct=abc", "content format"),
        (b"</>;ct=70000", "content format"),
        (b"</>;ct", "without a value"),
        (b"</3>;ver=one", "object version"),
        (b"</3>;ver", "object version"),
    ],
)
def test_bad_registration_payloads(payload: bytes, message: str) -> None:
    with pytest.raises(DecodeError, match=message):
        parse_registration_links(payload)


# --- discover -----------------------------------------------------------------------


def test_discover_response_attributes_by_path() -> None:
    # Core 1.1 §5.4.2-style Discover on /3: object, instance and resource links.
    payload = b"</3>;ver=1.1;pmin=10,</3/0>,</3/0/1>,</3/0/7>;dim=2;gt=50,</3/0/7/0>"
    assert attributes_by_path(decode_links(payload)) == {
        LwM2mPath(3): {"ver": "1.1", "pmin": "10"},
        LwM2mPath(3, 0): {},
        LwM2mPath(3, 0, 1): {},
        LwM2mPath(3, 0, 7): {"dim": "2", "gt": "50"},
        LwM2mPath(3, 0, 7, 0): {},
    }


def test_discover_under_alternate_root() -> None:
    links = parse_links("</lwm2m/3/0/7>;dim=2")
    assert attributes_by_path(links, "/lwm2m") == {LwM2mPath(3, 0, 7): {"dim": "2"}}


@pytest.mark.parametrize("text", ["</sensors/temp>", "</3/0/1>,</3/0/1>", "</3/99999>"])
def test_discover_rejects_non_lwm2m_links(text: str) -> None:
    with pytest.raises(DecodeError):
        attributes_by_path(parse_links(text))


def test_discover_links_round_trip() -> None:
    attributes = {
        LwM2mPath(3, 0): {"pmin": "10", "pmax": "60"},
        LwM2mPath(3, 0, 7): {"dim": "2"},
        LwM2mPath(3, 0, 9): {},
    }
    encoded = encode_links(discover_links(attributes))
    assert encoded == b"</3/0>;pmin=10;pmax=60,</3/0/7>;dim=2,</3/0/9>"
    assert attributes_by_path(decode_links(encoded)) == attributes
