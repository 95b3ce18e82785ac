"""CoAP content-format numbers used by LwM2M (IANA CoAP Content-Formats registry)."""

from enum import IntEnum


class ContentFormat(IntEnum):
    TEXT = 0
    LINK_FORMAT = 40
    OPAQUE = 42
    CBOR = 60
    SENML_JSON = 110
    SENML_CBOR = 112
    OLD_TLV = 1542
    OLD_JSON = 1543
    TLV = 11542
    OMA_JSON = 11543
    LWM2M_CBOR = 11544
