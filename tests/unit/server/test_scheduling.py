"""The deadline heap behind lifetime expiry and awake windows."""

from __future__ import annotations

import asyncio

import pytest

from meadowlark.server.scheduling import DeadlineHeap, DeadlineScheduler


def test_pops_due_keys_in_deadline_order():
    heap: DeadlineHeap[str] = DeadlineHeap()
    heap.schedule("b", 20)
    heap.schedule("a", 10)
    heap.schedule("c", 30)
    assert heap.pop_due(25) == ["a", "b"]
    assert heap.next_deadline() == 30
    assert len(heap) == 1


def test_rescheduling_replaces_the_old_deadline():
    heap: DeadlineHeap[str] = DeadlineHeap()
    heap.schedule("a", 10)
    heap.schedule("a", 50)
    assert heap.pop_due(20) == []
    assert heap.next_deadline() == 50
    assert heap.pop_due(50) == ["a"]


def test_cancelled_keys_never_come_due():
    heap: DeadlineHeap[str] = DeadlineHeap()
    heap.schedule("a", 10)
    heap.cancel("a")
    assert heap.pop_due(100) == []
    assert heap.next_deadline() is None


@pytest.mark.anyio
async def test_scheduler_calls_back_with_one_task_for_many_keys():
    fired: list[int] = []
    scheduler: DeadlineScheduler[int] = DeadlineScheduler(fired.append)
    scheduler.start()
    tasks_before = len(asyncio.all_tasks())
    for key in range(500):
        scheduler.schedule_in(key, 0.01 + key / 100_000)
    scheduler.schedule_in(999, 60)
    assert len(asyncio.all_tasks()) == tasks_before
    await asyncio.sleep(0.2)
    await scheduler.stop()
    assert fired == list(range(500))
