"""LwM2M path text: what parses and what is refused as an InvalidPathError."""

import pytest

from meadowlark.lwm2m.path import InvalidPathError, LwM2mPath


@pytest.mark.parametrize(
    ("text", "ids"),
    [("/", ()), ("/3", (3,)), ("3/0/1", (3, 0, 1)), ("/3/0/1/65535/", (3, 0, 1, 65535))],
)
def test_paths_parse_to_their_ids(text: str, ids: tuple[int, ...]) -> None:
    assert LwM2mPath.parse(text).ids == ids


@pytest.mark.parametrize(
    "text",
    ["/3/x", "/3/-1", "/03", "/1/2/3/4/5", "/3/65536", "/3/" + "9" * 5000, "/٣"],
)
def test_invalid_paths_are_refused_as_such(text: str) -> None:
    with pytest.raises(InvalidPathError):
        LwM2mPath.parse(text)
