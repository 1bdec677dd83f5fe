"""Read-only aggregates of the ledger for the web: archive, readiness and metrics.

Nothing here writes. Callers pass a connection from `engine.reader(...)` so that on
SQLite a scrape or a page view never takes the write lock.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Sequence
from dataclasses import dataclass

import sqlalchemy as sa

from dispatcher.ledger.tables import DispatchState, deliveries, dispatches, subscribers

PUBLISHED_STATES = (DispatchState.RUNNING, DispatchState.DONE, DispatchState.PARTIAL)
"""A dispatch in one of these states has gone out (at least in part): it is published."""


@dataclass(frozen=True)
class Published:
    """One day's reportage as the ledger recorded it when it went out."""

    campaign_id: str
    day: dt.date
    channel: str
    item_id: str
    content: str  #: the item's JSON snapshot (`campaign.item_from_json`)
    send_at: dt.datetime


def ping(connection: sa.Connection) -> None:
    """A round trip to the database; raises if it cannot be reached."""
    connection.execute(sa.text("SELECT 1")).scalar_one()


def published(
    connection: sa.Connection, campaign_id: str, *, channels: Sequence[str] | None
) -> list[Published]:
    """One entry per day, newest day first: the earliest published dispatch of the day
    among `channels` (None: any channel)."""
    query = sa.select(
        dispatches.c.campaign_id,
        dispatches.c.day,
        dispatches.c.channel,
        dispatches.c.item_id,
        dispatches.c.content,
        dispatches.c.send_at,
    ).where(
        dispatches.c.campaign_id == campaign_id,
        dispatches.c.state.in_(PUBLISHED_STATES),
    )
    if channels is not None:
        query = query.where(dispatches.c.channel.in_(channels))
    query = query.order_by(dispatches.c.day.desc(), dispatches.c.send_at, dispatches.c.id)
    by_day: dict[dt.date, Published] = {}
    for row in connection.execute(query):
        entry = Published(**row._mapping)
        by_day.setdefault(entry.day, entry)
    return list(by_day.values())


def delivery_counts(connection: sa.Connection) -> dict[tuple[str, str], int]:
    """(channel, delivery state) -> number of deliveries, over the whole ledger."""
    query = (
        sa.select(dispatches.c.channel, deliveries.c.state, sa.func.count())
        .select_from(deliveries.join(dispatches, dispatches.c.id == deliveries.c.dispatch_id))
        .group_by(dispatches.c.channel, deliveries.c.state)
    )
    return {(channel, state): count for channel, state, count in connection.execute(query)}


def dispatch_counts(connection: sa.Connection) -> dict[tuple[str, str], int]:
    """(channel, dispatch state) -> number of dispatches, over the whole ledger."""
    query = sa.select(dispatches.c.channel, dispatches.c.state, sa.func.count()).group_by(
        dispatches.c.channel, dispatches.c.state
    )
    return {(channel, state): count for channel, state, count in connection.execute(query)}


def subscriber_counts(connection: sa.Connection) -> dict[str, int]:
    """Subscriber state -> number of subscribers."""
    query = sa.select(subscribers.c.state, sa.func.count()).group_by(subscribers.c.state)
    return {state: count for state, count in connection.execute(query)}
