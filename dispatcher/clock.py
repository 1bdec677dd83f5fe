"""Time, in one place: the real clock and the rehearsal clocks of `tick --at` / `run --at`.

Everything that asks "what time is it" takes a `Clock` (a callable returning an aware UTC
datetime), so a rehearsal in April 2019 and a test run through the same code as production.
"""

from __future__ import annotations

import datetime as dt
import time
from collections.abc import Callable

Clock = Callable[[], dt.datetime]


def utc_now() -> dt.datetime:
    """The real clock."""
    return dt.datetime.now(dt.UTC)


def clock_from(at: dt.datetime) -> Clock:
    """Time that starts at `at` and runs at real speed: `tick --at` in the past works alike."""
    started, at = time.monotonic(), at.astimezone(dt.UTC)
    return lambda: at + dt.timedelta(seconds=time.monotonic() - started)


class SimulatedClock:
    """A clock an operator (`run --at`) or the demo sets; it runs on at real speed from there."""

    def __init__(self, start: dt.datetime) -> None:
        self.set(start)

    def set(self, at: dt.datetime) -> None:
        self._at, self._set_at = at, time.monotonic()

    def __call__(self) -> dt.datetime:
        return self._at + dt.timedelta(seconds=time.monotonic() - self._set_at)
