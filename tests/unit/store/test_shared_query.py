"""``SharedQuery``: one run answers everyone waiting for it, and never a stale one."""

from __future__ import annotations

import asyncio

import pytest

from meadowlark.store.db import SharedQuery


def test_callers_waiting_together_share_one_run_and_later_ones_get_a_fresh_run():
    async def main() -> tuple[list[int], list[int], int]:
        runs = 0
        release = asyncio.Event()

        async def query() -> int:
            nonlocal runs
            runs += 1
            number = runs
            await release.wait()
            return number

        shared = SharedQuery(query)
        first = [asyncio.create_task(shared()) for _ in range(5)]
        await asyncio.sleep(0)  # the first run has started and waits
        later = [asyncio.create_task(shared()) for _ in range(3)]
        await asyncio.sleep(0)
        release.set()
        return await asyncio.gather(*first), await asyncio.gather(*later), runs

    first, later, runs = asyncio.run(main())
    assert first == [1] * 5  # one query for the five
    assert later == [2] * 3  # asked while run 1 was under way: run 2 started after them
    assert runs == 2


def test_a_failed_run_fails_its_callers_and_the_next_run_starts_afresh():
    async def main() -> None:
        outcomes = iter([RuntimeError("store down"), 7])

        async def query() -> int:
            outcome = next(outcomes)
            if isinstance(outcome, Exception):
                raise outcome
            return outcome

        shared = SharedQuery(query)
        with pytest.raises(RuntimeError, match="store down"):
            await asyncio.gather(shared(), shared())
        assert await shared() == 7

    asyncio.run(main())


def test_a_cancelled_caller_does_not_cancel_the_run_for_the_others():
    async def main() -> int:
        release = asyncio.Event()

        async def query() -> int:
            await release.wait()
            return 3

        shared = SharedQuery(query)
        gone, staying = asyncio.create_task(shared()), asyncio.create_task(shared())
        await asyncio.sleep(0)
        gone.cancel()
        release.set()
        return await staying

    assert asyncio.run(main()) == 3
