"""Shared fixtures: a fresh ledger database on SQLite and, when configured, PostgreSQL.

The helpers behind them are in `tests/support/database.py`; import `Database` from there.

PostgreSQL tests run whenever DISPATCHER_TEST_DATABASE_URL is set (`.ci/run` sets it
and fails early if the server is unreachable); elsewhere they are skipped with a reason.
Each test gets its own PostgreSQL schema, so tests never see each other's rows.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.support import database as databases
from tests.support.database import Database

pytest_plugins = [
    "tests.support.smtpd",
    "tests.support.pds",
    "tests.support.browser",
    "tests.support.synapse",
    "tests.support.fake_linkedin",
]

__all__ = ["Database"]  # for test modules written before Database moved to tests/support


@pytest.fixture(params=databases.BACKENDS)
def database(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Database]:
    """A migrated, empty ledger — once on SQLite, once on PostgreSQL."""
    if request.param == "sqlite":
        yield from databases.sqlite_database(tmp_path)
    else:
        yield from databases.postgres_database(request.node.name.split("[")[0][-20:].lower())


@pytest.fixture
def sqlite_database(tmp_path: Path) -> Iterator[Database]:
    """A migrated, empty SQLite ledger, for tests about the embedded default only."""
    yield from databases.sqlite_database(tmp_path)
