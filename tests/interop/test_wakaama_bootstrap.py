# ruff: noqa: F811 - the fixtures imported from the harnesses are test parameters here
"""Interop with an independent C client's bootstrap: Eclipse Wakaama's example client
(``examples/client/udp``, built with client-initiated bootstrap, LwM2M 1.1, SenML JSON),
built by ``../shared/peers/build-wakaama.sh`` (or named by
``MEADOWLARK_TEST_WAKAAMA_CLIENT``); skipped when it cannot be built.

Started with ``-b``, the client holds only a bootstrap account pointing at our bootstrap
server. It sends Bootstrap-Request (``pct=110``), answers Discover, Delete, Write (SenML
JSON), Read and Finish, then registers with the management server the bootstrap wrote,
which then manages it like any other device.
"""

from __future__ import annotations

import secrets
from collections.abc import Iterator

import pytest

from bootstrap_harness import audit_events, bootstrap_port
from lwm2m_harness import Lwm2mTestServer, eventually, server  # noqa: F401 - fixture
from wakaama_harness import UDP_CLIENT, WakaamaClient, running_wakaama, wakaama_client_or_skip

API = "/api/coiotedm/v3"
assert bootstrap_port  # a fixture, used by name


@pytest.fixture
def bootstrapped(server: Lwm2mTestServer, bootstrap_port: int) -> Iterator[WakaamaClient]:
    """A Wakaama client told only of our bootstrap server (``-b``), configured for."""
    binary = wakaama_client_or_skip(UDP_CLIENT)
    endpoint = f"wakaama-bs-{secrets.token_hex(4)}"
    with server.admin() as http:
        body = {"properties": {"endpointName": endpoint}, "connectorType": "bootstrap"}
        account = http.post(f"{API}/devices", json=body)
        assert account.status_code == 201, account.text
        configured = http.put(
            f"{API}/bootstrap/configuration/device/{account.json()['id']}",
            json={"lifetime": 60, "shortServerId": 77},
        )
        assert configured.status_code == 200, configured.text
    with running_wakaama(binary, endpoint, bootstrap_port, "-b") as client:
        yield client


def test_wakaama_bootstraps_then_registers_with_the_management_server(server, bootstrapped):
    endpoint = bootstrapped.endpoint
    try:
        registration = eventually(
            lambda: server.call(server.runtime.lwm2m.get_registration(endpoint)),
            timeout=30,
            interval=0.1,
        )
    except AssertionError:
        pytest.fail(
            "the Wakaama client did not bootstrap and register within 30 s:\n"
            + bootstrapped.tail(40)
            + repr([(r["event"], r["details"]) for r in audit_events(server, endpoint)])
        )
    assert registration.lifetime == 60
    steps = [
        (row["details"]["step"], row["details"]["path"], row["details"]["code"])
        for row in audit_events(server, endpoint)
        if row["event"] in ("bootstrap.requested", "bootstrap.step", "bootstrap.finished")
    ]
    assert steps[0] == ("request", "", "2.04")
    assert ("discover", "/", "2.05") in steps
    assert [s for s in steps if s[0] in ("delete", "write", "finish")] == [
        ("delete", "/0", "2.02"),
        ("delete", "/1", "2.02"),
        ("write", "/0/1", "2.04"),
        ("write", "/1/0", "2.04"),
        ("finish", "/bs", "2.04"),
    ]
    # Managed like any device: the Server instance the bootstrap wrote reads back.
    with server.admin() as http:
        server_object = http.get(f"/api/lwm2m/v1/clients/{endpoint}/1/0")
    assert server_object.status_code == 200, server_object.text
    assert "77" in server_object.text
