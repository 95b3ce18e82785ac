"""Content format dispatch and the choice of format for a client."""

from __future__ import annotations

import pytest

from meadowlark.lwm2m.codec import registry, tlv
from meadowlark.lwm2m.codec.errors import DecodeError, EncodeError
from meadowlark.lwm2m.codec.formats import ContentFormat
from meadowlark.lwm2m.model.types import Operations, ResourceModel
from meadowlark.lwm2m.node import MultiResource, ObjectInstance, ResourceType, SingleResource
from meadowlark.lwm2m.path import LwM2mPath

CF = ContentFormat
T = ResourceType


class FakeModels:
    """A ModelLookup backed by a dict of (object id, resource id) -> ResourceModel."""

    resources = {
        (3, 0): ResourceModel(0, "Manufacturer", Operations.R, False, False, T.STRING),
        (3, 6): ResourceModel(6, "Power Sources", Operations.R, True, False, T.INTEGER),
        (3, 9): ResourceModel(9, "Battery Level", Operations.R, False, False, T.INTEGER),
    }

    def get_resource(self, object_id: int, resource_id: int) -> ResourceModel | None:
        return self.resources.get((object_id, resource_id))


MODELS = FakeModels()
INSTANCE = ObjectInstance(
    0,
    {
        0: SingleResource(0, T.STRING, "Open Mobile Alliance"),
        6: MultiResource(6, T.INTEGER, {0: 1, 1: 5}),
        9: SingleResource(9, T.INTEGER, 100),
    },
)


def test_every_lwm2m_data_format_is_supported() -> None:
    for fmt in ContentFormat:
        assert registry.supports(fmt) == (fmt is not CF.LINK_FORMAT)
    assert not registry.supports(9999)
    assert registry.SINGLE_VALUE_FORMATS == {CF.TEXT, CF.OPAQUE, CF.CBOR}


def test_dispatch_to_tlv_for_both_numbers() -> None:
    payload = tlv.encode(INSTANCE, LwM2mPath(3, 0), MODELS)
    for fmt in (11542, 1542):
        assert registry.encode(fmt, INSTANCE, LwM2mPath(3, 0), MODELS) == payload
        assert registry.decode(fmt, payload, LwM2mPath(3, 0), MODELS) == INSTANCE


def test_dispatch_to_single_value_formats() -> None:
    path = LwM2mPath(3, 0, 9)
    assert registry.decode(0, b"100", path, MODELS) == SingleResource(9, T.INTEGER, 100)
    assert registry.encode(CF.TEXT, SingleResource(9, T.INTEGER, 7), path, MODELS) == b"7"
    opaque_node = registry.decode(42, b"\x01", LwM2mPath(3, 0, 77), MODELS)
    assert opaque_node == SingleResource(77, T.OPAQUE, b"\x01")


@pytest.mark.parametrize(
    "fmt", [CF.TLV, CF.OLD_TLV, CF.OMA_JSON, CF.SENML_JSON, CF.SENML_CBOR, CF.LWM2M_CBOR]
)
def test_multi_value_formats_round_trip_an_instance(fmt: ContentFormat) -> None:
    path = LwM2mPath(3, 0)
    payload = registry.encode(fmt, INSTANCE, path, MODELS)
    assert registry.decode(fmt, payload, path, MODELS) == INSTANCE


def test_unknown_format() -> None:
    with pytest.raises(DecodeError, match="unsupported content format 40"):
        registry.decode(40, b"</1>", LwM2mPath(3, 0), MODELS)
    with pytest.raises(EncodeError, match="unsupported content format 9999"):
        registry.encode(9999, INSTANCE, LwM2mPath(3, 0), MODELS)


@pytest.mark.parametrize(
    ("version", "announced", "path", "single_value", "expected"),
    [
        ("1.0", (), LwM2mPath(3, 0), None, CF.TLV),
        ("1.0", (), LwM2mPath(3, 0, 9), True, CF.TLV),
        ("1.0", (CF.OMA_JSON,), LwM2mPath(3, 0), None, CF.TLV),
        ("1.0.2", (CF.OLD_JSON,), LwM2mPath(3), None, CF.TLV),
        ("1.1", (), LwM2mPath(3, 0), None, CF.SENML_CBOR),
        ("1.1", (), LwM2mPath(3, 0, 9), None, CF.SENML_CBOR),
        ("1.1", (), LwM2mPath(3, 0, 9), True, CF.TEXT),
        ("1.1", (), LwM2mPath(3, 0, 6, 0), None, CF.TEXT),
        ("1.1", (CF.SENML_JSON,), LwM2mPath(3, 0), None, CF.SENML_JSON),
        ("1.1", (CF.SENML_JSON,), LwM2mPath(3, 0, 9), True, CF.SENML_JSON),
        ("1.1", (CF.CBOR, CF.SENML_JSON), LwM2mPath(3, 0), None, CF.SENML_JSON),
        ("1.1", (CF.SENML_JSON, CF.SENML_CBOR), LwM2mPath(3), None, CF.SENML_CBOR),
        ("1.1", (CF.TLV,), LwM2mPath(3, 0), None, CF.TLV),
        ("1.2", (CF.LWM2M_CBOR, CF.SENML_JSON), LwM2mPath(3, 0), None, CF.LWM2M_CBOR),
        ("1.2", (9999,), LwM2mPath(3, 0), None, CF.SENML_CBOR),
    ],
)
def test_preferred_format(
    version: str,
    announced: tuple[int, ...],
    path: LwM2mPath,
    single_value: bool | None,
    expected: ContentFormat,
) -> None:
    chosen = registry.preferred_format(version, announced, path, single_value=single_value)
    assert chosen is expected


def test_preferred_format_refuses_a_bad_version() -> None:
    with pytest.raises(ValueError, match="not an LwM2M version"):
        registry.preferred_format("one", (), LwM2mPath(3))
