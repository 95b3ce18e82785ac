"""The client side of LwM2M bootstrap for simulated devices (Core 1.1/1.2 §6.1).

A device that starts with only its bootstrap account (a Security instance with
Bootstrap-Server true) asks ``POST /bs?ep=NAME&pct=FORMAT``, then lets the bootstrap
server Discover, Read (objects 1 and 2 only), Delete and Write its Security (0) and
Server (1) objects until Bootstrap-Finish, which it accepts only if it now holds a
management account (Security instance with Bootstrap-Server false and a matching Server
instance; 4.06 otherwise). With ``pack`` it sends Bootstrap-Pack-Request
(``GET /bspack?ep=NAME``, 1.2) instead and applies the SenML CBOR pack it gets.

A ``coaps://`` bootstrap server is reached over DTLS with the device's bootstrap
credentials (``simulator.dtls``); the bootstrap server's own requests then come over
that session.

What it ends with is a ``ManagementAccount``: the server URI, short server id, lifetime,
binding and credentials that ``SimulatedDevice`` registers with. PSK credentials go to
the DTLS client as they are (``psk_identity``, ``psk_key``).
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING
from urllib.parse import urlsplit

from aiocoap import Message
from aiocoap.numbers.codes import Code

from meadowlark.lwm2m.codec import registry, senml_cbor
from meadowlark.lwm2m.codec.errors import CodecError
from meadowlark.lwm2m.codec.formats import ContentFormat
from meadowlark.lwm2m.codec.link_format import Link, encode_links
from meadowlark.lwm2m.node import (
    LwM2mObject,
    MultiResource,
    Node,
    ObjectInstance,
    SingleResource,
    Value,
)
from meadowlark.lwm2m.path import InvalidPathError, LwM2mPath
from meadowlark.simulator.client import (
    RegistrationError,
    SimulatedDevice,
    local_host_for,
    resolve_server,
)
from meadowlark.simulator.coap import Address, CoapEndpoint, CoapError
from meadowlark.simulator.objects import models

if TYPE_CHECKING:
    from meadowlark.simulator.dtls import DtlsCredentials

log = logging.getLogger(__name__)

SECURITY = 0
SERVER = 1
ACCESS_CONTROL = 2
NOSEC = 3
PSK = 0
BOOTSTRAP_FORMATS = (
    ContentFormat.SENML_CBOR,
    ContentFormat.SENML_JSON,
    ContentFormat.LWM2M_CBOR,
    ContentFormat.TLV,
)


class BootstrapError(Exception):
    """The bootstrap did not give the device a usable management account."""


@dataclass(frozen=True, slots=True)
class ManagementAccount:
    """The management server account a bootstrap left on the device."""

    server_uri: str
    short_server_id: int
    lifetime: int
    binding: str
    security_mode: int
    psk_identity: bytes = field(default=b"", repr=False)
    psk_key: bytes = field(default=b"", repr=False)

    @property
    def needs_dtls(self) -> bool:
        return self.security_mode != NOSEC


Instances = dict[int, dict[int, Value | dict[int, Value]]]


class BootstrapObjects:
    """Objects 0 (Security) and 1 (Server) as the bootstrap server may change them."""

    def __init__(self, bootstrap_uri: str, lwm2m_version: str = "1.1") -> None:
        self.lwm2m_version = lwm2m_version
        self.objects: dict[int, Instances] = {
            SECURITY: {0: {0: bootstrap_uri, 1: True, 2: NOSEC, 3: b"", 4: b"", 5: b""}},
            SERVER: {},
        }

    def bootstrap_instances(self) -> set[int]:
        return {iid for iid, res in self.objects[SECURITY].items() if res.get(1) is True}

    def delete(self, path: LwM2mPath) -> None:
        """Bootstrap-Delete ``/``, ``/0``, ``/1`` or one of their instances; the
        bootstrap account's Security instance always stays."""
        if path.depth > 2 or (path.object_id not in (None, SECURITY, SERVER)):
            raise _Refused(Code.BAD_REQUEST, f"Bootstrap-Delete on {path}")
        keep = self.bootstrap_instances()
        for object_id, instances in self.objects.items():
            if path.object_id is not None and object_id != path.object_id:
                continue
            for instance_id in list(instances):
                if path.instance_id is not None and instance_id != path.instance_id:
                    continue
                if object_id == SECURITY and instance_id in keep:
                    continue
                del instances[instance_id]

    def write(self, path: LwM2mPath, node: Node) -> None:
        """Bootstrap-Write: creates or overwrites instances (no access checks)."""
        if path.object_id not in (SECURITY, SERVER) or path.depth not in (1, 2, 3):
            raise _Refused(Code.BAD_REQUEST, f"Bootstrap-Write on {path}")
        instances = self.objects[path.object_id]
        if isinstance(node, LwM2mObject):
            for instance in node.instances.values():
                instances.setdefault(instance.id, {}).update(_resource_values(instance))
        elif isinstance(node, ObjectInstance) and path.depth == 2:
            instances.setdefault(node.id, {}).update(_resource_values(node))
        elif isinstance(node, SingleResource | MultiResource) and path.depth == 3:
            _, instance_id, _ = path.ids
            resources = instances.setdefault(instance_id, {})
            resources.update(_resource_values(ObjectInstance(instance_id, {node.id: node})))
        else:
            raise _Refused(Code.BAD_REQUEST, f"payload does not match {path}")

    def read(self, path: LwM2mPath) -> Node:
        """Bootstrap-Read (1.1+): the Server object (and Access Control) only."""
        if path.object_id != SERVER or path.depth > 2:
            raise _Refused(Code.BAD_REQUEST, f"Bootstrap-Read on {path or '/'}")
        instances = {
            iid: _instance(iid, values, SERVER) for iid, values in self.objects[SERVER].items()
        }
        if path.instance_id is None:
            return LwM2mObject(SERVER, instances)
        if path.instance_id not in instances:
            raise _Refused(Code.NOT_FOUND, f"{path} absent")
        return instances[path.instance_id]

    def discover(self, path: LwM2mPath) -> list[Link]:
        """Bootstrap-Discover: ``</>;lwm2m=..``, then objects 0 and 1 and their
        instances; a management Security instance shows its ``ssid`` and ``uri``."""
        if path.depth > 1:
            raise _Refused(Code.BAD_REQUEST, f"Bootstrap-Discover on {path}")
        links = [Link("/", {"lwm2m": self.lwm2m_version})]
        for object_id, instances in self.objects.items():
            if path.object_id is not None and object_id != path.object_id:
                continue
            links.append(Link(f"/{object_id}", {}))
            for instance_id, values in sorted(instances.items()):
                params: dict[str, str] = {}
                if object_id == SECURITY and values.get(1) is False and 10 in values:
                    params = {"ssid": str(values[10]), "uri": str(values.get(0, ""))}
                elif object_id == SERVER and 0 in values:
                    params = {"ssid": str(values[0])}
                links.append(Link(f"/{object_id}/{instance_id}", params))  # type: ignore[arg-type]
        return links

    def management_account(self) -> ManagementAccount | None:
        """The first non-bootstrap Security instance with its Server instance."""
        servers = {values.get(0): values for values in self.objects[SERVER].values() if 0 in values}
        for _, security in sorted(self.objects[SECURITY].items()):
            if security.get(1) is not False:
                continue
            ssid = security.get(10)
            server = servers.get(ssid)
            uri = security.get(0)
            if server is None or not isinstance(uri, str) or not isinstance(ssid, int):
                continue
            mode = security.get(2, NOSEC)
            identity, key = security.get(3, b""), security.get(5, b"")
            return ManagementAccount(
                server_uri=uri,
                short_server_id=ssid,
                lifetime=int(server.get(1, 86400)),  # type: ignore[arg-type]
                binding=str(server.get(7, "U")),
                security_mode=int(mode),  # type: ignore[arg-type]
                psk_identity=identity if isinstance(identity, bytes) else b"",
                psk_key=key if isinstance(key, bytes) else b"",
            )
        return None


class BootstrapClient:
    """Bootstraps one device over its own UDP socket (DTLS with ``credentials`` for a
    ``coaps://`` bootstrap server); ``bootstrap()`` returns what the server provisioned."""

    def __init__(
        self,
        endpoint_name: str,
        bootstrap_address: Address,
        bootstrap_uri: str,
        *,
        lwm2m_version: str = "1.1",
        content_format: int = ContentFormat.SENML_CBOR,
        local_host: str = "127.0.0.1",
        finish_timeout: float = 60.0,
        credentials: DtlsCredentials | None = None,
        handshake_timeout: float = 30.0,
    ) -> None:
        if content_format not in BOOTSTRAP_FORMATS:
            raise ValueError(f"content format {content_format} cannot carry a bootstrap")
        self.endpoint_name = endpoint_name
        self.objects = BootstrapObjects(bootstrap_uri, lwm2m_version)
        self.content_format = content_format
        self.finish_timeout = finish_timeout
        self.requests: list[tuple[str, str]] = []
        """(method, path) of every bootstrap server request, in order (for tests)."""
        self._address = bootstrap_address
        self._local_host = local_host
        self._secure = urlsplit(bootstrap_uri).scheme == "coaps"
        if self._secure and credentials is None:
            raise ValueError(f"{bootstrap_uri} needs DTLS credentials (the bootstrap PSK)")
        self._credentials = credentials
        self._handshake_timeout = handshake_timeout
        self._finished: asyncio.Future[ManagementAccount] | None = None

    async def _open(self) -> CoapEndpoint:
        if not self._secure:
            return await CoapEndpoint.open(self._handle, (self._local_host, 0))
        from meadowlark.simulator.dtls import DtlsCoapEndpoint

        return await DtlsCoapEndpoint.open(
            self._handle,
            (self._local_host, 0),
            server=self._address,
            credentials=self._credentials,
            handshake_timeout=self._handshake_timeout,
        )

    async def bootstrap(self, *, pack: bool = False) -> ManagementAccount:
        endpoint = await self._open()
        self._finished = asyncio.get_running_loop().create_future()
        try:
            if pack:
                return await self._pack_request(endpoint)
            query = [f"ep={self.endpoint_name}"]
            if self.objects.lwm2m_version != "1.0":
                query.append(f"pct={int(self.content_format)}")
            request = Message(code=Code.POST, uri_path=("bs",), uri_query=tuple(query))
            try:
                response = await endpoint.request(request, self._address, response_timeout=30)
            except CoapError as error:
                raise BootstrapError(f"Bootstrap-Request: {error}") from error
            if response.code != Code.CHANGED:
                raise BootstrapError(f"Bootstrap-Request refused with {response.code}")
            try:
                return await asyncio.wait_for(self._finished, self.finish_timeout)
            except TimeoutError as error:
                raise BootstrapError("no Bootstrap-Finish") from error
        finally:
            endpoint.close()

    async def _pack_request(self, endpoint: CoapEndpoint) -> ManagementAccount:
        request = Message(
            code=Code.GET,
            uri_path=("bspack",),
            uri_query=(f"ep={self.endpoint_name}",),
            accept=ContentFormat.SENML_CBOR,
        )
        try:
            response = await endpoint.request(request, self._address, response_timeout=30)
        except CoapError as error:
            raise BootstrapError(f"Bootstrap-Pack-Request: {error}") from error
        if response.code != Code.CONTENT:
            raise BootstrapError(f"Bootstrap-Pack-Request refused with {response.code}")
        try:
            nodes = senml_cbor.decode_composite(response.payload, models())
        except CodecError as error:
            raise BootstrapError(f"unreadable pack: {error}") from error
        self.objects.delete(LwM2mPath())
        for path, node in nodes.items():
            self.objects.write(path, node)
        account = self.objects.management_account()
        if account is None:
            raise BootstrapError("the pack holds no management server account")
        return account

    def _handle(self, request: Message) -> Message | None:
        try:
            path = LwM2mPath.parse("/" + "/".join(request.opt.uri_path))
        except InvalidPathError:
            path = None
        self.requests.append((str(request.code), "/" + "/".join(request.opt.uri_path)))
        try:
            return self._dispatch(request, path)
        except _Refused as refused:
            return Message(code=refused.code, payload=str(refused).encode()[:128])
        except CodecError as error:
            return Message(code=Code.BAD_REQUEST, payload=str(error).encode()[:128])

    def _dispatch(self, request: Message, path: LwM2mPath | None) -> Message:
        code = request.code
        if code == Code.POST and tuple(request.opt.uri_path) == ("bs",):
            return self._finish()
        if path is None:
            raise _Refused(Code.NOT_FOUND, "not an LwM2M path")
        if code == Code.GET and request.opt.accept == ContentFormat.LINK_FORMAT:
            links = self.objects.discover(path)
            return Message(
                code=Code.CONTENT,
                payload=encode_links(links),
                content_format=ContentFormat.LINK_FORMAT,
            )
        if code == Code.GET:
            if self.objects.lwm2m_version == "1.0":
                raise _Refused(Code.BAD_REQUEST, "no Bootstrap-Read in LwM2M 1.0")
            node = self.objects.read(path)
            fmt = request.opt.accept if request.opt.accept is not None else self.content_format
            if fmt not in BOOTSTRAP_FORMATS:
                raise _Refused(Code.NOT_ACCEPTABLE, f"format {fmt}")
            payload = registry.encode(fmt, node, path, models())
            return Message(code=Code.CONTENT, payload=payload, content_format=fmt)
        if code == Code.DELETE:
            self.objects.delete(path)
            return Message(code=Code.DELETED)
        if code in (Code.PUT, Code.POST):
            fmt = request.opt.content_format
            if fmt is None or fmt not in BOOTSTRAP_FORMATS:
                raise _Refused(Code.UNSUPPORTED_CONTENT_FORMAT, f"format {fmt}")
            self.objects.write(path, registry.decode(fmt, request.payload, path, models()))
            return Message(code=Code.CHANGED)
        raise _Refused(Code.METHOD_NOT_ALLOWED, f"{code} during bootstrap")

    def _finish(self) -> Message:
        account = self.objects.management_account()
        if account is None:
            return Message(code=Code.NOT_ACCEPTABLE, payload=b"no management server account")
        if self._finished is not None and not self._finished.done():
            self._finished.set_result(account)
        return Message(code=Code.CHANGED)


class _Refused(Exception):
    def __init__(self, code: Code, message: str) -> None:
        super().__init__(message)
        self.code = code


def _resource_values(instance: ObjectInstance) -> dict[int, Value | dict[int, Value]]:
    values: dict[int, Value | dict[int, Value]] = {}
    for resource in instance.resources.values():
        if isinstance(resource, MultiResource):
            values[resource.id] = dict(resource.instances)
        else:
            values[resource.id] = resource.value
    return values


def _instance(
    instance_id: int, values: Mapping[int, Value | dict[int, Value]], object_id: int
) -> ObjectInstance:
    model = models().get_object(object_id)
    assert model is not None
    resources: dict[int, SingleResource | MultiResource] = {}
    for resource_id, value in values.items():
        resource_model = model.resources.get(resource_id)
        if resource_model is None:
            continue
        if isinstance(value, dict):
            resources[resource_id] = MultiResource(resource_id, resource_model.type, value)
        else:
            resources[resource_id] = SingleResource(resource_id, resource_model.type, value)
    return ObjectInstance(instance_id, resources)


async def bootstrap_into(
    device: SimulatedDevice, bootstrap_uri: str, *, pack: bool = False
) -> ManagementAccount:
    """Bootstrap ``device`` (not started yet) from ``bootstrap_uri`` and point it at the
    management account it was given; ``device.start()`` then registers there. Over
    ``coaps://`` the device's ``security`` is its bootstrap credentials; the bootstrap
    replaces them with the management account's."""
    address = await resolve_server(bootstrap_uri)
    formats = [fmt for fmt in device.content_formats if fmt in BOOTSTRAP_FORMATS]
    client = BootstrapClient(
        device.endpoint_name,
        address,
        bootstrap_uri,
        lwm2m_version=device.lwm2m_version,
        content_format=formats[0] if formats else ContentFormat.TLV,
        local_host=local_host_for(address[0]),
        credentials=device.security,
        handshake_timeout=device.timing.handshake_timeout,
    )
    account = await client.bootstrap(pack=pack)
    apply_account(device, account)
    return account


REGISTER_RETRY_DELAYS = (1.0, 2.0, 4.0)
"""Seconds before each new Register after a bootstrap, when one fails."""


async def start_bootstrapped(device: SimulatedDevice) -> None:
    """Register ``device`` with the account a bootstrap just gave it, retrying a failed
    attempt after ``REGISTER_RETRY_DELAYS`` (as a client's registration retries, Core
    1.1 §6.2.1.1): the server a device is sent to may learn its new credentials a moment
    after the bootstrap server wrote them (another node of a cluster)."""
    for delay in REGISTER_RETRY_DELAYS:
        try:
            await device.start()
            return
        except RegistrationError as error:
            log.info(
                "%s: register after bootstrap: %s; again in %g s",
                device.endpoint_name,
                error,
                delay,
            )
        await asyncio.sleep(delay)
    await device.start()


def apply_account(device: SimulatedDevice, account: ManagementAccount) -> None:
    """Make ``account`` the server ``device`` registers with.

    A PSK account's identity and key become the credentials of the device's DTLS
    session with a ``coaps://`` server; a NoSec account's server is plain CoAP. Other
    security modes (certificates, raw public keys) are not provisioned by bootstrap
    here: refused, loudly.
    """
    from meadowlark.simulator.dtls import PskCredentials

    scheme = urlsplit(account.server_uri).scheme
    if account.security_mode == PSK:
        if scheme != "coaps":
            raise BootstrapError(f"a PSK account needs a coaps:// server, not {scheme}://")
        try:
            identity = account.psk_identity.decode("utf-8")
            device.security = PskCredentials(identity, account.psk_key)
        except (UnicodeDecodeError, ValueError) as error:
            raise BootstrapError(f"unusable PSK credentials: {error}") from error
    elif account.needs_dtls:
        raise BootstrapError(
            f"the management server {account.server_uri} has security mode "
            f"{account.security_mode}, which bootstrap does not provision here"
        )
    else:
        if scheme == "coaps":
            raise BootstrapError("a NoSec account cannot name a coaps:// server")
        device.security = None
    device.server_uri = account.server_uri
    device.lifetime = account.lifetime
    device.binding = account.binding
    objects = device.objects
    objects.server_uri = account.server_uri
    objects.short_server_id = account.short_server_id
    objects.lifetime = account.lifetime
    objects.binding = account.binding
