"""Interop over DTLS-PSK with an independent stack: Eclipse Wakaama's example client
built with tinydtls (``lwm2mclient_tinydtls``), by ``../shared/peers/build-wakaama.sh``
(or named by ``MEADOWLARK_TEST_WAKAAMA_DTLS_CLIENT``); skipped when it cannot be built.

The client handshakes with the server's ``coaps://`` port with its PSK identity and key,
registers, and is read, written, executed and observed through the REST API, over its
session. With a wrong key it gets no session, no registration, and the failed handshake
is audited.
"""

from __future__ import annotations

import asyncio
import secrets
import time
from collections.abc import Callable, Iterator
from contextlib import ExitStack
from typing import Any

import pytest

from lwm2m_harness import Lwm2mTestServer, eventually, running_lwm2m_server
from meadowlark.cli.dtls_serving import HANDSHAKE_FAILED_EVENT, start_dtls
from meadowlark.core.events import EventFilter, EventKind
from wakaama_harness import DTLS_CLIENT, WakaamaClient, running_wakaama, wakaama_client_or_skip

API = "/api/coiotedm/v3"
LIFETIME = 60


@pytest.fixture(scope="module")
def client_binary() -> str:
    return wakaama_client_or_skip(DTLS_CLIENT)


class Keys(dict[str, bytes]):
    """The PSK store of the test server: identity -> key."""


@pytest.fixture(scope="module")
def keys() -> Keys:
    return Keys()


@pytest.fixture(scope="module")
def server(
    tmp_path_factory: pytest.TempPathFactory,
    database_url: str | None,
    settings_for: Any,
    keys: Keys,
) -> Iterator[Lwm2mTestServer]:
    """CoAP and DTLS (an ephemeral port each) beside the REST API, on one loop."""
    data = tmp_path_factory.mktemp("data")
    settings = settings_for(data, database_url=database_url, coaps="127.0.0.1:0")
    with running_lwm2m_server(settings) as running:
        running.dtls = running.call(start_dtls(settings, running.runtime, running.coap, keys))
        try:
            yield running
        finally:
            running.call(running.dtls.stop())


def provision(server: Lwm2mTestServer, keys: Keys) -> tuple[str, str, bytes]:
    endpoint, identity = f"wakaama-dtls-{secrets.token_hex(4)}", secrets.token_hex(6)
    key = secrets.token_bytes(16)
    body = {
        "properties": {"endpointName": endpoint},
        "securityMode": "psk",
        "dtlsIdentity": identity,
        "dtlsPsk": {"HexadecimalPsk": key.hex()},
    }
    with server.admin() as http:
        response = http.post(f"{API}/devices", json=body)
    assert response.status_code == 201, response.text
    keys[identity] = key
    return endpoint, identity, key


@pytest.fixture
def start_client(server: Lwm2mTestServer, client_binary: str) -> Iterator[Callable[..., Any]]:
    """``start_client(endpoint, identity, key)``: the C client, always ended afterwards."""
    with ExitStack() as started:

        def start(endpoint: str, identity: str, key: bytes) -> WakaamaClient:
            return started.enter_context(
                running_wakaama(
                    client_binary,
                    endpoint,
                    server.dtls.port,
                    "-i",
                    identity,
                    "-s",
                    key.hex(),
                    lifetime=LIFETIME,
                )
            )

        yield start


def registered(server: Lwm2mTestServer, endpoint: str) -> Any:
    return server.call(server.runtime.lwm2m.get_registration(endpoint))


def test_the_tinydtls_client_registers_over_psk_and_is_managed(server, keys, start_client):
    endpoint, identity, key = provision(server, keys)
    client = start_client(endpoint, identity, key)
    try:
        registration = eventually(lambda: registered(server, endpoint), timeout=20)
    except AssertionError:
        pytest.fail("no registration over DTLS within 20 s:\n" + client.tail())
    assert registration.peer.transport == "dtls"
    assert registration.peer.identity.mode == "psk"
    assert registration.peer.identity.name == identity

    base = f"/api/lwm2m/v1/clients/{endpoint}"
    with server.admin() as http:
        shown = http.get(base).json()
        assert shown["transport"] == "dtls" and shown["secure"] is True
        read = http.get(f"{base}/3/0/0", params={"format": "text"})
        assert read.status_code == 200, read.text
        assert read.json()["content"]["value"] == "Open Mobile Alliance"

        body = {"kind": "singleResource", "value": "+02:00"}
        written = http.put(f"{base}/3/0/14", params={"format": "text"}, json=body)
        assert written.status_code == 200, written.text
        read = http.get(f"{base}/3/0/14", params={"format": "text"})
        assert read.json()["content"]["value"] == "+02:00"

        executed = http.post(f"{base}/3/0/12")  # Reset Error Code
        assert executed.status_code == 200, executed.text

        async def subscribe() -> Any:
            return server.runtime.events.subscribe(EventFilter("/root/", endpoint))

        with server.call(subscribe()) as events:
            observed = http.post(f"{base}/3/0/14/observe", params={"format": "text"})
            assert observed.status_code == 200, observed.text
            client.command("change /3/0/14 +05:00")

            async def notified() -> Any:
                async with asyncio.timeout(15):
                    async for event in events:
                        if event.kind is EventKind.NOTIFICATION and "+05:00" in repr(event):
                            return event
                return None

            assert server.call(notified(), timeout=20) is not None, client.tail()
    assert client.process.poll() is None


def test_the_tinydtls_client_with_a_wrong_key_gets_nothing(server, keys, start_client):
    endpoint, identity, _ = provision(server, keys)
    client = start_client(endpoint, identity, secrets.token_bytes(16))

    def audited() -> list[dict[str, Any]]:
        with server.admin() as http:
            response = http.get("/api/admin/audit", params={"event": HANDSHAKE_FAILED_EVENT})
        return [e for e in response.json() if e["details"]["identity"] == identity]

    entries = eventually(audited, timeout=20)
    assert entries[0]["details"]["reason"] == "wrong_key"
    time.sleep(2)
    assert registered(server, endpoint) is None, client.tail()
