"""Opaque codec (content format 42): raw bytes of one Opaque value."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from meadowlark.lwm2m.codec import opaque
from meadowlark.lwm2m.codec.errors import DecodeError, EncodeError
from meadowlark.lwm2m.model.types import Operations, ResourceModel
from meadowlark.lwm2m.node import (
    MultiResource,
    Node,
    ResourceInstance,
    ResourceType,
    SingleResource,
)
from meadowlark.lwm2m.path import LwM2mPath

T = ResourceType
FIRMWARE_PACKAGE = LwM2mPath(5, 0, 0)


class FakeModels:
    """A ModelLookup backed by a dict of (object id, resource id) -> ResourceModel."""

    resources = {
        (5, 0): ResourceModel(0, "Package", Operations.W, False, True, T.OPAQUE),
        (5, 1): ResourceModel(1, "Package URI", Operations.RW, False, True, T.STRING),
        (9000, 1): ResourceModel(1, "Blobs", Operations.RW, True, False, T.OPAQUE),
    }

    def get_resource(self, object_id: int, resource_id: int) -> ResourceModel | None:
        return self.resources.get((object_id, resource_id))


MODELS = FakeModels()


def test_single_resource() -> None:
    node = SingleResource(0, T.OPAQUE, b"\x00\xffimage")
    assert opaque.decode(b"\x00\xffimage", FIRMWARE_PACKAGE, MODELS) == node
    assert opaque.encode(node, FIRMWARE_PACKAGE, MODELS) == b"\x00\xffimage"


def test_resource_instance_and_unknown_resource() -> None:
    path = LwM2mPath(9000, 0, 1, 4)
    assert opaque.decode(b"ab", path, MODELS) == ResourceInstance(4, T.OPAQUE, b"ab")
    unknown = LwM2mPath(9000, 0, 77)
    assert opaque.decode(b"", unknown, MODELS) == SingleResource(77, T.OPAQUE, b"")


@pytest.mark.parametrize(
    ("path", "message"),
    [
        (LwM2mPath(5, 0, 1), "String resource"),
        (LwM2mPath(5, 0), "single resource value"),
        (LwM2mPath(9000, 0, 1), "multiple resource"),
    ],
)
def test_refused_paths(path: LwM2mPath, message: str) -> None:
    with pytest.raises(DecodeError, match=message):
        opaque.decode(b"x", path, MODELS)


@pytest.mark.parametrize(
    ("node", "path"),
    [
        (SingleResource(1, T.STRING, "http://x"), LwM2mPath(5, 0, 1)),
        (SingleResource(0, T.OPAQUE, b"x"), LwM2mPath(5, 0, 1)),
        (MultiResource(1, T.OPAQUE, {0: b"x"}), LwM2mPath(9000, 0, 1)),
        (SingleResource(0, T.OPAQUE, "not bytes"), FIRMWARE_PACKAGE),
    ],
)
def test_unencodable(node: Node, path: LwM2mPath) -> None:
    with pytest.raises(EncodeError):
        opaque.encode(node, path, MODELS)


@given(st.binary(max_size=512))
def test_round_trip(payload: bytes) -> None:
    node = opaque.decode(payload, FIRMWARE_PACKAGE, MODELS)
    assert opaque.encode(node, FIRMWARE_PACKAGE, MODELS) == payload
