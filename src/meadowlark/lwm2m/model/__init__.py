"""LwM2M object models: DDF parsing, the model registry and readable path names."""

from meadowlark.lwm2m.model.ddf import CUSTOM_OBJECT_IDS, DdfError, parse_ddf, to_ddf_xml
from meadowlark.lwm2m.model.lookup import ModelLookup
from meadowlark.lwm2m.model.naming import (
    NamedModels,
    ReadablePathError,
    from_readable,
    to_readable,
)
from meadowlark.lwm2m.model.registry import (
    ModelRegistry,
    VersionedModels,
    builtin_registry,
    models_from_json,
    models_to_json,
)
from meadowlark.lwm2m.model.types import ObjectModel, Operations, ResourceModel

__all__ = [
    "CUSTOM_OBJECT_IDS",
    "DdfError",
    "ModelLookup",
    "ModelRegistry",
    "NamedModels",
    "ObjectModel",
    "Operations",
    "ReadablePathError",
    "ResourceModel",
    "VersionedModels",
    "builtin_registry",
    "from_readable",
    "models_from_json",
    "models_to_json",
    "parse_ddf",
    "to_ddf_xml",
    "to_readable",
]
