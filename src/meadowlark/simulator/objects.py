"""In-memory LwM2M objects of one simulated device, with the Device Management semantics
a server sees (OMA-TS-LightweightM2M-Core 1.1 §6.3 / 1.2 §6.3).

Objects: 0 Security (one instance pointing at the server; hidden from the server, which
gets 4.04 for it, as the Security object is reserved to the Bootstrap-Server), 1 Server,
3 Device, 4 Connectivity Monitoring, 5 Firmware Update and 3303 Temperature. Types and
operations come from the built-in model catalog.

Per-device memory is kept small for fleets of tens of thousands: the resource tree is
built only on the first request that needs it; until then only the values that change
without a request (sensor reading, min/max, clock offset) live in slots.
"""

from __future__ import annotations

import time
import zlib
from collections.abc import Callable, Iterable, Iterator, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from enum import Enum
from functools import cache

from aiocoap.numbers.codes import Code

from meadowlark.lwm2m.codec.attributes import (
    InvalidAttributeError,
    NotificationAttributes,
    to_query,
)
from meadowlark.lwm2m.codec.link_format import LWM2M_RESOURCE_TYPE, Link, ParamValue
from meadowlark.lwm2m.model import ModelRegistry, ObjectModel, ResourceModel, builtin_registry
from meadowlark.lwm2m.node import (
    LwM2mObject,
    MultiResource,
    Node,
    ObjectInstance,
    ResourceInstance,
    SingleResource,
    Value,
    check_value,
    time_to_epoch,
)
from meadowlark.lwm2m.path import LwM2mPath
from meadowlark.simulator.firmware import UPDATE_FAILED, FirmwareBehaviour, ImageReceiver

SECURITY, SERVER, DEVICE, CONNECTIVITY, FIRMWARE, TEMPERATURE = 0, 1, 3, 4, 5, 3303
SUPPORTED_OBJECTS = (SECURITY, SERVER, DEVICE, CONNECTIVITY, FIRMWARE, TEMPERATURE)
MANDATORY_OBJECTS = frozenset({SECURITY, SERVER, DEVICE})
"""Objects whose instances a server may not delete (Core 1.1 §6.3.6: 4.05 for such targets)."""

CURRENT_TIME = LwM2mPath(DEVICE, 0, 13)
SENSOR_VALUE = LwM2mPath(TEMPERATURE, 0, 5700)

OBJECT_VERSIONS: Mapping[str, Mapping[int, str]] = {
    "1.0": {},
    "1.1": {SERVER: "1.1", DEVICE: "1.1", CONNECTIVITY: "1.2", FIRMWARE: "1.1", TEMPERATURE: "1.1"},
    "1.2": {SERVER: "1.2", DEVICE: "1.2", CONNECTIVITY: "1.3", FIRMWARE: "1.2", TEMPERATURE: "1.1"},
}
"""Object versions a client of each LwM2M version announces; absent means 1.0."""


class FirmwareState(int, Enum):
    """Firmware Update /5/0/3 (Core Appendix E.6)."""

    IDLE = 0
    DOWNLOADING = 1
    DOWNLOADED = 2
    UPDATING = 3


class FirmwareResult(int, Enum):
    """Firmware Update /5/0/5 (subset; see ``simulator.firmware`` for failure codes)."""

    INITIAL = 0
    SUCCESS = 1
    INVALID_URI = 7
    UNSUPPORTED_PROTOCOL = 9


FIRMWARE_SCHEMES = frozenset({"coap", "http", "https"})
"""Package URI schemes the simulated device downloads from."""


class Effect(Enum):
    """What an Execute asks the device (not the object store) to do."""

    NONE = "none"
    REBOOT = "reboot"
    REGISTRATION_UPDATE = "registration-update"
    FIRMWARE_DOWNLOAD = "firmware-download"
    FIRMWARE_UPDATE = "firmware-update"


class OperationError(Exception):
    """A request the device refuses; ``code`` is the CoAP response code to answer with."""

    def __init__(self, code: Code, message: str) -> None:
        super().__init__(message)
        self.code = code


def _instance_ids(path: LwM2mPath) -> tuple[int, int]:
    """Object and instance id of a path to an object instance or below."""
    object_id, instance_id = path.ids[:2]
    return object_id, instance_id


def _resource_ids(path: LwM2mPath) -> tuple[int, int, int]:
    """Object, instance and resource id of a path to a resource or a resource instance."""
    object_id, instance_id, resource_id = path.ids[:3]
    return object_id, instance_id, resource_id


@cache
def models() -> ModelRegistry:
    """The catalog shared (read-only) by every simulated device."""
    return builtin_registry()


@dataclass(frozen=True, slots=True)
class DeviceIdentity:
    """Fixed facts of a simulated device; one instance may be shared by many devices."""

    manufacturer: str = "Meadowlark"
    model_number: str = "Meadowlark Simulator"
    firmware_version: str = "1.0.0"
    hardware_version: str = "1.0"
    device_type: str = "temperature-sensor"
    serial_number: str = ""
    """The Device object's serial number (/3/0/2), e.g. a cellular module's IMEI; empty:
    ``SN`` and a checksum of the endpoint name."""


Resources = dict[int, Value | dict[int, Value]]
"""Resource id -> value, or resource instance id -> value for multiple resources."""

_DEFAULT_IDENTITY = DeviceIdentity()
_DEFAULT_FIRMWARE = FirmwareBehaviour()


class DeviceObjects:
    """The object instances of one device and the operations a LwM2M Server may apply.

    Every operation raises ``OperationError`` with the response code the Core
    specification gives for the refusal: 4.04 for unknown paths (and the Security
    object), 4.05 for operations the resource does not support, 4.00 for bad requests.
    """

    __slots__ = (
        "endpoint",
        "server_uri",
        "short_server_id",
        "lifetime",
        "binding",
        "lwm2m_version",
        "identity",
        "clock",
        "live_clock",
        "temperature",
        "min_measured",
        "max_measured",
        "_clock_offset",
        "_frozen_time",
        "firmware",
        "_firmware_version",
        "_tree",
        "_attributes",
    )

    def __init__(
        self,
        endpoint: str,
        server_uri: str,
        *,
        short_server_id: int = 1,
        lifetime: int = 86400,
        binding: str = "U",
        lwm2m_version: str = "1.1",
        identity: DeviceIdentity = _DEFAULT_IDENTITY,
        clock: Callable[[], float] = time.time,
        live_clock: bool = True,
        temperature: float = 21.5,
        firmware: FirmwareBehaviour = _DEFAULT_FIRMWARE,
    ) -> None:
        self.endpoint = endpoint
        self.server_uri = server_uri
        self.short_server_id = short_server_id
        self.lifetime = lifetime
        self.binding = binding
        self.lwm2m_version = lwm2m_version
        self.identity = identity
        self.clock = clock
        self.live_clock = live_clock
        """True: /3/0/13 follows the clock. False: it changes only on ``refresh_clock``."""
        self.temperature = temperature
        self.min_measured = temperature
        self.max_measured = temperature
        self._clock_offset = 0.0
        self._frozen_time = clock()
        self.firmware = firmware
        self._firmware_version: str | None = None
        """Version of the downloaded package, if its header named one."""
        self._tree: dict[int, dict[int, Resources]] | None = None
        self._attributes: dict[LwM2mPath, NotificationAttributes] | None = None

    # --- values that change on their own -----------------------------------------------

    def current_time(self) -> datetime:
        now = self.clock() if self.live_clock else self._frozen_time
        return datetime.fromtimestamp(int(now + self._clock_offset), tz=UTC)

    def refresh_clock(self) -> None:
        """Move a non-live /3/0/13 to the present."""
        self._frozen_time = self.clock()

    def set_temperature(self, value: float) -> None:
        self.temperature = value
        self.min_measured = min(self.min_measured, value)
        self.max_measured = max(self.max_measured, value)

    # --- structure ---------------------------------------------------------------------

    def object_ids(self) -> list[int]:
        return list(SUPPORTED_OBJECTS)

    def instance_ids(self, object_id: int) -> list[int]:
        if self._tree is None:
            return [0] if object_id in SUPPORTED_OBJECTS else []
        return sorted(self._tree.get(object_id, {}))

    def object_version(self, object_id: int) -> str:
        return OBJECT_VERSIONS.get(self.lwm2m_version, {}).get(object_id, "1.0")

    def registration_links(self, content_format: int | None) -> list[Link]:
        """The Register/Update payload links (Core 1.1 §6.2.1).

        1.1+: the root link ``</>;rt="oma.lwm2m"`` with ``ct`` when a preferred format is
        given, then ``</1>;ver=1.1`` for objects not at version 1.0 and one link per
        instance. The Security object is never listed. 1.0 lists instances only.
        """
        links: list[Link] = []
        modern = self.lwm2m_version != "1.0"
        if modern:
            root: dict[str, ParamValue] = {"rt": LWM2M_RESOURCE_TYPE}
            if content_format is not None:
                root["ct"] = str(content_format)
            links.append(Link("/", root))
        for object_id in self.object_ids():
            if object_id == SECURITY:
                continue
            version = self.object_version(object_id)
            instances = self.instance_ids(object_id)
            if modern and version != "1.0":
                links.append(Link(f"/{object_id}", {"ver": version}))
            elif not instances:
                links.append(Link(f"/{object_id}"))
            links.extend(Link(f"/{object_id}/{instance_id}") for instance_id in instances)
        return links

    # --- Read ------------------------------------------------------------------------

    def read(self, path: LwM2mPath) -> Node:
        """The readable content at ``path`` (Core 1.1 §6.3.1)."""
        if path.is_root:
            raise OperationError(Code.METHOD_NOT_ALLOWED, "Read on the root path")
        object_model = self._object_model(path)
        tree = self._materialized()
        if path.is_object:
            instances = tree[object_model.id]
            return LwM2mObject(
                object_model.id,
                {iid: self._read_instance(object_model, iid) for iid in sorted(instances)},
            )
        self._instance(path)
        instance_id = path.instance_id
        assert instance_id is not None  # neither the root nor an object: depth 2 or more
        if path.is_object_instance:
            return self._read_instance(object_model, instance_id)
        resource_model = self._resource_model(object_model, path)
        self._present(path)
        if not resource_model.operations.readable:
            raise OperationError(Code.METHOD_NOT_ALLOWED, f"{path} is not readable")
        resource = self._read_resource(object_model, instance_id, resource_model)
        resource_instance_id = path.resource_instance_id
        if resource_instance_id is None:
            return resource
        if not isinstance(resource, MultiResource):
            raise OperationError(Code.NOT_FOUND, f"{path}: {path.parent} has no instances")
        if resource_instance_id not in resource.instances:
            raise OperationError(Code.NOT_FOUND, f"{path} does not exist")
        return ResourceInstance(
            resource_instance_id, resource.type, resource.instances[resource_instance_id]
        )

    def _read_instance(self, object_model: ObjectModel, instance_id: int) -> ObjectInstance:
        stored = self._materialized()[object_model.id][instance_id]
        resources = {}
        for resource_id in sorted(stored):
            resource_model = object_model.resources[resource_id]
            if resource_model.operations.readable:
                resources[resource_id] = self._read_resource(
                    object_model, instance_id, resource_model
                )
        return ObjectInstance(instance_id, resources)

    def _read_resource(
        self, object_model: ObjectModel, instance_id: int, resource_model: ResourceModel
    ) -> SingleResource | MultiResource:
        path = LwM2mPath(object_model.id, instance_id, resource_model.id)
        value = self._value(path)
        if isinstance(value, dict):
            return MultiResource(resource_model.id, resource_model.type, dict(value))
        return SingleResource(resource_model.id, resource_model.type, value)

    def _value(self, path: LwM2mPath) -> Value | dict[int, Value]:
        if path == CURRENT_TIME:
            return self.current_time()
        if path.object_id == TEMPERATURE and path.instance_id == 0:
            dynamic = {5700: self.temperature, 5601: self.min_measured, 5602: self.max_measured}
            if path.resource_id in dynamic:
                return dynamic[path.resource_id]
        object_id, instance_id, resource_id = _resource_ids(path)
        return self._materialized()[object_id][instance_id][resource_id]

    # --- Write -----------------------------------------------------------------------

    def write(self, path: LwM2mPath, node: Node, *, replace: bool) -> Effect:
        """Write (Core 1.1 §6.3.3): ``replace`` for PUT, partial update for POST.

        Returns ``Effect.FIRMWARE_DOWNLOAD`` when a firmware package URI was written.
        """
        updates = self._write_plan(path, node, replace=replace)
        effect = Effect.NONE
        for resource_path, value in updates:
            effect = self._store(resource_path, value) or effect
        if replace and path.is_object_instance and isinstance(node, ObjectInstance):
            self._drop_unwritten(path, [resource_path for resource_path, _ in updates])
        return effect

    def write_composite(self, nodes: Mapping[LwM2mPath, Node]) -> Effect:
        """Write-Composite (Core 1.1 §6.3.8): all targets are checked before any is written."""
        plans = [self._write_plan(path, node, replace=True) for path, node in nodes.items()]
        effect = Effect.NONE
        for plan in plans:
            for resource_path, value in plan:
                effect = self._store(resource_path, value) or effect
        return effect

    def _write_plan(
        self, path: LwM2mPath, node: Node, *, replace: bool
    ) -> list[tuple[LwM2mPath, Value | dict[int, Value]]]:
        if path.depth < 2:
            raise OperationError(Code.METHOD_NOT_ALLOWED, f"Write on {path or '/'}")
        object_model = self._object_model(path)
        self._instance(path)
        match node:
            case ObjectInstance() if path.is_object_instance and node.id == path.instance_id:
                resources = list(node.resources.values())
            case SingleResource() | MultiResource() if (
                path.is_resource and node.id == path.resource_id
            ):
                resources = [node]
            case ResourceInstance() if (
                path.is_resource_instance and node.id == path.resource_instance_id
            ):
                resource_model = self._resource_model(object_model, path)
                self._check_writable(path, resource_model)
                if not resource_model.multiple:
                    raise OperationError(Code.NOT_FOUND, f"{path.parent} has no instances")
                return [(path, self._checked(path, resource_model, node.value))]
            case _:
                raise OperationError(Code.BAD_REQUEST, f"payload does not match {path}")
        plan: list[tuple[LwM2mPath, Value | dict[int, Value]]] = []
        for resource in resources:
            resource_path = LwM2mPath(path.object_id, path.instance_id, resource.id)
            resource_model = self._resource_model(object_model, resource_path)
            self._check_writable(resource_path, resource_model)
            if isinstance(resource, MultiResource) != resource_model.multiple:
                raise OperationError(Code.BAD_REQUEST, f"{resource_path}: wrong multiplicity")
            if isinstance(resource, MultiResource):
                values = {
                    rid: self._checked(resource_path, resource_model, value)
                    for rid, value in resource.instances.items()
                }
                if not replace:
                    plan.extend((resource_path.child(rid), v) for rid, v in values.items())
                else:
                    plan.append((resource_path, values))
            else:
                plan.append(
                    (resource_path, self._checked(resource_path, resource_model, resource.value))
                )
        return plan

    def _check_writable(self, path: LwM2mPath, resource_model: ResourceModel) -> None:
        if not resource_model.operations.writable:
            raise OperationError(Code.METHOD_NOT_ALLOWED, f"{path} is not writable")

    @staticmethod
    def _checked(path: LwM2mPath, resource_model: ResourceModel, value: Value) -> Value:
        try:
            return check_value(resource_model.type, value)
        except (TypeError, ValueError) as error:
            raise OperationError(Code.BAD_REQUEST, f"{path}: {error}") from error

    def _store(self, path: LwM2mPath, value: Value | dict[int, Value]) -> Effect | None:
        """Apply one checked write; returns an effect for resources with side effects."""
        object_id, instance_id, resource_id = _resource_ids(path)
        resources = self._materialized()[object_id][instance_id]
        if path.resource_instance_id is not None:
            current = resources.setdefault(resource_id, {})
            assert isinstance(current, dict)
            assert not isinstance(value, dict)  # a resource instance holds one value
            current[path.resource_instance_id] = value
            return None
        if path == CURRENT_TIME and isinstance(value, datetime):
            now = self.clock() if self.live_clock else self._frozen_time
            self._clock_offset = time_to_epoch(value) - now
            return None
        resources[resource_id] = value
        if object_id == SERVER and resource_id == 1 and isinstance(value, int):
            self.lifetime = value
        if object_id == SERVER and resource_id == 7 and isinstance(value, str):
            self.binding = value
        if object_id == FIRMWARE:
            return self._firmware_written(resource_id, value)
        return None

    def _drop_unwritten(self, path: LwM2mPath, written: Iterable[LwM2mPath]) -> None:
        """Replace semantics: optional writable resources absent from the payload go away."""
        object_model = self._object_model(path)
        written_ids = {resource_path.resource_id for resource_path in written}
        resources = self._instance(path)
        for resource_id in list(resources):
            resource_model = object_model.resources[resource_id]
            if (
                resource_id not in written_ids
                and resource_model.operations.writable
                and not resource_model.mandatory
                and LwM2mPath(path.object_id, path.instance_id, resource_id) != CURRENT_TIME
            ):
                del resources[resource_id]

    def _firmware_written(self, resource_id: int, value: Value | dict[int, Value]) -> Effect:
        """Package (/5/0/0, pushed) or Package URI (/5/0/1, to pull) written (OMA 5.xml)."""
        resources = self._materialized()[FIRMWARE][0]
        resources[0] = b""  # the package is checked here, never kept
        if value in ("", b""):
            # An empty Package or Package URI resets the state machine.
            resources[3] = FirmwareState.IDLE.value
            resources[5] = FirmwareResult.INITIAL.value
            self._firmware_version = None
            return Effect.NONE
        if resource_id == 0 and isinstance(value, bytes):
            receiver = ImageReceiver()
            receiver.feed(value)
            self._package_received(receiver, len(value))
            return Effect.NONE
        if resource_id == 1:
            scheme, separator, rest = str(value).partition("://")
            if not separator or not scheme or not rest:
                resources[3] = FirmwareState.IDLE.value
                resources[5] = FirmwareResult.INVALID_URI.value
                return Effect.NONE
            if scheme.lower() not in FIRMWARE_SCHEMES:
                resources[3] = FirmwareState.IDLE.value
                resources[5] = FirmwareResult.UNSUPPORTED_PROTOCOL.value
                return Effect.NONE
            resources[3] = FirmwareState.DOWNLOADING.value
            resources[5] = FirmwareResult.INITIAL.value
            return Effect.FIRMWARE_DOWNLOAD
        return Effect.NONE

    @property
    def package_uri(self) -> str:
        return str(self._materialized()[FIRMWARE][0][1])

    def firmware_downloaded(
        self, receiver: ImageReceiver, expected_size: int | None = None
    ) -> None:
        """A pull ended with ``receiver``'s bytes (checked against ``expected_size``)."""
        if self._materialized()[FIRMWARE][0][3] == FirmwareState.DOWNLOADING.value:
            self._package_received(receiver, expected_size)

    def firmware_download_failed(self, result: int) -> None:
        resources = self._materialized()[FIRMWARE][0]
        if resources[3] == FirmwareState.DOWNLOADING.value:
            resources[3] = FirmwareState.IDLE.value
            resources[5] = result

    def _package_received(self, receiver: ImageReceiver, expected_size: int | None) -> None:
        resources = self._materialized()[FIRMWARE][0]
        problem = self.firmware.download_failure or receiver.problem(expected_size)
        if problem is not None:
            resources[3] = FirmwareState.IDLE.value
            resources[5] = problem
            self._firmware_version = None
            return
        resources[3] = FirmwareState.DOWNLOADED.value
        resources[5] = FirmwareResult.INITIAL.value
        self._firmware_version = receiver.version

    def finish_firmware_update(self) -> None:
        """The update ends: the package's version (or the next one) and Update Result 1,
        or, when told to fail, State Downloaded and Update Result 8."""
        tree = self._materialized()
        firmware = tree[FIRMWARE][0]
        if firmware[3] != FirmwareState.UPDATING.value:
            return
        if self.firmware.update_failure:
            firmware[3] = FirmwareState.DOWNLOADED.value
            firmware[5] = UPDATE_FAILED
            return
        firmware[3] = FirmwareState.IDLE.value
        firmware[5] = FirmwareResult.SUCCESS.value
        version = self._firmware_version
        if version is None:
            current = str(tree[DEVICE][0][3])
            head, dot, last = current.rpartition(".")
            version = f"{head}{dot}{int(last) + 1}" if last.isdigit() else current + ".1"
        tree[DEVICE][0][3] = version
        self._firmware_version = None

    # --- Execute ---------------------------------------------------------------------

    def execute(self, path: LwM2mPath, arguments: bytes = b"") -> Effect:
        """Execute (Core 1.1 §6.3.4); ``arguments`` must be the text of §5.4.5 if given."""
        if not path.is_resource:
            raise OperationError(Code.METHOD_NOT_ALLOWED, f"Execute on {path or '/'}")
        object_model = self._object_model(path)
        self._instance(path)
        resource_model = self._resource_model(object_model, path)
        self._present(path)
        if not resource_model.operations.executable:
            raise OperationError(Code.METHOD_NOT_ALLOWED, f"{path} is not executable")
        _check_execute_arguments(arguments)
        target = (path.object_id, path.resource_id)
        if target == (DEVICE, 4):
            return Effect.REBOOT
        if target == (DEVICE, 5):
            self._tree = None
            self._attributes = None
            return Effect.REBOOT
        if target == (DEVICE, 12):
            self._materialized()[DEVICE][0][11] = {0: 0}
        elif target == (SERVER, 8):
            return Effect.REGISTRATION_UPDATE
        elif target == (FIRMWARE, 2):
            firmware = self._materialized()[FIRMWARE][0]
            if firmware[3] != FirmwareState.DOWNLOADED.value:
                raise OperationError(Code.METHOD_NOT_ALLOWED, "no firmware downloaded")
            firmware[3] = FirmwareState.UPDATING.value
            firmware[5] = FirmwareResult.INITIAL.value
            return Effect.FIRMWARE_UPDATE
        elif target == (TEMPERATURE, 5605):
            if path.instance_id == 0:
                self.min_measured = self.max_measured = self.temperature
            else:
                resources = self._instance(path)
                resources[5601] = resources[5602] = resources.get(5700, 0.0)
        return Effect.NONE

    # --- Create / Delete -------------------------------------------------------------

    def create(self, object_id: int, instance: ObjectInstance) -> int:
        """Create (Core 1.1 §6.3.5); returns the id of the new instance."""
        path = LwM2mPath(object_id)
        object_model = self._object_model(path)
        tree = self._materialized()
        instances = tree[object_id]
        if instance.id in instances:
            raise OperationError(Code.BAD_REQUEST, f"/{object_id}/{instance.id} already exists")
        if not object_model.multiple and instances:
            raise OperationError(Code.BAD_REQUEST, f"/{object_id} is a single-instance object")
        resources: Resources = {}
        for resource in instance.resources.values():
            resource_path = LwM2mPath(object_id, instance.id, resource.id)
            resource_model = self._resource_model(object_model, resource_path)
            if resource_model.operations.executable:
                raise OperationError(Code.BAD_REQUEST, f"{resource_path} is executable")
            if isinstance(resource, MultiResource):
                resources[resource.id] = {
                    rid: self._checked(resource_path, resource_model, value)
                    for rid, value in resource.instances.items()
                }
            else:
                value = self._checked(resource_path, resource_model, resource.value)
                resources[resource.id] = value
        for resource_model in object_model.resources.values():
            writable = resource_model.operations.writable
            if resource_model.mandatory and writable and resource_model.id not in resources:
                raise OperationError(
                    Code.BAD_REQUEST, f"mandatory resource {resource_model.id} missing"
                )
        for resource_model in object_model.resources.values():
            if resource_model.operations.executable:
                resources[resource_model.id] = None
        instances[instance.id] = resources
        return instance.id

    def free_instance_id(self, object_id: int) -> int:
        used = set(self.instance_ids(object_id))
        return next(candidate for candidate in range(65535) if candidate not in used)

    def delete(self, path: LwM2mPath) -> None:
        """Delete (Core 1.1 §6.3.6): object instances only; mandatory objects refuse."""
        if not path.is_object_instance:
            raise OperationError(Code.METHOD_NOT_ALLOWED, f"Delete on {path or '/'}")
        self._object_model(path)
        self._instance(path)
        if path.object_id in MANDATORY_OBJECTS:
            raise OperationError(Code.METHOD_NOT_ALLOWED, f"{path} may not be deleted")
        object_id, instance_id = _instance_ids(path)
        del self._materialized()[object_id][instance_id]
        if self._attributes:
            for attributed in [p for p in self._attributes if p.starts_with(path)]:
                del self._attributes[attributed]

    # --- Discover and attributes -----------------------------------------------------

    def discover(self, path: LwM2mPath) -> list[Link]:
        """Discover (Core 1.1 §6.3.2): the paths under ``path`` with their attributes.

        A resource link carries ``dim`` when multiple; a Discover on a resource lists its
        resource instances too (1.1 and later).
        """
        if path.is_root or path.is_resource_instance:
            raise OperationError(Code.BAD_REQUEST, f"Discover on {path or '/'}")
        object_model = self._object_model(path)
        object_id = object_model.id
        links: list[Link] = []
        if path.is_object:
            params = self._attribute_params(path)
            version = self.object_version(object_id)
            if version != "1.0" and self.lwm2m_version != "1.0":
                params = {"ver": version, **params}
            links.append(Link(str(path), params))
            instance_ids = self.instance_ids(object_id)
        else:
            self._instance(path)
            instance_ids = [_instance_ids(path)[1]]
        tree = self._materialized()
        for instance_id in instance_ids:
            instance_path = LwM2mPath(object_id, instance_id)
            if path.resource_id is not None:  # a resource: resource instances were refused
                self._resource_model(object_model, path)
                self._present(path)
                resource_ids = [path.resource_id]
            else:
                links.append(Link(str(instance_path), self._attribute_params(instance_path)))
                resource_ids = sorted(tree[object_id][instance_id])
            for resource_id in resource_ids:
                links.extend(self._resource_links(instance_path.child(resource_id), path))
        return links

    def _resource_links(self, path: LwM2mPath, requested: LwM2mPath) -> Iterator[Link]:
        params = self._attribute_params(path)
        value = self._value(path)
        if isinstance(value, dict):
            params = {"dim": str(len(value)), **params}
        yield Link(str(path), params)
        if requested == path and isinstance(value, dict) and self.lwm2m_version != "1.0":
            for instance_id in sorted(value):
                instance_path = path.child(instance_id)
                yield Link(str(instance_path), self._attribute_params(instance_path))

    def _attribute_params(self, path: LwM2mPath) -> dict[str, ParamValue]:
        attributes = self.attributes_at(path)
        if attributes is None:
            return {}
        params: dict[str, ParamValue] = {}
        for option in to_query(attributes):
            name, _, value = option.partition("=")
            params[name] = value
        return params

    def write_attributes(self, path: LwM2mPath, update: NotificationAttributes) -> None:
        """Write-Attributes (Core 1.1 §6.3.7); conflicts with kept values give 4.00."""
        if path.is_root:
            raise OperationError(Code.METHOD_NOT_ALLOWED, "Write-Attributes on the root path")
        self._existing(path)
        current = self.attributes_at(path) or NotificationAttributes()
        try:
            merged = current.merged_with(update)
        except InvalidAttributeError as error:
            raise OperationError(Code.BAD_REQUEST, str(error)) from error
        if self._attributes is None:
            self._attributes = {}
        if merged.is_empty():
            self._attributes.pop(path, None)
        else:
            self._attributes[path] = merged

    def attributes_at(self, path: LwM2mPath) -> NotificationAttributes | None:
        """Attributes written at exactly ``path``."""
        return None if self._attributes is None else self._attributes.get(path)

    def attribute_chain(self, path: LwM2mPath) -> list[NotificationAttributes]:
        """Attributes from ``path`` up to its object, most specific first."""
        chain = []
        current = path
        while not current.is_root:
            attributes = self.attributes_at(current)
            if attributes is not None:
                chain.append(attributes)
            current = current.parent
        return chain

    def default_periods(self) -> tuple[int | None, int | None]:
        """Default pmin and pmax from the Server object (/1/x/2 and /1/x/3)."""
        for resources in self._materialized()[SERVER].values():
            if resources.get(0) == self.short_server_id:
                pmin, pmax = resources.get(2), resources.get(3)
                return (
                    pmin if isinstance(pmin, int) else None,
                    pmax if isinstance(pmax, int) else None,
                )
        return None, None

    def _existing(self, path: LwM2mPath) -> None:
        object_model = self._object_model(path)
        if path.depth >= 2:
            self._instance(path)
        if path.depth >= 3:
            self._resource_model(object_model, path)
            self._present(path)
        if path.depth == 4:
            value = self._value(path.parent)
            if not isinstance(value, dict) or path.resource_instance_id not in value:
                raise OperationError(Code.NOT_FOUND, f"{path} does not exist")

    # --- lookups ---------------------------------------------------------------------

    def _object_model(self, path: LwM2mPath) -> ObjectModel:
        object_id = path.object_id
        if object_id is None or object_id not in SUPPORTED_OBJECTS or object_id == SECURITY:
            raise OperationError(Code.NOT_FOUND, f"object {path} is not supported")
        model = models().get_object(object_id)
        assert model is not None
        return model

    def _instance(self, path: LwM2mPath) -> Resources:
        object_id, instance_id = _instance_ids(path)
        instances = self._materialized()[object_id]
        if instance_id not in instances:
            raise OperationError(Code.NOT_FOUND, f"/{object_id}/{instance_id} absent")
        return instances[instance_id]

    @staticmethod
    def _resource_model(object_model: ObjectModel, path: LwM2mPath) -> ResourceModel:
        resource_id = path.resource_id
        resource_model = None if resource_id is None else object_model.resources.get(resource_id)
        if resource_model is None:
            raise OperationError(Code.NOT_FOUND, f"{path} is not defined")
        return resource_model

    def _present(self, path: LwM2mPath) -> None:
        """4.04 unless the instance holds the resource of ``path``."""
        object_id, instance_id, resource_id = _resource_ids(path)
        if resource_id not in self._instance(path):
            resource_path = LwM2mPath(object_id, instance_id, resource_id)
            raise OperationError(Code.NOT_FOUND, f"{resource_path} absent")

    def security_value(self, resource_id: int) -> Value:
        """A resource of the Security instance, for bootstrap-side inspection in tests."""
        value = self._materialized()[SECURITY][0][resource_id]
        assert not isinstance(value, dict)
        return value

    def is_materialized(self) -> bool:
        return self._tree is not None

    def _materialized(self) -> dict[int, dict[int, Resources]]:
        if self._tree is None:
            self._tree = self._initial_tree()
        return self._tree

    def _initial_tree(self) -> dict[int, dict[int, Resources]]:
        identity = self.identity
        serial = identity.serial_number or f"SN{zlib.crc32(self.endpoint.encode()):08X}"
        supported_binding = "UQ" if self.lwm2m_version == "1.0" else "U"
        return {
            SECURITY: {
                0: {
                    0: self.server_uri,
                    1: False,
                    2: 3,
                    3: b"",
                    4: b"",
                    5: b"",
                    10: self.short_server_id,
                    11: 1,
                }
            },
            SERVER: {
                0: {
                    0: self.short_server_id,
                    1: self.lifetime,
                    2: 0,
                    5: 86400,
                    6: True,
                    7: self.binding,
                    8: None,
                }
            },
            DEVICE: {
                0: {
                    0: identity.manufacturer,
                    1: identity.model_number,
                    2: serial,
                    3: identity.firmware_version,
                    4: None,
                    5: None,
                    6: {0: 1, 1: 5},
                    7: {0: 3800, 1: 5000},
                    8: {0: 125, 1: 900},
                    9: 95,
                    10: 512,
                    11: {0: 0},
                    12: None,
                    13: None,
                    14: "+00:00",
                    15: "Etc/UTC",
                    16: supported_binding,
                    17: identity.device_type,
                    18: identity.hardware_version,
                    19: identity.firmware_version,
                    20: 0,
                    21: 1024,
                }
            },
            CONNECTIVITY: {
                0: {
                    0: 6,
                    1: {0: 6, 1: 7},
                    2: -71,
                    3: 80,
                    4: {0: "127.0.0.1"},
                    7: {0: "internet"},
                    8: zlib.crc32(self.endpoint.encode()) & 0xFFFFFFF,
                    9: 1,
                    10: 260,
                }
            },
            FIRMWARE: {
                0: {
                    0: b"",
                    1: "",
                    2: None,
                    3: FirmwareState.IDLE.value,
                    5: FirmwareResult.INITIAL.value,
                    6: "",
                    7: "",
                    8: {0: 0, 1: 2, 2: 3},
                    9: 2,
                }
            },
            TEMPERATURE: {
                0: {
                    5601: None,
                    5602: None,
                    5603: -40.0,
                    5604: 85.0,
                    5605: None,
                    5700: None,
                    5701: "Cel",
                    5750: "room",
                }
            },
        }


def _check_execute_arguments(arguments: bytes) -> None:
    """Core 1.1 §5.4.5: ``0='text',3`` — digits, optionally ``='value'``, comma separated."""
    if not arguments:
        return
    try:
        text = arguments.decode("ascii")
    except UnicodeDecodeError as error:
        raise OperationError(Code.BAD_REQUEST, "execute arguments are not ASCII") from error
    position = 0
    while True:
        start = position
        while position < len(text) and text[position].isdigit():
            position += 1
        if position == start or position - start > 1:
            raise OperationError(Code.BAD_REQUEST, f"bad execute argument at {start}")
        if position < len(text) and text[position] == "=":
            if text[position + 1 : position + 2] != "'":
                raise OperationError(Code.BAD_REQUEST, "execute argument value must be quoted")
            end = text.find("'", position + 2)
            if end < 0:
                raise OperationError(Code.BAD_REQUEST, "unterminated execute argument value")
            position = end + 1
        if position == len(text):
            return
        if text[position] != ",":
            raise OperationError(Code.BAD_REQUEST, f"bad execute argument at {position}")
        position += 1
