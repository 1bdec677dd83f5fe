"""The web app on a free loopback port, for tests that talk real HTTP to it.

`running_app(state)` serves `create_app(state)` with uvicorn in a thread
(`BackgroundServer`, port 0) and yields its base URL. The `webapp` fixture
(or `serve_webapp`) builds a `WebState` over the test's `database` (SQLite and PostgreSQL), an
email-only copy of the sample campaign, confirmation mail through the
`smtp_server` fixture and a clock the test moves by hand.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from dispatcher.campaign.loading import load_campaign
from dispatcher.campaign.model import Campaign
from dispatcher.delivery import wiring
from dispatcher.ledger import subscribers as subscriber_store
from dispatcher.settings import Settings
from dispatcher.web.app import create_app
from dispatcher.web.server import BackgroundServer
from dispatcher.web.state import WebState
from tests.support.campaigns import campaign_copy
from tests.support.database import Database
from tests.support.smtpd import SmtpServer

ROOT = Path(__file__).parents[2]
SECRET = "test-secret-key-0123456789-abcdefghijkl"
PUBLIC_URL = "https://news.example.org"
START = dt.datetime(2019, 4, 1, 10, 0, tzinfo=dt.UTC)


class ManualClock:
    """`WebState.clock` for tests: stands still until moved."""

    def __init__(self, now: dt.datetime = START) -> None:
        self.now = now

    def __call__(self) -> dt.datetime:
        return self.now

    def advance(self, **delta: float) -> None:
        self.now += dt.timedelta(**delta)


@dataclass
class WebApp:
    url: str  #: http://127.0.0.1:<port>, no trailing slash
    state: WebState
    settings: Settings
    campaign: Campaign
    clock: ManualClock
    database: Database


def web_settings(
    database: Database, smtp: SmtpServer, directory: Path, **extra: object
) -> Settings:
    values: dict[str, Any] = dict(
        database_url=database.url,
        smtp_url=smtp.url,
        campaign_file=campaign_copy(directory),
        outbox_dir=directory / "outbox",
        templates_dir=ROOT / "templates",
        public_url=PUBLIC_URL,
        mail_from="Clusterplattform <newsletter@news.example.org>",
        secret_key=SECRET,
    )
    values.update(extra)
    return Settings(_env_file=None, **values)  # type: ignore[call-arg]


@contextmanager
def running_app(state: WebState) -> Iterator[str]:
    server = BackgroundServer(create_app(state), "127.0.0.1", 0)
    server.start()
    try:
        yield f"http://127.0.0.1:{server.port}"
    finally:
        server.stop()


def serve_webapp(
    database: Database, smtp: SmtpServer, directory: Path, **extra: object
) -> Iterator[WebApp]:
    """The body of the `webapp` fixture, for test modules that name their fixture otherwise
    (`extra`: settings that differ from `web_settings`)."""
    settings = web_settings(database, smtp, directory, **extra)
    campaign = load_campaign(settings.campaign_file)
    clock = ManualClock()
    state = WebState(
        settings=settings,
        engine=database.engine,
        campaign=lambda: campaign,
        email_channel=lambda: wiring.email_channel(settings),
        clock=clock,
    )
    with running_app(state) as url:
        yield WebApp(url, state, settings, campaign, clock, database)


@pytest.fixture
def webapp(database: Database, smtp_server: SmtpServer, tmp_path: Path) -> Iterator[WebApp]:
    """The app over the test's ledger, on SQLite and PostgreSQL (via `database`).

    Use as a plugin (`pytest_plugins = [..., "tests.support.webapp"]`) or wrap `serve_webapp`.
    """
    yield from serve_webapp(database, smtp_server, tmp_path)


def subscriber_row(app: WebApp, address: str) -> subscriber_store.SubscriberRow:
    """The ledger's row for `address` (which must exist)."""
    with app.database.engine.connect() as connection:
        row = subscriber_store.get(connection, address)
    assert row is not None, address
    return row
