"""Hypothesis strategies and fixtures for LwM2M models, values and nodes, shared by tests.

Importable as ``lwm2m_strategies`` because pytest puts ``tests`` on ``sys.path``
(``pythonpath`` in pyproject).
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping
from datetime import UTC, datetime
from typing import TypeVar

from hypothesis import strategies as st

from meadowlark.lwm2m.codec.errors import DecodeError
from meadowlark.lwm2m.codec.timestamped import TimestampedNodes
from meadowlark.lwm2m.model.types import Operations, ResourceModel
from meadowlark.lwm2m.node import (
    INT64_MAX,
    INT64_MIN,
    UINT64_MAX,
    LwM2mObject,
    MultiResource,
    Node,
    ObjectInstance,
    ObjectLink,
    ResourceInstance,
    ResourceType,
    SingleResource,
    Value,
    time_from_epoch,
)
from meadowlark.lwm2m.path import LwM2mPath

T = TypeVar("T")

VALUE_TYPES = tuple(t for t in ResourceType if t is not ResourceType.NONE)
"""Every type that carries a value (NONE is for Execute-only resources)."""


class DictModelLookup:
    """A ModelLookup backed by a dict of (object id, resource id) -> ResourceModel."""

    def __init__(self, resources: Mapping[tuple[int, int], ResourceModel] | None = None) -> None:
        self._resources = dict(resources or {})

    def get_resource(self, object_id: int, resource_id: int) -> ResourceModel | None:
        return self._resources.get((object_id, resource_id))

    @property
    def object_ids(self) -> list[int]:
        return sorted({object_id for object_id, _ in self._resources})

    def resources_of(self, object_id: int) -> list[ResourceModel]:
        return [m for (oid, _), m in sorted(self._resources.items()) if oid == object_id]

    def __repr__(self) -> str:
        shown = {key: (m.type.name, m.multiple) for key, m in self._resources.items()}
        return f"DictModelLookup({shown})"


def resource_model(
    resource_id: int, resource_type: ResourceType, *, multiple: bool = False
) -> ResourceModel:
    return ResourceModel(
        resource_id, f"r{resource_id}", Operations.RW, multiple, False, resource_type
    )


def resource_models(
    types: Iterable[ResourceType] = VALUE_TYPES,
) -> st.SearchStrategy[ResourceModel]:
    return st.builds(
        resource_model,
        resource_id=st.one_of(st.integers(0, 30), st.integers(0, 65535)),
        resource_type=st.sampled_from(tuple(types)),
        multiple=st.booleans(),
    )


@st.composite
def model_lookups(draw: st.DrawFn, types: Iterable[ResourceType] = VALUE_TYPES) -> DictModelLookup:
    """One to three objects with one to five resources each."""
    object_ids = draw(
        st.lists(
            st.one_of(st.integers(0, 10), st.integers(0, 65535)),
            min_size=1,
            max_size=3,
            unique=True,
        )
    )
    resources = {}
    for object_id in object_ids:
        models = draw(
            st.lists(resource_models(types), min_size=1, max_size=5, unique_by=lambda m: m.id)
        )
        resources.update({(object_id, m.id): m for m in models})
    return DictModelLookup(resources)


def values_for(resource_type: ResourceType) -> st.SearchStrategy[Value]:
    """Valid values; Time values are whole seconds, as LwM2M transmits them."""
    match resource_type:
        case ResourceType.STRING | ResourceType.CORELNK:
            return st.text(max_size=20)
        case ResourceType.INTEGER:
            return st.integers(INT64_MIN, INT64_MAX)
        case ResourceType.UNSIGNED_INTEGER:
            return st.integers(0, UINT64_MAX)
        case ResourceType.FLOAT:
            return st.floats(allow_nan=False, allow_infinity=False)
        case ResourceType.BOOLEAN:
            return st.booleans()
        case ResourceType.OPAQUE:
            return st.binary(max_size=20)
        case ResourceType.TIME:
            return st.integers(0, 4_102_444_800).map(time_from_epoch)
        case ResourceType.OBJLNK:
            return st.builds(ObjectLink, st.integers(0, 65535), st.integers(0, 65535))
        case ResourceType.NONE:
            return st.none()
    raise AssertionError(resource_type)


_INSTANCE_IDS = st.one_of(st.integers(0, 5), st.integers(0, 65534))


def _ids_to(
    strategy: Callable[[int], st.SearchStrategy[T]], min_size: int
) -> st.SearchStrategy[dict[int, T]]:
    """A dict id -> value where each value is drawn for its id."""
    return st.lists(_INSTANCE_IDS, min_size=min_size, max_size=3, unique=True).flatmap(
        lambda ids: st.tuples(*(strategy(i) for i in ids)).map(
            lambda items: dict(zip(ids, items, strict=True))
        )
    )


def nodes_for(
    path: LwM2mPath, models: DictModelLookup, *, allow_empty_containers: bool = True
) -> st.SearchStrategy[Node]:
    """A node at ``path`` that agrees with ``models``.

    With ``allow_empty_containers`` False, no object, instance or multiple resource below
    ``path`` is empty (formats such as SenML cannot express those); ``path``'s own node
    still may be.
    """
    return _node(path, models, 0, 0 if allow_empty_containers else 1)


def _node(
    path: LwM2mPath, models: DictModelLookup, own_min: int, nested_min: int
) -> st.SearchStrategy[Node]:
    """A node with at least ``own_min`` children, and ``nested_min`` in its descendants."""
    if path.is_object:
        return _ids_to(
            lambda iid: _node(path.child(iid), models, nested_min, nested_min), own_min
        ).map(lambda instances: LwM2mObject(path.object_id, instances))
    if path.is_object_instance:
        resource_models = models.resources_of(path.object_id)
        return st.lists(
            st.sampled_from(resource_models),
            min_size=own_min,
            max_size=len(resource_models),
            unique_by=lambda m: m.id,
        ).flatmap(
            lambda chosen: st.tuples(
                *(_resource(path.child(m.id), m, nested_min) for m in chosen)
            ).map(lambda resources: ObjectInstance(path.instance_id, {r.id: r for r in resources}))
        )
    model = models.get_resource(path.object_id, path.resource_id)
    assert model is not None, f"no model for {path}"
    if path.is_resource:
        return _resource(path, model, 0)
    return values_for(model.type).map(
        lambda value: ResourceInstance(path.resource_instance_id, model.type, value)
    )


def _resource(path: LwM2mPath, model: ResourceModel, min_instances: int) -> st.SearchStrategy[Node]:
    if model.multiple:
        return _ids_to(lambda _: values_for(model.type), min_instances).map(
            lambda instances: MultiResource(model.id, model.type, instances)
        )
    return values_for(model.type).map(lambda value: SingleResource(model.id, model.type, value))


@st.composite
def paths_in(draw: st.DrawFn, models: DictModelLookup, depth: int | None = None) -> LwM2mPath:
    """A path of ``depth`` (1 to 4, any when None) that the models can hold."""
    object_id = draw(st.sampled_from(models.object_ids))
    resources = models.resources_of(object_id)
    if depth is None:
        deepest = 4 if any(m.multiple for m in resources) else 3
        depth = draw(st.integers(1, deepest))
    if depth == 1:
        return LwM2mPath(object_id)
    instance_id = draw(_INSTANCE_IDS)
    if depth == 2:
        return LwM2mPath(object_id, instance_id)
    candidates = resources if depth == 3 else [m for m in resources if m.multiple]
    model = draw(st.sampled_from(candidates))
    if depth == 3:
        return LwM2mPath(object_id, instance_id, model.id)
    return LwM2mPath(object_id, instance_id, model.id, draw(_INSTANCE_IDS))


@st.composite
def node_cases(
    draw: st.DrawFn,
    *,
    allow_empty_containers: bool = True,
    types: Iterable[ResourceType] = VALUE_TYPES,
) -> tuple[DictModelLookup, LwM2mPath, Node]:
    models = draw(model_lookups(types))
    path = draw(paths_in(models))
    node = draw(nodes_for(path, models, allow_empty_containers=allow_empty_containers))
    return models, path, node


def value_count(node: Node) -> int:
    match node:
        case LwM2mObject():
            return sum(value_count(i) for i in node.instances.values())
        case ObjectInstance():
            return sum(value_count(r) for r in node.resources.values())
        case MultiResource():
            return len(node.instances)
    return 1


def _overlaps(path: LwM2mPath, others: Iterable[LwM2mPath]) -> bool:
    return any(path.starts_with(other) or other.starts_with(path) for other in others)


@st.composite
def composite_nodes(
    draw: st.DrawFn, models: DictModelLookup, *, allow_empty_containers: bool = True
) -> dict[LwM2mPath, Node]:
    """Nodes at one to four paths, none inside another; each holds a value unless
    ``allow_empty_containers``."""
    chosen: list[LwM2mPath] = []
    for path in draw(st.lists(paths_in(models), min_size=1, max_size=4)):
        if not _overlaps(path, chosen):
            chosen.append(path)
    nodes = {}
    for path in chosen:
        node_strategy = nodes_for(path, models, allow_empty_containers=allow_empty_containers)
        if not allow_empty_containers:
            node_strategy = node_strategy.filter(lambda n: value_count(n) > 0)
        nodes[path] = draw(node_strategy)
    return nodes


@st.composite
def leaf_nodes(draw: st.DrawFn, models: DictModelLookup) -> dict[LwM2mPath, Node]:
    """Single values keyed by their own path: SingleResource or ResourceInstance."""
    nodes: dict[LwM2mPath, Node] = {}
    for _ in range(draw(st.integers(1, 4))):
        object_id = draw(st.sampled_from(models.object_ids))
        model = draw(st.sampled_from(models.resources_of(object_id)))
        path = LwM2mPath(object_id, draw(_INSTANCE_IDS), model.id)
        value = draw(values_for(model.type))
        if model.multiple:
            path = path.child(draw(_INSTANCE_IDS))
            nodes[path] = ResourceInstance(path.resource_instance_id, model.type, value)
        else:
            nodes[path] = SingleResource(model.id, model.type, value)
    return nodes


def timestamps() -> st.SearchStrategy[datetime]:
    """Absolute times (after 1978, so SenML cannot mistake them for relative ones), in ms."""
    return st.datetimes(
        min_value=datetime(1980, 1, 1), max_value=datetime(2100, 1, 1), timezones=st.just(UTC)
    ).map(lambda t: t.replace(microsecond=t.microsecond // 1000 * 1000))


@st.composite
def timestamped_batches(
    draw: st.DrawFn, models: DictModelLookup, path: LwM2mPath | None = None
) -> list[TimestampedNodes]:
    """Batches with distinct timestamps (at most one without); leaf nodes when ``path`` is
    None, else one non-empty node at ``path`` per batch."""
    times = draw(st.lists(st.none() | timestamps(), min_size=1, max_size=3, unique=True))
    batches = []
    for timestamp in times:
        if path is None:
            nodes = draw(leaf_nodes(models))
        else:
            node_strategy = nodes_for(path, models, allow_empty_containers=False)
            nodes = {path: draw(node_strategy.filter(lambda n: value_count(n) > 0))}
        batches.append(TimestampedNodes(timestamp, nodes))
    return batches


def json_values() -> st.SearchStrategy[object]:
    """Arbitrary JSON documents, biased towards SenML and OMA JSON labels."""
    labels = st.sampled_from(
        ["bn", "bt", "n", "t", "v", "vs", "vb", "vd", "vlo", "bv", "e", "sv", "ov"]
    )
    scalars = st.one_of(
        st.none(),
        st.booleans(),
        st.integers(),
        st.floats(allow_nan=False, allow_infinity=False),
        st.text(max_size=12),
        st.sampled_from(["/3/0/1", "/3/0/", "3:0", "/3/0/7/1", "AQID"]),
    )
    return st.recursive(
        scalars,
        lambda inner: (
            st.lists(inner, max_size=4)
            | st.dictionaries(labels | st.text(max_size=4), inner, max_size=5)
        ),
        max_leaves=20,
    )


def cbor_values() -> st.SearchStrategy[object]:
    """Arbitrary CBOR-encodable values, biased towards SenML labels and path segments."""
    keys = st.one_of(st.integers(-6, 8), st.sampled_from(["vlo", "n"]), st.integers(0, 70000))
    scalars = st.one_of(
        st.none(),
        st.booleans(),
        st.integers(-(2**70), 2**70),
        st.floats(),
        st.text(max_size=12),
        st.binary(max_size=8),
        st.sampled_from(["/3/0/1", "3:0", "/3/0/7/1"]),
    )
    return st.recursive(
        scalars,
        lambda inner: (
            st.lists(inner, max_size=4)
            | st.dictionaries(
                keys | st.tuples(st.integers(0, 70000), st.integers(0, 9)), inner, max_size=5
            )
        ),
        max_leaves=20,
    )


@st.composite
def mutated(draw: st.DrawFn, payload: bytes) -> bytes:
    """``payload`` with a few bytes replaced, inserted or deleted, or cut short."""
    data = bytearray(payload)
    for _ in range(draw(st.integers(1, 4))):
        action = draw(st.sampled_from(["replace", "insert", "delete", "truncate"]))
        position = draw(st.integers(0, max(len(data) - 1, 0)))
        if action == "replace" and data:
            data[position] = draw(st.integers(0, 255))
        elif action == "insert":
            data.insert(position, draw(st.integers(0, 255)))
        elif action == "delete" and data:
            del data[position]
        else:
            del data[position:]
    return bytes(data)


def decodes_or_rejects(decode: Callable[..., T], *args: object) -> T | None:
    """Run a decoder on hostile input: a result or DecodeError, nothing else, is acceptable."""
    try:
        return decode(*args)
    except DecodeError:
        return None


# --- the Device object (object 3) of the Core specification examples ---------------------

DEVICE_MODELS = DictModelLookup(
    {
        (3, rid): resource_model(rid, resource_type, multiple=multiple)
        for rid, resource_type, multiple in [
            (0, ResourceType.STRING, False),
            (1, ResourceType.STRING, False),
            (2, ResourceType.STRING, False),
            (3, ResourceType.STRING, False),
            (4, ResourceType.NONE, False),
            (6, ResourceType.INTEGER, True),
            (7, ResourceType.INTEGER, True),
            (8, ResourceType.INTEGER, True),
            (9, ResourceType.INTEGER, False),
            (10, ResourceType.INTEGER, False),
            (11, ResourceType.INTEGER, True),
            (13, ResourceType.TIME, False),
            (14, ResourceType.STRING, False),
            (15, ResourceType.STRING, False),
            (16, ResourceType.STRING, False),
        ]
    }
)


def _string(rid: int, value: str) -> SingleResource:
    return SingleResource(rid, ResourceType.STRING, value)


def _integers(rid: int, *values: int) -> MultiResource:
    return MultiResource(rid, ResourceType.INTEGER, dict(enumerate(values)))


DEVICE_INSTANCE = ObjectInstance(
    0,
    {
        0: _string(0, "Open Mobile Alliance"),
        1: _string(1, "Lightweight M2M Client"),
        2: _string(2, "345000123"),
        3: _string(3, "1.0"),
        6: _integers(6, 1, 5),
        7: _integers(7, 3800, 5000),
        8: _integers(8, 125, 900),
        9: SingleResource(9, ResourceType.INTEGER, 100),
        10: SingleResource(10, ResourceType.INTEGER, 15),
        11: _integers(11, 0),
        13: SingleResource(13, ResourceType.TIME, time_from_epoch(1367491215)),
        14: _string(14, "+02:00"),
        16: _string(16, "U"),
    },
)
"""Device object instance /3/0 as the Core specification's Read examples report it."""

# Core 1.1 section 7.4.5, SenML JSON payload of a Read on /3/0 (Device object).
DEVICE_READ_SENML_JSON = (
    b'[{"bn":"/3/0/","n":"0","vs":"Open Mobile Alliance"},'
    b'{"n":"1","vs":"Lightweight M2M Client"},{"n":"2","vs":"345000123"},'
    b'{"n":"3","vs":"1.0"},{"n":"6/0","v":1},{"n":"6/1","v":5},{"n":"7/0","v":3800},'
    b'{"n":"7/1","v":5000},{"n":"8/0","v":125},{"n":"8/1","v":900},{"n":"9","v":100},'
    b'{"n":"10","v":15},{"n":"11/0","v":0},{"n":"13","v":1367491215},'
    b'{"n":"14","vs":"+02:00"},{"n":"16","vs":"U"}]'
)
