"""Access control of the registration interface: who may register as which device,
unguessable registration locations, and address changes on Update and De-register."""

from __future__ import annotations

import re
from typing import Any

import pytest

from meadowlark.server import registration as registration_module
from meadowlark.server import registration_service as service_module
from meadowlark.server.ports import InMemoryDeviceRegistry
from meadowlark.server.registration import new_registration_id
from meadowlark.server.security import (
    Admission,
    DeviceSecurity,
    check_peer_security,
    requires_secure_transport,
)
from meadowlark.server.service import LwM2mServer, ServerListener
from meadowlark.server.transport import (
    CHANGED,
    CREATED,
    DELETED,
    FORBIDDEN,
    Peer,
    PeerIdentity,
)

pytestmark = pytest.mark.anyio
PLAIN = Peer("192.0.2.1", 40000)
MOVED = Peer("198.51.100.7", 51000)
PSK_SESSION = PeerIdentity("psk", "sensor-identity")
SECURE = Peer("192.0.2.1", 40001, "udp", identity=PSK_SESSION)
PSK_DEVICE = DeviceSecurity("psk", "sensor-identity")


# --- the decision --------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("mode", "needed"),
    [
        (None, False),
        ("nosec", False),
        ("NoSec", False),
        ("psk", True),
        ("rpk", True),
        ("cert", True),
        ("x509", True),
        ("", True),  # not a mode we know: fail closed
        ("something-new", True),
    ],
)
def test_every_mode_but_nosec_needs_a_secure_transport(mode, needed):
    assert requires_secure_transport(mode) is needed


@pytest.mark.parametrize(
    ("device", "peer", "expected"),
    [
        # No record yet: auto-created as NoSec, so plain UDP is fine.
        (None, PLAIN, Admission.ALLOWED),
        (DeviceSecurity(), PLAIN, Admission.ALLOWED),
        (DeviceSecurity("nosec"), PLAIN, Admission.ALLOWED),
        # Anything else refuses an unauthenticated transport.
        (PSK_DEVICE, PLAIN, Admission.UNSECURED_TRANSPORT),
        (DeviceSecurity("rpk"), PLAIN, Admission.UNSECURED_TRANSPORT),
        (DeviceSecurity("cert"), PLAIN, Admission.UNSECURED_TRANSPORT),
        (DeviceSecurity("x509"), PLAIN, Admission.UNSECURED_TRANSPORT),
        (DeviceSecurity("weird"), PLAIN, Admission.UNSECURED_TRANSPORT),
        # A session must be authenticated as that very device.
        (PSK_DEVICE, SECURE, Admission.ALLOWED),
        (
            DeviceSecurity("psk", "someone-else"),
            SECURE,
            Admission.IDENTITY_MISMATCH,
        ),
        (DeviceSecurity("psk", None), SECURE, Admission.IDENTITY_MISMATCH),
        (
            PSK_DEVICE,
            Peer("192.0.2.1", 1, identity=PeerIdentity("rpk", "sensor-identity")),
            Admission.IDENTITY_MISMATCH,
        ),
        (
            DeviceSecurity("cert"),
            Peer("192.0.2.1", 1, identity=PeerIdentity("cert", "sensor")),
            Admission.ALLOWED,  # X.509: the certificate's CN is the endpoint name
        ),
        (
            DeviceSecurity("x509"),
            Peer("192.0.2.1", 1, identity=PeerIdentity("cert", "other")),
            Admission.IDENTITY_MISMATCH,
        ),
        (
            DeviceSecurity("rpk"),  # no public key on record: nothing can match
            Peer("192.0.2.1", 1, identity=PeerIdentity("rpk", "sensor")),
            Admission.IDENTITY_MISMATCH,
        ),
        # A NoSec (or unknown) endpoint over a session authenticated as some device:
        # those credentials belong to another device.
        (None, SECURE, Admission.IDENTITY_MISMATCH),
        (DeviceSecurity("nosec"), SECURE, Admission.IDENTITY_MISMATCH),
    ],
)
def test_decides_by_security_mode_and_authenticated_identity(device, peer, expected):
    assert check_peer_security("sensor", device, peer) is expected


def test_plain_udp_peers_are_not_secure():
    assert not PLAIN.secure and PLAIN.identity is None
    assert SECURE.secure
    assert PLAIN != Peer("192.0.2.1", 40000, identity=PSK_SESSION)


# --- registration locations ------------------------------------------------------------------


def test_registration_ids_carry_at_least_64_random_bits():
    ids = {new_registration_id() for _ in range(5000)}
    assert len(ids) == 5000
    for registration_id in ids:
        assert re.fullmatch(r"[0-9a-f]{16,}", registration_id), registration_id
    # Every hex digit shows up in every position: no fixed or counter-like part.
    for position in range(16):
        assert len({registration_id[position] for registration_id in ids}) == 16


def test_registration_ids_come_from_the_secrets_module(monkeypatch):
    asked: list[int] = []
    real = registration_module.secrets.token_hex

    def spy(nbytes: int) -> str:
        asked.append(nbytes)
        return real(nbytes)

    monkeypatch.setattr(registration_module.secrets, "token_hex", spy)
    new_registration_id()
    assert asked and asked[0] >= 8


async def test_register_answers_a_location_of_at_least_16_hex_digits():
    server = LwM2mServer()
    result = await server.on_register(PLAIN, ("ep=dev",), b"</3/0>", None)
    assert result.code == CREATED
    assert result.location_path[0] == "rd"
    assert re.fullmatch(r"[0-9a-f]{16,}", result.location_path[1])


# --- the server ----------------------------------------------------------------------------


class Recorder(ServerListener):
    def __init__(self) -> None:
        self.refused: list[tuple[str, Peer, str, str]] = []
        self.moved: list[tuple[Peer, Peer, str]] = []
        self.deregistered: list[Peer] = []
        self.updated = 0

    def on_registration_refused(self, endpoint, peer, reason, operation):
        self.refused.append((endpoint, peer, reason, operation))

    def on_address_changed(self, registration, previous, operation):
        self.moved.append((previous, registration.peer, operation))

    def on_updated(self, registration, previous):
        self.updated += 1

    def on_deregistered(self, registration, *, expired):
        self.deregistered.append(registration.peer)


class LogRecorder:
    def __init__(self) -> None:
        self.lines: list[tuple[str, dict[str, Any]]] = []

    def _record(self, event: str, **fields: Any) -> None:
        self.lines.append((event, fields))

    debug = info = warning = error = _record

    def exception(self, event: str, **fields: Any) -> None:
        self._record(event, **fields)

    def named(self, event: str) -> list[dict[str, Any]]:
        return [fields for name, fields in self.lines if name == event]


@pytest.fixture
def log(monkeypatch) -> LogRecorder:
    recorder = LogRecorder()
    monkeypatch.setattr(service_module, "_log", recorder)
    return recorder


def server_with(**security: DeviceSecurity) -> tuple[LwM2mServer, Recorder]:
    server = LwM2mServer(devices=InMemoryDeviceRegistry(security=dict(security)))
    recorder = Recorder()
    server.add_listener(recorder)
    return server, recorder


async def register(server: LwM2mServer, endpoint: str, peer: Peer = PLAIN):
    return await server.on_register(peer, (f"ep={endpoint}",), b"</3/0>", None)


async def test_a_psk_device_is_refused_over_plain_udp_and_the_refusal_reported(log):
    server, recorder = server_with(sensor=PSK_DEVICE)
    result = await register(server, "sensor")
    assert result.code == FORBIDDEN
    assert "secure" in result.diagnostic
    assert await server.get_registration("sensor") is None
    assert recorder.refused == [("sensor", PLAIN, "unsecured_transport", "register")]
    (line,) = log.named("registration_forbidden")
    assert line["endpoint"] == "sensor" and line["reason"] == "unsecured_transport"
    assert line["peer"] == str(PLAIN)


async def test_the_device_itself_registers_over_its_authenticated_session():
    server, recorder = server_with(sensor=PSK_DEVICE)
    assert (await register(server, "sensor", SECURE)).code == CREATED
    registration = await server.get_registration("sensor")
    assert registration is not None and registration.peer.identity == PSK_SESSION
    assert recorder.refused == []


async def test_nosec_and_unknown_devices_register_over_plain_udp():
    server, recorder = server_with(legacy=DeviceSecurity("nosec"))
    assert (await register(server, "legacy")).code == CREATED
    assert (await register(server, "brand-new")).code == CREATED
    assert recorder.refused == []


async def test_credentials_of_one_device_do_not_register_another():
    server, recorder = server_with(sensor=PSK_DEVICE, other=DeviceSecurity("psk", "other-id"))
    for endpoint in ("other", "brand-new"):
        assert (await register(server, endpoint, SECURE)).code == FORBIDDEN
    assert [reason for _, _, reason, _ in recorder.refused] == ["identity_mismatch"] * 2


async def test_an_update_from_another_address_is_accepted_and_reported(log):
    server, recorder = server_with()
    location = (await register(server, "dev")).location_path[1]
    result = await server.on_update(MOVED, location, ("lt=600",), b"", None)
    assert result.code == CHANGED
    registration = await server.get_registration("dev")
    assert registration is not None and registration.peer == MOVED
    assert recorder.moved == [(PLAIN, MOVED, "update")]
    (line,) = log.named("registration_address_changed")
    assert line["previous_peer"] == str(PLAIN) and line["peer"] == str(MOVED)
    assert line["endpoint"] == "dev" and line["operation"] == "update"

    assert (await server.on_update(MOVED, location, (), b"", None)).code == CHANGED
    assert len(recorder.moved) == 1  # same address again: nothing to report
    assert recorder.updated == 2


async def test_a_deregister_from_another_address_is_accepted_and_names_it(log):
    server, recorder = server_with()
    location = (await register(server, "dev")).location_path[1]
    assert (await server.on_deregister(MOVED, location)).code == DELETED
    assert recorder.moved == [(PLAIN, MOVED, "deregister")]
    assert recorder.deregistered == [MOVED]
    (line,) = log.named("device_deregistered")
    assert line["peer"] == str(MOVED) and line["registered_peer"] == str(PLAIN)


async def test_updates_must_come_with_the_identity_the_device_registered_with():
    server, recorder = server_with(sensor=PSK_DEVICE)
    location = (await register(server, "sensor", SECURE)).location_path[1]
    impostor = Peer(SECURE.host, SECURE.port)  # same address, no DTLS session
    assert (await server.on_update(impostor, location, ("lt=60",), b"", None)).code == FORBIDDEN
    assert (await server.on_deregister(impostor, location)).code == FORBIDDEN
    registration = await server.get_registration("sensor")
    assert registration is not None and registration.lifetime != 60
    assert [(reason, op) for _, _, reason, op in recorder.refused] == [
        ("identity_mismatch", "update"),
        ("identity_mismatch", "deregister"),
    ]
    assert (await server.on_update(SECURE, location, ("lt=60",), b"", None)).code == CHANGED


async def test_send_must_come_with_the_identity_the_device_registered_with():
    server, recorder = server_with(sensor=PSK_DEVICE)
    assert (await register(server, "sensor", SECURE)).code == CREATED
    impostor = Peer(SECURE.host, SECURE.port)
    result = await server.on_send(impostor, b"[]", 110)
    assert result.code == FORBIDDEN
    assert recorder.refused == [("sensor", impostor, "identity_mismatch", "send")]
