"""Who schedules: the database's own lock, taken over when its holder goes away."""

from __future__ import annotations

import pytest

from dispatcher.delivery.leader import PostgresLeader, SqliteInUseError, SqliteLeader, lock_key
from tests.support.database import Database


def test_one_postgres_leader_at_a_time_and_takeover(database: Database) -> None:
    if database.backend != "postgresql":
        pytest.skip("advisory locks are PostgreSQL's; SQLite is covered below")
    first = PostgresLeader(database.engine.url, "campaign-a")
    second = PostgresLeader(database.engine.url, "campaign-a")
    other = PostgresLeader(database.engine.url, "campaign-b")
    try:
        assert first.try_acquire() and first.try_acquire()  # held, and still held
        assert not second.try_acquire()
        assert other.try_acquire()  # another campaign has its own scheduler
        first.release()  # as when its process dies: the session ends
        assert second.try_acquire()
    finally:
        for leader in (first, second, other):
            leader.release()


def test_a_second_process_on_one_sqlite_ledger_is_refused(sqlite_database: Database) -> None:
    path = sqlite_database.url.removeprefix("sqlite:///")
    first, second = SqliteLeader(path), SqliteLeader(path)
    try:
        assert first.try_acquire()
        with pytest.raises(SqliteInUseError, match="SQLite is for one process"):
            second.try_acquire()
        first.release()
        assert second.try_acquire()
    finally:
        first.release()
        second.release()


def test_lock_keys_are_stable_signed_64_bit() -> None:
    assert lock_key("clusterwoche-2019") == lock_key("clusterwoche-2019")
    assert lock_key("a") != lock_key("b")
    assert -(2**63) <= lock_key("clusterwoche-2019") < 2**63
