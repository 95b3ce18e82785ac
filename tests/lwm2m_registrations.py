"""Registrations for tests that need one without a device: a UDP LwM2M 1.1 client, 300 s
lifetime, registered now."""

from __future__ import annotations

from datetime import UTC, datetime

from meadowlark.lwm2m.codec.link_format import parse_registration_links
from meadowlark.server.registration import Registration
from meadowlark.server.transport import Peer


def make_registration(
    endpoint: str = "dev",
    *,
    registration_id: str = "0123456789abcdef",
    peer: Peer = Peer("192.0.2.1", 40000),
    links: bytes = b"</1/0>,</3/0>",
) -> Registration:
    """A registration of ``endpoint`` from ``peer`` with the objects of ``links``."""
    now = datetime.now(UTC)
    return Registration(
        registration_id=registration_id,
        endpoint=endpoint,
        lwm2m_version="1.1",
        binding="U",
        lifetime=300,
        queue_mode=False,
        sms_number=None,
        objects=parse_registration_links(links),
        peer=peer,
        registered_at=now,
        last_update=now,
    )
