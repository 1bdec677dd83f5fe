"""The schema itself refuses a second dispatch or delivery for the same pair."""

from __future__ import annotations

import datetime as dt

import pytest
import sqlalchemy as sa

from dispatcher.ledger import engine as ledger_engine
from dispatcher.ledger.tables import deliveries, dispatches
from tests.support.database import Database

NOW = dt.datetime(2019, 4, 2, 6, 0, tzinfo=dt.UTC)


def _dispatch(**overrides: object) -> dict[str, object]:
    row: dict[str, object] = dict(
        campaign_id="cw", day=dt.date(2019, 4, 2), channel="email", item_id="a",
        content_hash="h", content="{}", state="planned", send_at=NOW, created_at=NOW,
    )  # fmt: skip
    row.update(overrides)
    return row


def test_upgrade_is_idempotent(database: Database) -> None:
    ledger_engine.upgrade(database.engine)
    names = set(sa.inspect(database.engine).get_table_names())
    assert {"subscribers", "dispatches", "deliveries", "alembic_version"} <= names


def test_one_dispatch_per_campaign_day_channel(database: Database) -> None:
    with database.engine.begin() as connection:
        connection.execute(dispatches.insert().values(_dispatch()))
    with pytest.raises(sa.exc.IntegrityError), database.engine.begin() as connection:
        connection.execute(dispatches.insert().values(_dispatch(item_id="b")))


def test_one_delivery_per_dispatch_recipient(database: Database) -> None:
    with database.engine.begin() as connection:
        dispatch_id = connection.execute(
            dispatches.insert().values(_dispatch())
        ).inserted_primary_key[0]  # type: ignore[index]
        row = dict(dispatch_id=dispatch_id, recipient="subscriber:1", key="<k@x>", state="pending",
                   created_at=NOW, updated_at=NOW)  # fmt: skip
        connection.execute(deliveries.insert().values(row))
    with pytest.raises(sa.exc.IntegrityError), database.engine.begin() as connection:
        connection.execute(deliveries.insert().values({**row, "key": "<other@x>"}))


def test_timestamps_come_back_as_utc(database: Database) -> None:
    berlin = dt.datetime(2019, 4, 2, 8, 0, tzinfo=dt.timezone(dt.timedelta(hours=2)))
    with database.engine.begin() as connection:
        connection.execute(dispatches.insert().values(_dispatch(send_at=berlin)))
        stored = connection.execute(sa.select(dispatches.c.send_at)).scalar_one()
    assert stored == NOW and stored.utcoffset() == dt.timedelta(0)


def test_a_reader_does_not_hold_the_sqlite_write_lock(sqlite_database: Database) -> None:
    """`subscribers export` streaming into a slow pipe must not stall the sender."""
    engine = sqlite_database.engine
    with ledger_engine.reader(engine).connect() as reading:
        reading.execute(sa.select(dispatches.c.id)).all()  # a transaction is now open
        with engine.begin() as writing:  # would wait out the busy timeout if locked
            writing.execute(dispatches.insert().values(_dispatch()))
    with engine.connect() as connection:
        assert connection.execute(sa.select(sa.func.count()).select_from(dispatches)).scalar() == 1
