"""The send pipeline, top to bottom: plan → dispatch → fan out → claim → send → record.

Invariants:
- The ledger is the truth. Nothing in memory survives a crash and nothing needs to:
  every step reads what to do from the database and writes what it did back.
- A delivery is `sending` (with a lease) before its message leaves, and gets its
  outcome right after, committed per claimed batch. A crash therefore repeats at
  most the messages of one claimed batch per worker, and loses none.
- A claim lives exactly as long as its worker works on it: a heartbeat renews the
  lease while the batch is sent, and a worker that lost a claim (or cannot renew it in
  time) sends none of that batch's remaining messages. Takeovers count as attempts.
- Outcomes are written until the ledger takes them: a database fault delays the record,
  it does not drop it (a dropped `sent` would be sent again once the lease expires).
- Channels progress independently: each channel's dispatches run in a lane of their
  own, so a hanging relay delays only the email.
- A channel that refuses the whole session (down, `451` at EHLO/MAIL FROM, login refused)
  costs no delivery an attempt: the batch goes back to the queue and the channel is left
  alone, by every process, until its outage's retry time (`ledger.outages`).
- Each loop unit returns whether there is more work, so a stop request is honoured
  between batches.
- The stop switch is read before every claim batch: a cancelled dispatch gets no claim
  (what is in flight is recorded, what is given back is cancelled), a paused channel
  neither claims nor fans out, and its deliveries stay as they are (`ledger.controls`).
See docs/architecture.md for the reasoning.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import logging
import threading
import time
from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import TypeVar

import sqlalchemy as sa

from dispatcher.campaign import planning
from dispatcher.campaign.model import Channel, item_to_json
from dispatcher.delivery import email as email_dispatch
from dispatcher.delivery import posts as post_dispatch
from dispatcher.delivery import schedule
from dispatcher.delivery.email import EmailDispatch
from dispatcher.delivery.posts import PostDispatch
from dispatcher.delivery.sending import ChannelDown, Context, DispatchSender
from dispatcher.ledger import controls, outages, store, ticks
from dispatcher.ledger import engine as ledger_engine
from dispatcher.ledger.tables import DeliveryState, DispatchState

IMPLEMENTED_CHANNELS = tuple(Channel)

log = logging.getLogger("dispatcher")
T = TypeVar("T")


@dataclass(frozen=True)
class ChannelFailure:
    """A channel that could not work at all during the tick (its deliveries stay queued)."""

    channel: str
    message: str

    def __str__(self) -> str:
        return f"{self.channel}: {self.message}"


@dataclass
class TickReport:
    channel_errors: list[ChannelFailure] = field(default_factory=list)
    created: list[store.DispatchRow] = field(default_factory=list)
    missed: list[store.DispatchRow] = field(default_factory=list)
    finished: dict[int, DispatchState] = field(default_factory=dict)
    counts: dict[int, dict[str, int]] = field(default_factory=dict)
    failed_deliveries: int = 0
    #: channels held by a pause during the tick (`dispatcher pause`), with the pause
    paused: dict[str, controls.PauseRow] = field(default_factory=dict)


class _Notices:
    """What this process has logged about pauses and cancels, so each is logged once per
    process (not once per poll or batch); a resume is logged when it is first noticed."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._paused: dict[str, tuple[str, dt.datetime]] = {}  # channel -> pause seen
        self._held_days: set[tuple[str, str, dt.datetime]] = set()
        self._cancelled: set[int] = set()

    def paused(self, channel: str, pause: controls.PauseRow) -> bool:
        with self._lock:
            seen = (pause.channel, pause.paused_at)
            new = self._paused.get(channel) != seen
            self._paused[channel] = seen
            return new

    def running(self, channel: str) -> bool:
        """Whether `channel` had been seen paused (and now is not)."""
        with self._lock:
            return self._paused.pop(channel, None) is not None

    def held_day(self, day: str, channel: str, pause: controls.PauseRow) -> bool:
        with self._lock:
            key = (day, channel, pause.paused_at)
            new = key not in self._held_days
            self._held_days.add(key)
            return new

    def cancelled(self, dispatch_id: int) -> bool:
        with self._lock:
            new = dispatch_id not in self._cancelled
            self._cancelled.add(dispatch_id)
            return new


_notices = _Notices()


# 1. Plan: which dispatches are due now, which were missed -------------------------------


def make_due_dispatches(ctx: Context, report: TickReport) -> None:
    """Create the ledger row of each due dispatch (once), and record missed ones.

    A day due on a paused channel is not created yet: it is created (and sent) at the first
    tick after the resume while its catch-up lasts, and recorded missed once that has
    passed, as for a service that was stopped (docs/operations.md, "A wrong link went out").
    This is also where what cancels left behind is settled (`controls.settle_cancelled`).
    """
    now = ctx.clock()
    campaign = ctx.campaign
    with ctx.engine.begin() as connection:
        ticks.guard(
            connection,
            campaign.id,
            now,
            ctx.config.clock_jump_limit,
            ctx.config.clock_jump_confirmed,
        )
        controls.settle_cancelled(connection, now=now)
        plan = schedule.ledger_plan(connection, campaign, now)
        for row in plan.rows:
            if row.channel not in IMPLEMENTED_CHANNELS or row.item_id is None:
                continue
            if row.state not in (planning.PlanState.DUE, planning.PlanState.MISSED):
                continue
            assert row.day is not None and row.send_at_utc is not None
            if store.get_dispatch(connection, campaign.id, row.day, row.channel) is not None:
                continue
            held = controls.holding(connection, row.channel)
            if held is not None and row.state is planning.PlanState.DUE:
                report.paused[row.channel] = held
                if _notices.held_day(str(row.day), row.channel, held):
                    log.warning(
                        "dispatch %s %s %s is due but held: %s; it is sent if the pause "
                        "ends by %s (its catch_up), else it is missed",
                        row.day,
                        row.channel,
                        row.item_id,
                        _describe_pause(held),
                        _local(ctx, row.send_at_utc + campaign.catch_up),
                        extra={
                            "event": "dispatch_held",
                            "channel": str(row.channel),
                            "day": str(row.day),
                            "item": row.item_id,
                        },
                    )
                continue
            content = item_to_json(campaign.item(row.item_id))
            missed = row.state is planning.PlanState.MISSED
            dispatch = store.ensure_dispatch(
                connection,
                campaign_id=campaign.id,
                day=row.day,
                channel=row.channel,
                item_id=row.item_id,
                content_hash=hashlib.sha256(content.encode()).hexdigest(),
                content=content,
                send_at=row.send_at_utc,
                state=DispatchState.MISSED if missed else DispatchState.PLANNED,
                now=now,
            )
            (report.missed if missed else report.created).append(dispatch)
            if missed:
                log.warning(
                    "dispatch %s %s %s missed: its time plus catch_up (%s) passed",
                    row.day,
                    row.channel,
                    row.item_id,
                    campaign.catch_up,
                    extra={
                        "event": "dispatch_missed",
                        "dispatch": dispatch.id,
                        "channel": str(row.channel),
                        "day": str(row.day),
                    },
                )


# 2. Fan out and send: the kind of dispatch behind one interface -------------------------


def open_sender(ctx: Context, dispatch: store.DispatchRow) -> DispatchSender:
    """The email, or a network's post: rendered once, its channels opened once."""
    if dispatch.channel == Channel.EMAIL:
        return EmailDispatch(ctx, dispatch)
    return PostDispatch(ctx, dispatch)


def fan_out(ctx: Context, dispatch: store.DispatchRow) -> None:
    """All delivery rows at once (the send loop interleaves fan-out batches instead)."""
    if dispatch.channel != Channel.EMAIL:
        post_dispatch.fan_out_targets(ctx, dispatch)
        return
    while email_dispatch.fan_out_step(ctx, dispatch) and not ctx.stop.is_set():
        pass


def report_progress(ctx: Context, dispatch: store.DispatchRow) -> None:
    """(done, total) of the dispatch to `ctx.progress` (the demo's progress bar)."""
    if ctx.progress is None:
        return
    with ledger_engine.reader(ctx.engine).connect() as connection:
        counts = store.delivery_counts(connection, dispatch.id)
    done = sum(n for s, n in counts.items() if s not in store.UNFINISHED_DELIVERY_STATES)
    ctx.progress(done, sum(counts.values()))


# 3. Claim → send → record, batch after batch ---------------------------------------------


class Claim:
    """The deliveries this worker holds, kept alive by a heartbeat while they are sent.

    The lease is renewed every quarter lease. `holds` answers False for a delivery that
    another worker took over or finished, and for all of them once the last successful
    renewal is older than 80 % of the lease (the database may be unreachable and the
    lease about to run out elsewhere): sending then stops before the next message, so
    no two workers send the same batch.
    """

    def __init__(self, ctx: Context, ids: list[int]) -> None:
        self._ctx = ctx
        self._held = set(ids)
        self._lock = threading.Lock()
        self._lease = ctx.config.lease.total_seconds()
        self._valid_until = time.monotonic() + 0.8 * self._lease
        self._done = threading.Event()
        self._thread = threading.Thread(target=self._beat, name="lease", daemon=True)
        self.lost: set[int] = set()

    def __enter__(self) -> Claim:
        self._thread.start()
        return self

    def __exit__(self, *_exc: object) -> None:
        self._done.set()
        self._thread.join()

    def holds(self, delivery_id: int) -> bool:
        with self._lock:
            return delivery_id in self._held and time.monotonic() < self._valid_until

    def _beat(self) -> None:
        ctx = self._ctx
        while not self._done.wait(self._lease / 4):
            started = time.monotonic()
            with self._lock:
                ids = sorted(self._held)
            try:
                with ctx.engine.begin() as connection:
                    held = store.renew_leases(
                        connection,
                        ids,
                        worker=ctx.config.worker,
                        now=ctx.clock(),
                        lease=ctx.config.lease,
                    )
            except sa.exc.SQLAlchemyError as error:
                log.warning(
                    "cannot renew the lease of %d deliveries: %s",
                    len(ids),
                    _first_line(error),
                    extra={"event": "lease_renewal_failed", "error": _first_line(error)},
                )
                continue
            ctx.beat()
            with self._lock:
                lost = self._held - held
                self._held &= held
                self._valid_until = started + 0.8 * self._lease
                self.lost |= lost
            if lost:
                log.warning(
                    "%d claimed deliveries were taken over or finished elsewhere; "
                    "this worker does not send them",
                    len(lost),
                    extra={"event": "claim_lost", "delivery": min(lost)},
                )


def _first_line(error: BaseException) -> str:
    text = str(getattr(error, "orig", None) or error).strip()
    return text.splitlines()[0] if text else type(error).__name__


def write_to_ledger(ctx: Context, what: str, write: Callable[[sa.Connection], T]) -> T:
    """Run `write` in a transaction until the ledger takes it.

    Used for outcomes of messages that already left: dropping them would send those
    messages again after the lease, so a database fault is waited out (on fresh
    connections, with backoff) rather than given up — except on shutdown, where the
    lease expiry repeats at most this one batch.
    """
    delay = 0.5
    while True:
        try:
            with ctx.engine.begin() as connection:
                result = write(connection)
        except sa.exc.DBAPIError as error:
            if ctx.stop.is_set():
                log.error(
                    "could not record %s before stopping: %s",
                    what,
                    _first_line(error),
                    extra={"event": "record_abandoned", "error": _first_line(error)},
                )
                raise
            log.warning(
                "cannot record %s yet (retrying in %.1f s): %s",
                what,
                delay,
                _first_line(error),
                extra={"event": "record_retry", "error": _first_line(error)},
            )
            ctx.stop.wait(delay)
            delay = min(delay * 2, 10.0)
            continue
        ctx.beat()
        return result


def _describe_pause(pause: controls.PauseRow) -> str:
    what = "all sending" if pause.channel == controls.ALL else f"channel {pause.channel}"
    return f"{what} paused since {pause.paused_at:%Y-%m-%d %H:%M:%S} UTC by {pause.paused_by}"


def note_pause(channel: str, pause: controls.PauseRow) -> None:
    """Log, once per process and pause, that `channel` is held."""
    if _notices.paused(channel, pause):
        log.warning(
            "channel %s held: %s; nothing is claimed until `dispatcher resume`, deliveries "
            "keep their place",
            channel,
            _describe_pause(pause),
            extra={"event": "channel_paused", "channel": channel, "by": pause.paused_by},
        )


def note_running(channel: str) -> None:
    """Log, once, that a channel this process saw paused sends again."""
    if _notices.running(channel):
        log.info(
            "channel %s: the pause has ended; sending continues where it stopped",
            channel,
            extra={"event": "channel_resumed", "channel": channel},
        )


@dataclass(frozen=True)
class Batch:
    """What one claim batch came to."""

    more: bool  #: there may be more to claim
    down: str | None = None  #: the channel refused the whole session (why)
    paused: controls.PauseRow | None = None  #: nothing claimed: the channel is held
    stopped: str | None = None  #: nothing claimed: the dispatch is not open (its state)


@dataclass(frozen=True)
class NotSent:
    """The delivery was not attempted: stop requested, channel down, or claim lost."""

    delivery_id: int


def send_batch(
    ctx: Context,
    dispatch: store.DispatchRow,
    send: Callable[[store.ClaimedDelivery], store.Outcome | ChannelDown],
    pool: ThreadPoolExecutor,
) -> Batch:
    """One claimed batch through the channel. Before the claim, in its transaction, the stop
    switch is read: a pause of the channel or a cancel of the dispatch claims nothing."""
    with ctx.engine.begin() as connection:
        state = store.lock_dispatch(connection, dispatch.id)
        paused = controls.holding(connection, dispatch.channel)
        claimed = (
            []
            if paused is not None or state not in store.OPEN_DISPATCH_STATES
            else store.claim_batch(
                connection,
                dispatch.id,
                limit=ctx.config.claim_batch,
                now=ctx.clock(),
                lease=ctx.config.lease,
                worker=ctx.config.worker,
                max_attempts=ctx.config.max_attempts,
            )
        )
    ctx.beat()
    if paused is not None:
        note_pause(dispatch.channel, paused)
        return Batch(more=False, paused=paused)
    if state not in store.OPEN_DISPATCH_STATES:
        if state == DispatchState.CANCELLED and _notices.cancelled(dispatch.id):
            log.warning(
                "dispatch %s %s %s was cancelled: this process claims none of it any more",
                dispatch.day,
                dispatch.channel,
                dispatch.item_id,
                extra={
                    "event": "dispatch_stopped",
                    "dispatch": dispatch.id,
                    "channel": dispatch.channel,
                },
            )
        return Batch(more=False, stopped=state)
    if not claimed:
        return Batch(more=False)
    down = threading.Event()

    def guarded(
        claim: Claim, delivery: store.ClaimedDelivery
    ) -> store.Outcome | ChannelDown | NotSent:
        if ctx.stop.is_set() or down.is_set() or not claim.holds(delivery.id):
            return NotSent(delivery.id)
        result = send(delivery)
        if isinstance(result, ChannelDown):
            down.set()
        ctx.beat()
        return result

    outcomes: list[store.Outcome] = []
    unsent: list[int] = []
    down_message: str | None = None
    with Claim(ctx, [delivery.id for delivery in claimed]) as claim:
        futures: list[
            tuple[store.ClaimedDelivery, Future[store.Outcome | ChannelDown | NotSent]]
        ] = [(delivery, pool.submit(guarded, claim, delivery)) for delivery in claimed]
        for delivery, future in futures:
            try:
                result = future.result()
            except Exception as error:  # a bug or a broken message must not stop the dispatch
                log.exception(
                    "delivery %s crashed",
                    delivery.id,
                    extra={"event": "delivery_error", "delivery": delivery.id},
                )
                result = store.Outcome(delivery.id, DeliveryState.FAILED, error=repr(error))
            if isinstance(result, ChannelDown):
                down_message = result.message
                unsent.append(delivery.id)
            elif isinstance(result, NotSent):
                unsent.append(delivery.id)
            else:
                outcomes.append(result)
        # Still under the heartbeat: the lease cannot run out while the outcomes are written.
        write_to_ledger(
            ctx,
            f"the outcomes of {len(outcomes)} deliveries",
            lambda connection: record_batch(ctx, connection, dispatch, outcomes, unsent),
        )
    for outcome in outcomes:
        if outcome.state in (DeliveryState.FAILED, DeliveryState.DEFERRED, DeliveryState.UNKNOWN):
            log.warning(
                "delivery %s %s: %s",
                outcome.delivery_id,
                outcome.state,
                outcome.error,
                extra={
                    "event": f"delivery_{outcome.state}",
                    "delivery": outcome.delivery_id,
                    "dispatch": dispatch.id,
                    "channel": dispatch.channel,
                    "error": outcome.error,
                },
            )
    return Batch(more=down_message is None and not ctx.stop.is_set(), down=down_message)


def record_batch(
    ctx: Context,
    connection: sa.Connection,
    dispatch: store.DispatchRow,
    outcomes: list[store.Outcome],
    unsent: list[int],
) -> None:
    """A batch's outcomes and the claims it gives back, in one transaction. Under the
    dispatch's shared lock: if it was cancelled meanwhile, what is given back or deferred
    becomes `cancelled` here, or the cancel (waiting for the lock) finds it unsent."""
    now = ctx.clock()
    state = store.lock_dispatch(connection, dispatch.id)
    store.record_outcomes(connection, outcomes, worker=ctx.config.worker, now=now)
    store.release_claims(connection, worker=ctx.config.worker, ids=unsent)
    if state == DispatchState.CANCELLED:
        controls.settle_cancelled(connection, now=now, dispatch_id=dispatch.id)


def run_dispatch(
    ctx: Context, dispatch: store.DispatchRow, report: TickReport
) -> DispatchState | None:
    """Drive one dispatch as far as it goes now; its final state once it is complete."""
    with ctx.engine.begin() as connection:
        store.mark_dispatch(connection, dispatch.id, DispatchState.RUNNING, now=ctx.clock())
    if dispatch.state == DispatchState.PLANNED:
        log.info(
            "dispatch %s %s %s started",
            dispatch.day,
            dispatch.channel,
            dispatch.item_id,
            extra={
                "event": "dispatch_started",
                "dispatch": dispatch.id,
                "channel": dispatch.channel,
                "item": dispatch.item_id,
            },
        )
    sender = open_sender(ctx, dispatch)
    down: str | None = None
    try:
        fanning = sender.fan_out_step()
        with ThreadPoolExecutor(sender.workers, thread_name_prefix="send") as pool:
            while True:
                batch = send_batch(ctx, dispatch, sender.send, pool)
                down = batch.down
                if batch.paused is not None:
                    report.paused[dispatch.channel] = batch.paused
                    break
                if down is not None or batch.stopped is not None or ctx.stop.is_set():
                    break
                if fanning:
                    fanning = sender.fan_out_step()
                elif not batch.more:
                    break
                report_progress(ctx, dispatch)
    finally:
        sender.close()
    if down is not None:
        report.channel_errors.append(channel_refused(ctx, dispatch.channel, down))
    with ctx.engine.begin() as connection:
        final = store.finish_if_complete(connection, dispatch, now=ctx.clock())
        counts = store.delivery_counts(connection, dispatch.id)
    if final is not None:
        level = logging.INFO if final is DispatchState.DONE else logging.ERROR
        log.log(
            level,
            "dispatch %s %s %s %s: %s",
            dispatch.day,
            dispatch.channel,
            dispatch.item_id,
            final,
            counts,
            extra={
                "event": "dispatch_finished",
                "dispatch": dispatch.id,
                "channel": dispatch.channel,
                "counts": counts,
            },
        )
    return final


# 4. Lanes: each channel's dispatches, independent of the others ----------------------------


def due_dispatches(ctx: Context, channel: str | None = None) -> list[store.DispatchRow]:
    """Open dispatches whose time has come (of one channel, or all), oldest first."""
    with ledger_engine.reader(ctx.engine).connect() as connection:
        open_dispatches = store.list_dispatches(
            connection, ctx.campaign.id, states=store.OPEN_DISPATCH_STATES
        )
    now = ctx.clock()
    return [
        dispatch
        for dispatch in open_dispatches
        if dispatch.send_at <= now
        and dispatch.channel in IMPLEMENTED_CHANNELS
        and (channel is None or dispatch.channel == channel)
    ]


def channel_refused(ctx: Context, channel: str, message: str) -> ChannelFailure:
    """Record one more refused try of a channel (the outage's backoff grows), log it —
    once per backoff, since no process tries the channel again before `retry_at`."""
    now = ctx.clock()
    outage = write_to_ledger(
        ctx,
        f"the outage of channel {channel}",
        lambda connection: outages.record_refusal(connection, channel, message, now=now),
    )
    wait = outage.retry_at - now
    log.error(
        "channel %s unavailable since %s (refused %d times), deliveries stay queued; "
        "next try in %d s: %s",
        channel,
        f"{outage.since:%Y-%m-%d %H:%M:%S} UTC",
        outage.failures,
        wait.total_seconds(),
        message,
        extra={
            "event": "channel_unavailable",
            "channel": channel,
            "error": message,
            "failures": outage.failures,
            "retry_at": outage.retry_at.isoformat(),
        },
    )
    return ChannelFailure(channel, f"{message}; next try at {_local(ctx, outage.retry_at)}")


def _local(ctx: Context, instant: dt.datetime) -> str:
    return f"{instant.astimezone(ctx.campaign.zone):%Y-%m-%d %H:%M:%S %Z}"


def run_lane(ctx: Context, channel: str, report: TickReport) -> None:
    """Every due dispatch of one channel, each once, until none is left or the channel is
    down. The list is read again after each dispatch, so one that became due meanwhile
    starts without waiting for another tick. A channel in an outage is left alone until
    its retry time; the first dispatch that gets through ends the outage."""
    with ledger_engine.reader(ctx.engine).connect() as connection:
        outage = outages.outages(connection).get(channel)
    if outage is not None and outage.blocks(ctx.clock()):
        report.channel_errors.append(
            ChannelFailure(
                channel,
                f"unavailable since {_local(ctx, outage.since)} ({outage.error}); "
                f"next try at {_local(ctx, outage.retry_at)}",
            )
        )
        return
    tried: set[int] = set()
    while not ctx.stop.is_set():
        waiting = [d for d in due_dispatches(ctx, channel) if d.id not in tried]
        if not waiting:
            return
        with ledger_engine.reader(ctx.engine).connect() as connection:
            paused = controls.holding(connection, channel)
        if paused is not None:
            # Before the dispatch is opened: a held channel neither renders nor fans out.
            report.paused[channel] = paused
            note_pause(channel, paused)
            return
        note_running(channel)
        dispatch = waiting[0]
        tried.add(dispatch.id)
        final = run_dispatch(ctx, dispatch, report)
        if final is not None:
            report.finished[dispatch.id] = final
        if any(failure.channel == channel for failure in report.channel_errors):
            return  # the channel is down: its other dispatches wait for the next tick
        if outage is not None:
            _end_outage(ctx, channel)
            outage = None


def _end_outage(ctx: Context, channel: str) -> None:
    ended = write_to_ledger(
        ctx,
        f"the end of channel {channel}'s outage",
        lambda connection: outages.end_outage(connection, channel),
    )
    if ended:
        log.info(
            "channel %s works again",
            channel,
            extra={"event": "channel_recovered", "channel": channel},
        )


def finish_report(ctx: Context, report: TickReport) -> TickReport:
    """Add the delivery counts of the dispatches the tick finished."""
    with ledger_engine.reader(ctx.engine).connect() as connection:
        for dispatch_id in report.finished:
            report.counts[dispatch_id] = store.delivery_counts(connection, dispatch_id)
            report.failed_deliveries += report.counts[dispatch_id].get(DeliveryState.FAILED, 0)
    return report


# 5. The unit `tick` and `run` share -----------------------------------------------------------


def tick(ctx: Context, *, schedule: bool = True, report: TickReport | None = None) -> TickReport:
    """Everything due at the context's clock: create, fan out, send, record, then return.

    Each channel runs in a lane (thread) of its own, so a slow relay does not hold up
    the posts. `schedule=False` only helps send what is open: a process that is not the
    scheduler (see `leader`) still claims and sends its share.
    """
    report = TickReport() if report is None else report
    if schedule:
        make_due_dispatches(ctx, report)
    channels = sorted({dispatch.channel for dispatch in due_dispatches(ctx)})
    errors: list[BaseException] = []

    def lane(channel: str) -> None:
        try:
            run_lane(ctx, channel, report)
        except BaseException as error:  # re-raised in the caller's thread below
            errors.append(error)

    threads = [threading.Thread(target=lane, args=(c,), name=f"lane-{c}") for c in channels]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    if errors:
        raise errors[0]
    return finish_report(ctx, report)
