"""Fresh, migrated ledger databases for tests: SQLite always, PostgreSQL when configured.

PostgreSQL tests run whenever DISPATCHER_TEST_DATABASE_URL is set (`.ci/run` sets it
and fails early if the server is unreachable); elsewhere they are skipped with a reason.
Each PostgreSQL database is its own schema, so tests never see each other's rows.
The fixtures that use these live in `tests/conftest.py`.
"""

from __future__ import annotations

import os
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import quote

import pytest
import sqlalchemy as sa

from dispatcher.ledger import engine as ledger_engine

PG_URL = os.environ.get("DISPATCHER_TEST_DATABASE_URL")
BACKENDS = ["sqlite", "postgresql"]


@dataclass
class Database:
    url: str  #: usable by a subprocess as DISPATCHER_DATABASE_URL
    engine: sa.Engine
    backend: str


def postgres_database(tmp_name: str) -> Iterator[Database]:
    """A migrated, empty ledger in a new PostgreSQL schema, dropped afterwards."""
    if not PG_URL:
        pytest.skip("PostgreSQL tests need DISPATCHER_TEST_DATABASE_URL (set by .ci/run)")
    schema = f"t_{tmp_name}_{uuid.uuid4().hex[:8]}"
    admin = sa.create_engine(PG_URL, pool_pre_ping=True)  # survives a server restart
    with admin.begin() as connection:
        connection.exec_driver_sql(f'CREATE SCHEMA "{schema}"')
    separator = "&" if "?" in PG_URL else "?"
    url = f"{PG_URL}{separator}options={quote(f'-csearch_path={schema}')}"
    engine = ledger_engine.create_engine(url)
    ledger_engine.upgrade(engine)
    try:
        yield Database(url, engine, "postgresql")
    finally:
        engine.dispose()
        with admin.begin() as connection:
            connection.exec_driver_sql(f'DROP SCHEMA "{schema}" CASCADE')
        admin.dispose()


def sqlite_database(tmp_path: Path) -> Iterator[Database]:
    """A migrated, empty SQLite ledger in `tmp_path`."""
    url = f"sqlite:///{tmp_path / 'ledger.sqlite3'}"
    engine = ledger_engine.create_engine(url)
    ledger_engine.upgrade(engine)
    try:
        yield Database(url, engine, "sqlite")
    finally:
        engine.dispose()
