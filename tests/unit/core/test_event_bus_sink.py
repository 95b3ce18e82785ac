"""The EventBus hands every tagged event to its sink while the sink listens (the event
handlers' outbox), also with no SSE subscriber, and alert events of any spelling reach
lifecycle handlers selecting them."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime

from meadowlark.core.event_handlers.outbox import ActiveHandler, HandlerOutbox
from meadowlark.core.event_handlers.rules import filter_of
from meadowlark.core.events import DeviceEvent, EventBus


async def _domain(endpoint: str) -> str:
    return "/root/a/"


def test_sink_gets_tagged_events_only_while_it_listens():
    async def main() -> list[DeviceEvent]:
        bus = EventBus(_domain)
        seen: list[DeviceEvent] = []
        listening = False
        bus.sink = seen.append
        bus.sink_listens = lambda: listening
        bus._publish("alertRaised", "dev-1", reason="ignored")  # type: ignore[arg-type]
        listening = True
        bus._publish("alertRaised", "dev-1", reason="hot")  # type: ignore[arg-type]
        await asyncio.sleep(0.05)  # the domain lookup
        return seen

    seen = asyncio.run(main())
    assert [(e.kind, e.endpoint, e.domain_id, e.reason) for e in seen] == [
        ("alertRaised", "dev-1", "/root/a/", "hot")
    ]


def test_alert_events_of_either_spelling_go_to_lifecycle_handlers_of_their_domain():
    outbox = HandlerOutbox(None, lambda endpoint: "/root/a/")  # type: ignore[arg-type]
    alerts = filter_of({"type": "lifecycle", "eventTypes": ["alertRaised", "alertCleared"]})
    outbox.set_handlers(
        [ActiveHandler("mine", "/root/a/", alerts), ActiveHandler("other", "/root/b/", alerts)]
    )
    assert outbox.listens()
    at = datetime(2026, 12, 1, tzinfo=UTC)
    for kind in ("ALERT_RAISED", "alertAcknowledged", "alert_cleared", "REGISTRATION"):
        outbox.on_bus_event(DeviceEvent(kind, "dev-1", "/root/a/x/", at, reason="r"))  # type: ignore[arg-type]
    rows = outbox._pending
    assert [(r["handler_id"], r["payload"]["eventType"]) for r in rows] == [
        ("mine", "alertRaised"),
        ("mine", "alertCleared"),
    ]
    assert rows[0]["payload"]["details"] == {"reason": "r"}
    assert rows[0]["payload"]["timestamp"] == int(at.timestamp() * 1000)
