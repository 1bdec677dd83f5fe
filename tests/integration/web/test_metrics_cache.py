"""`/metrics` reads the ledger at most once per cache period, however many scrape at once.

Counted at the source: every SQL statement the ledger engine runs is recorded through a
SQLAlchemy event, and the scrapes are 50 real HTTP requests in parallel.
"""

from __future__ import annotations

import datetime as dt
import threading
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import requests
import sqlalchemy as sa

from dispatcher.campaign.loading import load_campaign
from dispatcher.delivery import wiring
from dispatcher.settings import Settings
from dispatcher.web.state import WebState
from tests.support.database import Database
from tests.support.ledger import add_subscribers, tick_at
from tests.support.smtpd import SmtpServer
from tests.support.webapp import running_app, web_settings

AFTER_FIRST_SEND = dt.datetime(2019, 4, 2, 9, 0, tzinfo=dt.UTC)
SCRAPERS = 50


@contextmanager
def counting_statements() -> Iterator[list[str]]:
    """Every SQL statement any engine runs meanwhile."""
    seen: list[str] = []
    lock = threading.Lock()

    def record(_conn: Any, _cursor: Any, statement: str, *_args: Any) -> None:
        with lock:
            seen.append(statement)

    sa.event.listen(sa.engine.Engine, "before_cursor_execute", record)
    try:
        yield seen
    finally:
        sa.event.remove(sa.engine.Engine, "before_cursor_execute", record)


def _state(settings: Settings, database: Database) -> WebState:
    campaign = load_campaign(settings.campaign_file)
    return WebState(
        settings=settings,
        engine=database.engine,
        campaign=lambda: campaign,
        email_channel=lambda: wiring.email_channel(settings),
        clock=lambda: AFTER_FIRST_SEND,
    )


def _delivery_counts(statements: list[str]) -> int:
    return sum("FROM deliveries" in s and "GROUP BY" in s for s in statements)


def test_fifty_concurrent_scrapes_read_the_ledger_once_per_period(
    database: Database, smtp_server: SmtpServer, tmp_path: Path
) -> None:
    add_subscribers(database, 20)
    settings = web_settings(database, smtp_server, tmp_path, metrics_cache_seconds=2)
    tick_at(settings, database, AFTER_FIRST_SEND - dt.timedelta(hours=1))
    with running_app(_state(settings, database)) as base, counting_statements() as statements:
        with ThreadPoolExecutor(SCRAPERS) as pool:
            pages = list(
                pool.map(lambda _: requests.get(f"{base}/metrics", timeout=30), range(SCRAPERS))
            )
        assert [p.status_code for p in pages] == [200] * SCRAPERS
        assert _delivery_counts(statements) == 1
        everything_once = len(statements)
        # Every scraper saw the same, correct reading.
        sent = 'dispatcher_deliveries{channel="email",state="sent"} 20.0'
        assert all(sent in p.text for p in pages)

        time.sleep(2.2)  # the cache period has passed: the next scrape reads again, once
        requests.get(f"{base}/metrics", timeout=30)
        assert _delivery_counts(statements) == 2
        assert len(statements) == 2 * everything_once


def test_with_a_token_metrics_need_it(
    database: Database, smtp_server: SmtpServer, tmp_path: Path
) -> None:
    settings = web_settings(database, smtp_server, tmp_path, metrics_token="scrape-4711")
    with running_app(_state(settings, database)) as base:
        missing = requests.get(f"{base}/metrics", timeout=10)
        wrong = requests.get(
            f"{base}/metrics", headers={"Authorization": "Bearer nope"}, timeout=10
        )
        right = requests.get(
            f"{base}/metrics", headers={"Authorization": "Bearer scrape-4711"}, timeout=10
        )
        health = requests.get(f"{base}/healthz", timeout=10)
    assert (missing.status_code, wrong.status_code, right.status_code) == (401, 401, 200)
    assert missing.headers["WWW-Authenticate"].startswith("Bearer")
    assert "DISPATCHER_METRICS_TOKEN" in missing.text and "scrape-4711" not in missing.text
    assert "dispatcher_ledger_up 1.0" in right.text
    assert health.status_code == 200  # only /metrics is behind the token
