"""FirmwareUpdates listens to the LwM2M server: a registration Update is not a FOTA update."""

from __future__ import annotations

from typing import Any

from lwm2m_registrations import make_registration
from meadowlark.core.firmware import FirmwareUpdates
from meadowlark.server.registration import Registration


def _registration() -> Registration:
    return make_registration(links=b"</3/0>,</5/0>")


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
