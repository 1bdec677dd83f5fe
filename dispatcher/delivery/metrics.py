"""Prometheus metrics: the ledger's counts read at scrape time, plus what the process measures.

Two registries, neither of them prometheus-client's global default:

* `PROCESS_REGISTRY` (module level, one per process) holds what the pipeline and the
  service measure as it happens: `observe_send(channel, seconds)` feeds the
  `dispatcher_send_duration_seconds` histogram, `count_reload_error()` the
  `dispatcher_config_reload_errors_total` counter, plus the process/platform collectors.
* `build_registry(ledger)` (one per app) reads the ledger when scraped —
  `dispatcher_deliveries`, `dispatcher_dispatches`, `dispatcher_subscribers`,
  `dispatcher_next_dispatch_timestamp_seconds`, `dispatcher_channel_unavailable`,
  `dispatcher_channel_paused`, `dispatcher_ledger_up` — and includes
  `PROCESS_REGISTRY`, so one `/metrics` shows both.

The ledger counts are gauges of *current* rows (a delivery moves from pending to sent),
so they are exported as gauges, not counters; rate() belongs on the send histogram.

The ledger is read at most once per `DISPATCHER_METRICS_CACHE_SECONDS` (default 5):
scrapes in between, however many at once, share that reading. Counting a million
deliveries takes the database a good fraction of a second, and every scraper (or
anyone who finds the URL) reading it afresh would take that time from the sender.
The delivery count groups `deliveries` alone by (dispatch_id, state) — an index-only
scan of `ix_deliveries_claim` — and maps dispatches to channels from the small
`dispatches` table, instead of joining the two tables row by row.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Iterable

import sqlalchemy as sa
from prometheus_client import (
    CollectorRegistry,
    Counter,
    Histogram,
    PlatformCollector,
    ProcessCollector,
)
from prometheus_client.metrics_core import GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

from dispatcher.campaign.model import Campaign
from dispatcher.clock import Clock
from dispatcher.delivery import schedule
from dispatcher.ledger import controls, outages, stats
from dispatcher.ledger.engine import reader
from dispatcher.ledger.tables import (
    DeliveryState,
    DispatchState,
    SubscriberState,
    deliveries,
    dispatches,
)

__all__ = [
    "PROCESS_REGISTRY",
    "RELOAD_ERRORS",
    "SEND_DURATION",
    "LedgerCollector",
    "build_registry",
    "count_reload_error",
    "observe_send",
]

log = logging.getLogger(__name__)

PROCESS_REGISTRY = CollectorRegistry()
"""What this process measured; `build_registry` includes it in every app's `/metrics`."""

ProcessCollector(registry=PROCESS_REGISTRY)
PlatformCollector(registry=PROCESS_REGISTRY)

SEND_DURATION = Histogram(
    "dispatcher_send_duration_seconds",
    "Seconds one message or post took to send (successful or not), by channel.",
    ["channel"],
    buckets=(0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60),
    registry=PROCESS_REGISTRY,
)
RELOAD_ERRORS = Counter(
    "dispatcher_config_reload_errors",
    "Campaign file reloads rejected (the previous campaign stayed in force).",
    registry=PROCESS_REGISTRY,
)


def observe_send(channel: str, seconds: float) -> None:
    """Record how long one send (one email, one post) took on `channel`."""
    SEND_DURATION.labels(channel=channel).observe(max(seconds, 0.0))


def count_reload_error() -> None:
    """Record one rejected reload of the campaign file."""
    RELOAD_ERRORS.inc()


class LedgerCollector(Collector):
    """Reads the ledger at scrape time — at most once per `cache_seconds`, shared by every
    scrape in between; a database outage shows as `dispatcher_ledger_up 0`."""

    def __init__(
        self,
        engine: sa.Engine,
        campaign: Callable[[], Campaign],
        clock: Clock,
        *,
        cache_seconds: float,
        monotonic: Callable[[], float] = time.monotonic,
    ) -> None:
        self._engine, self._campaign, self._now = engine, campaign, clock
        self._cache_seconds = cache_seconds
        self._clock = monotonic
        self._lock = threading.Lock()  # one reading at a time; the others wait and share it
        self._cached: list[Metric] | None = None
        self._read_at = 0.0
        self.readings = 0  #: how often the ledger was actually read (for tests and benches)

    def collect(self) -> Iterable[Metric]:
        with self._lock:
            now = self._clock()
            if self._cached is None or now - self._read_at >= self._cache_seconds:
                self._cached = self._collect()
                self._read_at = self._clock()
                self.readings += 1
            return list(self._cached)

    def _collect(self) -> list[Metric]:
        up = GaugeMetricFamily(
            "dispatcher_ledger_up", "1 if the ledger answered this scrape, 0 if not."
        )
        try:
            families = self._read()
        except sa.exc.SQLAlchemyError as error:
            log.warning("metrics: the ledger did not answer: %s", type(error).__name__)
            up.add_metric([], 0)
            return [up]
        up.add_metric([], 1)
        return [up, *families]

    def _read(self) -> list[Metric]:
        campaign = self._campaign()
        with reader(self._engine).connect() as connection:
            delivered = delivery_counts(connection)
            dispatched = stats.dispatch_counts(connection)
            people = stats.subscriber_counts(connection)
            plan = schedule.ledger_plan(connection, campaign, self._now())
            down = outages.outages(connection)
            held = {pause.channel for pause in controls.pauses(connection)}
        upcoming = schedule.next_sends(plan, campaign)
        channels = sorted({str(c) for c in campaign.channels} | {c for c, _ in delivered})
        deliveries = GaugeMetricFamily(
            "dispatcher_deliveries",
            "Deliveries in the ledger by channel and state (current count).",
            labels=["channel", "state"],
        )
        for key, count in _filled(delivered, channels, [str(s) for s in DeliveryState]):
            deliveries.add_metric(list(key), count)
        dispatch_channels = sorted({str(c) for c in campaign.channels} | {c for c, _ in dispatched})
        dispatches = GaugeMetricFamily(
            "dispatcher_dispatches",
            "Dispatches in the ledger by channel and state (current count).",
            labels=["channel", "state"],
        )
        for key, count in _filled(dispatched, dispatch_channels, [str(s) for s in DispatchState]):
            dispatches.add_metric(list(key), count)
        subscribers = GaugeMetricFamily(
            "dispatcher_subscribers", "Subscribers by state.", labels=["state"]
        )
        for state in sorted({str(s) for s in SubscriberState} | set(people)):
            subscribers.add_metric([state], people.get(state, 0))
        next_dispatch = GaugeMetricFamily(
            "dispatcher_next_dispatch_timestamp_seconds",
            "Unix time of the next planned send per channel (absent: none left).",
            labels=["channel"],
        )
        for channel, at in upcoming.items():
            if at is not None:
                next_dispatch.add_metric([str(channel)], at.timestamp())
        unavailable = GaugeMetricFamily(
            "dispatcher_channel_unavailable",
            "1 while a channel refuses whole sessions (its deliveries wait, no attempt used).",
            labels=["channel"],
        )
        next_try = GaugeMetricFamily(
            "dispatcher_channel_next_try_timestamp_seconds",
            "Unix time a channel in an outage is tried again (absent: no outage).",
            labels=["channel"],
        )
        for name in sorted(set(channels) | set(down)):
            unavailable.add_metric([name], 1 if name in down else 0)
            if name in down:
                next_try.add_metric([name], down[name].retry_at.timestamp())
        paused = GaugeMetricFamily(
            "dispatcher_channel_paused",
            "1 while sending on a channel is held by `dispatcher pause` (its own pause or that "
            'of all sending); channel="all": all sending is paused.',
            labels=["channel"],
        )
        for name in sorted(set(channels) | (held - {controls.ALL})):
            paused.add_metric([name], 1 if held & {name, controls.ALL} else 0)
        paused.add_metric([controls.ALL], 1 if controls.ALL in held else 0)
        return [deliveries, dispatches, subscribers, next_dispatch, unavailable, next_try, paused]


def delivery_counts(connection: sa.Connection) -> dict[tuple[str, str], int]:
    """(channel, delivery state) -> number of deliveries, over the whole ledger.

    Grouped by (dispatch_id, state) on `deliveries` alone, which the claim index covers,
    then summed per channel here: a dispatch's channel comes from the small table."""
    per_dispatch = connection.execute(
        sa.select(deliveries.c.dispatch_id, deliveries.c.state, sa.func.count()).group_by(
            deliveries.c.dispatch_id, deliveries.c.state
        )
    ).all()
    # Read after the counts: every dispatch they name exists by then.
    channel_of = dict(connection.execute(sa.select(dispatches.c.id, dispatches.c.channel)).all())
    counts: dict[tuple[str, str], int] = {}
    for dispatch_id, state, count in per_dispatch:
        key = (str(channel_of.get(dispatch_id, "unknown")), str(state))
        counts[key] = counts.get(key, 0) + int(count)
    return counts


def _filled(
    counts: dict[tuple[str, str], int], channels: Iterable[str], states: Iterable[str]
) -> list[tuple[tuple[str, str], int]]:
    """Every (channel, state) with its count, 0 where the ledger has none: series never vanish."""
    keys = {(c, s) for c in channels for s in states} | set(counts)
    return [(key, counts.get(key, 0)) for key in sorted(keys)]


def build_registry(ledger: LedgerCollector) -> CollectorRegistry:
    """A registry for one app: the ledger read at scrape time plus `PROCESS_REGISTRY`."""
    registry = CollectorRegistry(auto_describe=False)
    registry.register(ledger)
    registry.register(PROCESS_REGISTRY)
    return registry
