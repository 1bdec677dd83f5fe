"""Ledger helpers for tests: seed subscribers, read delivery states."""

from __future__ import annotations

import datetime as dt
from collections import Counter

import sqlalchemy as sa

from dispatcher.campaign.loading import load_campaign
from dispatcher.clock import clock_from
from dispatcher.delivery import pipeline
from dispatcher.delivery.context import build_context
from dispatcher.ledger import subscribers as subscriber_store
from dispatcher.ledger.subscriber_csv import Row
from dispatcher.ledger.tables import deliveries, dispatches
from dispatcher.settings import Settings
from tests.support.database import Database


def add_subscribers(database: Database, count: int, *, named: bool = False) -> list[str]:
    """`count` active subscribers leser00000@example.org …, optionally named "Leserin N"."""
    addresses = [f"leser{i:05d}@example.org" for i in range(count)]
    rows = [Row(i + 2, a, f"Leserin {i}" if named else None) for i, a in enumerate(addresses)]
    with database.engine.begin() as connection:
        subscriber_store.import_rows(
            connection, rows, source="test", now=dt.datetime(2019, 3, 1, tzinfo=dt.UTC)
        )
    return addresses


def delivery_states(database: Database, channel: str | None = "email") -> Counter[str]:
    """How many deliveries of `channel` (None: of every channel) are in each state."""
    query = sa.select(deliveries.c.state).join(
        dispatches, dispatches.c.id == deliveries.c.dispatch_id
    )
    if channel is not None:
        query = query.where(dispatches.c.channel == channel)
    with database.engine.connect() as connection:
        return Counter(s for (s,) in connection.execute(query))


def dispatch_states(database: Database, channel: str = "email") -> Counter[str]:
    """How many dispatches of `channel` are in each state (`done` once finished)."""
    query = sa.select(dispatches.c.state).where(dispatches.c.channel == channel)
    with database.engine.connect() as connection:
        return Counter(s for (s,) in connection.execute(query))


def tick_at(settings: Settings, database: Database, at: dt.datetime) -> pipeline.TickReport:
    """One `tick` in-process at the instant `at`, as `dispatcher tick --at` runs it."""
    campaign = load_campaign(settings.campaign_file)
    context = build_context(settings, campaign, engine=database.engine, clock=clock_from(at))
    try:
        return pipeline.tick(context)
    finally:
        context.email_channel.close()
