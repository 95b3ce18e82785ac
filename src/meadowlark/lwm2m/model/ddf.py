"""Read and write OMA DDF XML (object definitions, schemas LWM2M.xsd 1.0 and LWM2M-v1_1.xsd).

Parsing is tolerant of what real registry files contain (namespace prefixes, ``xsi``
attributes, missing optional elements, stray whitespace, case of enumerated values) and
strict about what would make a model wrong (ids, types, operations, duplicates).

Object ids are accepted in 0..65535, the XSD range, so that every registry file parses.
Ids that a user may define through the API are narrower: see ``CUSTOM_OBJECT_IDS``.
"""

from __future__ import annotations

import codecs
import re
import xml.etree.ElementTree as ET  # noqa: S405 - DTDs are refused before parsing
from collections.abc import Mapping
from types import MappingProxyType

from meadowlark.lwm2m.model.types import ObjectModel, Operations, ResourceModel
from meadowlark.lwm2m.node import ResourceType

MAX_DDF_ID = 65535
"""Object and resource ids are ``xs:unsignedShort`` in the DDF schema."""

CUSTOM_OBJECT_IDS = range(1, 65535)
"""Object ids a caller may register as custom objects (1..65534).

``parse_ddf`` does not enforce this: callers that accept user DDFs check
``model.id in CUSTOM_OBJECT_IDS`` themselves.
"""

DEFAULT_VERSION = "1.0"
"""Object and LwM2M version assumed when a DDF omits them (LwM2M 1.0 era files)."""

_VERSION_PATTERN = re.compile(r"\d+(?:\.\d+)+")
_XML_DECLARED_ENCODING = re.compile(rb"""^<\?xml[^>]*?encoding\s*=\s*["']([A-Za-z0-9._-]+)["']""")
_FORBIDDEN_MARKUP = re.compile(r"<!\s*(?:DOCTYPE|ENTITY)", re.IGNORECASE)
# Characters XML 1.0 cannot carry, even escaped.
_NON_XML_CHARS = re.compile("[\x00-\x08\x0b\x0c\x0e-\x1f\ufffe\uffff]")

_OPERATIONS_BY_TEXT = {op.value: op for op in Operations}


class DdfError(ValueError):
    """A document that is not a usable DDF; the message says what and where."""


def parse_ddf(xml: bytes | str) -> list[ObjectModel]:
    """Parse a DDF document into one model per ``<Object>``, in document order.

    Documents with a DOCTYPE or entity declaration are refused outright: DDFs never need
    them and they are the vehicle of entity-expansion and external-entity attacks.
    """
    text = _decode(xml) if isinstance(xml, bytes) else xml.lstrip("\ufeff")
    if _FORBIDDEN_MARKUP.search(text):
        raise DdfError("DOCTYPE and ENTITY declarations are not allowed in a DDF")
    try:
        root = ET.fromstring(text)  # noqa: S314 - see the check above
    except ET.ParseError as exc:
        raise DdfError(f"not well-formed XML: {exc}") from None
    except UnicodeEncodeError:
        raise DdfError("text contains unpaired surrogate characters") from None
    if _local_name(root.tag) != "LWM2M":
        raise DdfError(f"root element must be <LWM2M>, found <{_local_name(root.tag)}>")
    object_elements = [child for child in root if _local_name(child.tag) == "Object"]
    if not object_elements:
        raise DdfError("no <Object> element in the DDF")
    models = [_parse_object(element) for element in object_elements]
    seen: set[tuple[int, str]] = set()
    for model in models:
        key = (model.id, model.version)
        if key in seen:
            raise DdfError(f"object {model.id} version {model.version} is defined twice")
        seen.add(key)
    return models


def to_ddf_xml(model: ObjectModel) -> bytes:
    """Serialise a model as a UTF-8 DDF document (LWM2M-v1_1.xsd layout) that
    ``parse_ddf`` reads back to an equal model."""
    root = ET.Element(
        "LWM2M",
        {
            "xmlns:xsi": "http://www.w3.org/2001/XMLSchema-instance",
            "xsi:noNamespaceSchemaLocation": (
                "http://www.openmobilealliance.org/tech/profiles/LWM2M-v1_1.xsd"
            ),
        },
    )
    obj = ET.SubElement(root, "Object", {"ObjectType": "MODefinition"})
    _add_text(obj, "Name", model.name)
    _add_text(obj, "Description1", model.description)
    _add_text(obj, "ObjectID", str(model.id))
    _add_text(obj, "ObjectURN", model.urn)
    _add_text(obj, "LWM2MVersion", model.lwm2m_version)
    _add_text(obj, "ObjectVersion", model.version)
    _add_text(obj, "MultipleInstances", "Multiple" if model.multiple else "Single")
    _add_text(obj, "Mandatory", "Mandatory" if model.mandatory else "Optional")
    resources = ET.SubElement(obj, "Resources")
    for resource in sorted(model.resources.values(), key=lambda r: r.id):
        item = ET.SubElement(resources, "Item", {"ID": str(resource.id)})
        _add_text(item, "Name", resource.name)
        _add_text(item, "Operations", resource.operations.value)
        _add_text(item, "MultipleInstances", "Multiple" if resource.multiple else "Single")
        _add_text(item, "Mandatory", "Mandatory" if resource.mandatory else "Optional")
        type_text = "" if resource.type is ResourceType.NONE else resource.type.value
        _add_text(item, "Type", type_text)
        _add_text(item, "RangeEnumeration", resource.range_enumeration)
        _add_text(item, "Units", resource.units)
        _add_text(item, "Description", resource.description)
    ET.SubElement(obj, "Description2")
    ET.indent(root, space="\t")
    document: bytes = ET.tostring(root, encoding="utf-8", xml_declaration=True)
    return document + b"\n"


def _decode(data: bytes) -> str:
    """Decode by byte order mark, else by the XML declaration, else as UTF-8."""
    if data.startswith(codecs.BOM_UTF8):
        encoding = "utf-8-sig"
    elif data.startswith((codecs.BOM_UTF16_LE, codecs.BOM_UTF16_BE)):
        encoding = "utf-16"
    else:
        declared = _XML_DECLARED_ENCODING.match(data)
        encoding = declared.group(1).decode("ascii") if declared else "utf-8"
    try:
        return data.decode(encoding)
    except LookupError:
        raise DdfError(f"unknown character encoding {encoding!r}") from None
    except UnicodeDecodeError as exc:
        raise DdfError(f"not valid {encoding} text: {exc.reason} at byte {exc.start}") from None


def _local_name(tag: object) -> str:
    """Element name without its namespace (``{uri}Name`` -> ``Name``)."""
    return tag.rpartition("}")[2] if isinstance(tag, str) else ""


def _child_text(parent: ET.Element, name: str) -> str | None:
    """Stripped text of the first child named ``name``; ``None`` when there is none."""
    for child in parent:
        if _local_name(child.tag) == name:
            return (child.text or "").strip()
    return None


def _parse_object(element: ET.Element) -> ObjectModel:
    object_id = _parse_id(_child_text(element, "ObjectID"), "<ObjectID>")
    where = f"object {object_id}"
    name = _parse_name(_child_text(element, "Name"), where)
    resources: dict[int, ResourceModel] = {}
    for container in element:
        if _local_name(container.tag) != "Resources":
            continue
        for item in container:
            if _local_name(item.tag) != "Item":
                continue
            resource = _parse_resource(item, where)
            if resource.id in resources:
                raise DdfError(f"{where}: resource id {resource.id} is defined twice")
            resources[resource.id] = resource
    return ObjectModel(
        id=object_id,
        name=name,
        version=_parse_version(_child_text(element, "ObjectVersion"), f"{where} <ObjectVersion>"),
        lwm2m_version=_parse_version(
            _child_text(element, "LWM2MVersion"), f"{where} <LWM2MVersion>"
        ),
        urn=_child_text(element, "ObjectURN") or "",
        multiple=_parse_choice(
            _child_text(element, "MultipleInstances"), "Multiple", "Single", True, where
        ),
        mandatory=_parse_choice(
            _child_text(element, "Mandatory"), "Mandatory", "Optional", False, where
        ),
        resources=frozen_resources(resources),
        description=_child_text(element, "Description1") or "",
    )


def _parse_resource(item: ET.Element, object_where: str) -> ResourceModel:
    resource_id = _parse_id((item.get("ID") or "").strip(), f"{object_where}: resource ID")
    where = f"{object_where} resource {resource_id}"
    name = _parse_name(_child_text(item, "Name"), where)
    operations_text = (_child_text(item, "Operations") or "").upper()
    operations = _OPERATIONS_BY_TEXT.get(operations_text)
    if operations is None:
        raise DdfError(f"{where}: invalid <Operations> {operations_text!r}")
    try:
        resource_type = ResourceType.from_ddf(_child_text(item, "Type") or "")
    except ValueError as exc:
        raise DdfError(f"{where}: {exc}") from None
    return ResourceModel(
        id=resource_id,
        name=name,
        operations=operations,
        multiple=_parse_choice(
            _child_text(item, "MultipleInstances"), "Multiple", "Single", False, where
        ),
        mandatory=_parse_choice(
            _child_text(item, "Mandatory"), "Mandatory", "Optional", False, where
        ),
        type=resource_type,
        range_enumeration=_child_text(item, "RangeEnumeration") or "",
        units=_child_text(item, "Units") or "",
        description=_child_text(item, "Description") or "",
    )


def _parse_name(text: str | None, where: str) -> str:
    """A name with whitespace runs collapsed (registry files have double spaces, e.g.
    ``LWM2M  Server URI``): names become path segments and must compare predictably."""
    if not text:
        raise DdfError(f"{where}: missing or empty <Name>")
    return " ".join(text.split())


def _parse_id(text: str | None, what: str) -> int:
    if text is None or text == "":
        raise DdfError(f"missing {what}")
    if not (text.isascii() and text.isdigit()):
        raise DdfError(f"{what} is not a number: {text!r}")
    value = int(text)
    if value > MAX_DDF_ID:
        raise DdfError(f"{what} {value} is outside 0..{MAX_DDF_ID}")
    return value


def _parse_version(text: str | None, what: str) -> str:
    if not text:
        return DEFAULT_VERSION
    if not (text.isascii() and _VERSION_PATTERN.fullmatch(text)):
        raise DdfError(f"{what} is not a version like 1.0: {text!r}")
    return text


def _parse_choice(
    text: str | None, true_word: str, false_word: str, default: bool, where: str
) -> bool:
    """Map a two-valued enumeration (``Multiple``/``Single``...) to a bool, ignoring case."""
    if not text:
        return default
    folded = text.casefold()
    if folded == true_word.casefold():
        return True
    if folded == false_word.casefold():
        return False
    raise DdfError(f"{where}: expected {true_word} or {false_word}, found {text!r}")


def _add_text(parent: ET.Element, name: str, text: str) -> None:
    if _NON_XML_CHARS.search(text):
        raise DdfError(f"<{name}> contains a character XML cannot represent: {text!r}")
    ET.SubElement(parent, name).text = text


def frozen_resources(resources: Mapping[int, ResourceModel]) -> Mapping[int, ResourceModel]:
    """A read-only, id-ordered view of ``resources``.

    Models are shared between registries (the built-in catalog especially), so their
    resource maps must not be mutable through the model.
    """
    return MappingProxyType(dict(sorted(resources.items())))
