"""Refused registrations and address changes as both event feeds render them."""

from __future__ import annotations

from datetime import UTC, datetime

from meadowlark.api.routers.coiote_events import event_payloads
from meadowlark.api.routers.lwm2m import _event_json
from meadowlark.core.events import DeviceEvent, EventKind
from meadowlark.server.transport import Peer

AT = datetime(2026, 11, 30, 12, 0, tzinfo=UTC)
REFUSED = DeviceEvent(
    kind=EventKind.REGISTRATION_REFUSED,
    endpoint="meter-1",
    domain_id="/root/acme/",
    at=AT,
    peer=Peer("203.0.113.7", 40000),
    reason="unsecured_transport",
    operation="register",
)
MOVED = DeviceEvent(
    kind=EventKind.ADDRESS_CHANGED,
    endpoint="meter-1",
    domain_id="/root/acme/",
    at=AT,
    peer=Peer("198.51.100.9", 41000),
    previous_peer=Peer("203.0.113.7", 40000),
    operation="update",
)


def test_the_coiote_feed_names_refusals_and_address_changes():
    [refused] = event_payloads(None, REFUSED)  # type: ignore[arg-type]
    assert refused == {
        "type": "lifecycle",
        "eventType": "deviceRegistrationRefused",
        "endpointName": "meter-1",
        "domain": "/root/acme/",
        "timestamp": int(AT.timestamp() * 1000),
        "ipAddress": "203.0.113.7",
        "operation": "register",
        "reason": "unsecured_transport",
    }
    [moved] = event_payloads(None, MOVED)  # type: ignore[arg-type]
    assert moved["eventType"] == "deviceAddressChanged"
    assert (moved["ipAddress"], moved["previousIpAddress"]) == ("198.51.100.9", "203.0.113.7")


def test_the_lwm2m_feed_names_refusals_and_address_changes():
    assert _event_json(None, REFUSED, "hex") == {  # type: ignore[arg-type]
        "ep": "meter-1",
        "operation": "register",
        "reason": "unsecured_transport",
        "address": "203.0.113.7:40000",
    }
    assert _event_json(None, MOVED, "hex") == {  # type: ignore[arg-type]
        "ep": "meter-1",
        "operation": "update",
        "address": "198.51.100.9:41000",
        "previousAddress": "203.0.113.7:40000",
    }
