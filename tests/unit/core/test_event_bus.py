"""The event bus turns the server's security-relevant callbacks into device events."""

from __future__ import annotations

import asyncio

import pytest

from lwm2m_registrations import make_registration
from meadowlark.core.events import EventBus, EventFilter, EventKind
from meadowlark.server.registration import Registration
from meadowlark.server.transport import Peer

pytestmark = pytest.mark.anyio
OLD = Peer("192.0.2.1", 40000)
NEW = Peer("198.51.100.7", 51000)


async def domain_of(endpoint: str) -> str | None:
    return "/root/" if endpoint != "nobody" else None


def registration(peer: Peer) -> Registration:
    return make_registration(peer=peer, links=b"</3/0>")


async def test_address_change_names_the_old_and_the_new_address():
    bus = EventBus(domain_of)
    with bus.subscribe(EventFilter("/root/")) as subscription:
        bus.on_address_changed(registration(NEW), OLD, "update")
        event = await asyncio.wait_for(anext(subscription), 2)
    assert event.kind is EventKind.ADDRESS_CHANGED
    assert (event.endpoint, event.domain_id) == ("dev", "/root/")
    assert (event.previous_peer, event.peer, event.operation) == (OLD, NEW, "update")
    assert event.registration is not None and event.registration.peer == NEW


async def test_refused_registration_is_published_to_the_device_domain():
    bus = EventBus(domain_of)
    with bus.subscribe(EventFilter("/root/")) as subscription:
        bus.on_registration_refused("nobody", OLD, "unsecured_transport", "register")
        bus.on_registration_refused("dev", OLD, "unsecured_transport", "register")
        event = await asyncio.wait_for(anext(subscription), 2)
    assert event.kind is EventKind.REGISTRATION_REFUSED
    assert event.endpoint == "dev"  # an endpoint without a device has no domain to tell
    assert (event.peer, event.reason, event.operation) == (OLD, "unsecured_transport", "register")
    assert event.registration is None
