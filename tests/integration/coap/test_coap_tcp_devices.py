# ruff: noqa: F811 - the fixtures imported from lwm2m_harness are test parameters here
"""Simulated devices over CoAP over TCP and TLS (RFC 8323, LwM2M binding ``T``), managed
through the REST API like UDP ones: Register/Update/De-register, read, write, execute,
observe (notifications reach the value cache and the SSE stream), block-wise both ways.
Over TLS, a ``cert``-mode device whose certificate CN is its endpoint name registers; a
CN for another endpoint gets 4.03 and an audit entry. A dropped connection fails the
pending request with 502. Real sockets on loopback; SQLite and PostgreSQL.
"""

from __future__ import annotations

import json
import queue
import re
import secrets
import socket
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from aiocoap.numbers.codes import Code

from lwm2m_harness import Lwm2mTestServer, eventually, running_lwm2m_server
from meadowlark.certificates import IssuedCertificate, issue_certificate
from meadowlark.lwm2m.path import LwM2mPath
from meadowlark.simulator import DeviceTiming, SimulatedDevice
from meadowlark.simulator.client import RegistrationError
from meadowlark.simulator.coap_tcp import client_tls_context

API = "/api/coiotedm/v3"
LWM2M = "/api/lwm2m/v1/clients"
REFUSED = "device.registration_refused"


def tag() -> str:
    return secrets.token_hex(4)


@pytest.fixture(scope="module")
def authority(tmp_path_factory: pytest.TempPathFactory) -> tuple[IssuedCertificate, Path]:
    """A CA for device client certificates, and its bundle file."""
    ca = issue_certificate("Meadowlark test device CA", ca=True)
    bundle = tmp_path_factory.mktemp("ca") / "devices-ca.pem"
    bundle.write_bytes(ca.certificate_pem)
    return ca, bundle


@pytest.fixture(scope="module")
def server(
    tmp_path_factory: pytest.TempPathFactory,
    database_url: str | None,
    settings_for: Callable[..., Any],
    authority: tuple[IssuedCertificate, Path],
) -> Iterator[Lwm2mTestServer]:
    """The LwM2M server with CoAP over TCP and TLS, trusting the test CA for devices."""
    settings = settings_for(
        tmp_path_factory.mktemp("data"),
        database_url=database_url,
        lwm2m={"request_timeout": 3.0, "awake_window": 1.0},
        tls={"ca_bundle": str(authority[1])},
    )
    with running_lwm2m_server(settings, streams=True) as running:
        yield running


@pytest.fixture
def device_on(server: Lwm2mTestServer, tmp_path: Path) -> Iterator[Callable[..., SimulatedDevice]]:
    """``device_on("tcp"|"tls", endpoint, cn=None)``: a registered simulated device over
    TCP or TLS (with a client certificate for ``cn``); stopped after the test."""
    started: list[SimulatedDevice] = []
    generated = server.settings.data_dir / "tls" / "server.pem"

    def start(
        transport: str,
        endpoint: str,
        *,
        cn: str | None = None,
        san: tuple[str, ...] = (),
        ca: IssuedCertificate | None = None,
        register: bool = True,
        **options: Any,
    ) -> SimulatedDevice:
        tls = None
        if transport == "tls":
            certificate = key = None
            if cn is not None:
                assert ca is not None
                issued = issue_certificate(cn, issuer=ca, dns_names=san)
                certificate, key = tmp_path / f"{cn}.pem", tmp_path / f"{cn}.key"
                certificate.write_bytes(issued.certificate_pem)
                key.write_bytes(issued.key_pem)
            tls = client_tls_context(
                str(generated),
                None if certificate is None else str(certificate),
                None if key is None else str(key),
            )
        scheme, port = (
            ("coap+tcp", server.tcp_port) if transport == "tcp" else ("coaps+tcp", server.tls_port)
        )
        device = SimulatedDevice(
            endpoint,
            f"{scheme}://127.0.0.1:{port}",
            binding="T",
            tls=tls,
            tls_server_name=server.settings.tls.server_name,
            **options,
        )
        started.append(device)
        if register:
            server.call(device.start())
        return device

    yield start
    for device in started:
        server.call(device.stop())


def provision(server: Lwm2mTestServer, endpoint: str, **security: Any) -> str:
    body = {"properties": {"endpointName": endpoint}, **security}
    with server.admin() as http:
        response = http.post(f"{API}/devices", json=body)
    assert response.status_code == 201, response.text
    return str(response.json()["id"])


def refusals(server: Lwm2mTestServer, device_id: str) -> list[dict[str, Any]]:
    with server.admin() as http:
        response = http.get("/api/admin/audit", params={"event": REFUSED})
    assert response.status_code == 200, response.text
    return [event for event in response.json() if event["subject"] == device_id]


class SseReader:
    """The REST event stream of one endpoint, read by a thread into a queue."""

    def __init__(self, server: Lwm2mTestServer, endpoint: str) -> None:
        self.events: queue.Queue[tuple[str, dict[str, Any]]] = queue.Queue()
        self._ready = threading.Event()
        self._stop = False
        self._thread = threading.Thread(
            target=self._read, args=(server, endpoint), name="sse", daemon=True
        )
        self._thread.start()
        assert self._ready.wait(10), "the event stream did not open"

    def _read(self, server: Lwm2mTestServer, endpoint: str) -> None:
        kind = ""
        with (
            httpx.Client(
                base_url=server.url,
                headers={"Authorization": f"Bearer {server.admin_token}"},
                timeout=httpx.Timeout(10, read=30),
            ) as http,
            http.stream("GET", "/api/lwm2m/v1/events", params={"ep": endpoint}) as response,
        ):
            assert response.status_code == 200
            self._ready.set()
            for line in response.iter_lines():
                if self._stop:
                    return
                if line.startswith("event: "):
                    kind = line.removeprefix("event: ")
                elif line.startswith("data: "):
                    self.events.put((kind, json.loads(line.removeprefix("data: "))))

    def next(self, kind: str, timeout: float = 10) -> dict[str, Any]:
        deadline = time.monotonic() + timeout
        while True:
            found, data = self.events.get(timeout=max(0.01, deadline - time.monotonic()))
            if found == kind:
                return data

    def close(self) -> None:
        self._stop = True


def test_a_tcp_device_is_managed_like_a_udp_one(server, device_on):
    endpoint = f"tcp-{tag()}"
    device = device_on("tcp", endpoint)
    registration = server.call(server.runtime.lwm2m.get_registration(endpoint))
    assert registration.peer.transport == "tcp" and registration.binding == "T"
    assert registration.peer.port == device.local_address[1]
    with server.admin() as http:
        shown = http.get(f"{LWM2M}/{endpoint}").json()
        assert (
            shown["bindingMode"] == "T"
            and (shown["transport"], shown["secure"]) == ("tcp", False)
            and shown["address"] == f"127.0.0.1:{registration.peer.port}"
        )

        read = http.get(f"{LWM2M}/{endpoint}/3/0/0")
        assert read.status_code == 200, read.text
        assert read.json()["content"]["value"] == server.call(_read_local(device, "/3/0/0"))

        written = http.put(f"{LWM2M}/{endpoint}/1/0/1", json={"id": 1, "value": 120})
        assert written.status_code == 200, written.text
        assert server.call(_read_local(device, "/1/0/1")) == 120

        updates = device.stats.updates
        executed = http.post(f"{LWM2M}/{endpoint}/1/0/8")  # Registration Update Trigger
        assert executed.status_code == 200, executed.text
        eventually(lambda: device.stats.updates > updates)

        # Block-wise, server to device (Block1) and back (Block2): 3000 bytes > 1024.
        zone = "Europe/" + "x" * 2993
        written = http.put(f"{LWM2M}/{endpoint}/3/0/15", json={"id": 15, "value": zone})
        assert written.status_code == 200, written.text
        assert server.call(_read_local(device, "/3/0/15")) == zone
        read = http.get(f"{LWM2M}/{endpoint}/3/0/15")
        assert read.status_code == 200 and read.json()["content"]["value"] == zone

        stream = SseReader(server, endpoint)
        try:
            observed = http.post(f"{LWM2M}/{endpoint}/3303/0/5700/observe")
            assert observed.status_code == 200, observed.text
            server.call(_set_temperature(device, 31.5))
            notification = stream.next("NOTIFICATION")
            assert "31.5" in json.dumps(notification)
        finally:
            stream.close()
        cached = eventually(
            lambda: server.call(
                server.runtime.lwm2m.cached_values(endpoint, LwM2mPath.parse("/3303/0/5700"))
            )
        )
        assert [value.value for value in cached.values()] == [31.5]

        pinged = server.call(server.runtime.lwm2m.ping(endpoint))
        assert 0 <= pinged < 3

    server.call(device.update(with_objects=True))
    after = server.call(server.runtime.lwm2m.get_registration(endpoint))
    assert after.registration_id == registration.registration_id and after.peer.transport == "tcp"
    server.call(device.stop())
    assert server.call(server.runtime.lwm2m.get_registration(endpoint)) is None


async def _read_local(device: SimulatedDevice, path: str) -> object:
    return device.objects.read(LwM2mPath.parse(path)).value  # type: ignore[attr-defined]


async def _set_temperature(device: SimulatedDevice, value: float) -> None:
    device.set_temperature(value)


def test_a_tls_device_is_managed_and_its_peer_is_tls(server, device_on):
    endpoint = f"tls-{tag()}"
    device = device_on("tls", endpoint)
    registration = server.call(server.runtime.lwm2m.get_registration(endpoint))
    assert registration.peer.transport == "tls" and registration.peer.identity is None
    with server.admin() as http:
        read = http.get(f"{LWM2M}/{endpoint}/3/0")
        assert read.status_code == 200, read.text
    server.call(device.stop())
    assert server.call(server.runtime.lwm2m.get_registration(endpoint)) is None


def test_cert_mode_devices_register_over_tls_by_their_certificate_cn(server, device_on, authority):
    ca = authority[0]
    endpoint = f"cert-{tag()}"
    provision(server, endpoint, securityMode="cert")
    device_on("tls", endpoint, cn=endpoint, ca=ca)
    registration = server.call(server.runtime.lwm2m.get_registration(endpoint))
    assert registration.peer.identity is not None
    assert (registration.peer.identity.mode, registration.peer.identity.name) == ("cert", endpoint)

    victim = f"cert-victim-{tag()}"
    victim_id = provision(server, victim, securityMode="cert")
    impostor = device_on("tls", victim, cn=f"someone-else-{tag()}", ca=ca, register=False)
    with pytest.raises(RegistrationError) as refused:
        server.call(impostor.start())
    assert refused.value.code == Code.FORBIDDEN
    assert server.call(server.runtime.lwm2m.get_registration(victim)) is None
    audited = eventually(lambda: refusals(server, victim_id))
    assert audited[0]["details"]["reason"] == "identity_mismatch"

    # Without a client certificate (or over plain TCP), a cert-mode device gets 4.03 too.
    for transport in ("tls", "tcp"):
        anonymous = device_on(transport, victim, register=False)
        with pytest.raises(RegistrationError) as refused:
            server.call(anonymous.start())
        assert refused.value.code == Code.FORBIDDEN


def test_cert_mode_devices_register_over_tls_by_a_subject_alternative_name(
    server, device_on, authority
):
    """A ``cert`` device whose record names one of its certificate's SANs registers over
    TLS; one whose record names another name gets 4.03."""
    ca = authority[0]
    san = f"meter-{tag()}.devices.example"
    endpoint = f"cert-san-{tag()}"
    provision(server, endpoint, securityMode="cert", dtlsIdentity=san)
    device_on("tls", endpoint, cn=f"serial-{tag()}", san=(san,), ca=ca)
    registration = server.call(server.runtime.lwm2m.get_registration(endpoint))
    assert registration.peer.identity is not None
    assert san in registration.peer.identity.alternative_names

    other = f"cert-other-{tag()}"
    provision(server, other, securityMode="cert", dtlsIdentity=f"other-{tag()}.example")
    impostor = device_on("tls", other, cn=f"serial-{tag()}", san=(san,), ca=ca, register=False)
    with pytest.raises(RegistrationError) as refused:
        server.call(impostor.start())
    assert refused.value.code == Code.FORBIDDEN


def test_a_certificate_from_an_unknown_ca_gets_no_connection(server, device_on):
    stranger = issue_certificate("Some other CA", ca=True)
    device = device_on("tls", f"stranger-{tag()}", cn="stranger", ca=stranger, register=False)
    with pytest.raises(RegistrationError, match="connect"):
        server.call(device.start())


def test_a_psk_device_over_plain_tcp_gets_4_03(server, device_on):
    endpoint = f"psk-{tag()}"
    device_id = provision(
        server,
        endpoint,
        securityMode="psk",
        dtlsIdentity=f"identity-{tag()}",
        dtlsPsk={"HexadecimalPsk": "5ec2e7f0a1b2c3d4e5f60718293a4b5c"},
    )
    device = device_on("tcp", endpoint, register=False)
    with pytest.raises(RegistrationError) as refused:
        server.call(device.start())
    assert refused.value.code == Code.FORBIDDEN
    audited = eventually(lambda: refusals(server, device_id))
    assert audited[0]["details"]["reason"] == "unsecured_transport"


def test_a_dropped_connection_fails_the_pending_request_cleanly(server, device_on):
    endpoint = f"drop-{tag()}"
    device = device_on("tcp", endpoint)
    server.call(_stop_answering(device))
    outcome: dict[str, httpx.Response] = {}

    def read_slowly() -> None:
        with server.admin() as http:
            outcome["read"] = http.get(f"{LWM2M}/{endpoint}/3/0", params={"timeout_seconds": 20})

    reader = threading.Thread(target=read_slowly)
    started = time.monotonic()
    reader.start()
    time.sleep(0.5)  # the read is on the wire, unanswered
    server.call(_drop_connection(device))
    reader.join(15)
    assert not reader.is_alive()
    response = outcome["read"]
    assert response.status_code == 502, response.text
    # "closed" while the read waited, or "is closed" when a loaded machine let the drop
    # come first: either way a 502 at once, not the 20 s timeout.
    assert re.search(r"connection (is )?closed", response.json()["message"]), response.text
    assert time.monotonic() - started < 10

    # Still registered (until its lifetime ends), but unreachable: 502 at once.
    assert server.call(server.runtime.lwm2m.get_registration(endpoint)) is not None
    with server.admin() as http:
        again = http.get(f"{LWM2M}/{endpoint}/3/0")
    assert again.status_code == 502 and "closed" in again.json()["message"]

    # The device reconnects and registers: reachable again.
    server.call(device.start())
    with server.admin() as http:
        assert http.get(f"{LWM2M}/{endpoint}/3/0").status_code == 200


async def _stop_answering(device: SimulatedDevice) -> None:
    assert device._endpoint is not None
    device._endpoint.accepting = False


async def _drop_connection(device: SimulatedDevice) -> None:
    endpoint = device._endpoint
    assert endpoint is not None and endpoint._transport is not None  # type: ignore[union-attr]
    endpoint._transport.abort()  # type: ignore[union-attr]


def test_send_and_observation_cancel_over_tcp(server, device_on):
    endpoint = f"tcp-send-{tag()}"
    device = device_on("tcp", endpoint)
    assert server.call(device.send(["/3303/0/5700"])) == Code.CHANGED
    eventually(
        lambda: server.call(
            server.runtime.lwm2m.cached_values(endpoint, LwM2mPath.parse("/3303/0/5700"))
        )
    )
    with server.admin() as http:
        observed = http.post(f"{LWM2M}/{endpoint}/3303/0/5700/observe")
        assert observed.status_code == 200, observed.text
        assert len(device.observations) == 1
        cancelled = http.delete(f"{LWM2M}/{endpoint}/3303/0/5700/observe")
        assert cancelled.status_code == 200, cancelled.text
    eventually(lambda: not device.observations)


def test_meadowlark_simulate_over_tls(server):
    """``meadowlark simulate --transport tls`` trusts the server's generated certificate."""
    from typer.testing import CliRunner

    from meadowlark.cli.main import app

    prefix = f"cli-tls-{tag()}"
    env = {"MEADOWLARK_DATA_DIR": str(server.settings.data_dir)}
    arguments = ["simulate", "--transport", "tls", "--devices", "2", "--prefix", prefix]
    arguments += ["--server", f"coap://127.0.0.1:{server.tls_port}", "--duration", "2"]
    arguments += ["--interval", "0.5"]
    result = CliRunner().invoke(app, arguments, env=env)
    assert result.exit_code == 0, result.output
    assert "registered=2" in result.output and "failed=0" in result.output
    with server.admin() as http:
        events = http.get("/api/admin/audit").json()  # nothing refused for them
    assert not [event for event in events if prefix in json.dumps(event)]


def test_a_register_whose_connection_closes_at_once_is_still_processed(server):
    """The answer has nowhere to go, but the Register is not cancelled half-way (it waits
    for its database commit meanwhile): the registry and the store agree."""
    from aiocoap import Message
    from aiocoap.numbers.codes import CSM
    from aiocoap.transports.tcp import _serialize

    endpoint = f"tcp-gone-{tag()}"
    register = Message(
        code=Code.POST,
        payload=b"</1/0>,</3/0>",
        uri_path=("rd",),
        uri_query=(f"ep={endpoint}", "lt=60", "lwm2m=1.1", "b=T"),
    )
    register.token = b"\x07"
    with socket.create_connection(("127.0.0.1", server.tcp_port), timeout=5) as sock:
        sock.sendall(_serialize(Message(code=CSM)) + _serialize(register))
    eventually(lambda: server.call(server.runtime.lwm2m.get_registration(endpoint)))
    with server.admin() as http:
        stored = eventually(lambda: http.get(f"{API}/devices/{endpoint}").json())
    assert stored["properties"]["endpointName"] == endpoint


def test_a_queue_mode_tcp_device_gets_its_queued_requests_after_its_update(server, device_on):
    endpoint = f"tcp-queue-{tag()}"
    device = device_on("tcp", endpoint, queue_mode=True, timing=DeviceTiming(queue_window=0.5))
    with server.admin() as http:
        deadline = time.monotonic() + 10
        while not http.get(f"{LWM2M}/{endpoint}").json()["sleeping"]:
            assert time.monotonic() < deadline, "the server never deemed the device asleep"
            time.sleep(0.05)
        written = http.put(f"{LWM2M}/{endpoint}/1/0/1", json={"id": 1, "value": 4321})
        assert written.status_code == 202, written.text
        assert server.call(_read_local(device, "/1/0/1")) != 4321
        server.call(device.update())  # over the same connection: the queue goes out
    eventually(lambda: server.call(_read_local(device, "/1/0/1")) == 4321)
