"""Every statement about dispatches and deliveries: the one home of their SQL.

A claim is one UPDATE of rows picked with `FOR UPDATE SKIP LOCKED` (PostgreSQL)
or under SQLite's write lock (`BEGIN IMMEDIATE`), so two workers never hold the
same delivery. A claim carries a lease: a worker that dies leaves rows in
`sending` that another worker may take again once the lease has expired.

Only an open dispatch (planned, running) gets claims or fan-out rows. Claims, fan-out
and the record of a batch first take a shared lock on the dispatch row (`lock_dispatch`),
a cancel an exclusive one: so once `dispatcher cancel` has committed, no claim starts on
the dispatch, and what a worker gives back lands where the cancel sees it
(docs/architecture.md, "A claim lives exactly as long as its worker works on it").
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, NamedTuple

import sqlalchemy as sa
from sqlalchemy.dialects import postgresql, sqlite

from dispatcher.ledger.tables import (
    DeliveryState,
    DispatchState,
    SubscriberState,
    UTCDateTime,
    deliveries,
    dispatches,
    subscribers,
)

OPEN_DISPATCH_STATES = (DispatchState.PLANNED, DispatchState.RUNNING)
UNFINISHED_DELIVERY_STATES = (DeliveryState.PENDING, DeliveryState.SENDING, DeliveryState.DEFERRED)
#: where a `sent` outcome lands: a message that left is sent, whatever happened to its row
SENT_LANDS_ON = (*UNFINISHED_DELIVERY_STATES, DeliveryState.CANCELLED)


@dataclass(frozen=True)
class DispatchRow:
    id: int
    campaign_id: str
    day: dt.date
    channel: str
    item_id: str
    content_hash: str
    content: str
    state: str
    send_at: dt.datetime
    fanout_cursor: int
    fanout_done: bool
    started_at: dt.datetime | None
    finished_at: dt.datetime | None
    error: str | None

    @classmethod
    def from_row(cls, row: Any) -> DispatchRow:
        return cls(**{name: row._mapping[name] for name in cls.__dataclass_fields__})


@dataclass(frozen=True)
class ClaimedDelivery:
    """A delivery this worker now holds, with what is needed to send it."""

    id: int
    recipient: str
    key: str
    attempts: int  #: including the one now starting
    subscriber_id: int | None
    email: str | None
    name: str | None
    subscriber_state: str | None
    doubtful: bool = False  #: an earlier attempt may have delivered it
    #: the language to write it in: fixed at fan-out, else the reader's (None: the default)
    lang: str | None = None


@dataclass(frozen=True)
class Languages:
    """The languages of one email dispatch, for its fan-out (the ledger has no campaign)."""

    default: str  #: what a reader without a language (or with one not offered) gets
    #: per other offered language of the readers: the language they get the day's item in
    #: (theirs, or the default under fallback `default`), None: nothing (fallback `skip`)
    written_in: dict[str, str | None]

    @property
    def skipped(self) -> tuple[str, ...]:
        return tuple(lang for lang, written in self.written_in.items() if written is None)


@dataclass(frozen=True)
class Outcome:
    delivery_id: int
    state: DeliveryState
    provider_id: str | None = None
    error: str | None = None
    provider_url: str | None = None  #: a link to the post (docs/architecture.md, "Social targets")
    next_attempt_at: dt.datetime | None = None
    bounced_subscriber_id: int | None = None
    doubtful: bool = False  #: this attempt may have delivered it (no verdict after the data)


def _insert(connection: sa.Connection, table: sa.Table) -> Any:
    dialect = postgresql if connection.dialect.name == "postgresql" else sqlite
    return dialect.insert(table)


def ensure_dispatch(
    connection: sa.Connection,
    *,
    campaign_id: str,
    day: dt.date,
    channel: str,
    item_id: str,
    content_hash: str,
    content: str,
    send_at: dt.datetime,
    state: DispatchState,
    now: dt.datetime,
) -> DispatchRow:
    """The dispatch for (campaign, day, channel): created once, then always the same row."""
    values = dict(
        campaign_id=campaign_id,
        day=day,
        channel=channel,
        item_id=item_id,
        content_hash=content_hash,
        content=content,
        state=state,
        send_at=send_at,
        created_at=now,
    )
    statement = _insert(connection, dispatches).values(values).on_conflict_do_nothing()
    connection.execute(statement)
    found = get_dispatch(connection, campaign_id, day, channel)
    assert found is not None
    return found


def get_dispatch(
    connection: sa.Connection, campaign_id: str, day: dt.date, channel: str
) -> DispatchRow | None:
    row = connection.execute(
        sa.select(dispatches).where(
            dispatches.c.campaign_id == campaign_id,
            dispatches.c.day == day,
            dispatches.c.channel == channel,
        )
    ).first()
    return None if row is None else DispatchRow.from_row(row)


def dispatch_by_id(connection: sa.Connection, dispatch_id: int) -> DispatchRow | None:
    row = connection.execute(sa.select(dispatches).where(dispatches.c.id == dispatch_id)).first()
    return None if row is None else DispatchRow.from_row(row)


def list_dispatches(
    connection: sa.Connection, campaign_id: str, *, states: Sequence[str] | None = None
) -> list[DispatchRow]:
    query = sa.select(dispatches).where(dispatches.c.campaign_id == campaign_id)
    if states is not None:
        query = query.where(dispatches.c.state.in_(states))
    query = query.order_by(dispatches.c.send_at, dispatches.c.id)
    return [DispatchRow.from_row(row) for row in connection.execute(query)]


def lock_dispatch(
    connection: sa.Connection, dispatch_id: int, *, exclusive: bool = False
) -> str | None:
    """The dispatch's state, its row locked until the transaction ends (None: no such row).

    Shared (`FOR KEY SHARE`) for claims, fan-out and records: they do not wait for each
    other, nor for updates of the dispatch's cursor or state. Exclusive (`FOR UPDATE`) for a
    cancel or resend, which thus waits for the shared holders and makes new ones wait. SQLite
    needs neither: every writing transaction holds the database's write lock.
    """
    query = sa.select(dispatches.c.state).where(dispatches.c.id == dispatch_id)
    if exclusive:
        query = query.with_for_update()
    else:
        query = query.with_for_update(read=True, key_share=True)
    state = connection.execute(query).scalar()
    return None if state is None else str(state)


def mark_dispatch(
    connection: sa.Connection,
    dispatch_id: int,
    state: DispatchState,
    *,
    now: dt.datetime,
    error: str | None = None,
) -> None:
    """Set the dispatch's state. `running` only from an open state: a worker that listed the
    dispatch just before it was cancelled must not open it again."""
    values: dict[str, Any] = {"state": state}
    where = dispatches.c.id == dispatch_id
    if state is DispatchState.RUNNING:
        values["started_at"] = sa.func.coalesce(dispatches.c.started_at, now)
        where = sa.and_(where, dispatches.c.state.in_(OPEN_DISPATCH_STATES))
    elif state is not DispatchState.PLANNED:
        values["finished_at"] = now
    if error is not None:
        values["error"] = error
    connection.execute(dispatches.update().where(where).values(values))


def fan_out_subscribers(
    connection: sa.Connection,
    dispatch: DispatchRow,
    *,
    limit: int,
    key_prefix: str,
    key_suffix: str,
    now: dt.datetime,
    languages: Languages | None = None,
) -> int:
    """Create pending deliveries for the next `limit` active subscribers after the cursor.

    Streaming in id order keeps memory flat however long the list; the cursor is
    stored with the rows, and a conflict (another worker did the same batch) is
    harmless. Returns the number of subscribers covered; 0 means fan-out is done — or
    stopped: a dispatch that is not open (cancelled) gets no more rows.
    """
    if lock_dispatch(connection, dispatch.id) not in OPEN_DISPATCH_STATES:
        return 0
    cursor = connection.execute(
        sa.select(dispatches.c.fanout_cursor).where(dispatches.c.id == dispatch.id)
    ).scalar_one()
    window = (
        sa.select(subscribers.c.id)
        .where(subscribers.c.state == SubscriberState.ACTIVE, subscribers.c.id > cursor)
        .order_by(subscribers.c.id)
        .limit(limit)
        .subquery()
    )
    last, covered = connection.execute(
        sa.select(sa.func.max(window.c.id), sa.func.count(window.c.id))
    ).one()
    if not covered:
        connection.execute(
            dispatches.update().where(dispatches.c.id == dispatch.id).values(fanout_done=True)
        )
        return 0
    insert_subscriber_deliveries(
        connection,
        dispatch.id,
        after=cursor,
        upto=last,
        key_prefix=key_prefix,
        key_suffix=key_suffix,
        state=DeliveryState.PENDING,
        now=now,
        languages=languages,
    )
    connection.execute(
        dispatches.update()
        .where(dispatches.c.id == dispatch.id, dispatches.c.fanout_cursor < last)
        .values(fanout_cursor=last)
    )
    return int(covered)


def insert_subscriber_deliveries(
    connection: sa.Connection,
    dispatch_id: int,
    *,
    after: int,
    upto: int | None,
    key_prefix: str,
    key_suffix: str,
    state: DeliveryState,
    now: dt.datetime,
    languages: Languages | None = None,
) -> None:
    """One delivery in `state` per active subscriber with `after < id <= upto` (None: no
    upper bound), keyed `key_prefix + id + key_suffix`; rows that exist stay as they are.
    With `languages`, each row gets its reader's language, and readers of a skipped
    language get no row (their campaign has no version of the day's item for them).

    INSERT … SELECT: the rows never pass through Python, whatever the list's size.
    """
    columns = ["dispatch_id", "recipient", "subscriber_id", "key", "state", "created_at"]
    values: list[Any] = []
    if languages is not None:
        cases = [
            (subscribers.c.lang == sa.literal(reader), sa.literal(written))
            for reader, written in languages.written_in.items()
            if written is not None
        ]
        default = sa.literal(languages.default)
        columns.append("lang")
        values.append(sa.case(*cases, else_=default) if cases else default)
    source = sa.select(
        sa.literal(dispatch_id),
        sa.literal("subscriber:") + sa.cast(subscribers.c.id, sa.String),
        subscribers.c.id,
        sa.literal(key_prefix) + sa.cast(subscribers.c.id, sa.String) + sa.literal(key_suffix),
        sa.literal(str(state)),
        sa.literal(now, UTCDateTime),
        *values,
        sa.literal(now, UTCDateTime),
    ).where(subscribers.c.state == SubscriberState.ACTIVE, subscribers.c.id > after)
    if upto is not None:
        source = source.where(subscribers.c.id <= upto)
    if languages is not None and languages.skipped:
        source = source.where(
            sa.or_(subscribers.c.lang.is_(None), subscribers.c.lang.not_in(languages.skipped))
        )
    statement = (
        _insert(connection, deliveries)
        .from_select([*columns, "updated_at"], source)
        .on_conflict_do_nothing()
    )
    connection.execute(statement)


def claim_batch(
    connection: sa.Connection,
    dispatch_id: int,
    *,
    limit: int,
    now: dt.datetime,
    lease: dt.timedelta,
    worker: str,
    max_attempts: int | None = None,
) -> list[ClaimedDelivery]:
    """Take up to `limit` deliveries that are pending, due for retry, or whose lease expired.

    A takeover of an expired lease is an attempt like any other: the worker that held it
    may have sent some of its messages. A delivery whose attempts are used up is not taken
    over again but settled as `unknown` (it may have arrived; `retry --force` resends it).
    A dispatch that is not open (cancelled) gives nothing: checked under its row lock, so a
    claim either ended before the cancel committed or sees it.
    """
    if lock_dispatch(connection, dispatch_id) not in OPEN_DISPATCH_STATES:
        return []
    if max_attempts is not None:
        connection.execute(
            deliveries.update()
            .where(
                deliveries.c.dispatch_id == dispatch_id,
                deliveries.c.state == DeliveryState.SENDING,
                deliveries.c.lease_until < now,
                deliveries.c.attempts >= max_attempts,
            )
            .values(
                state=DeliveryState.UNKNOWN,
                lease_until=None,
                updated_at=now,
                last_error=f"{max_attempts} attempts ended without an outcome (the sending "
                "process stopped or lost its claim each time); it may have been delivered: "
                "`dispatcher retry --force` sends it again",
            )
        )
    due = sa.or_(
        deliveries.c.state == DeliveryState.PENDING,
        sa.and_(deliveries.c.state == DeliveryState.DEFERRED, deliveries.c.next_attempt_at <= now),
        sa.and_(deliveries.c.state == DeliveryState.SENDING, deliveries.c.lease_until < now),
    )
    picked = (
        sa.select(deliveries.c.id)
        .where(deliveries.c.dispatch_id == dispatch_id, due)
        .order_by(deliveries.c.id)
        .limit(limit)
        .with_for_update(skip_locked=True)
    )
    ids = [row[0] for row in connection.execute(picked)]
    if not ids:
        return []
    connection.execute(
        deliveries.update()
        .where(deliveries.c.id.in_(ids))
        .values(
            state=DeliveryState.SENDING,
            lease_until=now + lease,
            claimed_by=worker,
            attempts=deliveries.c.attempts + 1,
            updated_at=now,
        )
    )
    joined = deliveries.outerjoin(subscribers, subscribers.c.id == deliveries.c.subscriber_id)
    query = (
        sa.select(
            deliveries.c.id,
            deliveries.c.recipient,
            deliveries.c.key,
            deliveries.c.attempts,
            deliveries.c.subscriber_id,
            subscribers.c.email,
            subscribers.c.name,
            subscribers.c.state.label("subscriber_state"),
            deliveries.c.doubtful,
            sa.func.coalesce(deliveries.c.lang, subscribers.c.lang).label("lang"),
        )
        .select_from(joined)
        .where(deliveries.c.id.in_(ids))
        .order_by(deliveries.c.id)
    )
    return [ClaimedDelivery(**row._mapping) for row in connection.execute(query)]


def _record_statement(*, held_only: bool) -> sa.Update:
    """One outcome onto one row. A non-final verdict lands only on a row this worker still
    holds; `sent` lands on any unfinished row, even one another worker took over after this
    worker's lease ran out: a message that left is sent, and the new holder, seeing the row
    finished at its next lease renewal, does not send it again."""
    if held_only:
        where = sa.and_(
            deliveries.c.state == DeliveryState.SENDING,
            deliveries.c.claimed_by == sa.bindparam("o_worker"),
        )
    else:
        # Not IN (…): an expanding parameter cannot be used with executemany.
        where = sa.or_(*(deliveries.c.state == state for state in SENT_LANDS_ON))
    return (
        deliveries.update()
        .where(deliveries.c.id == sa.bindparam("o_id"), where)
        .values(
            state=sa.bindparam("o_state"),
            updated_at=sa.bindparam("o_now"),
            lease_until=None,
            next_attempt_at=sa.bindparam("o_next", type_=UTCDateTime),
            provider_id=sa.func.coalesce(sa.bindparam("o_provider"), deliveries.c.provider_id),
            provider_url=sa.func.coalesce(sa.bindparam("o_url"), deliveries.c.provider_url),
            last_error=sa.func.coalesce(sa.bindparam("o_error"), deliveries.c.last_error),
            sent_at=sa.func.coalesce(
                sa.bindparam("o_sent", type_=UTCDateTime), deliveries.c.sent_at
            ),
            doubtful=sa.or_(deliveries.c.doubtful, sa.bindparam("o_doubtful", type_=sa.Boolean)),
        )
    )


_RECORD_HELD = _record_statement(held_only=True)
_RECORD_SENT = _record_statement(held_only=False)


def record_outcomes(
    connection: sa.Connection, outcomes: Sequence[Outcome], *, worker: str, now: dt.datetime
) -> int:
    """Write a batch of outcomes in one executemany per kind (see `_record_statement`)."""
    rows = [
        {
            "o_id": o.delivery_id,
            "o_worker": worker,
            "o_state": str(o.state),
            "o_now": now,
            "o_next": o.next_attempt_at,
            "o_provider": None if o.provider_id is None else o.provider_id[:400],
            "o_url": None if o.provider_url is None else o.provider_url[:1000],
            "o_error": o.error,
            "o_sent": now if o.state is DeliveryState.SENT else None,
            "o_doubtful": o.doubtful,
        }
        for o in outcomes
    ]
    if not rows:
        return 0
    sent = [row for row in rows if row["o_state"] == DeliveryState.SENT]
    other = [row for row in rows if row["o_state"] != DeliveryState.SENT]
    if sent:
        connection.execute(_RECORD_SENT, sent)
    if other:
        connection.execute(_RECORD_HELD, other)
    bounced = [
        {"b_id": o.bounced_subscriber_id, "b_error": o.error, "b_now": now}
        for o in outcomes
        if o.bounced_subscriber_id is not None
    ]
    if bounced:
        connection.execute(
            subscribers.update()
            .where(subscribers.c.id == sa.bindparam("b_id"))
            .values(
                state=SubscriberState.BOUNCED,
                last_error=sa.bindparam("b_error"),
                updated_at=sa.bindparam("b_now", type_=UTCDateTime),
            ),
            bounced,
        )
    return len(rows)


def release_claims(connection: sa.Connection, *, worker: str, ids: Sequence[int]) -> int:
    """Give back deliveries that were claimed but not sent (graceful stop)."""
    if not ids:
        return 0
    result = connection.execute(
        deliveries.update()
        .where(
            deliveries.c.id.in_(ids),
            deliveries.c.state == DeliveryState.SENDING,
            deliveries.c.claimed_by == worker,
        )
        .values(
            state=DeliveryState.PENDING,
            lease_until=None,
            claimed_by=None,
            attempts=deliveries.c.attempts - 1,
        )
    )
    return result.rowcount


def renew_leases(
    connection: sa.Connection,
    ids: Sequence[int],
    *,
    worker: str,
    now: dt.datetime,
    lease: dt.timedelta,
) -> set[int]:
    """Extend this worker's claims on `ids`; the ids it still holds (the heartbeat).

    A row missing from the answer was taken over, finished by another worker's `sent`, or
    released: its message must not be sent by this worker any more.
    """
    if not ids:
        return set()
    held = sa.and_(
        deliveries.c.id.in_(ids),
        deliveries.c.state == DeliveryState.SENDING,
        deliveries.c.claimed_by == worker,
    )
    connection.execute(
        deliveries.update().where(held).values(lease_until=now + lease, updated_at=now)
    )
    return {row[0] for row in connection.execute(sa.select(deliveries.c.id).where(held))}


def delivery_counts(connection: sa.Connection, dispatch_id: int) -> dict[str, int]:
    query = (
        sa.select(deliveries.c.state, sa.func.count())
        .where(deliveries.c.dispatch_id == dispatch_id)
        .group_by(deliveries.c.state)
    )
    return {state: count for state, count in connection.execute(query)}


def next_retry_at(connection: sa.Connection, dispatch_id: int) -> dt.datetime | None:
    """When the earliest deferred delivery or expiring lease of the dispatch becomes due."""
    query = sa.select(
        sa.func.min(sa.func.coalesce(deliveries.c.next_attempt_at, deliveries.c.lease_until))
    ).where(
        deliveries.c.dispatch_id == dispatch_id,
        deliveries.c.state.in_([DeliveryState.DEFERRED, DeliveryState.SENDING]),
    )
    value = connection.execute(query).scalar()
    if isinstance(value, str):  # SQLite returns min() of a decorated column as text
        value = dt.datetime.fromisoformat(value)
    if isinstance(value, dt.datetime) and value.tzinfo is None:
        value = value.replace(tzinfo=dt.UTC)
    return value


def finish_if_complete(
    connection: sa.Connection, dispatch: DispatchRow, *, now: dt.datetime
) -> DispatchState | None:
    """Close the dispatch once fan-out is done and no delivery is unfinished. A dispatch
    that is not open any more (cancelled meanwhile) keeps its state."""
    fresh = dispatch_by_id(connection, dispatch.id)
    if fresh is None or not fresh.fanout_done or fresh.state not in OPEN_DISPATCH_STATES:
        return None
    counts = delivery_counts(connection, dispatch.id)
    if any(counts.get(state, 0) for state in UNFINISHED_DELIVERY_STATES):
        return None
    failed = counts.get(DeliveryState.FAILED, 0)
    unknown = counts.get(DeliveryState.UNKNOWN, 0)
    sent = counts.get(DeliveryState.SENT, 0)
    if not failed and not unknown:
        state = DispatchState.DONE
    elif sent == 0 and unknown == 0:
        # `failed` only when nothing can have arrived: an unknown delivery may have.
        state = DispatchState.FAILED
    else:
        state = DispatchState.PARTIAL
    closed = connection.execute(
        dispatches.update()
        .where(dispatches.c.id == dispatch.id, dispatches.c.state.in_(OPEN_DISPATCH_STATES))
        .values(state=state, finished_at=now)
    )
    return state if closed.rowcount else None


def requeue(
    connection: sa.Connection,
    *,
    campaign_id: str,
    dispatch_id: int | None,
    force: bool,
    now: dt.datetime,
) -> int:
    """Put failed (and with `force`, unknown) deliveries back to pending and reopen dispatches.

    A cancelled dispatch is left alone: only `dispatcher resend` sends any of it again."""
    states = [DeliveryState.FAILED] + ([DeliveryState.UNKNOWN] if force else [])
    scope = sa.select(dispatches.c.id).where(
        dispatches.c.campaign_id == campaign_id, dispatches.c.state != DispatchState.CANCELLED
    )
    if dispatch_id is not None:
        scope = scope.where(dispatches.c.id == dispatch_id)
    # A bounced subscriber's delivery stays failed: sending again would bounce again.
    bounced = sa.select(subscribers.c.id).where(subscribers.c.state != SubscriberState.ACTIVE)
    result = connection.execute(
        deliveries.update()
        .where(
            deliveries.c.dispatch_id.in_(scope),
            deliveries.c.state.in_(states),
            sa.or_(
                deliveries.c.subscriber_id.is_(None), deliveries.c.subscriber_id.not_in(bounced)
            ),
        )
        .values(state=DeliveryState.PENDING, next_attempt_at=None, attempts=0, updated_at=now)
    )
    if result.rowcount:
        reopened = sa.select(deliveries.c.dispatch_id).where(
            deliveries.c.state == DeliveryState.PENDING
        )
        connection.execute(
            dispatches.update()
            .where(dispatches.c.id.in_(scope), dispatches.c.id.in_(reopened))
            .values(state=DispatchState.RUNNING, finished_at=None)
        )
    return result.rowcount


@dataclass(frozen=True)
class HistoryRow:
    """One dispatch of the campaign, reduced to what the planner needs."""

    day: dt.date
    channel: str
    item_id: str
    state: str


def history(connection: sa.Connection, campaign_id: str) -> list[HistoryRow]:
    """Every dispatch of the campaign, oldest day first: the planner's past."""
    query = (
        sa.select(dispatches.c.day, dispatches.c.channel, dispatches.c.item_id, dispatches.c.state)
        .where(dispatches.c.campaign_id == campaign_id)
        .order_by(dispatches.c.day, dispatches.c.id)
    )
    return [HistoryRow(*row) for row in connection.execute(query)]


def published_contents(
    connection: sa.Connection, campaign_id: str, *, channel: str, before: dt.date
) -> list[tuple[dt.date, str]]:
    """(day, content JSON) of dispatches that went out before `before`: "already published"."""
    query = (
        sa.select(dispatches.c.day, dispatches.c.content)
        .where(
            dispatches.c.campaign_id == campaign_id,
            dispatches.c.channel == channel,
            dispatches.c.day < before,
            dispatches.c.state.in_(
                [DispatchState.RUNNING, DispatchState.DONE, DispatchState.PARTIAL]
            ),
        )
        .order_by(dispatches.c.day)
    )
    return [(day, content) for day, content in connection.execute(query)]


def recent_errors(connection: sa.Connection, dispatch_id: int, *, limit: int = 3) -> list[str]:
    """The most frequent distinct errors of a dispatch's deliveries, for `status`."""
    query = (
        sa.select(deliveries.c.last_error, sa.func.count().label("n"))
        .where(
            deliveries.c.dispatch_id == dispatch_id,
            deliveries.c.last_error.is_not(None),
            deliveries.c.state != DeliveryState.SENT,
        )
        .group_by(deliveries.c.last_error)
        .order_by(sa.desc("n"))
        .limit(limit)
    )
    return [f"{n}× {error}" for error, n in connection.execute(query)]


class TargetDelivery(NamedTuple):
    """One delivery of a social dispatch as its fan-out writes it."""

    recipient: str  #: the target's name (`target#lang` for a network's further language)
    key: str  #: the idempotency key, stored before any request is made
    lang: str | None = None  #: the language the post is written in (None: the default)
    #: why this post is not made (the item has no version in `lang` and the fallback is
    #: skip): the row is written `skipped` with this reason, for `status` and the desk
    skipped: str | None = None


def fan_out_targets(
    connection: sa.Connection,
    dispatch: DispatchRow,
    targets: Sequence[TargetDelivery | tuple[str, str]],
    *,
    now: dt.datetime,
) -> None:
    """One delivery per target (and language) of a social dispatch, pending or `skipped`;
    then fan-out is done (nothing for a dispatch that is not open: a cancelled one gets no
    new rows). A bare (recipient, key) pair is a row without a language."""
    if lock_dispatch(connection, dispatch.id) not in OPEN_DISPATCH_STATES:
        return
    rows = [
        dict(
            dispatch_id=dispatch.id,
            recipient=target.recipient,
            key=target.key,
            lang=target.lang,
            state=DeliveryState.PENDING if target.skipped is None else DeliveryState.SKIPPED,
            last_error=target.skipped,
            created_at=now,
            updated_at=now,
        )
        for target in (TargetDelivery(*row) for row in targets)
    ]
    if rows:
        connection.execute(_insert(connection, deliveries).on_conflict_do_nothing(), rows)
    connection.execute(
        dispatches.update().where(dispatches.c.id == dispatch.id).values(fanout_done=True)
    )


def expire_to_unknown(
    connection: sa.Connection, dispatch_id: int, *, recipients: Sequence[str], now: dt.datetime
) -> int:
    """Claims on `recipients` whose lease ran out: the worker died mid-send, outcome unknown."""
    return expire_claims(
        connection,
        sa.and_(deliveries.c.dispatch_id == dispatch_id, deliveries.c.recipient.in_(recipients)),
        now=now,
        reason="the process stopped while posting; the provider may have posted it "
        "(no idempotency): check the feed, then `dispatcher retry --force` if it is missing",
    )


def expire_claims(
    connection: sa.Connection, among: sa.ColumnElement[bool], *, now: dt.datetime, reason: str
) -> int:
    """Claims (`among` the deliveries) whose lease ran out become `unknown` with `reason`:
    their worker died mid-send, so the message may have gone, and no claim takes them over."""
    result = connection.execute(
        deliveries.update()
        .where(among, deliveries.c.state == DeliveryState.SENDING, deliveries.c.lease_until < now)
        .values(state=DeliveryState.UNKNOWN, lease_until=None, updated_at=now, last_error=reason)
    )
    return result.rowcount
