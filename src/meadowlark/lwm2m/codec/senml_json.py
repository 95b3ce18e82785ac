"""SenML JSON (content format 110, RFC 8428 section 5; LwM2M Core 1.1+ "SenML JSON").

Only the JSON serialization lives here; record semantics are in ``senml_common``.
``vd`` is base64url without padding (RFC 8428 section 5); padded or standard-alphabet
base64 is accepted on input.
"""

from __future__ import annotations

import json
import math
from collections.abc import Mapping, Sequence
from datetime import datetime

from meadowlark.lwm2m.codec import senml_common
from meadowlark.lwm2m.codec.errors import DecodeError, EncodeError
from meadowlark.lwm2m.codec.senml_common import RawRecord
from meadowlark.lwm2m.codec.timestamped import TimestampedNodes
from meadowlark.lwm2m.model.lookup import ModelLookup
from meadowlark.lwm2m.node import Node
from meadowlark.lwm2m.path import LwM2mPath


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


def parse_json(payload: bytes) -> object:
    """Strict JSON: UTF-8, no duplicate keys, no NaN/Infinity; any failure is a DecodeError."""
    try:
        document = json.loads(
            payload.decode("utf-8"),
            object_pairs_hook=_unique_keys,
            parse_constant=_refuse_constant,
            parse_float=_finite_float,
        )
    except (UnicodeDecodeError, ValueError, RecursionError) as error:
        raise DecodeError(f"not valid JSON: {error}") from error
    return document


def dump_json(document: object) -> bytes:
    try:
        return json.dumps(document, separators=(",", ":"), allow_nan=False).encode("utf-8")
    except ValueError as error:
        raise EncodeError(f"JSON cannot carry this value: {error}") from error


def _load(payload: bytes) -> object:
    document = parse_json(payload)
    if isinstance(document, list):
        for record in document:
            if isinstance(record, dict) and "vd" in record:
                if not isinstance(record["vd"], str):
                    raise DecodeError("'vd' must be a base64url string")
                record["vd"] = senml_common.decode_base64_lenient(record["vd"])
    return document


def _dump(records: list[RawRecord]) -> bytes:
    for record in records:
        opaque = record.get("vd")
        if isinstance(opaque, bytes):
            record["vd"] = senml_common.encode_base64url(opaque)
    return dump_json(records)


def _unique_keys(pairs: list[tuple[str, object]]) -> dict[str, object]:
    record = dict(pairs)
    if len(record) != len(pairs):
        raise ValueError("duplicate label in a record")
    return record


def _refuse_constant(name: str) -> float:
    raise ValueError(f"{name} is not a JSON number")


def _finite_float(text: str) -> float:
    number = float(text)
    if not math.isfinite(number):
        raise ValueError(f"number out of range: {text}")
    return number
