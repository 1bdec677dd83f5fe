"""The shared send-rate token bucket, driven by a fake clock so nothing really sleeps."""

from __future__ import annotations

import threading
import time

import pytest

from dispatcher.channels.ratelimit import RateLimiter


class FakeClock:
    """A clock that only moves when someone sleeps (or the test advances it)."""

    def __init__(self) -> None:
        self.now = 0.0
        self.sleeps: list[float] = []
        self._lock = threading.Lock()

    def __call__(self) -> float:
        with self._lock:
            return self.now

    def sleep(self, seconds: float) -> None:
        with self._lock:
            self.sleeps.append(seconds)
            self.now += seconds


def test_a_full_second_of_burst_then_steady_rate() -> None:
    clock = FakeClock()
    limiter = RateLimiter(10, clock=clock, sleep=clock.sleep)

    assert [limiter.acquire() for _ in range(10)] == [0.0] * 10
    assert clock.now == 0.0
    waits = [limiter.acquire() for _ in range(5)]
    assert waits == pytest.approx([0.1] * 5)
    assert clock.now == pytest.approx(0.5)


def test_idle_time_refills_but_not_beyond_the_burst() -> None:
    clock = FakeClock()
    limiter = RateLimiter(10, clock=clock, sleep=clock.sleep)
    for _ in range(10):
        limiter.acquire()
    clock.now += 0.3  # three tokens come back
    assert [limiter.acquire() for _ in range(4)] == pytest.approx([0, 0, 0, 0.1])

    clock.now += 3600  # an idle hour saves up only one burst
    assert sum(1 for _ in range(20) if limiter.acquire() == 0) == 10


def test_slow_rates_allow_one_at_a_time() -> None:
    clock = FakeClock()
    limiter = RateLimiter(0.5, clock=clock, sleep=clock.sleep)
    assert [limiter.acquire() for _ in range(3)] == pytest.approx([0, 2, 2])


def test_rate_zero_never_waits() -> None:
    clock = FakeClock()
    limiter = RateLimiter(0, clock=clock, sleep=clock.sleep)
    assert all(limiter.acquire() == 0 for _ in range(10_000))
    assert clock.sleeps == []


def test_invalid_arguments() -> None:
    with pytest.raises(ValueError):
        RateLimiter(-1)
    with pytest.raises(ValueError):
        RateLimiter(5, burst=0.5)


def test_threads_each_get_their_own_slot() -> None:
    # The clock stands still, so every caller past the burst must wait one slot longer
    # than the previous one: any lost update would show as a repeated or missing wait.
    sleeps: list[float] = []
    lock = threading.Lock()

    def sleep(seconds: float) -> None:
        with lock:
            sleeps.append(seconds)

    limiter = RateLimiter(10, clock=lambda: 0.0, sleep=sleep)
    start = threading.Barrier(8, timeout=5)

    def worker() -> None:
        start.wait()
        for _ in range(50):
            limiter.acquire()

    threads = [threading.Thread(target=worker) for _ in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()

    assert sorted(sleeps) == pytest.approx([n / 10 for n in range(1, 391)])


def test_real_clock_holds_the_rate_across_threads() -> None:
    limiter = RateLimiter(400)
    count = 0
    lock = threading.Lock()

    def worker() -> None:
        nonlocal count
        for _ in range(75):
            limiter.acquire()
            with lock:
                count += 1

    began = time.monotonic()
    threads = [threading.Thread(target=worker) for _ in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    elapsed = time.monotonic() - began

    assert count == 600
    assert elapsed >= (600 - 400) / 400 * 0.95  # the burst is free, the rest is paced
