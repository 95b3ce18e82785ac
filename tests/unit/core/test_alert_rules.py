"""Alert rules without a store: the threshold state machine with hysteresis, the index of
threshold rules by path, rule validation and the value-cache tap."""

from __future__ import annotations

import asyncio
import math
from datetime import UTC, datetime
from typing import Any

import pytest

from meadowlark.core.alerts import (
    AlertingValueCache,
    ThresholdIndex,
    ThresholdRule,
    Transition,
    numeric,
    parse_resource_url,
    validated_rule_fields,
)
from meadowlark.core.errors import InvalidInput
from meadowlark.lwm2m.node import ResourceType
from meadowlark.lwm2m.path import LwM2mPath
from meadowlark.server.ports import InMemoryValueCache
from meadowlark.server.values import CachedValue

SENSOR = LwM2mPath(3303, 0, 5700)


def _rule(above: float | None = None, below: float | None = None, hysteresis: float = 0.0):
    return ThresholdRule("r1", "/root/", None, "warning", SENSOR, above, below, hysteresis)


def _walk(rule: ThresholdRule, values: list[float]) -> list[str]:
    """Feed values through the state machine; the open/closed state after each one."""
    is_open, states = False, []
    for value in values:
        transition = rule.transition(is_open, value)
        if transition is Transition.RAISE:
            is_open = True
        elif transition is Transition.CLEAR:
            is_open = False
        states.append("open" if is_open else "-")
    return states


def test_above_raises_on_crossing_and_clears_only_past_the_hysteresis():
    rule = _rule(above=30, hysteresis=2)
    states = _walk(rule, [25, 30, 30.5, 29, 28.5, 31, 28, 27.9, 30, 31])
    # 30 is not above 30; 29 and 28.5 are back under 30 but not by 2; a crossing while
    # open raises nothing new; 28 is 30 - 2 and clears.
    assert states == ["-", "-", "open", "open", "open", "open", "-", "-", "-", "open"]


def test_below_mirrors_above():
    rule = _rule(below=10, hysteresis=1)
    assert _walk(rule, [12, 9.5, 10.5, 11, 9]) == ["-", "open", "open", "-", "open"]


def test_band_raises_on_either_side_and_clears_inside_both_margins():
    rule = _rule(above=30, below=10, hysteresis=1)
    assert rule.transition(False, 31) is Transition.RAISE
    assert rule.transition(False, 9) is Transition.RAISE
    assert rule.transition(False, 20) is None
    assert rule.transition(True, 29.5) is None
    assert rule.transition(True, 10.5) is None
    assert rule.transition(True, 20) is Transition.CLEAR


def test_zero_hysteresis_clears_at_the_threshold():
    rule = _rule(above=30)
    assert rule.transition(True, 30) is Transition.CLEAR
    assert rule.transition(True, 30.01) is None


def test_message_names_the_side_crossed():
    rule = _rule(above=30, below=10)
    assert rule.describe(31) == "/3303/0/5700 = 31 is above 30"
    assert rule.describe(9.5) == "/3303/0/5700 = 9.5 is below 10"


def test_index_finds_rules_by_path_only():
    other = ThresholdRule("r2", "/root/", None, "info", LwM2mPath(3, 0, 9), 1, None, 0)
    index = ThresholdIndex([_rule(above=1), other, _rule(above=5)])
    assert index
    assert [rule.id for rule in index.rules_for(SENSOR)] == ["r1", "r1"]
    assert index.rules_for(LwM2mPath(3303, 0, 5701)) == ()
    assert index.paths == {SENSOR, LwM2mPath(3, 0, 9)}
    assert not ThresholdIndex()


@pytest.mark.parametrize(
    ("value", "expected"),
    [(3, 3.0), (2.5, 2.5), (True, None), ("31", None), (math.nan, None), (None, None)],
)
def test_only_finite_numbers_are_compared(value: Any, expected: float | None):
    assert numeric(value) == expected


@pytest.mark.parametrize("url", ["/3303/0/5700", "/3303/0/5700/1"])
def test_resource_urls(url: str):
    assert str(parse_resource_url(url)) == url


@pytest.mark.parametrize("url", ["3303/0/5700", "/3303/0", "/3303/x/5700", "/", "/1/2/3/4/5"])
def test_bad_resource_urls_get_4003(url: str):
    with pytest.raises(InvalidInput) as raised:
        parse_resource_url(url)
    assert raised.value.code == 4003


@pytest.mark.parametrize(
    "body",
    [
        {"name": "n", "type": "threshold", "resourceUrl": "/3303/0/5700", "above": math.inf},
        {"name": "n", "type": "threshold", "resourceUrl": "/3303/0/5700", "above": math.nan},
        {"name": "n", "type": "threshold", "resourceUrl": "/3303/0/5700", "above": "30"},
        {"name": "n", "type": "noContact", "noContactMinutes": 10**9},
        {"name": "n", "type": "noContact", "noContactMinutes": True},
        {"name": "n", "type": "taskFailed", "enabled": None},
        {"name": "n", "type": None},
    ],
)
def test_invalid_rules_get_4000(body: dict[str, Any]):
    with pytest.raises(InvalidInput) as raised:
        validated_rule_fields(body)
    assert raised.value.code == 4000


def test_fields_of_other_kinds_are_not_kept():
    fields = validated_rule_fields(
        {"name": "n", "type": "noContact", "noContactMinutes": 5, "above": 3, "resourceUrl": "/1"}
    )
    assert fields["no_contact_minutes"] == 5
    assert fields["above"] is None and fields["resource_url"] is None


class _Recorder:
    def __init__(self) -> None:
        self.seen: list[tuple[str, dict[LwM2mPath, CachedValue]]] = []

    def values_seen(self, endpoint: str, values: dict[LwM2mPath, CachedValue]) -> None:
        self.seen.append((endpoint, dict(values)))


@pytest.mark.anyio
async def test_value_cache_tap_keeps_values_and_shows_them_to_the_rules():
    inner, recorder = InMemoryValueCache(), _Recorder()
    cache = AlertingValueCache(inner, recorder)  # type: ignore[arg-type]
    value = CachedValue(ResourceType.FLOAT, 21.5, datetime.now(UTC))
    cache.put("ep", {SENSOR: value})
    assert await cache.get("ep") == {SENSOR: value}
    assert recorder.seen == [("ep", {SENSOR: value})]


@pytest.mark.anyio
async def test_alert_events_reach_their_domain_only_and_cross_nodes_whole():
    from meadowlark.cluster.wire import event_from_wire, event_to_wire
    from meadowlark.core.events import EventBus, EventFilter, EventKind

    async def no_lookup(_endpoint: str) -> str | None:
        raise AssertionError("an alert's domain is known: nothing to look up")

    bus = EventBus(no_lookup)
    acme = bus.subscribe(EventFilter("/root/acme/"))
    other = bus.subscribe(EventFilter("/root/other/"))
    alert = {"alertId": "a1", "ruleId": "r1", "severity": "critical", "value": 31.5}
    bus.publish_known(EventKind.ALERT_RAISED, "dev", "/root/acme/sub/", alert=alert)
    event = await asyncio.wait_for(acme.__anext__(), 1)
    assert (event.kind, event.endpoint, event.domain_id) == (
        EventKind.ALERT_RAISED,
        "dev",
        "/root/acme/sub/",
    )
    assert event.alert == alert
    with pytest.raises(TimeoutError):
        await asyncio.wait_for(other.__anext__(), 0.05)
    relayed = event_from_wire(event_to_wire(event))
    assert relayed.kind is EventKind.ALERT_RAISED and relayed.alert == alert
