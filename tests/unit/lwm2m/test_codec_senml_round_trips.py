"""Round-trip properties shared by the two SenML codecs (JSON 110, CBOR 112)."""

from __future__ import annotations

from types import ModuleType

import pytest
from hypothesis import given
from hypothesis import strategies as st

from lwm2m_strategies import (
    composite_nodes,
    leaf_nodes,
    model_lookups,
    node_cases,
    paths_in,
    timestamped_batches,
)
from meadowlark.lwm2m.codec import senml_cbor, senml_json


@pytest.fixture(scope="module", params=[senml_json, senml_cbor], ids=["senml-json", "senml-cbor"])
def codec(request: pytest.FixtureRequest) -> ModuleType:
    return request.param  # type: ignore[no-any-return]


@given(node_cases(allow_empty_containers=False))
def test_round_trip(codec: ModuleType, case) -> None:
    models, path, node = case
    assert codec.decode(codec.encode(node, path, models), path, models) == node


@given(st.data())
def test_composite_round_trip(codec: ModuleType, data: st.DataObject) -> None:
    models = data.draw(model_lookups())
    nodes = data.draw(composite_nodes(models, allow_empty_containers=False))
    payload = codec.encode_composite(nodes, models)
    assert codec.decode_composite(payload, models, list(nodes)) == nodes


@given(st.data())
def test_leaf_level_composite_round_trip(codec: ModuleType, data: st.DataObject) -> None:
    models = data.draw(model_lookups())
    nodes = data.draw(leaf_nodes(models))
    payload = codec.encode_composite(nodes, models)
    assert codec.decode_composite(payload, models) == nodes


@given(st.data())
def test_timestamped_round_trip(codec: ModuleType, data: st.DataObject) -> None:
    models = data.draw(model_lookups())
    path = data.draw(st.none() | paths_in(models))
    batches = data.draw(timestamped_batches(models, path))
    payload = codec.encode_timestamped(batches, models)
    assert codec.decode_timestamped(payload, path, models) == batches


@given(st.data())
def test_paths_round_trip(codec: ModuleType, data: st.DataObject) -> None:
    models = data.draw(model_lookups())
    paths = data.draw(st.lists(paths_in(models), max_size=5))
    assert codec.decode_paths(codec.encode_paths(paths)) == paths
