"""Content format number -> codec, and the choice of format for a request to a client."""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Protocol

from meadowlark.lwm2m.codec import (
    cbor,
    lwm2m_cbor,
    oma_json,
    opaque,
    senml_cbor,
    senml_json,
    text,
    tlv,
)
from meadowlark.lwm2m.codec.errors import DecodeError, EncodeError
from meadowlark.lwm2m.codec.formats import ContentFormat
from meadowlark.lwm2m.model.lookup import ModelLookup
from meadowlark.lwm2m.node import Node
from meadowlark.lwm2m.path import LwM2mPath


class NodeCodec(Protocol):
    """What every per-format codec module provides."""

    def decode(self, payload: bytes, path: LwM2mPath, models: ModelLookup) -> Node: ...

    def encode(self, node: Node, path: LwM2mPath, models: ModelLookup) -> bytes: ...


CODECS: Mapping[int, NodeCodec] = {
    ContentFormat.TEXT: text,
    ContentFormat.OPAQUE: opaque,
    ContentFormat.CBOR: cbor,
    ContentFormat.TLV: tlv,
    ContentFormat.OLD_TLV: tlv,
    ContentFormat.OMA_JSON: oma_json,
    ContentFormat.OLD_JSON: oma_json,
    ContentFormat.SENML_JSON: senml_json,
    ContentFormat.SENML_CBOR: senml_cbor,
    ContentFormat.LWM2M_CBOR: lwm2m_cbor,
}

SINGLE_VALUE_FORMATS = frozenset({ContentFormat.TEXT, ContentFormat.OPAQUE, ContentFormat.CBOR})
"""Formats that carry one resource value only."""

MULTI_VALUE_PREFERENCE = (
    ContentFormat.SENML_CBOR,
    ContentFormat.LWM2M_CBOR,
    ContentFormat.SENML_JSON,
    ContentFormat.TLV,
    ContentFormat.OMA_JSON,
)
"""Our order of preference among formats a client announces: compact, then current."""


def supports(fmt: int) -> bool:
    return fmt in CODECS


def decode(fmt: int, payload: bytes, path: LwM2mPath, models: ModelLookup) -> Node:
    codec = CODECS.get(fmt)
    if codec is None:
        raise DecodeError(f"unsupported content format {fmt}")
    return codec.decode(payload, path, models)


def encode(fmt: int, node: Node, path: LwM2mPath, models: ModelLookup) -> bytes:
    codec = CODECS.get(fmt)
    if codec is None:
        raise EncodeError(f"unsupported content format {fmt}")
    return codec.encode(node, path, models)


_VERSION = re.compile(r"([0-9]+)\.([0-9]+)(?:\.[0-9]+)?")


def preferred_format(
    lwm2m_version: str,
    announced: tuple[int, ...],
    path: LwM2mPath,
    *,
    single_value: bool | None = None,
) -> ContentFormat:
    """The content format to request from (or send to) a client for ``path``.

    Candidates are the formats the client announced with ``ct`` on its registration
    root link (Core 1.1 §6.2.1: "If the LwM2M Client supports optional data formats,
    it MAY inform the LwM2M Server by including the content type in the root path
    link using the ct= link attribute") plus, for an LwM2M 1.0 client, TLV (Core 1.0
    §6.4: "The LwM2M Client MUST support the TLV data format for Object Instance or
    multiple-instance Resource requests"; TLV carries single values too). The best
    candidate per ``MULTI_VALUE_PREFERENCE`` wins.

    Without candidates (a 1.1+ client that announced nothing we support), Core 1.1
    §7.4 applies: "The LwM2M Client MUST support plain text, opaque, and CoRE Link
    data formats and it SHOULD support at least one of SenML CBOR or SenML JSON data
    formats ... LwM2M Clients supporting LwM2M TS 1.1 or newer SHOULD NOT use the
    legacy TLV or JSON formats". So a single value goes as plain text (mandatory, and
    it carries Opaque as Base64 per Appendix C), anything else as SenML CBOR: no
    multi-value format is mandatory, and we pick the compact one.

    ``single_value`` says whether ``path`` holds one value; by default only a resource
    instance path counts as one (a resource path may name a multiple resource). Pass
    ``True`` for a resource path whose model says single-instance.
    """
    candidates = set(announced)
    if _is_version_1_0(lwm2m_version):
        candidates.add(ContentFormat.TLV)
    for fmt in MULTI_VALUE_PREFERENCE:
        if fmt in candidates:
            return fmt
    if single_value if single_value is not None else path.is_resource_instance:
        return ContentFormat.TEXT
    return ContentFormat.SENML_CBOR


def _is_version_1_0(lwm2m_version: str) -> bool:
    match = _VERSION.fullmatch(lwm2m_version.strip())
    if match is None:
        raise ValueError(f"not an LwM2M version: {lwm2m_version!r}")
    return (int(match[1]), int(match[2])) <= (1, 0)
