"""Open the ledger database and bring its schema up to date.

SQLite gets WAL (readers never block the writer) and a busy timeout (a second
process waits for the write lock instead of failing). Migrations are Alembic's,
run from the package so no alembic.ini is needed at deploy time.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import sqlalchemy as sa
from alembic import command
from alembic.config import Config
from sqlalchemy.engine import make_url

MIGRATIONS = Path(__file__).with_name("migrations")
SQLITE_BUSY_TIMEOUT_MS = 30_000


def create_engine(url: str) -> sa.Engine:
    """An engine for `url`; creates the SQLite file's directory if needed."""
    parsed = make_url(url)
    if parsed.get_backend_name() == "sqlite":
        if parsed.database and parsed.database != ":memory:":
            Path(parsed.database).parent.mkdir(parents=True, exist_ok=True)
        engine = sa.create_engine(
            parsed,
            connect_args={"timeout": SQLITE_BUSY_TIMEOUT_MS / 1000},
        )
        sa.event.listen(engine, "connect", _sqlite_pragmas)
        sa.event.listen(engine, "begin", _sqlite_begin_immediate)
        return engine
    return sa.create_engine(parsed, pool_pre_ping=True)


def _sqlite_pragmas(dbapi_connection: Any, _record: Any) -> None:
    # pysqlite's own transaction handling would defer BEGIN; we issue it ourselves.
    dbapi_connection.isolation_level = None
    cursor = dbapi_connection.cursor()
    cursor.execute("PRAGMA journal_mode=WAL")
    cursor.execute(f"PRAGMA busy_timeout={SQLITE_BUSY_TIMEOUT_MS}")
    cursor.execute("PRAGMA synchronous=NORMAL")
    cursor.execute("PRAGMA foreign_keys=ON")
    cursor.close()


def _sqlite_begin_immediate(connection: sa.Connection) -> None:
    # Take the write lock at BEGIN: two processes claiming at once then queue on the
    # busy timeout instead of failing with "database is locked" on upgrade to write.
    # Readers (see `reader`) begin deferred: in WAL mode they never wait for a writer.
    mode = connection.get_execution_options().get("sqlite_begin", "IMMEDIATE")
    connection.exec_driver_sql(f"BEGIN {mode}")


def reader(engine: sa.Engine) -> sa.Engine:
    """The same engine for read-only work: on SQLite it takes no write lock."""
    return engine.execution_options(sqlite_begin="DEFERRED")


def redacted(url: str) -> str:
    """The URL for messages and logs: never with its password."""
    return make_url(url).render_as_string(hide_password=True)


def alembic_config(url: str) -> Config:
    config = Config()
    config.set_main_option("script_location", str(MIGRATIONS))
    config.attributes["url"] = url
    return config


def upgrade(engine: sa.Engine) -> None:
    """Apply every migration not yet applied (idempotent; safe at every start)."""
    config = alembic_config(engine.url.render_as_string(hide_password=False))
    with engine.begin() as connection:
        config.attributes["connection"] = connection
        command.upgrade(config, "head")


class LedgerUnavailableError(Exception):
    """The ledger cannot be opened; the message names the (redacted) URL and the reason."""


def open_ledger(url: str) -> sa.Engine:
    """An engine on `url` with the schema migrated, or `LedgerUnavailableError` saying why."""
    try:
        engine = create_engine(url)
        upgrade(engine)
    except sa.exc.ArgumentError:
        # Not echoed: a mistyped URL may still hold a password.
        raise LedgerUnavailableError(
            "DISPATCHER_DATABASE_URL is not a database URL; use e.g. "
            "sqlite:///var/dispatcher.sqlite3 or postgresql+psycopg://USER@HOST/DB"
        ) from None
    except (sa.exc.OperationalError, OSError) as error:
        reason = str(getattr(error, "orig", None) or error).strip().splitlines()[0]
        raise LedgerUnavailableError(
            f"cannot open the ledger at {redacted(url)}: {reason}"
        ) from None
    return engine
