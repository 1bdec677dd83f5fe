"""Which process schedules: the holder of a lock the database itself keeps.

On PostgreSQL that is `pg_try_advisory_lock` on a dedicated session: the lock
lives exactly as long as the session, so when the holder dies (or its network
goes away) PostgreSQL frees it and the next process to try takes over — no
home-made coordinator, no heartbeats table. Every process sends (claims are
`FOR UPDATE SKIP LOCKED`); only the leader creates dispatches.

SQLite is for one process: an exclusive file lock beside the database file
tells a second `run` that it would share the ledger, and it refuses to start.
"""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import logging
import os
from pathlib import Path
from typing import IO, Protocol

import sqlalchemy as sa
from sqlalchemy.engine import make_url
from sqlalchemy.pool import NullPool

from dispatcher.ledger import engine as ledger_engine

log = logging.getLogger("dispatcher")


class Leadership(Protocol):
    def try_acquire(self) -> bool:
        """Whether this process holds the lock now (acquiring it if it is free)."""
        ...

    def release(self) -> None: ...


class SqliteInUseError(Exception):
    """Another process already runs on this SQLite ledger."""


def lock_key(name: str) -> int:
    """A stable signed 64-bit advisory lock key for a name (the campaign id)."""
    digest = hashlib.sha256(f"dispatcher-scheduler:{name}".encode()).digest()
    return int.from_bytes(digest[:8], "big", signed=True)


class PostgresLeader:
    """Holds `pg_try_advisory_lock(key)` on its own connection, outside the pool."""

    def __init__(
        self, url: sa.URL | str, name: str, *, timeout: float = ledger_engine.DB_TIMEOUT_SECONDS
    ) -> None:
        # Bounded like the ledger's engine: a dead database must not hang the leader check.
        self._engine = ledger_engine.create_engine(url, timeout=timeout, poolclass=NullPool)
        self._key = lock_key(name)
        self._connection: sa.Connection | None = None
        self._held = False

    def try_acquire(self) -> bool:
        try:
            if self._connection is None:
                self._connection = self._engine.connect()
            if self._held:
                self._connection.execute(sa.text("SELECT 1"))  # still our session?
                self._connection.commit()  # never left idle in a transaction
                return True
            self._held = bool(
                self._connection.execute(
                    sa.text("SELECT pg_try_advisory_lock(:key)"), {"key": self._key}
                ).scalar()
            )
            self._connection.commit()
        except sa.exc.DBAPIError as error:
            if self._held:
                log.error("lost the scheduler lock: %s", error.orig, extra={"event": "leader_lost"})
            self._drop()
            return False
        return self._held

    def _drop(self) -> None:
        self._held = False
        if self._connection is not None:
            with contextlib.suppress(sa.exc.DBAPIError):
                self._connection.close()
            self._connection = None

    def release(self) -> None:
        if self._held and self._connection is not None:
            with contextlib.suppress(sa.exc.DBAPIError):
                self._connection.execute(
                    sa.text("SELECT pg_advisory_unlock(:key)"), {"key": self._key}
                )
                self._connection.commit()
        self._drop()
        self._engine.dispose()


class SqliteLeader:
    """An exclusive `flock` on `<database>.lock`: one `run` per SQLite ledger."""

    def __init__(self, database: str) -> None:
        self._path = Path(f"{database}.lock")
        self._file: IO[str] | None = None

    def try_acquire(self) -> bool:
        if self._file is not None:
            return True
        self._path.parent.mkdir(parents=True, exist_ok=True)
        handle = self._path.open("w")
        try:
            fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            handle.close()
            raise SqliteInUseError(
                f"another `dispatcher run` already uses the SQLite ledger {self._path.stem!s}; "
                "SQLite is for one process: stop the other one, or use PostgreSQL "
                "(DISPATCHER_DATABASE_URL=postgresql+psycopg://…) to run several"
            ) from None
        handle.write(str(os.getpid()))
        handle.flush()
        self._file = handle
        return True

    def release(self) -> None:
        if self._file is not None:
            fcntl.flock(self._file, fcntl.LOCK_UN)
            self._file.close()
            self._file = None


def leadership_for(
    engine: sa.Engine, name: str, *, timeout: float = ledger_engine.DB_TIMEOUT_SECONDS
) -> Leadership:
    url = make_url(engine.url)
    if url.get_backend_name() == "postgresql":
        return PostgresLeader(url, name, timeout=timeout)
    if url.get_backend_name() == "sqlite" and url.database not in (None, "", ":memory:"):
        return SqliteLeader(str(url.database))

    class Always:
        def try_acquire(self) -> bool:
            return True

        def release(self) -> None:
            pass

    return Always()
