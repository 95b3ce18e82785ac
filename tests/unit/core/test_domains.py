"""Domain ids: normalization refuses anything that is not a clean /root/... path."""

from __future__ import annotations

import re

import pytest
from hypothesis import example, given
from hypothesis import strategies as st

from meadowlark.core.domains import MAX_DEPTH, normalize_domain_id, parent_of
from meadowlark.core.errors import InvalidInput
from meadowlark.core.users import validate_email, validate_login

_CLEAN = re.compile(r"/root/(?:[A-Za-z0-9][A-Za-z0-9._-]{0,62}/)*")


@pytest.mark.parametrize(
    ("text", "normalized"),
    [
        ("/root/", "/root/"),
        ("root", "/root/"),
        ("/root", "/root/"),
        ("root/acme", "/root/acme/"),
        ("/root/acme/", "/root/acme/"),
        ("//root//acme//east/", "/root/acme/east/"),
        ("  /root/a.b_c-d/ ", "/root/a.b_c-d/"),
    ],
)
def test_normalizes(text, normalized):
    assert normalize_domain_id(text) == normalized


@pytest.mark.parametrize(
    "text",
    [
        "",
        "/",
        "acme",
        "/acme/",
        "/Root/",
        "/root/../etc/",
        "/root/./",
        "/root/..",
        "/root/-x/",
        "/root/.hidden/",
        "/root/a b/",
        "/root/a%2f/",
        "/root/a\x00/",
        "/root/a\n/",
        "/root/" + "a" * 64 + "/",
        "/root/" + "a/" * MAX_DEPTH,
        "/root/ä/",
        "..%2f..%2fetc",
        "/root/abc\n/x/",
    ],
)
def test_refuses(text):
    with pytest.raises(InvalidInput):
        normalize_domain_id(text)


@given(st.text())
@example("/root/abc\n/")
@example("root/x\n/y")
def test_normalizer_never_raises_anything_but_invalid_input(text):
    try:
        normalized = normalize_domain_id(text)
    except InvalidInput:
        return
    assert _CLEAN.fullmatch(normalized), repr(normalized)
    assert normalize_domain_id(normalized) == normalized


@given(
    st.lists(
        st.from_regex(r"[A-Za-z0-9][A-Za-z0-9._-]{0,20}", fullmatch=True), max_size=MAX_DEPTH - 1
    )
)
def test_valid_ids_round_trip(segments):
    domain_id = "/root/" + "".join(f"{s}/" for s in segments)
    assert normalize_domain_id(domain_id) == domain_id
    parent = parent_of(domain_id)
    if segments:
        assert parent == "/root/" + "".join(f"{s}/" for s in segments[:-1])
    else:
        assert parent is None


@pytest.mark.parametrize("login", ["bob\n", "admin\n", "", "a b", "a/b", "x" * 256, "é"])
def test_login_refuses(login):
    with pytest.raises(InvalidInput):
        validate_login(login)


@pytest.mark.parametrize("email", ["a@b.c\n", "no-at", "a@b", "a b@c.d", "x@" + "y" * 320 + ".z"])
def test_email_refuses(email):
    with pytest.raises(InvalidInput):
        validate_email(email)


@given(st.text(max_size=300))
def test_login_validation_only_raises_invalid_input(login):
    try:
        assert validate_login(login) == login
    except InvalidInput:
        return
    assert re.fullmatch(r"[A-Za-z0-9._@+-]{1,255}", login)
