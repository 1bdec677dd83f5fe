"""Alerts in the ledger: one row per condition ops were told of, so each is told once.

Every `dispatcher run` process looks at the same ledger and finds the same conditions
(a failed dispatch, a channel backing off, …); the row makes "one message each way" true
across all of them (docs/operations.md, "Alerts"):

- **Opening** is `INSERT … ON CONFLICT (key) DO NOTHING`: the one process whose insert
  created the row sends the alert; the others' inserts do nothing.
- **Resolving** is `UPDATE … SET resolved_at WHERE key = … AND resolved_at IS NULL`: the one
  process whose update changed the row sends "resolved".

Both statements say whether they changed the row with `RETURNING` (the row, or nothing),
which works alike on SQLite and PostgreSQL.

A key is never used twice: a condition that clears and comes back under the same key is not
alerted again, so keys carry what makes an episode new (an outage's start, a file version).

The queries the conditions are read from live here too (every SQL statement has its home in
`ledger/`). All functions take a connection and commit nothing themselves.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Collection, Iterable
from dataclasses import dataclass
from typing import Any, Literal

import sqlalchemy as sa
from sqlalchemy.dialects import postgresql, sqlite

from dispatcher.ledger import store
from dispatcher.ledger.tables import (
    DeliveryState,
    DispatchState,
    UTCDateTime,
    deliveries,
    dispatches,
    metadata,
)
from dispatcher.ledger.targets import target_of

KEY_LENGTH = 400
KIND_LENGTH = 32

Phase = Literal["opened", "resolved"]

alerts = sa.Table(
    "alerts",
    metadata,
    sa.Column("id", sa.Integer, primary_key=True),
    sa.Column("key", sa.String(KEY_LENGTH), nullable=False, unique=True),  # the condition
    sa.Column("kind", sa.String(KIND_LENGTH), nullable=False),
    sa.Column("summary", sa.Text, nullable=False),  # the subject line, never a secret
    sa.Column("opened_at", UTCDateTime, nullable=False),
    sa.Column("alerted_at", UTCDateTime),  # every destination has the alert
    sa.Column("resolved_at", UTCDateTime),
    sa.Column("resolved_alerted_at", UTCDateTime),  # every destination has "resolved"
    # Attempts at delivering the latest message (the alert, then "resolved") and the latest
    # failure: what `alert_failed` logged, kept where ops can query it.
    sa.Column("attempts", sa.Integer, nullable=False, server_default="0"),
    sa.Column("last_error", sa.Text),
)


@dataclass(frozen=True)
class AlertRow:
    id: int
    key: str
    kind: str
    summary: str
    opened_at: dt.datetime
    alerted_at: dt.datetime | None
    resolved_at: dt.datetime | None
    resolved_alerted_at: dt.datetime | None
    attempts: int
    last_error: str | None

    @classmethod
    def from_row(cls, row: Any) -> AlertRow:
        return cls(**row._mapping)


def _insert(connection: sa.Connection) -> Any:
    dialect = postgresql if connection.dialect.name == "postgresql" else sqlite
    return dialect.insert(alerts)


def open_alert(
    connection: sa.Connection, *, key: str, kind: str, summary: str, now: dt.datetime
) -> AlertRow | None:
    """The new row if this call created it (its caller sends the alert), else None: the
    condition was alerted before, by this process or another."""
    statement = (
        _insert(connection)
        .values(key=key, kind=kind, summary=summary, opened_at=now, attempts=0)
        .on_conflict_do_nothing(index_elements=[alerts.c.key])
        .returning(*alerts.c)
    )
    # RETURNING, not rowcount: an INSERT through SQLAlchemy on psycopg reports rowcount -1.
    row = connection.execute(statement).first()
    return None if row is None else AlertRow.from_row(row)


def resolve_alert(connection: sa.Connection, key: str, *, now: dt.datetime) -> AlertRow | None:
    """The row if this call resolved it (its caller sends "resolved"), else None. The
    attempts start again: they count the deliveries of the "resolved" message now."""
    row = connection.execute(
        alerts.update()
        .where(alerts.c.key == key, alerts.c.resolved_at.is_(None))
        .values(resolved_at=now, attempts=0, last_error=None)
        .returning(*alerts.c)
    ).first()
    return None if row is None else AlertRow.from_row(row)


def open_alerts(connection: sa.Connection) -> list[AlertRow]:
    """Every alert not resolved yet, oldest first."""
    query = sa.select(alerts).where(alerts.c.resolved_at.is_(None)).order_by(alerts.c.id)
    return [AlertRow.from_row(row) for row in connection.execute(query)]


def alerts_by_id(connection: sa.Connection, ids: Collection[int]) -> dict[int, AlertRow]:
    if not ids:
        return {}
    query = sa.select(alerts).where(alerts.c.id.in_(sorted(ids)))
    return {row.id: AlertRow.from_row(row) for row in connection.execute(query)}


def keys_starting(connection: sa.Connection, prefix: str) -> set[str]:
    """Every key (open or resolved) that starts with `prefix`."""
    query = sa.select(alerts.c.key).where(alerts.c.key.startswith(prefix, autoescape=True))
    return {str(key) for (key,) in connection.execute(query)}


def known_keys(connection: sa.Connection, keys: Collection[str]) -> set[str]:
    """Which of `keys` have a row (open or resolved): those are never alerted again."""
    if not keys:
        return set()
    query = sa.select(alerts.c.key).where(alerts.c.key.in_(sorted(keys)))
    return {str(key) for (key,) in connection.execute(query)}


def record_attempt(
    connection: sa.Connection,
    alert_id: int,
    phase: Phase,
    *,
    now: dt.datetime,
    error: str | None,
) -> None:
    """One more attempt at delivering the alert's message of `phase`; without `error` it
    reached every destination."""
    values: dict[str, Any] = {"attempts": alerts.c.attempts + 1, "last_error": error}
    if error is None:
        values["alerted_at" if phase == "opened" else "resolved_alerted_at"] = now
    connection.execute(alerts.update().where(alerts.c.id == alert_id).values(values))


# --- the conditions, as the ledger shows them -----------------------------------------------


@dataclass(frozen=True)
class ProblemDispatch:
    """A dispatch that ended `failed`, `partial` or `missed`, with what its deliveries say."""

    id: int
    campaign_id: str
    day: dt.date
    channel: str
    item_id: str
    content: str  #: the item's JSON snapshot
    state: str
    finished_at: dt.datetime | None
    error: str | None
    counts: dict[str, int]
    errors: list[str]  #: the latest distinct delivery errors


def problem_dispatches(
    connection: sa.Connection,
    *,
    states: Iterable[DispatchState],
    finished_since: dt.datetime,
    besides: Collection[int] = (),
) -> list[ProblemDispatch]:
    """Dispatches in `states` that ended at or after `finished_since`, oldest first, except
    those of `besides` (already alerted: their counts are not read again). A `missed` one is
    created as such: it has no `finished_at`, its creation is its end."""
    ended = sa.func.coalesce(dispatches.c.finished_at, dispatches.c.created_at)
    query = (
        sa.select(dispatches)
        .where(dispatches.c.state.in_([str(s) for s in states]))
        .where(ended >= finished_since)
        .order_by(dispatches.c.id)
    )
    if besides:
        query = query.where(dispatches.c.id.not_in(sorted(besides)))
    found = []
    for row in connection.execute(query).all():
        found.append(
            ProblemDispatch(
                id=row.id,
                campaign_id=row.campaign_id,
                day=row.day,
                channel=row.channel,
                item_id=row.item_id,
                content=row.content,
                state=row.state,
                finished_at=row.finished_at,
                error=row.error,
                counts=store.delivery_counts(connection, row.id),
                errors=store.recent_errors(connection, row.id),
            )
        )
    return found


def dispatch_states(connection: sa.Connection, ids: Collection[int]) -> dict[int, str]:
    """The state of each dispatch of `ids` that exists."""
    if not ids:
        return {}
    query = sa.select(dispatches.c.id, dispatches.c.state).where(dispatches.c.id.in_(sorted(ids)))
    return {int(i): str(state) for i, state in connection.execute(query)}


@dataclass(frozen=True)
class PostRow:
    """One delivery of a social dispatch, with its dispatch's day, channel and item."""

    id: int
    dispatch_id: int
    campaign_id: str
    day: dt.date
    channel: str
    item_id: str
    content: str
    recipient: str  #: the target's name
    state: str
    attempts: int
    provider_id: str | None
    provider_url: str | None
    error: str | None
    updated_at: dt.datetime


def _posts() -> sa.Select[Any]:
    return (
        sa.select(
            deliveries.c.id,
            deliveries.c.dispatch_id,
            dispatches.c.campaign_id,
            dispatches.c.day,
            dispatches.c.channel,
            dispatches.c.item_id,
            dispatches.c.content,
            deliveries.c.recipient,
            deliveries.c.state,
            deliveries.c.attempts,
            deliveries.c.provider_id,
            deliveries.c.provider_url,
            deliveries.c.last_error.label("error"),
            deliveries.c.updated_at,
        )
        .join(dispatches, dispatches.c.id == deliveries.c.dispatch_id)
        .where(dispatches.c.channel != "email")
    )


def unknown_posts(connection: sa.Connection, *, since: dt.datetime) -> list[PostRow]:
    """Social deliveries whose outcome is `unknown`, last changed at or after `since`."""
    query = (
        _posts()
        .where(deliveries.c.state == DeliveryState.UNKNOWN, deliveries.c.updated_at >= since)
        .order_by(deliveries.c.id)
    )
    return [PostRow(**row._mapping) for row in connection.execute(query)]


def delivery_states(connection: sa.Connection, ids: Collection[int]) -> dict[int, str]:
    """The state of each delivery of `ids` that exists."""
    if not ids:
        return {}
    query = sa.select(deliveries.c.id, deliveries.c.state).where(deliveries.c.id.in_(sorted(ids)))
    return {int(i): str(state) for i, state in connection.execute(query)}


def latest_post_outcomes(connection: sa.Connection) -> dict[str, PostRow]:
    """Per social target (by name): its latest delivery that ended `sent` or `failed` — what
    the target's credential did the last time it was used. A target posting in two languages
    has two rows a day (`<target>#en`); they share the credential, so they count as one."""
    ended = (DeliveryState.SENT, DeliveryState.FAILED)
    latest = (
        sa.select(deliveries.c.recipient, sa.func.max(deliveries.c.updated_at).label("at"))
        .join(dispatches, dispatches.c.id == deliveries.c.dispatch_id)
        .where(dispatches.c.channel != "email", deliveries.c.state.in_(ended))
        .group_by(deliveries.c.recipient)
        .subquery()
    )
    query = (
        _posts()
        .join(
            latest,
            sa.and_(
                latest.c.recipient == deliveries.c.recipient,
                latest.c.at == deliveries.c.updated_at,
            ),
        )
        .where(deliveries.c.state.in_(ended))
        .order_by(deliveries.c.id)
    )
    # Two rows of one target changed in the same instant: the later row wins.
    latest_by_target: dict[str, PostRow] = {}
    for row in connection.execute(query):
        post = PostRow(**row._mapping)
        target = target_of(post.recipient)
        known = latest_by_target.get(target)
        if known is None or (post.updated_at, post.id) > (known.updated_at, known.id):
            latest_by_target[target] = post
    return latest_by_target


def advisory_lock_held(connection: sa.Connection, key: int) -> bool:
    """Whether any session holds the PostgreSQL advisory lock `key` (a signed 64-bit key, as
    `pg_try_advisory_lock(bigint)` takes it) in this database; False on SQLite, which has none.

    `pg_locks` shows a bigint advisory key as its high and low 32 bits (`classid`, `objid`)
    with `objsubid = 1`."""
    if connection.dialect.name != "postgresql":
        return False
    query = sa.text(
        "SELECT EXISTS (SELECT 1 FROM pg_locks WHERE locktype = 'advisory' AND granted "
        "AND objsubid = 1 AND classid::bigint = :high AND objid::bigint = :low "
        "AND database = (SELECT oid FROM pg_database WHERE datname = current_database()))"
    )
    high, low = (key >> 32) & 0xFFFFFFFF, key & 0xFFFFFFFF
    return bool(connection.execute(query, {"high": high, "low": low}).scalar())
