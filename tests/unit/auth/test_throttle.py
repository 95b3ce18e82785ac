from __future__ import annotations

from meadowlark.auth.throttle import SlidingWindowLimiter


class FakeClock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def test_under_the_limit_no_wait():
    clock = FakeClock()
    limiter = SlidingWindowLimiter(3, 60, clock=clock)
    for _ in range(2):
        limiter.hit("a")
    assert limiter.retry_after("a") == 0


def test_at_the_limit_waits_until_the_oldest_event_leaves_the_window():
    clock = FakeClock()
    limiter = SlidingWindowLimiter(3, 60, clock=clock)
    limiter.hit("a")
    clock.now += 10
    limiter.hit("a")
    limiter.hit("a")
    assert limiter.retry_after("a") == 50
    clock.now += 49.5
    assert limiter.retry_after("a") == 1  # rounded up, never 0 while throttled
    clock.now += 0.5
    assert limiter.retry_after("a") == 0  # the first event has left the window


def test_keys_are_independent_and_reset_clears_one():
    clock = FakeClock()
    limiter = SlidingWindowLimiter(1, 60, clock=clock)
    limiter.hit("a")
    assert limiter.retry_after("a") == 60
    assert limiter.retry_after("b") == 0
    limiter.reset("a")
    assert limiter.retry_after("a") == 0


def test_window_slides():
    clock = FakeClock()
    limiter = SlidingWindowLimiter(2, 10, clock=clock)
    for _ in range(20):
        assert limiter.retry_after("k") == 0
        limiter.hit("k")
        clock.now += 6  # at most 2 events in any 10 s


def test_memory_is_bounded():
    clock = FakeClock()
    limiter = SlidingWindowLimiter(5, 10, clock=clock, max_keys=100)
    for i in range(1000):
        limiter.hit(f"key{i}")
    assert len(limiter._events) <= 100
    clock.now += 11  # all stale: evicted first
    limiter.hit("fresh")
    assert limiter.retry_after("fresh") == 0
    assert len(limiter._events) <= 100
