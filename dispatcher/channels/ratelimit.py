"""A token bucket shared by the send workers, so `DISPATCHER_SEND_RATE` holds for the process.

Providers throttle or block a sender that exceeds its agreed rate, and the limit
is per account, not per connection: all worker threads must draw from one bucket.

Each `acquire()` reserves the next free slot under the lock and then sleeps
*outside* it. Callers are served in arrival order, a sleeping thread never
blocks the others from reserving, and the total rate is exact however many
threads call. The clock and sleep are injectable so tests run instantly.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable


class RateLimiter:
    """At most `rate_per_second` acquisitions per second on average; 0 means no cap.

    The bucket starts full with `burst` tokens (default: one second's worth,
    at least 1), so a run starts at full speed and idle time is not saved up
    beyond one burst.
    """

    def __init__(
        self,
        rate_per_second: float,
        *,
        burst: float | None = None,
        clock: Callable[[], float] = time.monotonic,
        sleep: Callable[[float], None] = time.sleep,
    ) -> None:
        if rate_per_second < 0:
            raise ValueError("rate_per_second must be >= 0 (0 means no limit)")
        if burst is not None and burst < 1:
            raise ValueError("burst must be >= 1")
        self.rate = float(rate_per_second)
        self.burst = float(burst) if burst is not None else max(1.0, self.rate)
        self._clock = clock
        self._sleep = sleep
        self._lock = threading.Lock()
        self._tokens = self.burst
        self._updated = clock()

    def acquire(self) -> float:
        """Wait for a slot; returns the seconds waited (0.0 when a token was free)."""
        if self.rate == 0:
            return 0.0
        with self._lock:
            now = self._clock()
            elapsed = max(0.0, now - self._updated)
            self._updated = now
            self._tokens = min(self.burst, self._tokens + elapsed * self.rate)
            # Going below zero is the reservation: the debt is this caller's place in line.
            self._tokens -= 1.0
            wait = -self._tokens / self.rate if self._tokens < 0 else 0.0
        if wait > 0:
            self._sleep(wait)
        return wait
