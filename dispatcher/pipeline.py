"""The send pipeline, top to bottom: plan → dispatch → fan out → claim → send → record.

Invariants:
- The ledger is the truth. Nothing in memory survives a crash and nothing needs to:
  every step reads what to do from the database and writes what it did back.
- A delivery is `sending` (with a lease) before its message leaves, and gets its
  outcome right after, committed per claimed batch. A crash therefore repeats at
  most the messages of one claimed batch per worker, and loses none.
- Each loop unit returns whether there is more work, so a stop request is honoured
  between batches.
"""

from __future__ import annotations

import datetime as dt
import functools
import hashlib
import logging
import os
import socket
import threading
import time
import uuid
from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field

import jinja2
import sqlalchemy as sa

from dispatcher import channels, emails, metrics, planning, rendering, retrying, wire
from dispatcher.campaign import Campaign, Channel, item_from_json, item_to_json
from dispatcher.channels.base import ChannelError, EmailChannel, Envelope, Post, SocialChannel
from dispatcher.ledger import engine as ledger_engine
from dispatcher.ledger import store, ticks
from dispatcher.ledger.tables import DeliveryState, DispatchState, SubscriberState

FANOUT_BATCH = 5000  #: subscribers turned into delivery rows per statement
CLAIM_BATCH = 100  #: deliveries claimed (and at most repeated after a crash) per batch
LEASE = dt.timedelta(minutes=5)  #: a claim older than this is taken over by another worker
IMPLEMENTED_CHANNELS = tuple(Channel)

log = logging.getLogger("dispatcher")
Clock = Callable[[], dt.datetime]
Signer = Callable[[bytes], bytes]
Progress = Callable[[int, int], None]  #: (done, total) of the dispatch being sent


def worker_name() -> str:
    return f"{socket.gethostname()}:{os.getpid()}:{uuid.uuid4().hex[:6]}"


def clock_from(at: dt.datetime) -> Clock:
    """Time that starts at `at` and runs at real speed: `tick --at` in the past works alike."""
    started, at = time.monotonic(), at.astimezone(dt.UTC)
    return lambda: at + dt.timedelta(seconds=time.monotonic() - started)


@dataclass
class PipelineConfig:
    fanout_batch: int = FANOUT_BATCH
    claim_batch: int = CLAIM_BATCH
    lease: dt.timedelta = LEASE
    connections: int = 4
    max_attempts: int = retrying.MAX_ATTEMPTS
    worker: str = field(default_factory=worker_name)
    clock_jump_limit: dt.timedelta = dt.timedelta(hours=24)  #: see `ledger.ticks`
    clock_jump_confirmed: bool = False  #: `--force`: the operator vouches for the clock


@dataclass
class Context:
    """What one process needs to send: the database, the campaign, a channel, the clock."""

    engine: sa.Engine
    campaign: Campaign
    env: jinja2.Environment
    sender: emails.Sender
    imprint: str
    email_channel: EmailChannel
    clock: Clock
    social_targets: Callable[[str], list[channels.SocialTarget]] = lambda _channel: []
    signer: Signer | None = None  #: DKIM: signs the exact bytes that are sent
    return_path: str | None = None  #: envelope sender (MAIL FROM) where bounces go
    config: PipelineConfig = field(default_factory=PipelineConfig)
    stop: threading.Event = field(default_factory=threading.Event)
    progress: Progress | None = None


@dataclass(frozen=True)
class ChannelDown:
    """The channel could not work at all for this delivery; it goes back to the queue."""

    delivery_id: int
    message: str


@dataclass
class TickReport:
    channel_errors: list[str] = field(default_factory=list)
    created: list[store.DispatchRow] = field(default_factory=list)
    missed: list[store.DispatchRow] = field(default_factory=list)
    finished: dict[int, DispatchState] = field(default_factory=dict)
    counts: dict[int, dict[str, int]] = field(default_factory=dict)
    failed_deliveries: int = 0


# 1. Plan: which dispatches are due now, which were missed -------------------------------


def make_due_dispatches(ctx: Context, report: TickReport) -> None:
    """Create the ledger row of each due dispatch (once), and record missed ones."""
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
        past = [
            planning.PastDispatch(day, Channel(channel), item, state)
            for day, channel, item, state in store.history(connection, campaign.id)
        ]
        plan = planning.plan(campaign, now=now, history=past)
        for row in plan.rows:
            if row.channel not in IMPLEMENTED_CHANNELS or row.item_id is None:
                continue
            if row.state not in (planning.PlanState.DUE, planning.PlanState.MISSED):
                continue
            assert row.day is not None and row.send_at_utc is not None
            if store.get_dispatch(connection, campaign.id, row.day, row.channel) is not None:
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


# 2. Fan out: one delivery row per active subscriber (streamed) or per social target -----


def fan_out(ctx: Context, dispatch: store.DispatchRow) -> None:
    """All of it at once (the send loop interleaves `fan_out_step` instead)."""
    while fan_out_step(ctx, dispatch) and not ctx.stop.is_set():
        pass


def fan_out_step(ctx: Context, dispatch: store.DispatchRow) -> bool:
    """One batch of delivery rows; whether more may follow. Interleaved with sending, so
    the first message leaves after the first batch, not after the whole list."""
    if dispatch.channel != Channel.EMAIL:
        fan_out_targets(ctx, dispatch)
        return False
    if dispatch.fanout_done:
        return False
    prefix, suffix = emails.message_id_parts(
        dispatch.campaign_id, dispatch.day, dispatch.channel, ctx.sender.domain
    )
    with ctx.engine.begin() as connection:
        covered = store.fan_out_subscribers(
            connection,
            dispatch,
            limit=ctx.config.fanout_batch,
            key_prefix=prefix,
            key_suffix=suffix,
            now=ctx.clock(),
        )
    return covered > 0


def fan_out_targets(ctx: Context, dispatch: store.DispatchRow) -> None:
    """One row per target, its retry-safe key stored before any request is made."""
    if dispatch.fanout_done:
        return
    rows = [
        (
            target.recipient,
            target.key(
                campaign_id=dispatch.campaign_id,
                day=dispatch.day,
                send_at=dispatch.send_at,
                recipient=target.recipient,
            ),
        )
        for target in ctx.social_targets(dispatch.channel)
    ]
    with ctx.engine.begin() as connection:
        store.fan_out_targets(connection, dispatch, rows, now=ctx.clock())


# 3. Render the shared part once per dispatch -----------------------------------------------


def render_shared(ctx: Context, dispatch: store.DispatchRow) -> rendering.RenderedEmail:
    """From the content stored with the dispatch, not the file: the past stays as sent."""
    with ledger_engine.reader(ctx.engine).connect() as connection:
        earlier = store.published_contents(
            connection, dispatch.campaign_id, channel=dispatch.channel, before=dispatch.day
        )
    return rendering.render_email(
        ctx.env,
        ctx.campaign,
        item_from_json(dispatch.content),
        day=dispatch.day,
        published=[(day, item_from_json(content)) for day, content in earlier],
        imprint=ctx.imprint,
        public_url=ctx.sender.public_url,
    )


def render_post(ctx: Context, dispatch: store.DispatchRow) -> Post:
    """The post exactly as `preview` shows it, with the dispatch's fixed creation time."""
    item = item_from_json(dispatch.content)
    rendered = rendering.render_post(
        ctx.env, Channel(dispatch.channel), ctx.campaign, item, day=dispatch.day
    )
    return Post(
        network=dispatch.channel,
        text=rendered.text,
        link=item.url,
        title=item.title,
        description=item.teaser,
        hashtags=rendered.hashtags,
        image_url=item.image,
        image_alt=item.image_alt,
        created_at=dispatch.send_at,
    )


# 4. Send one claimed delivery -> its outcome -------------------------------------------


def outcome_of_error(
    ctx: Context, delivery: store.ClaimedDelivery, error: ChannelError, *, idempotent: bool
) -> store.Outcome | ChannelDown:
    """The one place a channel's error becomes a ledger state (see `retrying.decide`)."""
    if error.unavailable:
        return ChannelDown(delivery.id, error.message)
    decision = retrying.decide(
        error,
        attempts=delivery.attempts,
        idempotent=idempotent,
        now=ctx.clock(),
        max_attempts=ctx.config.max_attempts,
    )
    bounced = delivery.subscriber_id if error.bounced else None
    return store.Outcome(
        delivery.id,
        decision.state,
        error=error.message,
        next_attempt_at=decision.next_attempt_at,
        bounced_subscriber_id=bounced,
    )


def send_post(
    ctx: Context, post: Post, opened: dict[str, SocialChannel], delivery: store.ClaimedDelivery
) -> store.Outcome | ChannelDown:
    channel = opened.get(delivery.recipient)
    if channel is None:
        return store.Outcome(
            delivery.id,
            DeliveryState.FAILED,
            error=f"target {delivery.recipient} is no longer configured",
        )
    started = time.monotonic()
    try:
        receipt = channel.send(post, key=delivery.key)
    except ChannelError as error:
        return outcome_of_error(ctx, delivery, error, idempotent=channel.idempotent)
    finally:
        metrics.observe_send(post.network, time.monotonic() - started)
    return store.Outcome(delivery.id, DeliveryState.SENT, provider_id=receipt.provider_id)


def message_bytes(
    ctx: Context, template: wire.WireTemplate, delivery: store.ClaimedDelivery
) -> bytes:
    """The exact bytes for one subscriber (the same as `emails.compose` builds, see `wire`)."""
    assert delivery.subscriber_id is not None and delivery.email is not None
    unsubscribe = emails.unsubscribe_url(
        ctx.sender, subscriber_id=delivery.subscriber_id, campaign_id=ctx.campaign.id
    )
    data = template.render(
        to_address=delivery.email,
        to_name=delivery.name,
        unsubscribe=unsubscribe,
        message_id=delivery.key,
        date=ctx.clock().astimezone(ctx.campaign.zone),
    )
    return data if ctx.signer is None else ctx.signer(data)


def send_one(
    ctx: Context,
    shared: rendering.RenderedEmail,
    template: wire.WireTemplate,
    delivery: store.ClaimedDelivery,
) -> store.Outcome | ChannelDown:
    if delivery.subscriber_state != SubscriberState.ACTIVE or delivery.email is None:
        return store.Outcome(
            delivery.id, DeliveryState.SKIPPED, error="not subscribed at send time"
        )
    data = message_bytes(ctx, template, delivery)
    envelope = Envelope(ctx.return_path or ctx.sender.address, delivery.email, data)
    started = time.monotonic()
    try:
        receipt = ctx.email_channel.send(envelope, key=delivery.key)
    except ChannelError as error:
        # A stable Message-ID makes a repeated email recognisable as the same message,
        # so an ambiguous outcome is retried rather than left unknown.
        return outcome_of_error(ctx, delivery, error, idempotent=True)
    finally:
        metrics.observe_send("email", time.monotonic() - started)
    return store.Outcome(delivery.id, DeliveryState.SENT, provider_id=receipt.provider_id)


# 5. Claim → send → record, batch after batch ---------------------------------------------


def send_batch(
    ctx: Context,
    dispatch: store.DispatchRow,
    send: Callable[[store.ClaimedDelivery], store.Outcome | ChannelDown],
    pool: ThreadPoolExecutor,
) -> tuple[bool, str | None]:
    """One claimed batch through the channel: (whether there may be more, channel failure)."""
    with ctx.engine.begin() as connection:
        claimed = store.claim_batch(
            connection,
            dispatch.id,
            limit=ctx.config.claim_batch,
            now=ctx.clock(),
            lease=ctx.config.lease,
            worker=ctx.config.worker,
        )
    if not claimed:
        return False, None
    futures: list[tuple[store.ClaimedDelivery, Future[store.Outcome | ChannelDown]]] = [
        (delivery, pool.submit(send, delivery)) for delivery in claimed
    ]
    outcomes: list[store.Outcome] = []
    unsent: list[int] = []
    down: str | None = None
    for delivery, future in futures:
        if (ctx.stop.is_set() or down) and future.cancel():
            unsent.append(delivery.id)
            continue
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
            down = result.message
            unsent.append(delivery.id)
        else:
            outcomes.append(result)
    with ctx.engine.begin() as connection:
        store.record_outcomes(connection, outcomes, worker=ctx.config.worker, now=ctx.clock())
        store.release_claims(connection, worker=ctx.config.worker, ids=unsent)
    for outcome in outcomes:
        if outcome.state in (DeliveryState.FAILED, DeliveryState.DEFERRED):
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
    if down is not None:
        log.error(
            "channel %s unavailable, %d deliveries back in the queue: %s",
            dispatch.channel,
            len(unsent),
            down,
            extra={"event": "channel_unavailable", "channel": dispatch.channel, "error": down},
        )
    return down is None and not ctx.stop.is_set(), down


def expire_unsafe_claims(
    ctx: Context, dispatch: store.DispatchRow, opened: dict[str, SocialChannel]
) -> None:
    """A claim whose worker died mid-post on a channel without idempotency may have
    posted: it becomes `unknown` instead of being posted again (`retry --force` is
    the operator's explicit choice)."""
    unsafe = [name for name, channel in opened.items() if not channel.idempotent]
    if unsafe:
        with ctx.engine.begin() as connection:
            store.expire_to_unknown(connection, dispatch.id, recipients=unsafe, now=ctx.clock())


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
    fanning = fan_out_step(ctx, dispatch)
    opened: dict[str, SocialChannel] = {}
    send: Callable[[store.ClaimedDelivery], store.Outcome | ChannelDown]
    if dispatch.channel == Channel.EMAIL:
        shared = render_shared(ctx, dispatch)
        template = wire.WireTemplate(shared, ctx.campaign, ctx.sender, send_at=dispatch.send_at)
        send = functools.partial(send_one, ctx, shared, template)
        workers = ctx.config.connections
    else:
        targets = ctx.social_targets(dispatch.channel)
        opened = {target.recipient: target.open(ctx.clock) for target in targets}
        expire_unsafe_claims(ctx, dispatch, opened)
        send, workers = functools.partial(send_post, ctx, render_post(ctx, dispatch), opened), 1
    down: str | None = None
    with ThreadPoolExecutor(workers, thread_name_prefix="send") as pool:
        while True:
            more, down = send_batch(ctx, dispatch, send, pool)
            if down is not None or ctx.stop.is_set():
                break
            if fanning:
                fanning = fan_out_step(ctx, dispatch)
            elif not more:
                break
            if ctx.progress is not None:
                with ledger_engine.reader(ctx.engine).connect() as connection:
                    counts = store.delivery_counts(connection, dispatch.id)
                done = sum(
                    n for s, n in counts.items() if s not in store.UNFINISHED_DELIVERY_STATES
                )
                ctx.progress(done, sum(counts.values()))
    for channel in opened.values():
        channel.close()
    if down is not None:
        report.channel_errors.append(f"{dispatch.channel}: {down}")
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


# The unit `tick` and `run` share -----------------------------------------------------------


def tick(ctx: Context, *, schedule: bool = True, report: TickReport | None = None) -> TickReport:
    """Everything due at the context's clock: create, fan out, send, record, then return.

    `schedule=False` only helps send what is open: a process that is not the
    scheduler (see `leader`) still claims and sends its share.
    """
    report = TickReport() if report is None else report
    if schedule:
        make_due_dispatches(ctx, report)
    with ledger_engine.reader(ctx.engine).connect() as connection:
        open_dispatches = store.list_dispatches(
            connection, ctx.campaign.id, states=store.OPEN_DISPATCH_STATES
        )
    for dispatch in open_dispatches:
        if ctx.stop.is_set() or dispatch.send_at > ctx.clock():
            continue
        if dispatch.channel not in IMPLEMENTED_CHANNELS:
            continue
        if any(e.startswith(f"{dispatch.channel}:") for e in report.channel_errors):
            continue  # the channel is down: its other dispatches wait for the next tick
        final = run_dispatch(ctx, dispatch, report)
        if final is not None:
            report.finished[dispatch.id] = final
    with ledger_engine.reader(ctx.engine).connect() as connection:
        for dispatch_id in report.finished:
            report.counts[dispatch_id] = store.delivery_counts(connection, dispatch_id)
            report.failed_deliveries += report.counts[dispatch_id].get(DeliveryState.FAILED, 0)
    return report
