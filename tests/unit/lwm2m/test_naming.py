"""Readable (Coiote-style) data-model paths: ``Device.0.Manufacturer`` <-> ``/3/0/0``."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from meadowlark.lwm2m.model import (
    ModelRegistry,
    ObjectModel,
    Operations,
    ReadablePathError,
    ResourceModel,
    builtin_registry,
    from_readable,
    to_readable,
)
from meadowlark.lwm2m.node import ResourceType
from meadowlark.lwm2m.path import LwM2mPath

BUILTIN = builtin_registry()
P = LwM2mPath.parse


def resource(resource_id: int, name: str) -> ResourceModel:
    return ResourceModel(
        id=resource_id,
        name=name,
        operations=Operations.R,
        multiple=True,
        mandatory=False,
        type=ResourceType.INTEGER,
    )


def object_model(object_id: int, name: str, *resources: ResourceModel) -> ObjectModel:
    return ObjectModel(id=object_id, name=name, resources={r.id: r for r in resources})


# --- forms seen in Coiote IoT DM documentation and clients ----------------------------


@pytest.mark.parametrize(
    ("readable", "numeric"),
    [
        ("Device.0.Manufacturer", "/3/0/0"),
        ("Device.0.Reboot", "/3/0/4"),
        ("Device.0.UTC Offset", "/3/0/14"),
        ("LwM2M Server.1.Binding", "/1/1/7"),
        ("LwM2M Server.1.Lifetime", "/1/1/1"),
        ("Location.0.Latitude", "/6/0/0"),
        ("Firmware Update.0.Package URI", "/5/0/1"),
        ("Connectivity Monitoring.0.Radio Signal Strength", "/4/0/2"),
        ("Connectivity Monitoring.0.Cell ID", "/4/0/8"),
        ("Portfolio.11.Identity.1", "/16/11/0/1"),
        ("Temperature.0.Sensor Value", "/3303/0/5700"),
        ("Light Control.0.On/Off", "/3311/0/5850"),
        ("Device.0.Error Code.3", "/3/0/11/3"),
        ("Device.0", "/3/0"),
        ("Device", "/3"),
        ("LWM2M Security.0.LWM2M Server URI", "/0/0/0"),
    ],
)
def test_known_readable_paths(readable: str, numeric: str) -> None:
    assert from_readable(readable, BUILTIN) == P(numeric)
    assert to_readable(P(numeric), BUILTIN) == readable


@pytest.mark.parametrize(
    ("text", "numeric"),
    [
        ("3.0.1", "/3/0/1"),
        ("/3/0/1", "/3/0/1"),
        ("3/0/1", "/3/0/1"),
        ("/3/0/1/", "/3/0/1"),
        ("3", "/3"),
        ("Device.0.1", "/3/0/1"),
        ("3.0.Model Number", "/3/0/1"),
        ("31024.0.7", "/31024/0/7"),
        ("Device.0.9999", "/3/0/9999"),
        ("  Device.0.Manufacturer  ", "/3/0/0"),
        ("", "/"),
        ("/", "/"),
    ],
)
def test_numeric_and_mixed_forms(text: str, numeric: str) -> None:
    assert from_readable(text, BUILTIN) == P(numeric)


@pytest.mark.parametrize(
    ("prefix", "numeric"),
    [
        ("Location.", "/6"),
        ("Device.0.", "/3/0"),
        ("Device.0.Error Code.", "/3/0/11"),
        ("3.0.", "/3/0"),
    ],
)
def test_subtree_prefixes_resolve_to_the_prefix_path(prefix: str, numeric: str) -> None:
    assert from_readable(prefix, BUILTIN) == P(numeric)


def test_unknown_objects_and_resources_are_written_as_numbers() -> None:
    assert to_readable(P("/31024/0/7/2"), BUILTIN) == "31024.0.7.2"
    assert to_readable(P("/3/0/9999"), BUILTIN) == "Device.0.9999"
    assert to_readable(P("/"), BUILTIN) == ""


def test_lowest_id_owns_a_shared_object_name() -> None:
    # OMA object 6 and IPSO object 3336 are both named "Location".
    assert from_readable("Location.0.Latitude", BUILTIN) == P("/6/0/0")
    assert to_readable(P("/3336/0/5518"), BUILTIN) == "3336.0.Timestamp"
    assert from_readable("3336.0.Timestamp", BUILTIN) == P("/3336/0/5518")


def test_lowest_id_owns_a_shared_resource_name() -> None:
    registry = ModelRegistry(
        [
            object_model(
                30000, "Lamp", resource(5850, "Object Enabled"), resource(5851, "Object Enabled")
            )
        ]
    )
    assert to_readable(P("/30000/0/5850"), registry) == "Lamp.0.Object Enabled"
    assert to_readable(P("/30000/0/5851"), registry) == "Lamp.0.5851"
    assert from_readable("Lamp.0.Object Enabled", registry) == P("/30000/0/5850")


def test_names_containing_dots() -> None:
    registry = ModelRegistry(
        [
            object_model(3441, "LwM2M v1.0 Test Object", resource(1, "Value")),
            object_model(3428, "Air Quality", resource(1, "PM2.5"), resource(2, "PM2")),
        ]
    )
    assert from_readable("LwM2M v1.0 Test Object.0.Value", registry) == P("/3441/0/1")
    assert from_readable("Air Quality.0.PM2.5", registry) == P("/3428/0/1")
    assert from_readable("Air Quality.0.PM2.5.3", registry) == P("/3428/0/1/3")
    assert from_readable("Air Quality.0.PM2.7", registry) == P("/3428/0/2/7")
    assert to_readable(P("/3428/0/1/3"), registry) == "Air Quality.0.PM2.5.3"


def test_contrived_dotted_names_fall_back_to_numbers() -> None:
    registry = ModelRegistry([object_model(1000, "A"), object_model(2000, "A.0")])
    path = P("/1000/0/1/2")
    assert from_readable(to_readable(path, registry), registry) == path


# --- case tolerance -------------------------------------------------------------------


def test_unambiguous_case_insensitive_match_is_accepted() -> None:
    assert from_readable("device.0.manufacturer", BUILTIN) == P("/3/0/0")
    assert from_readable("CONNECTIVITY  monitoring.0.cell id", BUILTIN) == P("/4/0/8")
    assert from_readable("location.", BUILTIN) == P("/6")


def test_exact_case_wins_and_ambiguous_case_is_refused() -> None:
    registry = ModelRegistry([object_model(10, "Foo"), object_model(20, "FOO")])
    assert from_readable("Foo.0", registry) == P("/10/0")
    assert from_readable("FOO.0", registry) == P("/20/0")
    assert to_readable(P("/20/0"), registry) == "FOO.0"
    with pytest.raises(ReadablePathError, match="ambiguous"):
        from_readable("foo.0", registry)


# --- errors ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    "text",
    [
        "Nowhere.0",
        "Device.x",
        "Device.0.Nothing Here",
        "Device..0",
        "Device.00.Manufacturer",
        "Device.0.Manufacturer.x",
        "Device.65535",
        "70000.0",
        "/3/0/1/2/3",
        "/03/0",
        "31024.0.Unknown Resource",
    ],
)
def test_unresolvable_paths_are_refused(text: str) -> None:
    with pytest.raises(ReadablePathError):
        from_readable(text, BUILTIN)


def test_error_type_is_a_value_error() -> None:
    assert issubclass(ReadablePathError, ValueError)


# --- properties -----------------------------------------------------------------------

BUILTIN_RESOURCES = sorted(
    (model.id, resource_id) for model in BUILTIN.objects() for resource_id in model.resources
)
instance_ids = st.integers(0, 65534)
optional_resource_instance = st.none() | st.integers(0, 65535)


@st.composite
def builtin_resource_paths(draw: st.DrawFn) -> LwM2mPath:
    object_id, resource_id = draw(st.sampled_from(BUILTIN_RESOURCES))
    ids = [object_id, draw(instance_ids), resource_id]
    resource_instance = draw(optional_resource_instance)
    if resource_instance is not None:
        ids.append(resource_instance)
    return LwM2mPath.of(*ids)


def test_every_builtin_resource_round_trips_at_instance_zero() -> None:
    for object_id, resource_id in BUILTIN_RESOURCES:
        path = LwM2mPath.of(object_id, 0, resource_id)
        readable = to_readable(path, BUILTIN)
        assert from_readable(readable, BUILTIN) == path, readable


@settings(max_examples=300)
@given(builtin_resource_paths())
def test_builtin_readable_round_trip(path: LwM2mPath) -> None:
    readable = to_readable(path, BUILTIN)
    assert from_readable(readable, BUILTIN) == path
    assert from_readable(str(path), BUILTIN) == path


@given(
    st.lists(st.integers(0, 65535), max_size=4).filter(lambda ids: len(ids) < 2 or ids[1] != 65535)
)
def test_any_numeric_path_round_trips(ids: list[int]) -> None:
    path = LwM2mPath.of(*ids)
    assert from_readable(to_readable(path, BUILTIN), BUILTIN) == path


# Small alphabets make collisions (shared names, case variants, dots, digits) likely.
tricky_names = st.text(st.sampled_from("aA.1 /"), min_size=1, max_size=5)


@st.composite
def tricky_catalogs(draw: st.DrawFn) -> tuple[ModelRegistry, list[LwM2mPath]]:
    object_ids = draw(st.lists(st.integers(0, 40), min_size=1, max_size=6, unique=True))
    models = []
    paths = []
    for object_id in object_ids:
        resource_ids = draw(st.lists(st.integers(0, 40), max_size=5, unique=True))
        resources = [resource(rid, draw(tricky_names)) for rid in resource_ids]
        models.append(object_model(object_id, draw(tricky_names), *resources))
        paths.append(LwM2mPath.of(object_id))
        paths.append(LwM2mPath.of(object_id, draw(st.integers(0, 3))))
        for rid in resource_ids:
            paths.append(LwM2mPath.of(object_id, draw(st.integers(0, 3)), rid))
            paths.append(LwM2mPath.of(object_id, 0, rid, draw(st.integers(0, 3))))
    return ModelRegistry(models), paths


@settings(max_examples=300)
@given(tricky_catalogs())
def test_round_trip_holds_for_any_catalog(catalog: tuple[ModelRegistry, list[LwM2mPath]]) -> None:
    registry, paths = catalog
    for path in paths:
        assert from_readable(to_readable(path, registry), registry) == path


@given(st.text(st.sampled_from("Device.0123 /xéE"), max_size=30) | st.text(max_size=30))
def test_arbitrary_text_resolves_or_raises_readable_path_error(text: str) -> None:
    try:
        path = from_readable(text, BUILTIN)
    except ReadablePathError:
        return
    assert isinstance(path, LwM2mPath)
