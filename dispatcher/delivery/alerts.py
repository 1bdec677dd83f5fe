"""Alerts where people look: ops are told once when something goes wrong, and once when
it cleared — by email and in their chat — instead of only in logs, `status` and `/metrics`.

This module is the job that tells them: the conditions and their wording live in
`alert_conditions.py`, the destinations and the redaction of secrets in
`alert_destinations.py`; here is when a message goes out, to whom, how often, and who sends.

State, not events: a job of `run` (`Monitor.run_once`, every `interval(POLL_SECONDS)`)
computes the *open conditions* from the ledger and from what the process itself saw, and the
ledger's `alerts` table (`ledger/alerts.py`) lets exactly one process send each message,
however many run (docs/operations.md, "Alerts").

Messages go to `DISPATCHER_ALERT_EMAILS` and `DISPATCHER_ALERT_WEBHOOK_URLS`. Every text
passes the `Redactor` (no configured secret ever leaves), at most `RATE_LIMIT` messages go
out per `RATE_WINDOW` and process (the rest as one "… and K more"), and a destination that
fails is logged (`alert_failed`) and tried again at the next run, at most `MAX_ATTEMPTS`
times. The job runs in a thread of its own, so sending never waits for it.
"""

from __future__ import annotations

import datetime as dt
import logging
import os
import socket
import threading
import time
from collections import deque
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path

import sqlalchemy as sa

from dispatcher.channels.base import ChannelError
from dispatcher.clock import Clock
from dispatcher.delivery.alert_conditions import Condition, Observer, digest, duration, when
from dispatcher.delivery.alert_destinations import Destination, Message, Redactor, destinations_for
from dispatcher.ledger import alerts as ledger
from dispatcher.ledger import engine as ledger_engine
from dispatcher.settings import Settings

log = logging.getLogger("dispatcher")

SUBJECT_PREFIX = "[dispatcher] "
MIN_INTERVAL_SECONDS = 30.0  #: the job runs every POLL_SECONDS, but not more often than this
#: the instant the job's runs are counted from: every process runs it at the same moments, so
#: they meet the same conditions at once — the race the ledger settles (one message each)
ALIGNED_START = dt.datetime(2000, 1, 1, tzinfo=dt.UTC)
RATE_LIMIT = 10  #: alert messages per RATE_WINDOW and process; beyond: one "… and K more"
RATE_WINDOW = 600.0  #: seconds
MAX_ATTEMPTS = 3  #: deliveries of one message to one destination, one per run of the job


def interval(poll_seconds: float) -> float:
    """Seconds between runs of the job: `DISPATCHER_POLL_SECONDS`, at least 30."""
    return max(poll_seconds, MIN_INTERVAL_SECONDS)


# --- the rate limit --------------------------------------------------------------------------


class RateLimit:
    """At most `limit` messages in any `window` seconds (a sliding window, per process)."""

    def __init__(
        self, limit: int, window: float, *, monotonic: Callable[[], float] = time.monotonic
    ) -> None:
        self.limit, self.window = limit, window
        self._monotonic = monotonic
        self._sent: deque[float] = deque()

    def available(self) -> int:
        now = self._monotonic()
        while self._sent and self._sent[0] <= now - self.window:
            self._sent.popleft()
        return max(self.limit - len(self._sent), 0)

    def spend(self, count: int = 1) -> None:
        now = self._monotonic()
        self._sent.extend([now] * count)


# --- the monitor -----------------------------------------------------------------------------


@dataclass
class _Outgoing:
    """One message on its way: the alerts it tells of and the destinations it has not
    reached yet."""

    message: Message
    parts: tuple[tuple[int, ledger.Phase], ...]  #: (alert id, phase) it reports
    unsent: list[Destination]
    attempts: int = 0


class Monitor:
    """The alert job of one `run` process: built once (the destinations are opened once),
    then `run_once` per interval. Thread-safe: one run at a time."""

    def __init__(
        self,
        engine: sa.Engine,
        destinations: Sequence[Destination],
        *,
        clock: Clock,
        redact: Callable[[str], str],
        after: dt.timedelta,
        public_url: str,
        campaign_id: str,
        campaign_file: Path,
        problems: Callable[[], list[str]] = list,
        is_leader: Callable[[], bool] = lambda: False,
        process: str | None = None,
        rate_limit: RateLimit | None = None,
    ) -> None:
        self.engine = engine
        self.destinations = list(destinations)
        self.clock = clock
        self.redact = redact
        self.public_url = public_url
        self.process = process or f"{socket.gethostname()}:{os.getpid()}"
        self.observer = Observer(
            after=after,
            campaign_id=campaign_id,
            campaign_file=str(campaign_file),
            process=self.process,
            problems=problems,
            is_leader=is_leader,
        )
        self.rate = rate_limit or RateLimit(RATE_LIMIT, RATE_WINDOW)
        self.stop = threading.Event()
        self._lock = threading.Lock()
        self._outgoing: list[_Outgoing] = []  #: retries of messages some destination lacks
        self._held: list[tuple[tuple[int, ledger.Phase], Message]] = []  #: over the limit

    # --- what the service tells it ----------------------------------------------------------

    def leader_lost(self, at: dt.datetime | None = None) -> None:
        """This process lost the scheduler lock (`service.check_leader`): an event, recorded
        as a condition that lives `alert_conditions.LEADER_EVENT_LIFE`."""
        self.observer.leader_lost(at or self.clock())

    def start_run(self) -> bool:
        """The scheduler's job: one run in a thread of its own, so that neither the
        scheduler's other jobs nor the process's exit ever wait for a relay or a webhook;
        False when the previous run is still going."""
        if self.stop.is_set() or not self._lock.acquire(blocking=False):
            return False

        def run() -> None:
            try:
                self._run()
            finally:
                self._lock.release()

        threading.Thread(target=run, name="alerts", daemon=True).start()
        return True

    def run_once(self) -> None:
        """One look at the conditions, then the messages it calls for, in the caller's thread
        (the service uses `start_run`)."""
        with self._lock:
            self._run()

    def close(self) -> None:
        self.stop.set()
        for destination in self.destinations:
            destination.close()

    # --- one run ----------------------------------------------------------------------------

    def _run(self) -> None:
        try:
            now = self.clock()
            claimed = self._claim(now)
            self._send(claimed, now)
        except Exception:
            log.exception(
                "alert check failed; trying again at the next run", extra={"event": "alert_error"}
            )
        finally:
            for destination in self.destinations:
                try:
                    destination.close()
                except Exception:  # closing an already broken connection
                    log.debug("closing %s failed", destination.name, exc_info=True)

    def _claim(self, now: dt.datetime) -> list[tuple[tuple[int, ledger.Phase], Message]]:
        """Open the new conditions and resolve the cleared ones in the ledger; the messages
        of those this process won."""
        with ledger_engine.reader(self.engine).connect() as connection:
            open_rows = ledger.open_alerts(connection)
            candidates, cleared = self.observer.observe(connection, open_rows, now)
            known = ledger.known_keys(connection, [c.key for c in candidates])
        messages: list[tuple[tuple[int, ledger.Phase], Message]] = []
        for condition in candidates:
            if condition.key in known:
                continue
            with self.engine.begin() as connection:
                row = ledger.open_alert(
                    connection,
                    key=condition.key,
                    kind=condition.kind,
                    summary=self.redact(condition.summary),
                    now=now,
                )
            if row is None:  # another process inserted it since we looked: it sends
                log.info(
                    "alert %r is sent by another process",
                    condition.key,
                    extra={"event": "alert_taken"},
                )
                continue
            messages.append(((row.id, "opened"), self._opened(row, condition)))
        for key, note in cleared.items():
            with self.engine.begin() as connection:
                row = ledger.resolve_alert(connection, key, now=now)
            if row is not None:
                messages.append(((row.id, "resolved"), self._resolved(row, note, now)))
            self.observer.forget(key)
        return messages

    # --- the messages -----------------------------------------------------------------------

    def _opened(self, row: ledger.AlertRow, condition: Condition) -> Message:
        lines = [
            *condition.details,
            "",
            f"opened: {when(row.opened_at)}",
            f"alert: {row.key} (from {self.process})",
        ]
        return Message(
            key=f"dispatcher-alert-{row.id}-{int(row.opened_at.timestamp())}-opened",
            subject=self.redact(SUBJECT_PREFIX + condition.summary),
            body=self.redact("\n".join(lines)),
            link=self.redact(condition.link or self.public_url),
        )

    def _resolved(self, row: ledger.AlertRow, note: str, now: dt.datetime) -> Message:
        lasted = duration(now - row.opened_at)
        lines = [
            f"resolved: {note}",
            "",
            row.summary,
            f"opened: {when(row.opened_at)}, resolved: {when(now)} (after {lasted})",
            f"alert: {row.key} (from {self.process})",
        ]
        return Message(
            key=f"dispatcher-alert-{row.id}-{int(row.opened_at.timestamp())}-resolved",
            subject=self.redact(f"{SUBJECT_PREFIX}resolved: {row.summary}"),
            body=self.redact("\n".join(lines)),
            link=self.public_url,
        )

    def _digest(self, held: Sequence[tuple[tuple[int, ledger.Phase], Message]]) -> Message:
        subjects = [message.subject.removeprefix(SUBJECT_PREFIX) for _, message in held]
        lines = [
            f"… and {len(held)} more alerts: more than {self.rate.limit} in "
            f"{RATE_WINDOW / 60:g} minutes, so they come as one message.",
            "",
            *subjects,
            "",
            "check: dispatcher status",
        ]
        parts = ",".join(f"{alert_id}-{phase}" for (alert_id, phase), _ in held)
        return Message(
            key=f"dispatcher-alert-digest-{digest(parts)}",
            subject=f"{SUBJECT_PREFIX}… and {len(held)} more",
            body=self.redact("\n".join(lines)),
            link=self.public_url,
        )

    # --- sending ----------------------------------------------------------------------------

    def _send(
        self, claimed: list[tuple[tuple[int, ledger.Phase], Message]], now: dt.datetime
    ) -> None:
        """The new messages within the rate limit (the rest as one digest, or held for the
        next run when none is left), then every message some destination still lacks."""
        resolved = self._resolved_since([part for part, _ in [*self._held, *claimed]])
        waiting = [(part, m) for part, m in [*self._held, *claimed] if part[0] not in resolved]
        self._held = []
        budget = self.rate.available()
        if waiting and budget == 0:
            self._held = waiting
        elif waiting:
            single = waiting if len(waiting) <= budget else waiting[: budget - 1]
            new = [_Outgoing(m, (part,), list(self.destinations)) for part, m in single]
            rest = waiting[len(single) :]
            if rest:
                parts = tuple(part for part, _ in rest)
                new.append(_Outgoing(self._digest(rest), parts, list(self.destinations)))
            self.rate.spend(len(new))
            self._outgoing += new
        resolved = self._resolved_since([p for o in self._outgoing for p in o.parts])
        self._outgoing = [
            o for o in self._outgoing if not (len(o.parts) == 1 and o.parts[0][0] in resolved)
        ]
        for outgoing in list(self._outgoing):
            if self.stop.is_set():
                return
            self._attempt(outgoing, now)
            if not outgoing.unsent or outgoing.attempts >= MAX_ATTEMPTS:
                self._outgoing.remove(outgoing)

    def _resolved_since(self, parts: Iterable[tuple[int, ledger.Phase]]) -> set[int]:
        """The alerts among `parts` whose alert message is not sent yet but which resolved
        meanwhile: their "resolved" message tells the whole story, the alert is dropped."""
        ids = {alert_id for alert_id, phase in parts if phase == "opened"}
        if not ids:
            return set()
        with ledger_engine.reader(self.engine).connect() as connection:
            rows = ledger.alerts_by_id(connection, ids)
        return {i for i in ids if rows.get(i) is None or rows[i].resolved_at is not None}

    def _attempt(self, outgoing: _Outgoing, now: dt.datetime) -> None:
        outgoing.attempts += 1
        failures: list[str] = []
        for destination in list(outgoing.unsent):
            try:
                destination.deliver(outgoing.message, now=now)
            except Exception as error:  # a destination's fault must not stop the others
                reason = self.redact(
                    error.message if isinstance(error, ChannelError) else repr(error)
                )
                failures.append(f"{destination.name}: {reason}")
                final = outgoing.attempts >= MAX_ATTEMPTS
                log.error(
                    "alert %r not delivered to %s (attempt %d of %d%s): %s",
                    outgoing.message.subject,
                    destination.name,
                    outgoing.attempts,
                    MAX_ATTEMPTS,
                    ", given up" if final else ", trying again at the next run",
                    reason,
                    extra={"event": "alert_failed", "error": reason},
                )
                continue
            outgoing.unsent.remove(destination)
            log.info(
                "alert %r sent to %s",
                outgoing.message.subject,
                destination.name,
                extra={"event": "alert_sent"},
            )
        failed = "; ".join(failures) or None
        with self.engine.begin() as connection:
            for alert_id, phase in outgoing.parts:
                ledger.record_attempt(connection, alert_id, phase, now=now, error=failed)


def monitor_for(
    settings: Settings,
    engine: sa.Engine,
    *,
    clock: Clock,
    campaign_id: str,
    problems: Callable[[], list[str]] = list,
    is_leader: Callable[[], bool] = lambda: False,
) -> Monitor | None:
    """The alert job of a `run` process, or None when no destination is configured.
    Raises `ValueError` naming the setting when one is malformed."""
    destinations = destinations_for(settings)
    if not destinations:
        return None
    return Monitor(
        engine,
        destinations,
        clock=clock,
        redact=Redactor.from_settings(settings),
        after=dt.timedelta(minutes=settings.alert_after_minutes),
        public_url=settings.public_url,
        campaign_id=campaign_id,
        campaign_file=settings.campaign_file,
        problems=problems,
        is_leader=is_leader,
    )
