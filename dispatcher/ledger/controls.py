"""The stop switch in the ledger: a dispatch called off, and channels held.

Both live in the database because `dispatcher run` may be several processes: each of them
reads a pause or a cancel before every claim batch (`store.claim_batch`,
`delivery/pipeline.send_batch`), so what one operator command wrote stops them all.

- **Cancel.** The dispatch becomes `cancelled` with who, when and why; its deliveries not
  yet sent become `cancelled` — including the subscribers an email's fan-out had not reached
  yet, so the ledger counts exactly what the cancel left unsent. Deliveries in flight
  (`sending`) are left to the worker that holds them: it records what it sent, and what it
  gives back is cancelled then (`settle_cancelled`). `resend` sends the cancelled ones on
  purpose, nothing else does (not a restart, a tick or `retry`).
- **Pause.** One row per paused channel in `channel_pauses` (or `all`): no process claims
  for that channel while it is there. Deliveries are not touched, so `resume` (deleting the
  row) continues exactly where the pause stopped.

See docs/operations.md ("A wrong link went out") and docs/architecture.md ("A claim lives
exactly as long as its worker works on it").
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass

import sqlalchemy as sa

from dispatcher.ledger import store
from dispatcher.ledger.tables import (
    DeliveryState,
    DispatchState,
    SubscriberState,
    UTCDateTime,
    deliveries,
    dispatches,
    metadata,
    subscribers,
)
from dispatcher.mail import compose

ALL = "all"  #: the `channel_pauses` row that holds every channel
BY_LENGTH = 200  #: who did it: "cli:erika", an API token's name
REASON_LENGTH = 1000

channel_pauses = sa.Table(
    "channel_pauses",
    metadata,
    sa.Column("channel", sa.String(50), primary_key=True),  # a channel's name, or "all"
    sa.Column("paused_at", UTCDateTime, nullable=False),
    sa.Column("paused_by", sa.String(BY_LENGTH), nullable=False),
)


@dataclass(frozen=True)
class PauseRow:
    channel: str  #: a channel's name, or `ALL`
    paused_at: dt.datetime
    paused_by: str


def pauses(connection: sa.Connection) -> list[PauseRow]:
    """Every pause in force: the one of all sending first, then by channel."""
    rows = connection.execute(sa.select(channel_pauses)).all()
    found = [PauseRow(row.channel, row.paused_at, row.paused_by) for row in rows]
    return sorted(found, key=lambda p: (p.channel != ALL, p.channel))


def holding(connection: sa.Connection, channel: str) -> PauseRow | None:
    """The pause that holds `channel` (that of all sending first), or None."""
    rows = connection.execute(
        sa.select(channel_pauses).where(channel_pauses.c.channel.in_([ALL, channel]))
    ).all()
    found = sorted(rows, key=lambda row: row.channel != ALL)
    return None if not found else PauseRow(found[0].channel, found[0].paused_at, found[0].paused_by)


def pause(connection: sa.Connection, channel: str, *, by: str, now: dt.datetime) -> bool:
    """Hold `channel` (or `ALL`); False if it was held already (the first pause stays, with
    its time and author: that is when the sending stopped)."""
    try:
        with connection.begin_nested():
            connection.execute(
                channel_pauses.insert().values(
                    channel=channel, paused_at=now, paused_by=by[:BY_LENGTH]
                )
            )
    except sa.exc.IntegrityError:  # paused already, perhaps a moment ago by another process
        return False
    return True


def resume(connection: sa.Connection, channel: str) -> bool:
    """Lift the pause of `channel` (or `ALL`); whether there was one."""
    result = connection.execute(channel_pauses.delete().where(channel_pauses.c.channel == channel))
    return result.rowcount > 0


@dataclass(frozen=True)
class Cancelled:
    """What `cancel` found and did."""

    state: str  #: the dispatch's state afterwards (`cancelled`)
    cancelled: int  #: deliveries this call turned `cancelled`
    sent: int  #: deliveries sent by then
    already: bool  #: the dispatch had been cancelled before


class NotCancellableError(ValueError):
    """The dispatch has finished: there is nothing left to stop."""


class NotResendableError(ValueError):
    """The dispatch is not cancelled: `resend --only-unsent` has nothing to send."""


def cancel(
    connection: sa.Connection,
    dispatch_id: int,
    *,
    by: str,
    reason: str | None,
    now: dt.datetime,
) -> Cancelled:
    """Call the dispatch off: no claim after this commits, the unsent rest `cancelled`.

    The dispatch row is locked exclusively first: a claim or fan-out under way ends before
    (its rows are then seen here), any later one finds the dispatch cancelled. KeyError for
    an unknown dispatch, `NotCancellableError` for a finished one.
    """
    state = store.lock_dispatch(connection, dispatch_id, exclusive=True)
    if state is None:
        raise KeyError(dispatch_id)
    if state == DispatchState.CANCELLED:
        return Cancelled(state, 0, _count(connection, dispatch_id, DeliveryState.SENT), True)
    if state not in store.OPEN_DISPATCH_STATES:
        raise NotCancellableError(
            f"dispatch {dispatch_id} is {state} already: there is nothing left to stop"
        )
    connection.execute(
        dispatches.update()
        .where(dispatches.c.id == dispatch_id)
        .values(
            state=DispatchState.CANCELLED,
            finished_at=now,
            cancelled_at=now,
            cancelled_by=by[:BY_LENGTH],
            cancel_reason=None if reason is None else reason[:REASON_LENGTH],
            resent_at=None,  # cancelled again after a resend: this cancel is the news
            resent_by=None,
        )
    )
    _cancel_unsent(connection, dispatch_id, now=now)
    _fan_out_cancelled(connection, dispatch_id, now=now)
    # An open dispatch has no cancelled rows (`resend` made them pending): all are this call's.
    cancelled = _count(connection, dispatch_id, DeliveryState.CANCELLED)
    sent = _count(connection, dispatch_id, DeliveryState.SENT)
    return Cancelled(DispatchState.CANCELLED, cancelled, sent, False)


def _count(connection: sa.Connection, dispatch_id: int, state: DeliveryState) -> int:
    return int(
        connection.execute(
            sa.select(sa.func.count()).where(
                deliveries.c.dispatch_id == dispatch_id, deliveries.c.state == state
            )
        ).scalar_one()
    )


def _cancel_unsent(connection: sa.Connection, dispatch_id: int, *, now: dt.datetime) -> None:
    """Pending and deferred deliveries of the dispatch become `cancelled`."""
    connection.execute(
        deliveries.update()
        .where(
            deliveries.c.dispatch_id == dispatch_id,
            deliveries.c.state.in_([DeliveryState.PENDING, DeliveryState.DEFERRED]),
        )
        .values(state=DeliveryState.CANCELLED, next_attempt_at=None, updated_at=now)
    )


def _fan_out_cancelled(connection: sa.Connection, dispatch_id: int, *, now: dt.datetime) -> None:
    """The email's subscribers the fan-out had not reached, as `cancelled` rows: the ledger
    then says how many the cancel left unsent, and `resend` sends exactly those.

    Their key (the Message-ID) follows the rows already fanned out, whose domain is the
    sender's: the ledger does not know the settings. With no row yet there is no pattern;
    the fan-out then stays where it is and `resend` continues it.
    """
    dispatch = store.dispatch_by_id(connection, dispatch_id)
    assert dispatch is not None
    if dispatch.fanout_done or dispatch.channel != "email":
        return
    parts = _key_parts(connection, dispatch)
    if parts is None:
        return
    last = connection.execute(
        sa.select(sa.func.max(subscribers.c.id)).where(
            subscribers.c.state == SubscriberState.ACTIVE,
            subscribers.c.id > dispatch.fanout_cursor,
        )
    ).scalar()
    if last is not None:
        store.insert_subscriber_deliveries(
            connection,
            dispatch_id,
            after=dispatch.fanout_cursor,
            upto=int(last),
            key_prefix=parts[0],
            key_suffix=parts[1],
            state=DeliveryState.CANCELLED,
            now=now,
        )
    # The row is locked exclusively: no fan-out moves the cursor meanwhile.
    connection.execute(
        dispatches.update()
        .where(dispatches.c.id == dispatch_id)
        .values(fanout_done=True, fanout_cursor=max(dispatch.fanout_cursor, int(last or 0)))
    )


def _key_parts(connection: sa.Connection, dispatch: store.DispatchRow) -> tuple[str, str] | None:
    """(prefix, suffix) around the subscriber id in this dispatch's keys, from one of its rows."""
    row = connection.execute(
        sa.select(deliveries.c.key, deliveries.c.subscriber_id)
        .where(deliveries.c.dispatch_id == dispatch.id, deliveries.c.subscriber_id.is_not(None))
        .limit(1)
    ).first()
    if row is None:
        return None
    prefix, _ = compose.message_id_parts(
        dispatch.campaign_id, dispatch.day, dispatch.channel, "example.invalid"
    )
    number = str(row.subscriber_id)
    if not row.key.startswith(prefix + number + "@"):
        return None  # a key of another scheme: better no rows than wrong Message-IDs
    return prefix, row.key[len(prefix) + len(number) :]


def settle_cancelled(
    connection: sa.Connection, *, now: dt.datetime, dispatch_id: int | None = None
) -> int:
    """What in-flight work left on cancelled dispatches (one, or all): deliveries a worker
    gave back or deferred become `cancelled`; a claim whose lease ran out (its worker
    died mid-batch) becomes `unknown` — it may have been sent, and no claim takes it over.

    `now` must be the workers' clock (a rehearsal's `--at` clock is not the wall clock).
    Returns the number of rows settled.
    """
    cancelled = sa.select(dispatches.c.id).where(dispatches.c.state == DispatchState.CANCELLED)
    if dispatch_id is not None:
        cancelled = cancelled.where(dispatches.c.id == dispatch_id)
    given_back = connection.execute(
        deliveries.update()
        .where(
            deliveries.c.dispatch_id.in_(cancelled),
            deliveries.c.state.in_([DeliveryState.PENDING, DeliveryState.DEFERRED]),
        )
        .values(state=DeliveryState.CANCELLED, next_attempt_at=None, updated_at=now)
    )
    expired = store.expire_claims(
        connection,
        deliveries.c.dispatch_id.in_(cancelled),
        now=now,
        reason="the process sending it stopped before the dispatch was cancelled; "
        "it may have been delivered",
    )
    return given_back.rowcount + expired


def resend(connection: sa.Connection, dispatch_id: int, *, by: str, now: dt.datetime) -> int:
    """The cancelled deliveries of a cancelled dispatch back to `pending`, the dispatch
    `running` again; how many will be sent (with the subscribers a fan-out that was stopped
    before its first row has yet to reach). KeyError for an unknown dispatch,
    `NotResendableError` for one that is not cancelled. Nothing left: 0, the dispatch stays."""
    state = store.lock_dispatch(connection, dispatch_id, exclusive=True)
    if state is None:
        raise KeyError(dispatch_id)
    if state != DispatchState.CANCELLED:
        raise NotResendableError(
            f"dispatch {dispatch_id} is {state}, not cancelled: only what a cancel left "
            "unsent can be sent again this way"
        )
    dispatch = store.dispatch_by_id(connection, dispatch_id)
    assert dispatch is not None
    owed = 0
    if not dispatch.fanout_done and dispatch.channel == "email":
        owed = int(
            connection.execute(
                sa.select(sa.func.count()).where(
                    subscribers.c.state == SubscriberState.ACTIVE,
                    subscribers.c.id > dispatch.fanout_cursor,
                )
            ).scalar_one()
        )
    requeued = connection.execute(
        deliveries.update()
        .where(
            deliveries.c.dispatch_id == dispatch_id,
            deliveries.c.state == DeliveryState.CANCELLED,
        )
        .values(
            state=DeliveryState.PENDING,
            attempts=0,
            next_attempt_at=None,
            lease_until=None,
            claimed_by=None,
            updated_at=now,
        )
    ).rowcount
    if not requeued and dispatch.fanout_done:
        return 0
    connection.execute(
        dispatches.update()
        .where(dispatches.c.id == dispatch_id)
        .values(
            state=DispatchState.RUNNING,
            finished_at=None,
            resent_at=now,
            resent_by=by[:BY_LENGTH],
        )
    )
    return requeued + owed


@dataclass(frozen=True)
class Cancellation:
    """Who called a dispatch off, when and why; and who sent the rest later, if anyone."""

    dispatch_id: int
    at: dt.datetime
    by: str
    reason: str | None
    resent_at: dt.datetime | None
    resent_by: str | None


def cancellations(connection: sa.Connection, campaign_id: str) -> dict[int, Cancellation]:
    """Every dispatch of the campaign that was ever cancelled, by id."""
    query = sa.select(
        dispatches.c.id,
        dispatches.c.cancelled_at,
        dispatches.c.cancelled_by,
        dispatches.c.cancel_reason,
        dispatches.c.resent_at,
        dispatches.c.resent_by,
    ).where(dispatches.c.campaign_id == campaign_id, dispatches.c.cancelled_at.is_not(None))
    return {row[0]: Cancellation(*row) for row in connection.execute(query)}
