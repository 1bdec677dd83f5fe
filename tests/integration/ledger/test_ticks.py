"""The last-tick record behind the clock-jump check, on SQLite and PostgreSQL."""

from __future__ import annotations

import datetime as dt

import pytest
from alembic import command

from dispatcher.ledger import engine as ledger_engine
from dispatcher.ledger import ticks
from dispatcher.ledger.tables import dispatches
from tests.support.database import Database

T0 = dt.datetime(2019, 4, 2, 6, 0, 5, tzinfo=dt.UTC)
DAY = dt.timedelta(days=1)
LIMIT = dt.timedelta(hours=24)


def last(database: Database, campaign: str = "cw") -> dt.datetime | None:
    with database.engine.connect() as connection:
        return ticks.last_tick(connection, campaign)


def test_the_last_tick_only_moves_forward(database: Database) -> None:
    with database.engine.begin() as connection:
        ticks.record(connection, "cw", T0 + DAY)
        ticks.record(connection, "cw", T0)  # a rehearsal in the past
        ticks.record(connection, "other", T0)
    assert last(database) == T0 + DAY
    with database.engine.begin() as connection:
        ticks.record(connection, "cw", T0 + 2 * DAY)
    assert last(database) == T0 + 2 * DAY
    assert last(database, "other") == T0


def test_a_refused_tick_records_nothing_and_a_forced_one_moves_the_record(
    database: Database,
) -> None:
    with database.engine.begin() as connection:
        ticks.guard(connection, "cw", T0, LIMIT)  # the first tick of a ledger is trusted
        ticks.guard(connection, "cw", T0 + LIMIT, LIMIT)  # exactly the limit is fine
    with pytest.raises(ticks.ClockJumpError) as refused, database.engine.begin() as connection:
        ticks.guard(connection, "cw", T0 + LIMIT + 3 * DAY, LIMIT)
    assert "is 3 days 0 h ahead of the last tick (2019-04-03 06:00 UTC)" in str(refused.value)
    assert last(database) == T0 + LIMIT
    with database.engine.begin() as connection:
        ticks.guard(connection, "cw", T0 + LIMIT + 3 * DAY, LIMIT, force=True)
    assert last(database) == T0 + LIMIT + 3 * DAY


def test_upgrading_a_ledger_in_use_takes_the_latest_dispatch_as_the_last_tick(
    database: Database,
) -> None:
    config = ledger_engine.alembic_config(database.engine.url.render_as_string(False))
    with database.engine.begin() as connection:
        config.attributes["connection"] = connection
        command.downgrade(config, "0004")
        for day, created in ((2, T0), (3, T0 + DAY)):
            connection.execute(
                dispatches.insert().values(
                    campaign_id="cw", day=dt.date(2019, 4, day), channel="email", item_id="a",
                    content_hash="h", content="{}", state="done", send_at=created,
                    created_at=created,
                )
            )  # fmt: skip
    ledger_engine.upgrade(database.engine)
    assert last(database) == T0 + DAY
    with pytest.raises(ticks.ClockJumpError), database.engine.begin() as connection:
        ticks.guard(connection, "cw", T0 + 4 * DAY, LIMIT)
