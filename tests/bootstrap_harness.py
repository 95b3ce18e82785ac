"""The bootstrap server of a running test server (``lwm2m_harness``), on a loopback port.

``bootstrap_port`` starts a second CoAP server with the bootstrap site on the test
server's event loop, the way ``meadowlark serve`` does with ``MEADOWLARK_BOOTSTRAP``, and
points configurations without a ``serverUri`` at the test server's CoAP port.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest

from lwm2m_harness import Lwm2mTestServer


@pytest.fixture(scope="module")
def bootstrap_port(server: Lwm2mTestServer) -> Iterator[int]:
    from meadowlark.coap.bootstrap_site import BootstrapSite, NoRegistrations
    from meadowlark.coap.server import CoapServer

    runtime: Any = server.runtime
    coap = CoapServer(
        NoRegistrations(), "127.0.0.1", 0, max_payload=4096, site=BootstrapSite(runtime.bootstrap)
    )

    async def start() -> int:
        runtime.bootstrap.attach(await coap.start())
        runtime.bootstrap_configurations.bind("coap", "127.0.0.1", server.coap_port)
        return coap.port

    port = server.call(start())
    yield port
    server.call(coap.stop())


def audit_events(server: Lwm2mTestServer, subject: str) -> list[dict[str, Any]]:
    """The audit rows of one endpoint, oldest first."""
    with server.admin() as http:
        response = http.get("/api/admin/audit", params={"limit": 1000})
    assert response.status_code == 200, response.text
    return [row for row in reversed(response.json()) if row["subject"] == subject]
