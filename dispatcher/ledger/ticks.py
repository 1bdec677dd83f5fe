"""The last tick per campaign, and re-opening a missed dispatch: the SQL of both.

A tick records as `missed` every send whose time plus `catch_up` lies behind its
clock, for good. A clock far ahead of the last tick (a wrong system clock, a typo
in `--at`) would therefore write off real days, so a tick that far ahead refuses
until an operator confirms it (`tick --force`, `run --force`). The record is the
latest instant any tick ran at: a clock that goes back never lowers it, so a
rehearsal in the past cannot make the next real tick look like a jump.

`reopen` is the way back from `missed`: the dispatch becomes `planned` again with
a send time of now, so the next tick sends it like any due dispatch.
"""

from __future__ import annotations

import datetime as dt

import sqlalchemy as sa
from sqlalchemy.dialects import postgresql, sqlite

from dispatcher.ledger.store import DispatchRow
from dispatcher.ledger.tables import DispatchState, UTCDateTime, dispatches, metadata

ticks = sa.Table(
    "ticks",
    metadata,
    sa.Column("campaign_id", sa.String(100), primary_key=True),
    sa.Column("last_at", UTCDateTime, nullable=False),  # the latest clock a tick ran at
)


def _span(delta: dt.timedelta) -> str:
    """`3 days 2 h` / `5 h 30 min`: how far, readable at a glance."""
    minutes = round(delta.total_seconds() / 60)
    days, rest = divmod(minutes, 24 * 60)
    hours, minutes = divmod(rest, 60)
    parts = [f"{days} day{'s' if days != 1 else ''}"] if days else []
    parts += [f"{hours} h"] if hours or days else []
    parts += [f"{minutes} min"] if minutes and not days else []
    return " ".join(parts) or "0 min"


class ClockJumpError(Exception):
    """The clock is further ahead of the last tick than the configured limit."""

    def __init__(self, *, now: dt.datetime, last: dt.datetime, limit: dt.timedelta) -> None:
        self.now, self.last, self.limit = now.astimezone(dt.UTC), last.astimezone(dt.UTC), limit
        now, last = self.now, self.last
        hours = limit.total_seconds() / 3600
        super().__init__(
            f"the clock ({now:%Y-%m-%d %H:%M} UTC) is {_span(now - last)} ahead of the last "
            f"tick ({last:%Y-%m-%d %H:%M} UTC), more than DISPATCHER_CLOCK_JUMP_HOURS "
            f"({hours:g} h); nothing was sent or recorded. If the clock is wrong, fix it (NTP) "
            "or the --at value. If it is right (the dispatcher was stopped that long), confirm "
            "with `dispatcher tick --force` (or `dispatcher run --force`): the sends in "
            "between are then recorded as missed, and `dispatcher reopen DAY` sends one later."
        )


def last_tick(connection: sa.Connection, campaign_id: str) -> dt.datetime | None:
    query = sa.select(ticks.c.last_at).where(ticks.c.campaign_id == campaign_id)
    return connection.execute(query).scalar_one_or_none()


def check(
    connection: sa.Connection, campaign_id: str, now: dt.datetime, limit: dt.timedelta
) -> None:
    """Raise `ClockJumpError` if `now` is more than `limit` ahead of the last tick.

    The first tick of a ledger has nothing to compare with and is trusted."""
    last = last_tick(connection, campaign_id)
    if last is not None and now - last > limit:
        raise ClockJumpError(now=now, last=last, limit=limit)


def record(connection: sa.Connection, campaign_id: str, now: dt.datetime) -> None:
    """Remember `now` as the last tick, unless a later one is recorded already."""
    dialect = postgresql if connection.dialect.name == "postgresql" else sqlite
    insert = dialect.insert(ticks).values(campaign_id=campaign_id, last_at=now)
    latest = sa.case(
        (insert.excluded.last_at > ticks.c.last_at, insert.excluded.last_at),
        else_=ticks.c.last_at,
    )
    connection.execute(
        insert.on_conflict_do_update(index_elements=[ticks.c.campaign_id], set_={"last_at": latest})
    )


def guard(
    connection: sa.Connection,
    campaign_id: str,
    now: dt.datetime,
    limit: dt.timedelta,
    force: bool = False,
) -> None:
    """At the start of the transaction that records due and missed dispatches: refuse a
    clock jump (unless forced), else record this tick. A refusal records nothing."""
    if not force:
        check(connection, campaign_id, now, limit)
    record(connection, campaign_id, now)


class ReopenError(Exception):
    """Nothing to re-open for that day; the message says what the day holds."""


def missed_on(
    connection: sa.Connection, campaign_id: str, day: dt.date, channel: str | None
) -> list[DispatchRow]:
    """The missed dispatches of `day` (of `channel` only, if given); `ReopenError` if none."""
    query = sa.select(dispatches).where(
        dispatches.c.campaign_id == campaign_id, dispatches.c.day == day
    )
    if channel is not None:
        query = query.where(dispatches.c.channel == channel)
    rows = [DispatchRow.from_row(r) for r in connection.execute(query.order_by(dispatches.c.id))]
    what = f"{day} {channel}" if channel else str(day)
    if not rows:
        raise ReopenError(
            f"no dispatch is recorded for {what}; only a missed dispatch can be re-opened "
            "(`dispatcher status` lists the recorded ones, `dispatcher plan` the rest)"
        )
    missed = [row for row in rows if row.state == DispatchState.MISSED]
    if not missed:
        states = ", ".join(f"{row.channel} {row.state}" for row in rows)
        raise ReopenError(f"{what} is not missed ({states}); only a missed dispatch is re-opened")
    return missed


def reopen(
    connection: sa.Connection,
    dispatch: DispatchRow,
    *,
    content: str,
    content_hash: str,
    now: dt.datetime,
) -> bool:
    """`missed` → `planned` with `content` and a send time of `now`; False if the dispatch
    is no longer missed (another operator was faster)."""
    result = connection.execute(
        dispatches.update()
        .where(dispatches.c.id == dispatch.id, dispatches.c.state == DispatchState.MISSED)
        .values(
            state=DispatchState.PLANNED,
            content=content,
            content_hash=content_hash,
            send_at=now,
            error=None,
            started_at=None,
            finished_at=None,
        )
    )
    return result.rowcount == 1
