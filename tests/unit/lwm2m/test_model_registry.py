"""ModelRegistry, versioned views and the packaged built-in catalog."""

from __future__ import annotations

import dataclasses
import json
from importlib.resources import files
from pathlib import Path

import pytest

from meadowlark.lwm2m.model import (
    ModelLookup,
    ModelRegistry,
    ObjectModel,
    Operations,
    ResourceModel,
    builtin_registry,
    models_from_json,
    models_to_json,
    parse_ddf,
)
from meadowlark.lwm2m.model.registry import version_key
from meadowlark.lwm2m.node import ResourceType

REGISTRY_DIR = Path(__file__).resolve().parents[4] / "shared" / "reference" / "lwm2m-registry"
"""The OMA registry in ``shared/`` beside the repository."""
CORE_IDS = {0, 1, 2, 3, 4, 5, 6, 7, 9, 10, 11, 16, 19, 20, 21}


def catalog_text() -> str:
    resource = files("meadowlark.lwm2m.model").joinpath("builtin", "objects.json")
    return resource.read_text(encoding="utf-8")


def resource(
    resource_id: int, name: str, type_: ResourceType = ResourceType.INTEGER
) -> ResourceModel:
    return ResourceModel(
        id=resource_id,
        name=name,
        operations=Operations.RW,
        multiple=False,
        mandatory=False,
        type=type_,
    )


def model(object_id: int, version: str, *resources: ResourceModel, name: str = "") -> ObjectModel:
    return ObjectModel(
        id=object_id,
        name=name or f"Object {object_id}",
        version=version,
        resources={r.id: r for r in resources},
    )


def without_descriptions(model: ObjectModel) -> ObjectModel:
    resources = {rid: dataclasses.replace(r, description="") for rid, r in model.resources.items()}
    return dataclasses.replace(model, description="", resources=resources)


# --- built-in catalog -----------------------------------------------------------------


def test_builtin_catalog_contains_core_and_ipso_objects() -> None:
    ids = {model.id for model in builtin_registry().objects()}
    assert CORE_IDS <= ids
    assert {3200, 3303, 3313, 3336, 3347, 3350} <= ids
    assert all(i in CORE_IDS or 3200 <= i <= 3350 for i in ids)


def test_builtin_catalog_facts() -> None:
    registry = builtin_registry()
    manufacturer = registry.get_resource(3, 0)
    assert manufacturer is not None
    assert (manufacturer.name, manufacturer.type, manufacturer.operations) == (
        "Manufacturer",
        ResourceType.STRING,
        Operations.R,
    )
    assert (manufacturer.multiple, manufacturer.mandatory) == (False, False)
    error_code = registry.get_resource(3, 11)
    assert (
        error_code is not None and error_code.multiple and error_code.type is ResourceType.INTEGER
    )
    sensor_value = registry.get_resource(3303, 5700)
    assert sensor_value is not None
    assert (sensor_value.name, sensor_value.type) == ("Sensor Value", ResourceType.FLOAT)
    binding = registry.get_resource(1, 7)
    assert binding is not None and binding.type is ResourceType.STRING
    security = registry.get_object(0)
    assert security is not None and security.multiple
    device = registry.get_object(3)
    assert device is not None
    assert (device.version, device.lwm2m_version, device.urn, device.multiple) == (
        "1.2",
        "1.1",
        "urn:oma:lwm2m:oma:3:1.2",
        False,
    )


def test_builtin_catalog_holds_facts_only() -> None:
    text = catalog_text()
    assert len(text.encode()) < 400_000
    for entry in json.loads(text)["objects"]:
        assert "description" not in entry
        assert all("description" not in facts for facts in entry["resources"])
    for model in builtin_registry().all_models():
        assert model.description == ""
        assert all(r.description == "" for r in model.resources.values())


def test_builtin_catalog_file_is_in_canonical_form() -> None:
    """What the generator writes is what ``models_to_json`` produces: regeneration is stable."""
    text = catalog_text()
    source = json.loads(text)["source"]
    assert models_to_json(models_from_json(text), source=source) == text


@pytest.mark.skipif(not REGISTRY_DIR.is_dir(), reason="OMA LwM2M registry not available")
def test_builtin_catalog_matches_the_registry_files() -> None:
    for built_in in builtin_registry().all_models():
        [parsed] = parse_ddf((REGISTRY_DIR / f"{built_in.id}.xml").read_bytes())
        assert without_descriptions(parsed) == built_in


def test_builtin_registries_are_independent_but_share_models() -> None:
    first, second = builtin_registry(), builtin_registry()
    first.add(model(40000, "1.0"))
    assert first.get_object(40000) is not None
    assert second.get_object(40000) is None
    assert first.get_object(3) is second.get_object(3)


def test_model_resources_are_read_only() -> None:
    device = builtin_registry().get_object(3)
    assert device is not None
    with pytest.raises(TypeError):
        device.resources[99] = resource(99, "X")  # type: ignore[index]


# --- registry behaviour ---------------------------------------------------------------


@pytest.fixture
def registry() -> ModelRegistry:
    return ModelRegistry(
        [
            model(3, "1.0", resource(0, "Manufacturer", ResourceType.STRING)),
            model(3, "1.2", resource(0, "Manufacturer", ResourceType.STRING), resource(17, "Type")),
            model(3, "1.1", resource(0, "Manufacturer", ResourceType.STRING), resource(16, "Old")),
            model(5, "1.0", resource(1, "Package URI", ResourceType.STRING), name="Firmware"),
        ]
    )


def test_get_object_newest_and_exact_versions(registry: ModelRegistry) -> None:
    newest = registry.get_object(3)
    assert newest is not None and newest.version == "1.2"
    exact = registry.get_object(3, "1.1")
    assert exact is not None and exact.version == "1.1"
    assert registry.get_object(3, "9.9") is None
    assert registry.get_object(42) is None
    assert registry.versions(3) == ["1.0", "1.1", "1.2"]
    assert registry.versions(42) == []


def test_versions_compare_numerically() -> None:
    registry = ModelRegistry([model(7, "1.10"), model(7, "1.9")])
    newest = registry.get_object(7)
    assert newest is not None and newest.version == "1.10"
    assert version_key("1.10") > version_key("1.9")
    with pytest.raises(ValueError, match="not an object version"):
        registry.add(model(8, "v1"))


def test_get_resource(registry: ModelRegistry) -> None:
    assert registry.get_resource(3, 17) is not None
    assert registry.get_resource(3, 17, "1.1") is None
    old = registry.get_resource(3, 16, "1.1")
    assert old is not None and old.name == "Old"
    assert registry.get_resource(3, 999) is None
    assert registry.get_resource(42, 0) is None


def test_registry_and_views_satisfy_model_lookup(registry: ModelRegistry) -> None:
    lookups: list[ModelLookup] = [registry, registry.with_versions({3: "1.1"})]
    found = [lookup.get_resource(5, 1) for lookup in lookups]
    assert all(r is not None and r.name == "Package URI" for r in found)


def test_objects_lists_newest_versions_by_id(registry: ModelRegistry) -> None:
    assert [(m.id, m.version) for m in registry.objects()] == [(3, "1.2"), (5, "1.0")]
    assert [(m.id, m.version) for m in registry.all_models()] == [
        (3, "1.0"),
        (3, "1.1"),
        (3, "1.2"),
        (5, "1.0"),
    ]


def test_add_replaces_the_same_version(registry: ModelRegistry) -> None:
    registry.add(model(5, "1.0", resource(2, "State"), name="Firmware Update"))
    replaced = registry.get_object(5)
    assert replaced is not None and replaced.name == "Firmware Update"
    assert registry.versions(5) == ["1.0"]
    assert registry.objects_named("Firmware") == []
    assert [m.id for m in registry.objects_named("Firmware Update")] == [5]


def test_objects_named_exact_and_loose(registry: ModelRegistry) -> None:
    registry.add(model(3336, "1.0", name="Object 3"))
    assert [m.id for m in registry.objects_named("Object 3")] == [3, 3336]
    assert registry.objects_named("object 3") == []
    assert [m.id for m in registry.objects_named(" OBJECT   3", loose=True)] == [3, 3336]


def test_versioned_view_resolution(registry: ModelRegistry) -> None:
    view = registry.with_versions({3: "1.1", 5: "7.0"})
    device = view.get_object(3)
    assert device is not None and device.version == "1.1"
    assert view.get_resource(3, 16) is not None and view.get_resource(3, 17) is None
    firmware = view.get_object(5)
    assert firmware is not None and firmware.version == "1.0"  # unknown version -> newest
    assert view.get_object(42) is None
    assert [(m.id, m.version) for m in view.objects()] == [(3, "1.1"), (5, "1.0")]
    assert [m.version for m in view.objects_named("Object 3")] == ["1.1"]


def test_versioned_view_follows_later_additions(registry: ModelRegistry) -> None:
    view = registry.with_versions({3: "1.3"})
    newest = view.get_object(3)
    assert newest is not None and newest.version == "1.2"
    registry.add(model(3, "1.3"))
    exact = view.get_object(3)
    assert exact is not None and exact.version == "1.3"


def test_copy_is_independent(registry: ModelRegistry) -> None:
    tenant = registry.copy()
    tenant.add(model(30000, "1.0", name="Custom"))
    tenant.add(model(3, "2.0"))
    assert registry.get_object(30000) is None
    base_device = registry.get_object(3)
    assert base_device is not None and base_device.version == "1.2"
    assert tenant.versions(3) == ["1.0", "1.1", "1.2", "2.0"]


def test_json_round_trip_drops_descriptions_only() -> None:
    original = ObjectModel(
        id=30000,
        name="Custom",
        version="2.1",
        lwm2m_version="1.1",
        urn="urn:oma:lwm2m:x:30000:2.1",
        multiple=False,
        mandatory=True,
        resources={
            1: ResourceModel(
                id=1,
                name="Level",
                operations=Operations.R,
                multiple=True,
                mandatory=True,
                type=ResourceType.FLOAT,
                range_enumeration="0..100",
                units="%",
                description="dropped",
            ),
            2: resource(2, "Reset", ResourceType.NONE),
        },
        description="dropped",
    )
    [restored] = models_from_json(models_to_json([original]))
    assert restored == without_descriptions(original)


def test_json_of_an_unknown_format_is_refused() -> None:
    with pytest.raises(ValueError, match="unsupported model catalog format"):
        models_from_json('{"format": 99, "objects": []}')
