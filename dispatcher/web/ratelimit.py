"""A sliding-window request limit per client, in memory — pure logic, the clock injected.

`POST /subscribe` sends mail to any address typed in, so one client may ask only
`limit` times per `window` (DISPATCHER_SUBSCRIBE_PER_MINUTE). The window slides:
each request is remembered for `window` seconds, and a client is refused while
`limit` of its requests are younger than that. Refused requests are not counted,
so a client that waits the `Retry-After` it was told gets through.

The state is per process: behind several web processes each enforces the limit
on its own (the hourly limit per address is in the ledger and holds for all).
Memory is bounded: entries older than the window are dropped as clients come
back, and all of them every `sweep_every` calls.
"""

from __future__ import annotations

import ipaddress
import math
import threading
import time
from collections import deque
from collections.abc import Callable


def client_key(host: str | None) -> str:
    """Whom a request counts against: the IPv4 address, or the IPv6 /64.

    One IPv6 customer or server gets a whole /64 (at least), so counting each of its
    2^64 addresses separately would be no limit at all."""
    if not host:
        return "unknown"
    try:
        address = ipaddress.ip_address(host)
    except ValueError:
        return host
    if isinstance(address, ipaddress.IPv6Address):
        if address.ipv4_mapped is not None:
            return str(address.ipv4_mapped)
        return str(ipaddress.ip_network(f"{address}/64", strict=False))
    return str(address)


class SlidingWindowLimiter:
    """At most `limit` accepted hits per key within any `window` seconds."""

    def __init__(
        self,
        limit: int,
        window: float = 60.0,
        *,
        clock: Callable[[], float] = time.monotonic,
        sweep_every: int = 1000,
    ) -> None:
        if limit < 1 or window <= 0:
            raise ValueError("limit must be at least 1 and window positive")
        self.limit = limit
        self.window = window
        self._clock = clock
        self._sweep_every = sweep_every
        self._calls = 0
        self._hits: dict[str, deque[float]] = {}
        self._lock = threading.Lock()

    def hit(self, key: str) -> float | None:
        """Count a request of `key`: None when allowed, else the seconds until it would be."""
        now = self._clock()
        with self._lock:
            self._calls += 1
            if self._calls % self._sweep_every == 0:
                self._sweep(now)
            hits = self._hits.setdefault(key, deque())
            self._expire(hits, now)
            if len(hits) >= self.limit:
                return max(hits[0] + self.window - now, 0.0)
            hits.append(now)
            return None

    @staticmethod
    def retry_after_header(seconds: float) -> str:
        """The `Retry-After` value: whole seconds, rounded up, at least 1."""
        return str(max(1, math.ceil(seconds)))

    def __len__(self) -> int:
        """Keys currently remembered (for tests of the memory bound)."""
        with self._lock:
            return len(self._hits)

    def _expire(self, hits: deque[float], now: float) -> None:
        while hits and hits[0] <= now - self.window:
            hits.popleft()

    def _sweep(self, now: float) -> None:
        for key in list(self._hits):
            hits = self._hits[key]
            self._expire(hits, now)
            if not hits:
                del self._hits[key]
