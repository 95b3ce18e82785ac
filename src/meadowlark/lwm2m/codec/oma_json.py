"""OMA LwM2M JSON (content format 11543, legacy 1543; LwM2M 1.0 section 6.4.4 "JSON").

``{"bn": "/3/0/", "bt": 1500000000, "e": [{"n": "0", "sv": "x"}, {"n": "7/0", "v": 1}]}``:
an object with base name and base time and an ``e`` array of entries with ``n`` (name),
``t`` (time relative to ``bt``) and one value out of ``v`` (number, also Time), ``bv``
(boolean), ``ov`` (object link ``"3:0"``) and ``sv`` (string; base64 for Opaque).

It is the pre-RFC SenML draft, so entries are mapped onto SenML records and decoded by
``senml_common`` with the same name and time rules (times below 2**28 are relative to
now). Entries holding ``sv`` for an unknown resource decode as String: the format cannot
tell Opaque apart.
"""

from __future__ import annotations

import base64
from collections.abc import Sequence
from datetime import datetime

from meadowlark.lwm2m.codec import senml_common
from meadowlark.lwm2m.codec.errors import DecodeError
from meadowlark.lwm2m.codec.senml_common import FieldValue, RawRecord
from meadowlark.lwm2m.codec.senml_json import dump_json, parse_json
from meadowlark.lwm2m.codec.timestamped import TimestampedNodes
from meadowlark.lwm2m.model.lookup import ModelLookup
from meadowlark.lwm2m.node import Node, ResourceType, Value
from meadowlark.lwm2m.path import LwM2mPath

_SENML_LABELS = {"n": "n", "t": "t", "v": "v", "sv": "vs", "bv": "vb", "ov": "vlo"}
"""OMA JSON entry label -> SenML label; other entry labels are ignored."""

_ENTRY_LABELS = {senml: oma for oma, senml in _SENML_LABELS.items()}


def decode(payload: bytes, path: LwM2mPath, models: ModelLookup) -> Node:
    return senml_common.decode_records(_records(payload), path, models, _read_value)


def encode(node: Node, path: LwM2mPath, models: ModelLookup) -> bytes:
    return _document(senml_common.records_for_node(node, path, _write_value))


def decode_timestamped(
    payload: bytes, path: LwM2mPath | None, models: ModelLookup, now: datetime | None = None
) -> list[TimestampedNodes]:
    """Notifications with history; ``path`` None reads absolute names into leaf nodes."""
    return senml_common.decode_timestamped_records(
        _records(payload), path, models, now, _read_value
    )


def encode_timestamped(batches: Sequence[TimestampedNodes], models: ModelLookup) -> bytes:
    """Absolute names, and each entry's absolute time in ``t`` (there is no per-batch bt)."""
    records: list[RawRecord] = []
    for batch in batches:
        batch_records = senml_common.records_for_composite(batch.nodes, _write_value)
        if batch.timestamp is not None:
            seconds = senml_common.epoch_number(batch.timestamp)
            batch_records = [{**record, "t": seconds} for record in batch_records]
        records.extend(batch_records)
    return _document(records)


def _records(payload: bytes) -> list[RawRecord]:
    document = parse_json(payload)
    if not isinstance(document, dict) or not isinstance(document.get("e"), list):
        raise DecodeError("an OMA JSON payload is an object with an 'e' array")
    records: list[RawRecord] = []
    for index, entry in enumerate(document["e"]):
        if not isinstance(entry, dict):
            raise DecodeError(f"OMA JSON entry {index} is not an object")
        records.append(
            {
                _SENML_LABELS[label]: value
                for label, value in entry.items()
                if label in _SENML_LABELS
            }
        )
    if records:
        base: RawRecord = {label: document[label] for label in ("bn", "bt") if label in document}
        records[0] = {**base, **records[0]}
    return records


def _document(records: list[RawRecord]) -> bytes:
    document: dict[str, object] = {}
    entries = []
    for record in records:
        entry = {}
        for label, value in record.items():
            if label in ("bn", "bt"):
                document[str(label)] = value
            else:
                entry[_ENTRY_LABELS[str(label)]] = value
        entries.append(entry)
    document["e"] = entries
    return dump_json(document)


def _read_value(
    label: str, raw: object, resource_type: ResourceType | None
) -> tuple[ResourceType, Value]:
    if resource_type is ResourceType.OPAQUE and label == "vs":
        if not isinstance(raw, str):
            raise DecodeError("an Opaque value must be a base64 string")
        return resource_type, senml_common.decode_base64_lenient(raw)
    return senml_common.read_value(label, raw, resource_type)


def _write_value(resource_type: ResourceType, value: Value) -> FieldValue:
    if isinstance(value, bytes):
        return "vs", base64.b64encode(value).decode("ascii")
    return senml_common.write_value(resource_type, value)
