"""<NOTIFICATION> attributes of Write-Attributes (OMA-TS-LightweightM2M-Core 1.1 §5.1.2,
1.2 §5.1.1-2): ``pmin pmax gt lt st epmin epmax`` and, from 1.2, ``edge con hqmax``.

Write-Attributes carries them as URI query options, ``pmin=10``. An option with no
value (``pmin``) removes the attribute; such names are kept in ``cleared``.
"""

from __future__ import annotations

import math
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, fields, replace

from meadowlark.lwm2m.codec.errors import DecodeError
from meadowlark.lwm2m.codec.text import float_from_text, float_to_text
from meadowlark.lwm2m.path import LwM2mPath

INTEGER_ATTRIBUTES = ("pmin", "pmax", "epmin", "epmax", "hqmax")
FLOAT_ATTRIBUTES = ("gt", "lt", "st")
FLAG_ATTRIBUTES = ("edge", "con")
ATTRIBUTE_NAMES = INTEGER_ATTRIBUTES + FLOAT_ATTRIBUTES + FLAG_ATTRIBUTES
RESOURCE_LEVEL_ATTRIBUTES = frozenset({"gt", "lt", "st", "edge"})
"""Attributes that only apply to a resource or resource instance (Core 1.2 Table 5.1.2-1)."""

_NON_NEGATIVE_INTEGER = re.compile(r"[0-9]{1,10}")


class InvalidAttributeError(DecodeError):
    """Attributes the server must refuse (4.00 Bad Request)."""


@dataclass(frozen=True, slots=True)
class NotificationAttributes:
    """Attribute values; ``None`` means "not given". ``cleared`` names attributes to remove.

    ``edge``: 0 falling edge, 1 rising edge. ``con``: 0 non-confirmable, 1 confirmable.
    Construction validates: integers are non-negative, ``pmin <= pmax``,
    ``epmin <= epmax``, ``st >= 0``, and when both bounds are present ``lt < gt`` and
    ``lt + 2 * st < gt`` (Core 1.1 §5.1.2 "Change Value Conditions").
    """

    pmin: int | None = None
    pmax: int | None = None
    gt: float | None = None
    lt: float | None = None
    st: float | None = None
    epmin: int | None = None
    epmax: int | None = None
    edge: int | None = None
    con: int | None = None
    hqmax: int | None = None
    cleared: frozenset[str] = frozenset()

    def __post_init__(self) -> None:
        for name in INTEGER_ATTRIBUTES:
            value = getattr(self, name)
            if value is not None and (
                isinstance(value, bool) or not isinstance(value, int) or value < 0
            ):
                raise InvalidAttributeError(f"{name} must be a non-negative integer")
        for name in FLOAT_ATTRIBUTES:
            value = getattr(self, name)
            if value is not None and (
                isinstance(value, bool)
                or not isinstance(value, int | float)
                or not math.isfinite(value)
            ):
                raise InvalidAttributeError(f"{name} must be a finite number")
        for name in FLAG_ATTRIBUTES:
            value = getattr(self, name)
            if value is not None and (type(value) is not int or value not in (0, 1)):
                raise InvalidAttributeError(f"{name} must be 0 or 1")
        unknown = self.cleared - set(ATTRIBUTE_NAMES)
        if unknown:
            raise InvalidAttributeError(f"unknown attribute(s) to clear: {sorted(unknown)}")
        both = {name for name in self.cleared if getattr(self, name) is not None}
        if both:
            raise InvalidAttributeError(f"attribute(s) both set and cleared: {sorted(both)}")
        self._check_relations()

    def _check_relations(self) -> None:
        if self.pmin is not None and self.pmax is not None and self.pmin > self.pmax:
            raise InvalidAttributeError(f"pmin ({self.pmin}) is greater than pmax ({self.pmax})")
        if self.epmin is not None and self.epmax is not None and self.epmin > self.epmax:
            raise InvalidAttributeError(
                f"epmin ({self.epmin}) is greater than epmax ({self.epmax})"
            )
        if self.st is not None and self.st < 0:
            raise InvalidAttributeError("st must not be negative")
        if self.lt is not None and self.gt is not None:
            if not self.lt < self.gt:
                raise InvalidAttributeError(f"lt ({self.lt}) must be less than gt ({self.gt})")
            if self.st is not None and not self.lt + 2 * self.st < self.gt:
                raise InvalidAttributeError("lt + 2*st must be less than gt")

    def is_empty(self) -> bool:
        return not self.cleared and all(getattr(self, name) is None for name in ATTRIBUTE_NAMES)

    def merged_with(self, update: NotificationAttributes) -> NotificationAttributes:
        """The attributes after applying ``update`` (values set, ``cleared`` removed).

        The result is validated as a whole, so an update that is fine alone but
        conflicts with a kept value (``pmin`` above the stored ``pmax``) is refused.
        """
        changes: dict[str, object] = {name: None for name in update.cleared}
        for name in ATTRIBUTE_NAMES:
            if getattr(update, name) is not None:
                changes[name] = getattr(update, name)
        # Each value comes from the same-named field of ``update``: right for that field.
        return replace(self, cleared=frozenset(), **changes)  # type: ignore[arg-type]


def parse_attributes(
    query: Mapping[str, str | None], path: LwM2mPath | None = None
) -> NotificationAttributes:
    """Attributes from Write-Attributes query parameters.

    A parameter whose value is ``None`` or empty clears that attribute. With ``path``,
    attributes that need a resource (``gt lt st edge``) are refused above one.
    """
    values: dict[str, int | float] = {}
    cleared: set[str] = set()
    for name, raw in query.items():
        if name not in ATTRIBUTE_NAMES:
            raise InvalidAttributeError(f"unknown attribute {name!r}")
        if path is not None and name in RESOURCE_LEVEL_ATTRIBUTES and path.depth < 3:
            raise InvalidAttributeError(f"{name} applies to resources only, not to {path}")
        if raw is None or raw == "":
            cleared.add(name)
        elif name in FLOAT_ATTRIBUTES:
            try:
                values[name] = float_from_text(raw)
            except DecodeError as exc:
                raise InvalidAttributeError(f"{name}: {exc}") from None
        elif _NON_NEGATIVE_INTEGER.fullmatch(raw):
            values[name] = int(raw)
        else:
            raise InvalidAttributeError(f"{name} must be a non-negative integer, got {raw!r}")
    # Integers under integer names, floats under float names; __post_init__ checks again.
    return NotificationAttributes(cleared=frozenset(cleared), **values)  # type: ignore[arg-type]


def from_query(options: Iterable[str], path: LwM2mPath | None = None) -> NotificationAttributes:
    """Attributes from URI query options such as ``["pmin=10", "pmax"]``."""
    query: dict[str, str | None] = {}
    for option in options:
        name, sep, value = option.partition("=")
        if name in query:
            raise InvalidAttributeError(f"attribute {name!r} given twice")
        query[name] = value if sep else None
    return parse_attributes(query, path)


def to_query(attrs: NotificationAttributes) -> list[str]:
    """URI query options for Write-Attributes: ``pmin=10``, and ``pmin`` to clear."""
    options: list[str] = []
    for attribute in fields(attrs):
        name = attribute.name
        value = getattr(attrs, name)
        if name in attrs.cleared:
            options.append(name)
        elif isinstance(value, float):
            options.append(f"{name}={float_to_text(value)}")
        elif value is not None and name != "cleared":
            options.append(f"{name}={value}")
    return options
