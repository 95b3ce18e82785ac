"""When an observation sends a notification: the <NOTIFICATION> attribute rules of
OMA-TS-LightweightM2M-Core 1.1 §5.1.2, as pure functions of times and values.

- ``pmin``: no notification sooner than ``pmin`` seconds after the previous one.
- ``pmax``: a notification at the latest ``pmax`` seconds after the previous one, changed
  or not; ignored when absent, 0, or not greater than ``pmin``.
- ``gt`` / ``lt``: a numeric value notifies when it crosses the threshold (the side of
  the threshold differs from the last notified value's side).
- ``st``: a numeric value notifies when it moved by at least ``st`` from the last
  notified value.
- With none of ``gt lt st`` (or a non-numeric value), any change notifies; with some of
  them, a change notifies when any of the given conditions holds.

Attributes are inherited: the most specific level (resource instance, resource, object
instance, object) that sets one wins; ``pmin``/``pmax`` fall back to the Server object's
default periods.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from meadowlark.lwm2m.codec.attributes import NotificationAttributes

_NAMES = ("pmin", "pmax", "gt", "lt", "st")


@dataclass(frozen=True, slots=True)
class EffectiveAttributes:
    """The attributes that govern one observation once inheritance is resolved."""

    pmin: float = 0
    pmax: float | None = None
    gt: float | None = None
    lt: float | None = None
    st: float | None = None

    @property
    def has_change_conditions(self) -> bool:
        return self.gt is not None or self.lt is not None or self.st is not None


def resolve_attributes(
    chain: Sequence[NotificationAttributes],
    default_pmin: int | None = None,
    default_pmax: int | None = None,
) -> EffectiveAttributes:
    """Effective attributes from ``chain`` (most specific level first) and server defaults."""
    found: dict[str, float | None] = dict.fromkeys(_NAMES)
    for attributes in chain:
        for name in _NAMES:
            if found[name] is None:
                found[name] = getattr(attributes, name)
    pmin = found["pmin"] if found["pmin"] is not None else default_pmin
    pmax = found["pmax"] if found["pmax"] is not None else default_pmax
    pmin = pmin or 0
    if pmax is not None and (pmax <= 0 or pmax <= pmin):
        pmax = None
    return EffectiveAttributes(pmin, pmax, found["gt"], found["lt"], found["st"])


def is_number(value: object) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool)


def change_is_notable(attributes: EffectiveAttributes, last: object, current: object) -> bool:
    """Whether going from the last notified value to ``current`` calls for a notification."""
    if current == last:
        return False
    if not attributes.has_change_conditions or not (is_number(last) and is_number(current)):
        return True
    assert isinstance(last, int | float) and isinstance(current, int | float)
    if attributes.gt is not None and (last > attributes.gt) != (current > attributes.gt):
        return True
    if attributes.lt is not None and (last < attributes.lt) != (current < attributes.lt):
        return True
    return attributes.st is not None and abs(current - last) >= attributes.st


def notification_due(
    attributes: EffectiveAttributes,
    *,
    last_sent_at: float,
    last_value: object,
    value: object,
    now: float,
) -> bool:
    """Whether a notification must go out at ``now``."""
    elapsed = now - last_sent_at
    if elapsed < attributes.pmin:
        return False
    if attributes.pmax is not None and elapsed >= attributes.pmax:
        return True
    return change_is_notable(attributes, last_value, value)


def next_check_at(
    attributes: EffectiveAttributes, *, last_sent_at: float, change_pending: bool
) -> float | None:
    """When the observation must be looked at again without a new value change.

    ``change_pending``: a notable change arrived inside the ``pmin`` window and waits for
    it to end. ``None`` means only a value change can trigger the next notification.
    """
    candidates = []
    if attributes.pmax is not None:
        candidates.append(last_sent_at + attributes.pmax)
    if change_pending:
        candidates.append(last_sent_at + attributes.pmin)
    return min(candidates) if candidates else None
