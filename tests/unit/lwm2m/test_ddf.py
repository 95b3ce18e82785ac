"""DDF parsing and serialisation: registry files, tolerance, hostile input, round trips."""

from __future__ import annotations

import re
from collections.abc import Callable
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from meadowlark.lwm2m.model.ddf import CUSTOM_OBJECT_IDS, DdfError, parse_ddf, to_ddf_xml
from meadowlark.lwm2m.model.types import ObjectModel, Operations, ResourceModel
from meadowlark.lwm2m.node import ResourceType

REGISTRY_DIR = Path(__file__).resolve().parents[4] / "shared" / "reference" / "lwm2m-registry"
"""The OMA registry in ``shared/`` beside the repository."""
NON_OBJECT_FILES = {"DDF.xml", "Common.xml", "LWM2M_senml_units.xml"}
"""Registry files that are not object definitions (object index, reusable resources, units)."""

needs_registry = pytest.mark.skipif(
    not REGISTRY_DIR.is_dir(), reason="OMA LwM2M registry checkout not available"
)


def registry_files() -> list[Path]:
    if not REGISTRY_DIR.is_dir():
        return []
    return sorted(REGISTRY_DIR.glob("*.xml"))


def parse_registry_object(object_id: int) -> ObjectModel:
    [model] = parse_ddf((REGISTRY_DIR / f"{object_id}.xml").read_bytes())
    return model


def ddf(resources: str = "", **fields: str) -> str:
    """A minimal DDF; ``fields`` override object-level elements."""
    values = {
        "Name": "Test",
        "Description1": "A test object",
        "ObjectID": "30000",
        "ObjectURN": "urn:oma:lwm2m:x:30000",
        "LWM2MVersion": "1.1",
        "ObjectVersion": "1.0",
        "MultipleInstances": "Multiple",
        "Mandatory": "Optional",
    } | fields
    elements = "".join(f"<{tag}>{text}</{tag}>" for tag, text in values.items())
    return (
        '<?xml version="1.0" encoding="UTF-8"?>\n'
        f'<LWM2M><Object ObjectType="MODefinition">{elements}'
        f"<Resources>{resources}</Resources></Object></LWM2M>"
    )


def item(
    resource_id: str = "1",
    name: str = "Value",
    operations: str = "R",
    type_text: str = "Integer",
    multiple: str = "Single",
) -> str:
    return (
        f'<Item ID="{resource_id}"><Name>{name}</Name><Operations>{operations}</Operations>'
        f"<MultipleInstances>{multiple}</MultipleInstances><Mandatory>Optional</Mandatory>"
        f"<Type>{type_text}</Type><RangeEnumeration></RangeEnumeration><Units></Units>"
        "<Description>d</Description></Item>"
    )


# --- the OMA registry -----------------------------------------------------------------


@needs_registry
@pytest.mark.parametrize("path", registry_files(), ids=lambda p: p.name)
def test_every_registry_object_file_parses(path: Path) -> None:
    if path.name in NON_OBJECT_FILES:
        with pytest.raises(DdfError):
            parse_ddf(path.read_bytes())
        return
    models = parse_ddf(path.read_bytes())
    assert [model.id for model in models] == [int(path.stem)]
    assert models[0].name


@needs_registry
def test_device_object_facts() -> None:
    device = parse_registry_object(3)
    assert (device.name, device.version, device.lwm2m_version) == ("Device", "1.2", "1.1")
    assert device.urn == "urn:oma:lwm2m:oma:3:1.2"
    assert device.multiple is False and device.mandatory is True
    assert device.description.startswith("This LwM2M Object provides")
    manufacturer = device.resources[0]
    assert manufacturer.name == "Manufacturer"
    assert manufacturer.type is ResourceType.STRING
    assert manufacturer.operations is Operations.R
    assert manufacturer.multiple is False and manufacturer.mandatory is False
    error_code = device.resources[11]
    assert error_code.name == "Error Code"
    assert error_code.multiple is True and error_code.type is ResourceType.INTEGER
    assert error_code.range_enumeration == "0..32"
    reboot = device.resources[4]
    assert reboot.operations is Operations.E and reboot.type is ResourceType.NONE
    assert device.resources[13].type is ResourceType.TIME


@needs_registry
def test_other_registry_facts() -> None:
    security = parse_registry_object(0)
    assert security.multiple is True
    # The file says "LWM2M  Server URI": whitespace runs in names are collapsed.
    assert security.resources[0].name == "LWM2M Server URI"
    assert security.resources[0].operations is Operations.NONE
    binding = parse_registry_object(1).resources[7]
    assert (binding.name, binding.type, binding.operations) == (
        "Binding",
        ResourceType.STRING,
        Operations.RW,
    )
    temperature = parse_registry_object(3303)
    sensor_value = temperature.resources[5700]
    assert (sensor_value.name, sensor_value.type) == ("Sensor Value", ResourceType.FLOAT)
    assert sensor_value.units == "" and temperature.resources[5701].name == "Sensor Units"
    location = parse_registry_object(6)
    assert location.version == "1.0" and location.urn == "urn:oma:lwm2m:oma:6"
    assert parse_registry_object(4).resources[4].type is ResourceType.STRING


@needs_registry
def test_registry_models_survive_a_round_trip_through_xml() -> None:
    for path in registry_files():
        if path.name not in NON_OBJECT_FILES:
            [model] = parse_ddf(path.read_bytes())
            assert parse_ddf(to_ddf_xml(model)) == [model], path.name


# --- tolerance ------------------------------------------------------------------------


def test_minimal_document_with_defaults() -> None:
    [model] = parse_ddf(
        "<LWM2M><Object><Name> Bare </Name><ObjectID>30001</ObjectID></Object></LWM2M>"
    )
    assert model == ObjectModel(id=30001, name="Bare", multiple=True, mandatory=False)
    assert (model.version, model.lwm2m_version, model.urn, dict(model.resources)) == (
        "1.0",
        "1.0",
        "",
        {},
    )


def test_namespaces_prefixes_and_xsi_attributes_are_tolerated() -> None:
    document = (
        '<?xml version="1.0"?>\n'
        '<o:LWM2M xmlns:o="urn:example:ddf" '
        'xmlns:xsi="http://www.w3.org/2001/XMLSchema-instance" '
        'xsi:noNamespaceSchemaLocation="http://openmobilealliance.org/tech/profiles/LWM2M.xsd">'
        '<o:Object ObjectType="MODefinition"><o:Name>Prefixed</o:Name>'
        "<o:ObjectID>\n 30002 \n</o:ObjectID><o:MultipleInstances>Single</o:MultipleInstances>"
        '<o:Resources><o:Item ID=" 7 "><o:Name>Level</o:Name><o:Operations> rw </o:Operations>'
        "<o:Type>unsigned integer</o:Type></o:Item></o:Resources></o:Object></o:LWM2M>"
    )
    [model] = parse_ddf(document)
    assert (model.id, model.name, model.multiple) == (30002, "Prefixed", False)
    level = model.resources[7]
    assert level.operations is Operations.RW
    assert level.type is ResourceType.UNSIGNED_INTEGER
    assert (level.multiple, level.mandatory, level.units, level.description) == (
        False,
        False,
        "",
        "",
    )


def test_default_namespace_is_tolerated() -> None:
    document = ddf(item()).replace("<LWM2M>", '<LWM2M xmlns="urn:example:ddf">')
    assert parse_ddf(document)[0].resources[1].name == "Value"


def test_case_of_enumerated_values_is_tolerated() -> None:
    [model] = parse_ddf(
        ddf(item(multiple="multiple", operations="e", type_text=""), Mandatory="MANDATORY")
    )
    assert model.mandatory is True
    resource = model.resources[1]
    assert (resource.multiple, resource.operations, resource.type) == (
        True,
        Operations.E,
        ResourceType.NONE,
    )


@pytest.mark.parametrize(
    "encode",
    [
        lambda text: text.encode("utf-8"),
        lambda text: b"\xef\xbb\xbf" + text.encode("utf-8"),
        lambda text: text.replace("UTF-8", "UTF-16").encode("utf-16"),
        lambda text: text.replace("UTF-8", "ISO-8859-1").encode("iso-8859-1"),
        lambda text: "\ufeff" + text,
        lambda text: text,
    ],
    ids=["utf8", "utf8-bom", "utf16", "latin1", "str-bom", "str"],
)
def test_encodings(encode: Callable[[str], bytes | str]) -> None:
    [model] = parse_ddf(encode(ddf(item(name="Température"))))
    assert model.resources[1].name == "Température"


def two_objects(second_id: str) -> str:
    """A DDF with object 30000 followed by a second object."""
    second = ddf(ObjectID=second_id).split("<LWM2M>")[1].removesuffix("</LWM2M>")
    return ddf(item()).replace("</LWM2M>", second + "</LWM2M>")


def test_several_objects_in_one_document() -> None:
    assert [model.id for model in parse_ddf(two_objects("30003"))] == [30000, 30003]


def test_object_id_range_and_custom_ids() -> None:
    assert parse_ddf(ddf(ObjectID="0"))[0].id == 0
    assert parse_ddf(ddf(ObjectID="65535"))[0].id == 65535
    assert 0 not in CUSTOM_OBJECT_IDS and 65535 not in CUSTOM_OBJECT_IDS
    assert 1 in CUSTOM_OBJECT_IDS and 65534 in CUSTOM_OBJECT_IDS


# --- rejection ------------------------------------------------------------------------

BILLION_LAUGHS = """<?xml version="1.0"?>
<!DOCTYPE lolz [
 <!ENTITY lol "lol">
 <!ENTITY lol2 "&lol;&lol;&lol;&lol;&lol;&lol;&lol;&lol;&lol;&lol;">
 <!ENTITY lol3 "&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;">
]>
<LWM2M><Object><Name>&lol3;</Name><ObjectID>1</ObjectID></Object></LWM2M>"""

EXTERNAL_ENTITY = """<?xml version="1.0"?>
<!DOCTYPE LWM2M [<!ENTITY secret SYSTEM "file:///etc/passwd">]>
<LWM2M><Object><Name>&secret;</Name><ObjectID>1</ObjectID></Object></LWM2M>"""


@pytest.mark.parametrize(
    ("document", "message"),
    [
        (BILLION_LAUGHS, "DOCTYPE"),
        (EXTERNAL_ENTITY, "DOCTYPE"),
        (BILLION_LAUGHS.encode("utf-16"), "DOCTYPE"),
        ('<!doctype LWM2M SYSTEM "http://example.com/x.dtd"><LWM2M/>', "DOCTYPE"),
        ("<LWM2M><!ENTITY x 'y'></LWM2M>", "DOCTYPE"),
        ("", "not well-formed"),
        ("this is not XML", "not well-formed"),
        (ddf(item())[:-30], "not well-formed"),
        (b"<LWM2M>\xff\xfe</LWM2M>", "not valid utf-8"),
        (b'<?xml version="1.0" encoding="NOPE-9"?><LWM2M/>', "unknown character encoding"),
        ("<DDFList><Object/></DDFList>", "root element must be <LWM2M>"),
        ("<LWM2M></LWM2M>", "no <Object>"),
        ("<LWM2M><Object><Name>x</Name></Object></LWM2M>", "missing <ObjectID>"),
        (ddf(ObjectID="abc"), "not a number"),
        (ddf(ObjectID="-1"), "not a number"),
        (ddf(ObjectID="65536"), "outside 0..65535"),
        (ddf(Name=""), "missing or empty <Name>"),
        (ddf(ObjectVersion="one"), "not a version"),
        (ddf(MultipleInstances="Many"), "expected Multiple or Single"),
        (ddf(Mandatory="Yes"), "expected Mandatory or Optional"),
        (ddf(item("1") + item("1", name="Other")), "resource id 1 is defined twice"),
        (ddf(item(type_text="Double")), "unknown LwM2M resource type"),
        (ddf(item(operations="RWX")), "invalid <Operations>"),
        (ddf(item(resource_id="65536")), "outside 0..65535"),
        (ddf(item(resource_id="")), "missing"),
        (ddf(item(name="  ")), "missing or empty <Name>"),
        (two_objects("30000"), "object 30000 version 1.0 is defined twice"),
    ],
)
def test_rejected_documents(document: str | bytes, message: str) -> None:
    with pytest.raises(DdfError, match=re.escape(message)):
        parse_ddf(document)


@given(
    st.binary(max_size=200)
    | st.text(max_size=200)
    | st.text(st.sampled_from("<>/LWM2MObject!DOCTYPE"), max_size=80)
)
def test_arbitrary_input_parses_or_raises_ddf_error(document: bytes | str) -> None:
    try:
        parse_ddf(document)
    except DdfError:
        pass


def test_error_type_is_a_value_error() -> None:
    assert issubclass(DdfError, ValueError)


def test_serialiser_refuses_characters_xml_cannot_carry() -> None:
    with pytest.raises(DdfError, match="cannot represent"):
        to_ddf_xml(ObjectModel(id=1, name="bad\x01name"))


# --- round trip of generated models ---------------------------------------------------

# Characters XML 1.0 carries unchanged: no control characters (XML normalises CR and
# cannot hold the others), no surrogates or non-characters.
xml_characters = st.characters(blacklist_categories=("Cc", "Cs", "Cn"))
names = st.text(xml_characters, min_size=1, max_size=20).filter(
    lambda text: text == " ".join(text.split()) and text != ""
)
texts = st.text(st.one_of(xml_characters, st.sampled_from("\n\t")), max_size=40).filter(
    lambda text: text == text.strip()
)
versions = st.builds("{}.{}".format, st.integers(0, 20), st.integers(0, 20))
ids = st.integers(0, 65535)


@st.composite
def resource_models(draw: st.DrawFn, resource_id: int) -> ResourceModel:
    return ResourceModel(
        id=resource_id,
        name=draw(names),
        operations=draw(st.sampled_from(Operations)),
        multiple=draw(st.booleans()),
        mandatory=draw(st.booleans()),
        type=draw(st.sampled_from(ResourceType)),
        range_enumeration=draw(texts),
        units=draw(texts),
        description=draw(texts),
    )


@st.composite
def object_models(draw: st.DrawFn) -> ObjectModel:
    resource_ids = draw(st.sets(ids, max_size=8))
    return ObjectModel(
        id=draw(ids),
        name=draw(names),
        version=draw(versions),
        lwm2m_version=draw(versions),
        urn=draw(texts),
        multiple=draw(st.booleans()),
        mandatory=draw(st.booleans()),
        resources={rid: draw(resource_models(rid)) for rid in sorted(resource_ids)},
        description=draw(texts),
    )


@settings(max_examples=200)
@given(object_models())
def test_generated_models_round_trip_through_xml(model: ObjectModel) -> None:
    assert parse_ddf(to_ddf_xml(model)) == [model]
