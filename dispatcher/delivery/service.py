"""The long-running service: APScheduler fires the same `tick` the CLI runs.

APScheduler only decides *when* to look; the ledger decides *what* to do. Jobs
live in memory and are rebuilt from the plan at start and on every reload, so
a send missed while the service was down is caught up from the ledger (the
start-up tick), never from APScheduler's misfire handling.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import logging
import os
import signal
import threading
import time
from collections.abc import Callable
from types import FrameType
from typing import Protocol

from apscheduler.schedulers.background import BackgroundScheduler
from apscheduler.triggers.date import DateTrigger
from apscheduler.triggers.interval import IntervalTrigger

from dispatcher.campaign import source
from dispatcher.campaign.model import Campaign
from dispatcher.campaign.source import CampaignSource, Reload
from dispatcher.clock import Clock, utc_now
from dispatcher.delivery import alerts, leader, metrics, pipeline, schedule, sending
from dispatcher.delivery.context import build_context, open_ledger
from dispatcher.ledger import engine as ledger_engine
from dispatcher.ledger import ticks
from dispatcher.settings import Settings

log = logging.getLogger("dispatcher")
RELOAD_CHECK_SECONDS = source.CHECK_SECONDS
LEADER_CHECK_SECONDS = 2.0  #: how soon a process notices the scheduler lock is free
SHUTDOWN_GRACE_SECONDS = 5.0  #: beyond DISPATCHER_SHUTDOWN_SECONDS, the process exits regardless


def _exit_now() -> None:
    log.error(
        "shutdown did not complete in time; exiting now (leases expire, nothing is lost)",
        extra={"event": "shutdown_forced"},
    )
    logging.shutdown()
    os._exit(0)


class HttpServer(Protocol):
    """The HTTP endpoints served beside the scheduler (`dispatcher.web.server`)."""

    def stop(self) -> None: ...


class Lane:
    """One channel's sending: at most one thread at a time, and when it last moved on."""

    def __init__(self, channel: str) -> None:
        self.channel = channel
        self.lock = threading.Lock()
        self._last_beat = time.monotonic()

    def beat(self) -> None:
        self._last_beat = time.monotonic()

    def stalled_for(self) -> float | None:
        """Seconds since the running lane last made progress; None when it is idle."""
        if not self.lock.locked():
            return None
        return time.monotonic() - self._last_beat


class Service:
    def __init__(
        self,
        settings: Settings,
        campaign: Campaign,
        *,
        clock: Clock = utc_now,
        progress: sending.Progress | None = None,
    ) -> None:
        self.settings = settings
        self.campaign = campaign
        self.clock = clock
        self.progress = progress
        self.engine = open_ledger(settings)
        self.stop = threading.Event()
        self._schedule_lock = threading.Lock()
        self._reload_lock = threading.Lock()
        self._lanes: dict[str, Lane] = {}
        self.source = CampaignSource(
            settings.campaign_file, campaign, on_rejected=metrics.count_reload_error
        )
        self.scheduler = BackgroundScheduler(
            timezone=dt.UTC,
            job_defaults={"coalesce": True, "max_instances": 1, "misfire_grace_time": None},
        )
        self.http: HttpServer | None = None
        self.leadership = leader.leadership_for(
            self.engine, campaign.id, timeout=settings.db_timeout_seconds
        )
        self.is_leader = False
        self.context = self._wire(campaign)
        # Built once, like the wiring: its destinations (relay, webhooks) are opened once.
        self.alerts = alerts.monitor_for(
            settings,
            self.engine,
            clock=clock,
            campaign_id=campaign.id,
            problems=lambda: self.source.problems,
            is_leader=lambda: self.is_leader,
        )

    # --- the one job function ------------------------------------------------------------

    def on_time(self, *, wait: bool = True) -> pipeline.TickReport | None:
        """Create what is due (in the scheduler process), then start a send lane for each
        channel with due work whose lane is idle; a busy lane picks the new work up itself.

        `wait`: return once the lanes started here have ended (the demo and tests want the
        report); the scheduler's jobs do not wait, so a hanging relay never holds up the
        poll, the posts, or newly due dispatches of other channels.
        """
        report = pipeline.TickReport()
        context = self.context  # this campaign version's wiring; a reload swaps it whole
        try:
            if self.is_leader:
                with self._schedule_lock:
                    pipeline.make_due_dispatches(context, report)
            channels = sorted({d.channel for d in pipeline.due_dispatches(context)})
        except ticks.ClockJumpError as error:
            # Nothing is recorded until an operator confirms (`tick --force`, `run --force`):
            # a wrong clock must not write off the days it skipped.
            log.error("%s", error, extra={"event": "clock_jump"})
            return None
        except Exception:
            log.exception("tick failed; retrying at the next poll", extra={"event": "tick_error"})
            return None
        started = [
            thread
            for channel in channels
            if (thread := self._start_lane(channel, context, report)) is not None
        ]
        if not wait:
            return report
        for thread in started:
            thread.join()
        try:
            return pipeline.finish_report(context, report)
        except Exception:
            log.exception("tick report failed", extra={"event": "tick_error"})
            return None

    def _start_lane(
        self, channel: str, context: sending.Context, report: pipeline.TickReport
    ) -> threading.Thread | None:
        lane = self._lanes.setdefault(channel, Lane(channel))
        if not lane.lock.acquire(blocking=False):
            return None  # busy: it reads the due list again after each dispatch
        lane.beat()
        lane_context = dataclasses.replace(context, beat=lane.beat)

        def run() -> None:
            try:
                pipeline.run_lane(lane_context, channel, report)
            except Exception:
                log.exception(
                    "send lane %s failed; retrying at the next poll",
                    channel,
                    extra={"event": "tick_error", "channel": channel},
                )
            finally:
                if channel == "email":
                    context.email_channel.close()
                lane.lock.release()

        thread = threading.Thread(target=run, name=f"lane-{channel}", daemon=True)
        thread.start()
        return thread

    def liveness(self) -> str | None:
        """Why this process is not alive, for /healthz: a send lane that made no progress
        (no message, lease renewal or ledger write) for `DISPATCHER_HANG_SECONDS`."""
        for lane in list(self._lanes.values()):
            stalled = lane.stalled_for()
            if stalled is not None and stalled > self.settings.hang_seconds:
                return (
                    f"send lane {lane.channel} made no progress for {stalled:.0f} s "
                    f"(limit DISPATCHER_HANG_SECONDS={self.settings.hang_seconds:g})"
                )
        return None

    def lanes_idle(self, timeout: float) -> bool:
        """Wait up to `timeout` seconds for every running lane to end."""
        deadline = time.monotonic() + timeout
        for lane in list(self._lanes.values()):
            if not lane.lock.acquire(timeout=max(deadline - time.monotonic(), 0)):
                return False
            lane.lock.release()
        return True

    def send_times(self) -> list[dt.datetime]:
        """The instants at which something is planned, from now on (UTC, sorted, unique)."""
        with ledger_engine.reader(self.engine).connect() as connection:
            plan = schedule.ledger_plan(connection, self.campaign, self.clock())
        return schedule.send_times(plan)

    def _wire(self, campaign: Campaign) -> sending.Context:
        """Templates, sender, DKIM signer and channels, built once per campaign version (at
        start and on a reload), not per tick: a tick only reads the ledger and sends."""
        context = build_context(self.settings, campaign, engine=self.engine, clock=self.clock)
        context.stop = self.stop
        context.progress = self.progress
        return context

    def fire(self) -> None:
        """The scheduler's job: like `on_time`, without waiting for the lanes."""
        self.on_time(wait=False)

    # --- configuration reload ------------------------------------------------------------

    def reload(self, *, force: bool = False) -> bool:
        """Load the campaign file again if it changed; keep the last good one when invalid
        (`campaign.source`: the one home of that rule, shared with `dispatcher web`).
        The scheduler's check, SIGHUP and a desk change may call it at the same time."""
        with self._reload_lock:
            if self.source.check(force=force) is not Reload.LOADED:
                return False
            self.campaign = self.source.campaign
            self.context = self._wire(self.campaign)
            self._schedule_sends()
            return True

    @property
    def last_reload_error(self) -> str | None:
        """Why the file as it is now is not in force (every problem, one a line), or None."""
        error = self.source.error
        return None if error is None else str(error)

    @property
    def reload_errors(self) -> int:
        """Rejected reloads so far."""
        return self.source.rejected

    # --- scheduling ----------------------------------------------------------------------

    def _schedule_sends(self) -> None:
        for job in self.scheduler.get_jobs():
            if job.id.startswith("send:"):
                job.remove()
        # The service clock may be a rehearsal clock (`run --at`): map its instants to
        # the wall-clock instants at which APScheduler must fire.
        offset = utc_now() - self.clock()
        for at in self.send_times():
            self.scheduler.add_job(
                self.fire, DateTrigger(run_date=at + offset), id=f"send:{at.isoformat()}"
            )

    def check_leader(self) -> None:
        """Take the scheduler lock when it is free; notice when it is lost."""
        was, self.is_leader = self.is_leader, self.leadership.try_acquire()
        if self.is_leader and not was:
            log.info("this process is now the scheduler", extra={"event": "leader_acquired"})
            self.fire()  # catch up at once: the previous holder may have died mid-day
        elif was and not self.is_leader:
            log.warning("this process is no longer the scheduler", extra={"event": "leader_lost"})
            if self.alerts is not None:
                self.alerts.leader_lost()

    def start(self) -> None:
        """Catch up from the ledger, then let the scheduler fire at the planned times."""
        self.check_leader()
        if not self.is_leader:
            self.fire()
        if self.stop.is_set():
            return
        self.scheduler.add_job(self.fire, "interval", seconds=self.settings.poll_seconds, id="poll")
        self.scheduler.add_job(self.reload, "interval", seconds=RELOAD_CHECK_SECONDS, id="reload")
        self.scheduler.add_job(
            self.check_leader, "interval", seconds=LEADER_CHECK_SECONDS, id="leader"
        )
        if self.alerts is not None:
            # Its runs start a thread of their own (`Monitor.start_run`): a relay or webhook
            # that hangs never holds up the poll or the send lanes (docs/operations.md).
            trigger = IntervalTrigger(
                seconds=alerts.interval(self.settings.poll_seconds), start_date=alerts.ALIGNED_START
            )
            self.scheduler.add_job(self.alerts.start_run, trigger, id="alerts")
        self._schedule_sends()
        self.scheduler.start()
        log.info("service started", extra={"event": "service_started"})

    def scheduler_alive(self) -> bool:
        return bool(self.scheduler.running) and not self.stop.is_set()

    def shutdown(self) -> None:
        """Stop claiming, let in-flight sends finish (bounded), release the rest."""
        self.stop.set()
        if self.http is not None:
            self.http.stop()
        if self.scheduler.running:
            self.scheduler.shutdown(wait=False)
        if self.alerts is not None:
            self.alerts.close()
        if not self.lanes_idle(self.settings.shutdown_seconds):
            log.error(
                "in-flight sends did not finish in time; their leases will expire",
                extra={"event": "shutdown_timeout"},
            )
        self.leadership.release()
        self.engine.dispose()
        log.info("service stopped", extra={"event": "service_stopped"})

    def run_forever(self, serve: Callable[[Service], HttpServer] | None = None) -> None:
        """`dispatcher run`: serve until SIGTERM/SIGINT; SIGHUP reloads the campaign.

        `serve` starts the HTTP endpoints beside the scheduler (the web tier builds them;
        the service only stops them on shutdown)."""
        stopping = threading.Event()

        def on_stop(signum: int, _frame: FrameType | None) -> None:
            log.info(
                "signal %s: stopping", signal.Signals(signum).name, extra={"event": "stopping"}
            )
            self.stop.set()
            stopping.set()

        def on_hup(_signum: int, _frame: FrameType | None) -> None:
            threading.Thread(target=self.reload, kwargs={"force": True}, daemon=True).start()

        signal.signal(signal.SIGTERM, on_stop)
        signal.signal(signal.SIGINT, on_stop)
        signal.signal(signal.SIGHUP, on_hup)
        self.check_leader()  # on SQLite, refuses to run beside another process
        if serve is not None:
            self.http = serve(self)
        self.start()
        while not stopping.wait(0.5):
            pass
        # Always end: a database or relay that stopped answering must not keep the process
        # alive (nothing is lost: leases expire, and the next start resumes from the ledger).
        deadline = threading.Timer(
            self.settings.shutdown_seconds + SHUTDOWN_GRACE_SECONDS, _exit_now
        )
        deadline.daemon = True
        deadline.start()
        self.shutdown()
        deadline.cancel()
        # Send threads still waiting on a relay would be joined at interpreter exit.
        if not self.lanes_idle(0):
            _exit_now()
