"""Task operations and templates as data: validation, template expansion, planning.

An operation is a one-key object, as Coiote writes them::

    {"read": {"key": "Device.0.Manufacturer"}}
    {"write": {"key": "/1/0/1", "value": "${sv.lifetime}"}}
    {"execute": {"key": "Device.0.Reboot", "argumentList": [{"digit": 0, "argument": "x"}]}}
    {"create": {"key": "/3303", "instanceId": 2, "values": {"5701": "Cel"}}}
    {"delete": {"key": "/3303/2"}}
    {"writeAttributes": {"key": "/3303/0/5700", "attributes": [{"name": "pmin", "value": "5"}]}}
    {"observe": {"key": "/3303/0/5700"}}, {"cancelObserve": {"key": "/3303/0/5700"}}
    {"firmwareUpdate": {"resourceId": "fw-1", "transferMethod": "Pull",
                        "transferProtocol": "COAP", "timeout": "20m"}}

Keys are readable (``Device.0.Reboot``) or numeric (``/3/0/4``) paths of the object model.
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol

from meadowlark.core.errors import InvalidInput
from meadowlark.lwm2m.model import NamedModels, ReadablePathError, from_readable, to_readable
from meadowlark.lwm2m.model.types import ResourceModel
from meadowlark.lwm2m.path import LwM2mPath

INVALID_PAYLOAD = 4000
INVALID_PATH = 4003
MAX_OPERATIONS = 100
MAX_TEXT = 4096
TRANSFER_METHODS = ("Pull", "Push")
TRANSFER_PROTOCOLS = ("COAP", "HTTP")
ATTRIBUTE_NAMES = ("pmin", "pmax", "gt", "lt", "st")
_DURATION = re.compile(r"(\d+(?:\.\d+)?)\s*(ms|s|m|h|d)?")
_UNITS = {"ms": 0.001, "s": 1.0, "m": 60.0, "h": 3600.0, "d": 86400.0, None: 1.0}
_TEMPLATE_PARAMETER = re.compile(r"\$\{(?!sv\.)([A-Za-z_][A-Za-z0-9_]*)\}")


class ModelLookup(NamedModels, Protocol):
    """What planning needs of a device's (or domain's) models."""

    def get_resource(self, object_id: int, resource_id: int) -> ResourceModel | None: ...


def enum_text(text: str, enum_name: str) -> str:
    """``text`` without the ``<enum_name>.`` prefix: python-coiote passes its enums as query
    parameters unconverted, so requests sends ``str(TransferMethod.Pull)``, i.e.
    ``TransferMethod.Pull``."""
    prefix = f"{enum_name}."
    return text[len(prefix) :] if text.startswith(prefix) else text


def parse_duration(text: str, what: str = "timeout") -> float:
    """``20m``, ``30s``, ``1h``, ``1500ms`` or plain seconds, as seconds (> 0)."""
    match = _DURATION.fullmatch(text.strip())
    if match is None or float(match.group(1)) <= 0:
        raise InvalidInput(
            f"invalid {what} {text[:40]!r}: use a positive number with ms, s, m, h or d",
            code=INVALID_PAYLOAD,
        )
    return float(match.group(1)) * _UNITS[match.group(2)]


@dataclass(frozen=True, slots=True)
class FirmwareRequest:
    resource_id: str
    transfer_method: str
    transfer_protocol: str
    timeout_seconds: float


@dataclass(frozen=True, slots=True)
class PlannedOperation:
    """One operation, resolved against the models, ready to send."""

    kind: str
    path: LwM2mPath | None
    label: str
    """How reports and summaries name it: ``execute Device.0.Reboot``."""
    value: str | None = None
    arguments: str | None = None
    instance_id: int = 0
    values: Mapping[int, str] = field(default_factory=dict)
    attributes: tuple[tuple[str, str], ...] = ()
    firmware: FirmwareRequest | None = None


def operation_kind(operation: object, position: int) -> tuple[str, dict[str, Any]]:
    if not isinstance(operation, dict) or len(operation) != 1:
        raise InvalidInput(
            f"operation {position}: expected one of {', '.join(OPERATIONS)} as the only key",
            code=INVALID_PAYLOAD,
        )
    ((kind, body),) = operation.items()
    if kind not in OPERATIONS:
        raise InvalidInput(
            f"operation {position}: unknown kind {str(kind)[:40]!r}; use {', '.join(OPERATIONS)}",
            code=INVALID_PAYLOAD,
        )
    if not isinstance(body, dict):
        raise InvalidInput(f"operation {position}: {kind} needs an object", code=INVALID_PAYLOAD)
    return kind, body


def _text(body: Mapping[str, Any], name: str, position: int, *, required: bool = True) -> str:
    value = body.get(name)
    if value is None and not required:
        return ""
    if isinstance(value, bool) or not isinstance(value, str | int | float):
        raise InvalidInput(f"operation {position}: {name!r} must be text", code=INVALID_PAYLOAD)
    text = str(value)
    if len(text) > MAX_TEXT:
        raise InvalidInput(f"operation {position}: {name!r} is too long", code=INVALID_PAYLOAD)
    return text


def _path(text: str, models: ModelLookup, position: int) -> LwM2mPath:
    try:
        path = from_readable(text, models)
    except ReadablePathError as exc:
        raise InvalidInput(
            f"operation {position}: invalid path {text[:120]!r}: {exc}", code=INVALID_PATH
        ) from None
    if path.is_root:
        raise InvalidInput(f"operation {position}: a path is needed", code=INVALID_PATH)
    if path.object_id is not None and models.get_object(path.object_id) is None:
        raise InvalidInput(
            f"operation {position}: object {path.object_id} is not in the object model",
            code=INVALID_PATH,
        )
    return path


def _resource(path: LwM2mPath, models: ModelLookup, position: int) -> ResourceModel:
    if not path.is_resource and not path.is_resource_instance:
        raise InvalidInput(f"operation {position}: {path} is not a resource", code=INVALID_PATH)
    assert path.object_id is not None and path.resource_id is not None
    resource = models.get_resource(path.object_id, path.resource_id)
    if resource is None:
        raise InvalidInput(
            f"operation {position}: resource {path} is not in the object model", code=INVALID_PATH
        )
    return resource


def _execute_arguments(raw: object, position: int) -> str | None:
    if raw is None or raw == []:
        return None
    if not isinstance(raw, list):
        raise InvalidInput(
            f"operation {position}: argumentList must be a list", code=INVALID_PAYLOAD
        )
    parts = []
    for item in raw:
        digit = item.get("digit") if isinstance(item, dict) else None
        if isinstance(digit, bool) or not isinstance(digit, int) or not 0 <= digit <= 9:
            raise InvalidInput(
                f"operation {position}: each argument needs a digit 0..9", code=INVALID_PAYLOAD
            )
        argument = item.get("argument")
        if argument is None:
            parts.append(str(digit))
        elif isinstance(argument, str) and "'" not in argument and len(argument) <= MAX_TEXT:
            parts.append(f"{digit}='{argument}'")
        else:
            raise InvalidInput(
                f"operation {position}: an argument is text without quotes", code=INVALID_PAYLOAD
            )
    return ",".join(parts)


def plan(operation: object, models: ModelLookup, position: int = 1) -> PlannedOperation:
    """Resolve and check one operation (``InvalidInput`` with the reference's codes)."""
    kind, body = operation_kind(operation, position)
    if kind == "firmwareUpdate":
        return _plan_firmware(body, position)
    path = _path(_text(body, "key", position), models, position)
    label = f"{kind} {to_readable(path, models)}"
    match kind:
        case "read" | "observe" | "cancelObserve":
            if path.is_resource or path.is_resource_instance:
                resource = _resource(path, models, position)
                if not resource.operations.readable:
                    raise InvalidInput(
                        f"operation {position}: {label.split(' ', 1)[1]} is not readable",
                        code=INVALID_PAYLOAD,
                    )
            return PlannedOperation(kind, path, label)
        case "write":
            resource = _resource(path, models, position)
            if not resource.operations.writable:
                raise InvalidInput(
                    f"operation {position}: {to_readable(path, models)} is read-only",
                    code=INVALID_PAYLOAD,
                )
            return PlannedOperation(kind, path, label, value=_text(body, "value", position))
        case "execute":
            resource = _resource(path, models, position)
            if not resource.operations.executable:
                raise InvalidInput(
                    f"operation {position}: {to_readable(path, models)} is not executable",
                    code=INVALID_PAYLOAD,
                )
            arguments = _execute_arguments(body.get("argumentList"), position)
            return PlannedOperation(kind, path, label, arguments=arguments)
        case "create":
            return _plan_create(body, path, models, label, position)
        case "delete":
            if not path.is_object_instance:
                raise InvalidInput(
                    f"operation {position}: delete needs an object instance path",
                    code=INVALID_PATH,
                )
            return PlannedOperation(kind, path, label)
        case _:  # writeAttributes
            return PlannedOperation(
                kind, path, label, attributes=_attributes(body.get("attributes"), position)
            )


def _plan_create(
    body: Mapping[str, Any], path: LwM2mPath, models: ModelLookup, label: str, position: int
) -> PlannedOperation:
    if not path.is_object:
        raise InvalidInput(f"operation {position}: create needs an object path", code=INVALID_PATH)
    instance_id = body.get("instanceId")
    if (
        isinstance(instance_id, bool)
        or not isinstance(instance_id, int)
        or not 0 <= instance_id < 65535
    ):
        raise InvalidInput(
            f"operation {position}: instanceId must be 0..65534", code=INVALID_PAYLOAD
        )
    raw_values = body.get("values") or {}
    if not isinstance(raw_values, dict):
        raise InvalidInput(
            f"operation {position}: values must map resource ids to text", code=INVALID_PAYLOAD
        )
    values: dict[int, str] = {}
    assert path.object_id is not None
    for resource_text, value in raw_values.items():
        if not str(resource_text).isdigit() or not isinstance(value, str | int | float):
            raise InvalidInput(
                f"operation {position}: values must map resource ids to text",
                code=INVALID_PAYLOAD,
            )
        resource_id = int(resource_text)
        if models.get_resource(path.object_id, resource_id) is None:
            raise InvalidInput(
                f"operation {position}: resource /{path.object_id}/x/{resource_id} is not in "
                "the object model",
                code=INVALID_PATH,
            )
        values[resource_id] = str(value)
    return PlannedOperation("create", path, label, instance_id=instance_id, values=values)


def _attributes(raw: object, position: int) -> tuple[tuple[str, str], ...]:
    if not isinstance(raw, list) or not raw:
        raise InvalidInput(
            f"operation {position}: attributes must be a non-empty list of {{name, value}}",
            code=INVALID_PAYLOAD,
        )
    pairs = []
    for item in raw:
        name = item.get("name") if isinstance(item, dict) else None
        value = item.get("value") if isinstance(item, dict) else None
        if name not in ATTRIBUTE_NAMES or not isinstance(value, str | int | float):
            raise InvalidInput(
                f"operation {position}: attributes are {', '.join(ATTRIBUTE_NAMES)} with values",
                code=INVALID_PAYLOAD,
            )
        pairs.append((str(name), str(value)))
    return tuple(pairs)


def _plan_firmware(body: Mapping[str, Any], position: int) -> PlannedOperation:
    resource_id = _text(body, "resourceId", position)
    method = enum_text(
        _text(body, "transferMethod", position, required=False) or "Pull", "TransferMethod"
    )
    protocol = enum_text(
        _text(body, "transferProtocol", position, required=False) or "COAP", "TransferProtocol"
    ).upper()
    if method not in TRANSFER_METHODS:
        raise InvalidInput(
            f"operation {position}: transferMethod is Pull or Push", code=INVALID_PAYLOAD
        )
    if protocol not in TRANSFER_PROTOCOLS:
        raise InvalidInput(
            f"operation {position}: transferProtocol is COAP or HTTP", code=INVALID_PAYLOAD
        )
    timeout = parse_duration(_text(body, "timeout", position, required=False) or "20m")
    request = FirmwareRequest(resource_id, method, protocol, timeout)
    return PlannedOperation(
        "firmwareUpdate", None, f"firmwareUpdate {resource_id}", firmware=request
    )


OPERATIONS = (
    "read",
    "write",
    "execute",
    "create",
    "delete",
    "writeAttributes",
    "observe",
    "cancelObserve",
    "firmwareUpdate",
)


def validate_operations(operations: object, models: ModelLookup) -> list[dict[str, Any]]:
    """The operations if each is valid for ``models`` (``InvalidInput`` otherwise)."""
    if not isinstance(operations, list) or not operations:
        raise InvalidInput("a task needs at least one operation", code=INVALID_PAYLOAD)
    if len(operations) > MAX_OPERATIONS:
        raise InvalidInput(f"at most {MAX_OPERATIONS} operations per task", code=INVALID_PAYLOAD)
    for position, operation in enumerate(operations, start=1):
        plan(operation, models, position)
    return list(operations)


# --- templates ----------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class TemplateParameter:
    name: str
    default: str | None = None


@dataclass(frozen=True, slots=True)
class Template:
    name: str
    description: str
    parameters: tuple[TemplateParameter, ...]
    operations: tuple[dict[str, Any], ...]
    builtin: bool = False

    def expand(self, given: Mapping[str, str]) -> list[dict[str, Any]]:
        """The operations with ``${parameter}`` replaced (``InvalidInput`` if one is missing)."""
        known = {parameter.name for parameter in self.parameters}
        unknown = sorted(set(given) - known)
        if unknown:
            raise InvalidInput(
                f"template {self.name!r} has no parameter {unknown[0][:64]!r}", code=INVALID_PAYLOAD
            )
        values = {p.name: p.default for p in self.parameters if p.default is not None}
        values.update(given)
        missing = [parameter.name for parameter in self.parameters if parameter.name not in values]
        if missing:
            raise InvalidInput(
                f"template {self.name!r} needs the parameter {missing[0]!r}", code=INVALID_PAYLOAD
            )
        return [_substitute(operation, values) for operation in self.operations]


def _substitute(data: Any, values: Mapping[str, str]) -> Any:
    if isinstance(data, str):
        return _TEMPLATE_PARAMETER.sub(
            lambda match: values.get(match.group(1), match.group(0)), data
        )
    if isinstance(data, list):
        return [_substitute(item, values) for item in data]
    if isinstance(data, dict):
        return {key: _substitute(value, values) for key, value in data.items()}
    return data


def template_parameters(raw: object) -> tuple[TemplateParameter, ...]:
    """Parameters of a domain template: ``[{"name": ..., "default"?: ...}]``."""
    if not isinstance(raw, list):
        raise InvalidInput("parameters must be a list of {name, default?}", code=INVALID_PAYLOAD)
    parameters = []
    for item in raw:
        name = item.get("name") if isinstance(item, dict) else None
        default = item.get("default") if isinstance(item, dict) else None
        if not isinstance(name, str) or not re.fullmatch(r"[A-Za-z_][A-Za-z0-9_]{0,63}", name):
            raise InvalidInput(
                "each parameter needs a name (letters, digits, _)", code=INVALID_PAYLOAD
            )
        if default is not None and not isinstance(default, str):
            raise InvalidInput(f"default of {name!r} must be text", code=INVALID_PAYLOAD)
        parameters.append(TemplateParameter(name, default))
    return tuple(parameters)


BUILTIN_TEMPLATES: Mapping[str, Template] = {
    template.name: template
    for template in (
        Template(
            "reboot",
            "Reboot the device (Execute Device.0.Reboot).",
            (),
            ({"execute": {"key": "/3/0/4"}},),
            builtin=True,
        ),
        Template(
            "factoryReset",
            "Factory-reset the device (Execute Device.0.Factory Reset).",
            (),
            ({"execute": {"key": "/3/0/5"}},),
            builtin=True,
        ),
        Template(
            "readResource",
            "Read one path; the report holds the values.",
            (TemplateParameter("key"),),
            ({"read": {"key": "${key}"}},),
            builtin=True,
        ),
        Template(
            "writeResource",
            "Write one resource (the value may use ${sv.name}).",
            (TemplateParameter("key"), TemplateParameter("value")),
            ({"write": {"key": "${key}", "value": "${value}"}},),
            builtin=True,
        ),
        Template(
            "Lwm2mFirmwareUpdate",
            "Update the firmware (object 5) with an uploaded image.",
            (
                TemplateParameter("resourceId"),
                TemplateParameter("transferMethod", "Pull"),
                TemplateParameter("transferProtocol", "COAP"),
                TemplateParameter("timeout", "20m"),
            ),
            (
                {
                    "firmwareUpdate": {
                        "resourceId": "${resourceId}",
                        "transferMethod": "${transferMethod}",
                        "transferProtocol": "${transferProtocol}",
                        "timeout": "${timeout}",
                    }
                },
            ),
            builtin=True,
        ),
    )
}


def uses_firmware(operations: Sequence[Mapping[str, Any]]) -> bool:
    return any("firmwareUpdate" in operation for operation in operations)
