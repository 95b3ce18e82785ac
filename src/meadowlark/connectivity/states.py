"""The SIM lifecycle: PROVISIONED -> TEST_ACTIVE -> ACTIVE <-> SUSPENDED -> RETIRED."""

from __future__ import annotations

from enum import StrEnum

from meadowlark.core.errors import Conflict, InvalidInput


class ThingState(StrEnum):
    PROVISIONED = "PROVISIONED"
    TEST_ACTIVE = "TEST_ACTIVE"
    ACTIVE = "ACTIVE"
    SUSPENDED = "SUSPENDED"
    RETIRED = "RETIRED"

    @property
    def blocks_traffic(self) -> bool:
        """A device using a SIM in this state may not register."""
        return self in (ThingState.SUSPENDED, ThingState.RETIRED)


TRANSITIONS: dict[ThingState, frozenset[ThingState]] = {
    ThingState.PROVISIONED: frozenset({ThingState.TEST_ACTIVE, ThingState.ACTIVE}),
    ThingState.TEST_ACTIVE: frozenset({ThingState.ACTIVE, ThingState.SUSPENDED}),
    ThingState.ACTIVE: frozenset({ThingState.SUSPENDED}),
    ThingState.SUSPENDED: frozenset({ThingState.ACTIVE, ThingState.RETIRED}),
    ThingState.RETIRED: frozenset(),
}
INVALID_TRANSITION = 4091


def parse_state(text: str) -> ThingState:
    try:
        return ThingState(text.strip().upper())
    except ValueError:
        names = ", ".join(state.value for state in ThingState)
        raise InvalidInput(f"unknown state {text[:40]!r}; one of {names}") from None


def check_transition(current: ThingState, target: ThingState) -> None:
    """A 409 unless ``current`` may move to ``target`` (staying put is allowed)."""
    if target is not current and target not in TRANSITIONS[current]:
        raise Conflict(
            f"a Thing cannot go from {current.value} to {target.value}", code=INVALID_TRANSITION
        )
