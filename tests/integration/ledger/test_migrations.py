"""The Alembic migrations build exactly the tables the code declares, and each of the newer
ones can be undone and done again (SQLite and PostgreSQL). One home for what each table's
own tests used to repeat."""

from __future__ import annotations

import pytest
import sqlalchemy as sa
from alembic import command
from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext

# Every module that declares tables, so `metadata` holds them all.
from dispatcher.ledger import (  # noqa: F401
    alerts,
    changes,
    controls,
    editors,
    outages,
    targets,
    ticks,
    tokens,
)
from dispatcher.ledger import engine as ledger_engine
from dispatcher.ledger.tables import metadata
from tests.support.database import Database


def test_the_migrations_build_every_table_the_code_declares(database: Database) -> None:
    with database.engine.connect() as connection:
        differences = compare_metadata(MigrationContext.configure(connection), metadata)
    assert differences == []


@pytest.mark.parametrize(
    ("before", "table"),
    [("0008", "campaign_changes"), ("0010", "api_tokens"), ("0011", "alerts")],
)
def test_a_migration_can_be_undone_and_redone(database: Database, before: str, table: str) -> None:
    config = ledger_engine.alembic_config(database.engine.url.render_as_string(False))
    with database.engine.begin() as connection:
        config.attributes["connection"] = connection
        command.downgrade(config, before)
    assert table not in sa.inspect(database.engine).get_table_names()
    ledger_engine.upgrade(database.engine)
    assert table in sa.inspect(database.engine).get_table_names()
