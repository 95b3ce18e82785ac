"""FirmwareUpdates listens to the LwM2M server: a registration Update is not a FOTA update."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from meadowlark.core.firmware import FirmwareUpdates
from meadowlark.lwm2m.codec.link_format import parse_registration_links
from meadowlark.server.registration import Registration
from meadowlark.server.transport import Peer


def _registration() -> Registration:
    now = datetime.now(UTC)
    return Registration(
        registration_id="0123456789abcdef",
        endpoint="dev",
        lwm2m_version="1.1",
        binding="U",
        lifetime=300,
        queue_mode=False,
        sms_number=None,
        objects=parse_registration_links(b"</3/0>,</5/0>"),
        peer=Peer("192.0.2.1", 40000),
        registered_at=now,
        last_update=now,
    )


def test_a_registration_update_does_not_tell_the_firmware_updated_callback():
    # The callback used to be an attribute named ``on_updated``, which hid the
    # ServerListener method of that name: every registration Update of every device
    # called it with (registration, previous) instead of (endpoint, domain, details).
    told: list[tuple[Any, ...]] = []
    updates = FirmwareUpdates(db=None, lwm2m=None, images=None)
    updates.on_firmware_updated = lambda *args: told.append(args)
    registration = _registration()

    updates.on_updated(registration, registration)

    assert told == []
