"""Notification attribute rules (pmin, pmax, gt, lt, st) on a fake clock."""

from __future__ import annotations

from meadowlark.lwm2m.codec.attributes import NotificationAttributes
from meadowlark.simulator.notify import (
    EffectiveAttributes,
    change_is_notable,
    next_check_at,
    notification_due,
    resolve_attributes,
)


def due(attributes: EffectiveAttributes, last: object, value: object, elapsed: float) -> bool:
    return notification_due(
        attributes, last_sent_at=100.0, last_value=last, value=value, now=100.0 + elapsed
    )


def test_any_change_notifies_without_change_conditions() -> None:
    attributes = EffectiveAttributes()
    assert due(attributes, 20.0, 20.5, 0)
    assert not due(attributes, 20.0, 20.0, 1000)


def test_pmin_holds_back_a_change_until_it_has_elapsed() -> None:
    attributes = EffectiveAttributes(pmin=10)
    assert not due(attributes, 1, 2, 9.9)
    assert due(attributes, 1, 2, 10)
    assert next_check_at(attributes, last_sent_at=100.0, change_pending=True) == 110.0
    assert next_check_at(attributes, last_sent_at=100.0, change_pending=False) is None


def test_pmax_forces_a_notification_without_change() -> None:
    attributes = EffectiveAttributes(pmin=2, pmax=30)
    assert not due(attributes, 5, 5, 29)
    assert due(attributes, 5, 5, 30)
    assert next_check_at(attributes, last_sent_at=100.0, change_pending=False) == 130.0
    assert next_check_at(attributes, last_sent_at=100.0, change_pending=True) == 102.0


def test_gt_notifies_on_crossing_only() -> None:
    attributes = EffectiveAttributes(gt=25.0)
    assert due(attributes, 24.0, 26.0, 1)
    assert due(attributes, 26.0, 24.0, 1)
    assert not due(attributes, 26.0, 27.0, 1)
    assert not due(attributes, 20.0, 24.9, 1)


def test_lt_notifies_on_crossing_only() -> None:
    attributes = EffectiveAttributes(lt=0.0)
    assert due(attributes, 1.0, -1.0, 1)
    assert not due(attributes, -1.0, -5.0, 1)


def test_st_needs_a_step_from_the_last_notified_value() -> None:
    attributes = EffectiveAttributes(st=0.5)
    assert not due(attributes, 20.0, 20.4, 1)
    assert due(attributes, 20.0, 20.5, 1)
    assert due(attributes, 20.0, 19.5, 1)


def test_any_condition_among_gt_lt_st_is_enough() -> None:
    attributes = EffectiveAttributes(gt=30.0, lt=10.0, st=5.0)
    assert due(attributes, 20.0, 31.0, 1)
    assert due(attributes, 20.0, 9.0, 1)
    assert due(attributes, 20.0, 25.0, 1)
    assert not due(attributes, 20.0, 24.0, 1)


def test_non_numeric_values_notify_on_any_change_even_with_conditions() -> None:
    attributes = EffectiveAttributes(st=100.0)
    assert change_is_notable(attributes, "a", "b")
    assert change_is_notable(attributes, False, True)


def test_most_specific_level_wins_and_server_defaults_fill_in() -> None:
    resource = NotificationAttributes(st=1.0)
    instance = NotificationAttributes(pmin=5, pmax=50)
    object_level = NotificationAttributes(pmin=1)
    resolved = resolve_attributes([resource, instance, object_level], 3, 600)
    assert resolved == EffectiveAttributes(pmin=5, pmax=50, st=1.0)
    assert resolve_attributes([], 3, 600) == EffectiveAttributes(pmin=3, pmax=600)


def test_pmax_not_above_pmin_is_ignored() -> None:
    assert resolve_attributes([NotificationAttributes(pmin=10, pmax=10)]).pmax is None
    assert resolve_attributes([], 0, 0).pmax is None
