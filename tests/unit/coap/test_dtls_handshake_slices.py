"""HandshakeScheduler: handshake steps in slices, round robin, the loop served between."""

from __future__ import annotations

import asyncio
from collections.abc import Callable

import pytest

from meadowlark.coap.dtls import HandshakeScheduler

pytestmark = pytest.mark.anyio
SLICE = 0.001
EXPENSIVE = 0.004
"""An ECDSA signature or certificate check."""
CHEAP = 0.00001
"""A plain PSK step."""


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


class Clock:
    """A clock the work advances (the cost of each step)."""

    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


def steps(clock: Clock, log: list[str], remaining: dict[str, int], cost: float):
    def work(session: str) -> bool:
        clock.now += cost
        log.append(session)
        remaining[session] -= 1
        return remaining[session] > 0

    return work


async def settle() -> None:
    for _ in range(50):
        await asyncio.sleep(0)


async def test_expensive_steps_run_one_slice_at_a_time_and_the_loop_runs_in_between():
    clock, log = Clock(), []
    remaining = {"a": 3, "b": 3}
    scheduler = HandshakeScheduler(steps(clock, log, remaining, EXPENSIVE), SLICE, clock)

    async def ticker() -> None:
        while any(remaining.values()):
            log.append("tick")
            await asyncio.sleep(0)

    ticking = asyncio.create_task(ticker())
    await asyncio.sleep(0)
    scheduler.add("a")
    scheduler.add("b")
    await settle()
    await ticking
    assert [entry for entry in log if entry == "a"] == ["a"] * 3
    assert [entry for entry in log if entry == "b"] == ["b"] * 3
    # Never two steps of 4 ms without the loop getting a turn in between.
    for first, second in zip(log, log[1:], strict=False):
        assert "tick" in (first, second), log
    after_first = [entry for entry in log if entry != "tick"][1:]
    assert after_first[:4] in (["b", "a", "b", "a"], ["a", "b", "a", "b"])  # round robin
    assert len(scheduler) == 0


async def test_cheap_handshakes_finish_at_once_without_waiting_for_the_loop():
    clock, log = Clock(), []
    remaining = {name: 5 for name in "abcd"}
    scheduler = HandshakeScheduler(steps(clock, log, remaining, CHEAP), SLICE, clock)
    for name in remaining:
        scheduler.add(name)
        assert remaining[name] == 0  # in the datagram's own callback
    assert len(scheduler) == 0


def hog(clock: Clock) -> Callable[[str], bool]:
    """Work where ``x`` is a long handshake and any other session one step."""

    runs: list[str] = []

    def work(session: str) -> bool:
        runs.append(session)
        if session == "x":
            clock.now += EXPENSIVE
            return runs.count("x") < 3
        return False

    work.runs = runs  # type: ignore[attr-defined]
    return work


async def test_a_session_is_queued_once_while_it_waits_for_its_turn():
    clock = Clock()
    work = hog(clock)
    scheduler = HandshakeScheduler(work, SLICE, clock)
    scheduler.add("x")  # runs one step, then waits for the next slice
    scheduler.add("a")
    scheduler.add("a")  # a second datagram before its turn came
    assert len(scheduler) == 2
    await settle()
    assert work.runs.count("a") == 1  # type: ignore[attr-defined]
    assert work.runs.count("x") == 3  # type: ignore[attr-defined]


async def test_cancel_drops_pending_work():
    clock = Clock()
    work = hog(clock)
    scheduler = HandshakeScheduler(work, SLICE, clock)
    scheduler.add("x")
    scheduler.add("a")
    scheduler.cancel()
    await settle()
    assert work.runs == ["x"]  # type: ignore[attr-defined]
