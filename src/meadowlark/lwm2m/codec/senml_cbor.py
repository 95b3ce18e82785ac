"""SenML CBOR (content format 112, RFC 8428 section 6; LwM2M Core 1.1+ "SenML CBOR").

Only the CBOR serialization lives here; record semantics are in ``senml_common``.
Labels are the RFC 8428 integers (Table 6); LwM2M's object link label stays the string
``"vlo"``, which has no integer. String labels for the registered names are accepted too.
Time values arrive as numbers or, per LwM2M Core 1.2 Table C.2, as CBOR date/time (tags 0
and 1); both are read as seconds since the epoch.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from datetime import datetime

import cbor2

from meadowlark.lwm2m.codec import senml_common
from meadowlark.lwm2m.codec.errors import DecodeError, EncodeError
from meadowlark.lwm2m.codec.senml_common import RawRecord
from meadowlark.lwm2m.codec.timestamped import TimestampedNodes
from meadowlark.lwm2m.model.lookup import ModelLookup
from meadowlark.lwm2m.node import Node
from meadowlark.lwm2m.path import LwM2mPath

LABEL_NUMBERS = {
    "bver": -1,
    "bn": -2,
    "bt": -3,
    "bu": -4,
    "bv": -5,
    "bs": -6,
    "n": 0,
    "u": 1,
    "v": 2,
    "vs": 3,
    "vb": 4,
    "s": 5,
    "t": 6,
    "ut": 7,
    "vd": 8,
}
"""RFC 8428 section 6, Table 6."""

_LABEL_NAMES = {number: name for name, number in LABEL_NUMBERS.items()}
_MAX_DEPTH = 8
"""Array of maps of values: anything nested deeper is not SenML."""


def decode(payload: bytes, path: LwM2mPath, models: ModelLookup) -> Node:
    return senml_common.decode_records(_load(payload), path, models)


def encode(node: Node, path: LwM2mPath, models: ModelLookup) -> bytes:
    return _dump(senml_common.records_for_node(node, path))


def decode_composite(
    payload: bytes, models: ModelLookup, requested_paths: Sequence[LwM2mPath] | None = None
) -> dict[LwM2mPath, Node]:
    """See ``senml_common.build_composite`` for what ``requested_paths`` changes."""
    return senml_common.decode_composite_records(_load(payload), models, requested_paths)


def encode_composite(nodes: Mapping[LwM2mPath, Node], models: ModelLookup) -> bytes:
    return _dump(senml_common.records_for_composite(nodes))


def decode_timestamped(
    payload: bytes, path: LwM2mPath | None, models: ModelLookup, now: datetime | None = None
) -> list[TimestampedNodes]:
    return senml_common.decode_timestamped_records(_load(payload), path, models, now)


def encode_timestamped(batches: Sequence[TimestampedNodes], models: ModelLookup) -> bytes:
    return _dump(senml_common.records_for_timestamped(batches))


def encode_paths(paths: Sequence[LwM2mPath]) -> bytes:
    return _dump(senml_common.path_records(paths))


def decode_paths(payload: bytes) -> list[LwM2mPath]:
    return senml_common.paths_from_records(_load(payload))


def load_cbor(payload: bytes, max_depth: int) -> object:
    """``cbor2.loads`` with every failure turned into a DecodeError.

    cbor2 reports malformed input through several exception types (and tag decoders may
    raise more), so the whole parse is one boundary.
    """
    try:
        return cbor2.loads(payload, max_depth=max_depth, allow_duplicate_keys=False)
    except Exception as error:
        raise DecodeError(f"not valid CBOR: {error}") from error


def _load(payload: bytes) -> object:
    document = load_cbor(payload, _MAX_DEPTH)
    if not isinstance(document, list):
        raise DecodeError("a SenML pack must be an array of records")
    return [_named_labels(record) for record in document]


def _named_labels(record: object) -> object:
    if not isinstance(record, dict):
        return record
    named: RawRecord = {}
    for label, value in record.items():
        name = _LABEL_NAMES.get(label, label) if isinstance(label, int) else label
        if isinstance(value, datetime):
            if name in ("v", "vs"):
                name = "v"
            else:
                value = value.timestamp()
        if name in named:
            raise DecodeError(f"label {name!r} appears twice in a record")
        named[name] = value
    return named


def _dump(records: list[RawRecord]) -> bytes:
    numbered = [
        {LABEL_NUMBERS.get(str(label), label): value for label, value in record.items()}
        for record in records
    ]
    try:
        return cbor2.dumps(numbered, canonical=True)
    except (cbor2.CBOREncodeError, ValueError, TypeError) as error:
        raise EncodeError(f"cannot encode SenML CBOR: {error}") from error
