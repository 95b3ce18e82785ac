"""What the codecs need to know of the object model: a resource's type and multiplicity."""

from __future__ import annotations

from typing import Protocol

from meadowlark.lwm2m.model.types import ResourceModel
from meadowlark.lwm2m.path import LwM2mPath


class ModelLookup(Protocol):
    """Resolves resource definitions; returns ``None`` for resources it does not know."""

    def get_resource(self, object_id: int, resource_id: int) -> ResourceModel | None: ...


def resource_model_at(models: ModelLookup, path: LwM2mPath) -> ResourceModel | None:
    """The model of the resource ``path`` names, or holds an instance of; ``None`` above the
    resource level and for resources ``models`` does not know."""
    if path.depth < 3:
        return None
    object_id, _, resource_id = path.ids[:3]
    return models.get_resource(object_id, resource_id)
