"""Open the ledger database and bring its schema up to date.

SQLite gets WAL (readers never block the writer) and a busy timeout (a second
process waits for the write lock instead of failing). Migrations are Alembic's,
run from the package so no alembic.ini is needed at deploy time.

PostgreSQL gets bounds on every wait, so that a database fault ends in an error the
pipeline retries on a fresh connection instead of a hang: a connect timeout, TCP
keepalives, server-side statement/lock/idle-in-transaction timeouts, pool pre-ping — and,
because a proxy, load balancer or NAT can swallow traffic while its kernel still
acknowledges it (no keepalive or server timeout ever fires then), a client-side bound:
a connection that gets no answer within `timeout` plus a margin is abandoned
(see docs/architecture.md, "Faults end, they do not hang").
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import psycopg
import sqlalchemy as sa
from alembic import command
from alembic.config import Config
from sqlalchemy.engine import make_url

MIGRATIONS = Path(__file__).with_name("migrations")
SQLITE_BUSY_TIMEOUT_MS = 30_000


DB_TIMEOUT_SECONDS = 30.0  #: default of DISPATCHER_DB_TIMEOUT_SECONDS
ANSWER_MARGIN_SECONDS = 5.0  #: the client waits this much longer than the server's own limit


class BoundedConnection(psycopg.Connection[Any]):
    """A psycopg connection that abandons itself when the server does not answer in time.

    psycopg waits for a reply without a limit; its `wait` takes a timeout, which this
    class always passes. On expiry the connection is closed (its protocol state is
    unknown) and the caller gets an OperationalError, which SQLAlchemy treats as a
    disconnect: the pool drops the connection and the next checkout opens a fresh one.
    """

    answer_timeout: float = DB_TIMEOUT_SECONDS + ANSWER_MARGIN_SECONDS

    def wait(self, gen: Any, interval: float = 0.1, timeout: float | None = None) -> Any:
        try:
            return super().wait(gen, interval, self.answer_timeout if timeout is None else timeout)
        except psycopg.errors._WaitTimeout:
            self.pgconn.finish()
            raise psycopg.OperationalError(
                f"no answer from the database within {self.answer_timeout:g} s: "
                "the connection was abandoned (server closed the connection unexpectedly)"
            ) from None


def _postgres_options(url: sa.URL, timeout: float) -> dict[str, Any]:
    """libpq parameters that bound every wait; a value given in the URL wins."""
    millis = int(timeout * 1000)
    wanted: dict[str, Any] = {
        "connect_timeout": max(1, min(10, int(timeout))),
        "keepalives": 1,
        "keepalives_idle": 30,
        "keepalives_interval": 10,
        "keepalives_count": 3,
        # Unacknowledged data for this long means the peer is gone (kernel-level).
        "tcp_user_timeout": millis,
        "options": f"-c statement_timeout={millis} -c lock_timeout={millis} "
        f"-c idle_in_transaction_session_timeout={millis * 4}",
    }
    return {name: value for name, value in wanted.items() if name not in url.query}


def create_engine(
    url: str | sa.URL, *, timeout: float = DB_TIMEOUT_SECONDS, **options: Any
) -> sa.Engine:
    """An engine for `url`; creates the SQLite file's directory if needed.

    `timeout` bounds every wait on PostgreSQL (see the module docstring).
    """
    parsed = make_url(url)
    if parsed.get_backend_name() == "sqlite":
        if parsed.database and parsed.database != ":memory:":
            Path(parsed.database).parent.mkdir(parents=True, exist_ok=True)
        engine = sa.create_engine(
            parsed,
            connect_args={"timeout": SQLITE_BUSY_TIMEOUT_MS / 1000},
            **options,
        )
        sa.event.listen(engine, "connect", _sqlite_pragmas)
        sa.event.listen(engine, "begin", _sqlite_begin_immediate)
        return engine
    if parsed.get_backend_name() != "postgresql" or parsed.get_driver_name() != "psycopg":
        return sa.create_engine(parsed, pool_pre_ping=True, **options)

    class Bounded(BoundedConnection):
        answer_timeout = timeout + ANSWER_MARGIN_SECONDS

    engine = sa.create_engine(
        parsed,
        pool_pre_ping=True,
        connect_args=_postgres_options(parsed, timeout),
        **options,
    )

    @sa.event.listens_for(engine, "do_connect")
    def _connect(_dialect: Any, _record: Any, cargs: Any, cparams: Any) -> Any:
        return Bounded.connect(*cargs, **cparams)

    return engine


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


def open_ledger(url: str, *, timeout: float = DB_TIMEOUT_SECONDS) -> sa.Engine:
    """An engine on `url` with the schema migrated, or `LedgerUnavailableError` saying why."""
    try:
        engine = create_engine(url, timeout=timeout)
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
