"""Choosing content formats for a device and decoding what it answers."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from datetime import datetime
from types import ModuleType

from meadowlark.lwm2m.codec import lwm2m_cbor, oma_json, registry, senml_cbor, senml_json
from meadowlark.lwm2m.codec.errors import CodecError
from meadowlark.lwm2m.codec.formats import ContentFormat
from meadowlark.lwm2m.codec.timestamped import TimestampedNodes
from meadowlark.lwm2m.model.lookup import ModelLookup
from meadowlark.lwm2m.node import Node, ResourceType
from meadowlark.lwm2m.path import LwM2mPath
from meadowlark.server.errors import InvalidRequestError, InvalidResponseError
from meadowlark.server.registration import Registration

COMPOSITE_CODECS: Mapping[int, ModuleType] = {
    ContentFormat.SENML_CBOR: senml_cbor,
    ContentFormat.LWM2M_CBOR: lwm2m_cbor,
    ContentFormat.SENML_JSON: senml_json,
}
"""Formats that carry several unrelated paths (Core 1.1 §5.4.x Read-Composite, Write-Composite)."""

TIMESTAMPED_CODECS: Mapping[int, ModuleType] = {
    **COMPOSITE_CODECS,
    ContentFormat.OMA_JSON: oma_json,
    ContentFormat.OLD_JSON: oma_json,
}
"""Formats a Send (``/dp``) payload may use."""


def single_value(path: LwM2mPath, models: ModelLookup) -> bool | None:
    """Whether ``path`` holds exactly one value; ``None`` when the model does not say."""
    if path.is_resource_instance:
        return True
    if path.is_resource and path.object_id is not None and path.resource_id is not None:
        model = models.get_resource(path.object_id, path.resource_id)
        return None if model is None else not model.multiple
    return False


def choose_format(
    registration: Registration, path: LwM2mPath, models: ModelLookup, requested: int | None
) -> int:
    """``requested`` if we have a codec for it, else the best format the device supports."""
    if requested is not None:
        if not registry.supports(requested):
            raise InvalidRequestError(f"unsupported content format {requested}")
        return requested
    if single_value(path, models):
        # Plain text and opaque are the formats every client must support for one value
        # (Core 1.0 §6.4, 1.1 §7.4): the most interoperable choice. Opaque values go as
        # opaque, since 1.0 clients may not know their Base64 text form.
        model = models.get_resource(path.object_id or 0, path.resource_id or 0)
        if model is not None and model.type is ResourceType.OPAQUE:
            return ContentFormat.OPAQUE
        return ContentFormat.TEXT
    return registry.preferred_format(
        registration.lwm2m_version,
        registration.content_formats,
        path,
        single_value=single_value(path, models),
    )


def choose_composite_format(registration: Registration, requested: int | None) -> int:
    """A composite format the device announced (SenML CBOR when it announced none)."""
    if registration.is_1_0:
        raise InvalidRequestError("composite operations need an LwM2M 1.1 or newer device")
    if requested is not None:
        if requested not in COMPOSITE_CODECS:
            raise InvalidRequestError(f"content format {requested} cannot carry composite data")
        return requested
    for fmt in COMPOSITE_CODECS:
        if fmt in registration.content_formats:
            return fmt
    return ContentFormat.SENML_CBOR


def path_list_format(composite_format: int) -> int:
    """The format of a Read/Observe-Composite request body: the SenML flavour matching
    ``composite_format`` (LwM2M CBOR has no path-list form, SenML CBOR is its sibling)."""
    return (
        ContentFormat.SENML_JSON
        if composite_format == ContentFormat.SENML_JSON
        else (ContentFormat.SENML_CBOR)
    )


def encode_paths(fmt: int, paths: Sequence[LwM2mPath]) -> bytes:
    codec = senml_json if fmt == ContentFormat.SENML_JSON else senml_cbor
    return bytes(codec.encode_paths(paths))


def encode_node(fmt: int, node: Node, path: LwM2mPath, models: ModelLookup) -> bytes:
    try:
        return registry.encode(fmt, node, path, models)
    except CodecError as exc:
        raise InvalidRequestError(f"cannot encode {path} as format {fmt}: {exc}") from None


def encode_composite(fmt: int, nodes: Mapping[LwM2mPath, Node], models: ModelLookup) -> bytes:
    try:
        return bytes(COMPOSITE_CODECS[fmt].encode_composite(nodes, models))
    except CodecError as exc:
        raise InvalidRequestError(f"cannot encode composite as format {fmt}: {exc}") from None


def decode_node(fmt: int, payload: bytes, path: LwM2mPath, models: ModelLookup) -> Node:
    try:
        return registry.decode(fmt, payload, path, models)
    except CodecError as exc:
        raise InvalidResponseError(
            f"device sent undecodable {path} (format {fmt}): {exc}"
        ) from None


def decode_composite(
    fmt: int, payload: bytes, paths: Sequence[LwM2mPath], models: ModelLookup
) -> dict[LwM2mPath, Node]:
    codec = COMPOSITE_CODECS.get(fmt)
    if codec is None:
        raise InvalidResponseError(f"device answered a composite request in format {fmt}")
    try:
        nodes: dict[LwM2mPath, Node] = codec.decode_composite(payload, models, list(paths))
    except CodecError as exc:
        raise InvalidResponseError(f"device sent undecodable composite data: {exc}") from None
    return nodes


def decode_timestamped(
    fmt: int, payload: bytes, models: ModelLookup, now: datetime
) -> list[TimestampedNodes]:
    """Decode a Send payload; raises ``CodecError`` (the caller answers 4.00)."""
    batches: list[TimestampedNodes] = TIMESTAMPED_CODECS[fmt].decode_timestamped(
        payload, None, models, now
    )
    return batches
