"""HandshakeScheduler: handshake steps in slices, round robin, the loop served between."""

from __future__ import annotations

import asyncio

import pytest

from meadowlark.coap.dtls import HandshakeScheduler

pytestmark = pytest.mark.anyio


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


class Clock:
    """A clock the work advances (the cost of a step)."""

    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


async def settle() -> None:
    for _ in range(50):
        await asyncio.sleep(0)


async def test_a_slice_ends_when_its_time_is_spent_and_the_loop_runs_in_between():
    clock = Clock()
    log: list[str] = []
    remaining = {"a": 3, "b": 3}

    def work(session: str) -> bool:
        clock.now += 0.004  # an ECDSA signature
        log.append(session)
        remaining[session] -= 1
        return remaining[session] > 0

    scheduler = HandshakeScheduler(work, 0.001, clock)

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
    steps = [entry for entry in log if entry != "tick"]
    assert steps == ["a", "b", "a", "b", "a", "b"]  # round robin, in order per session
    # Never two steps of 4 ms without the loop getting a turn in between.
    for first, second in zip(log, log[1:], strict=False):
        assert not (first != "tick" and second != "tick"), log
    assert scheduler.slices == 6
    assert len(scheduler) == 0


async def test_cheap_steps_run_together_in_one_slice():
    clock = Clock()
    remaining = {name: 5 for name in "abcd"}

    def work(session: str) -> bool:
        clock.now += 0.00001  # a plain PSK step
        remaining[session] -= 1
        return remaining[session] > 0

    scheduler = HandshakeScheduler(work, 0.001, clock)
    for name in remaining:
        scheduler.add(name)
    await settle()
    assert not any(remaining.values())
    assert scheduler.slices == 1


async def test_a_session_with_work_is_queued_once_and_waits_for_data_otherwise():
    clock = Clock()
    runs: list[str] = []

    def work(session: str) -> bool:
        runs.append(session)
        return False  # waits for the peer's next flight

    scheduler = HandshakeScheduler(work, 0.001, clock)
    scheduler.add("a")
    scheduler.add("a")  # a second datagram before its turn came
    await settle()
    assert runs == ["a"]
    scheduler.add("a")  # the next flight
    await settle()
    assert runs == ["a", "a"]


async def test_cancel_drops_pending_work():
    runs: list[str] = []
    scheduler = HandshakeScheduler(lambda session: runs.append(session) is None, 0.001)
    scheduler.add("a")
    scheduler.cancel()
    await settle()
    assert runs == []
