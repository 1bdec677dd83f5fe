"""The public site for browser tests: the real app on a free loopback port, its ledger, and
an outbox for the double opt-in emails (tests/integration/web/test_*browser.py)."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import urlsplit

from pydantic import SecretStr

from dispatcher.campaign.loading import load_campaign
from dispatcher.campaign.model import Campaign
from dispatcher.channels.outbox import Outbox
from dispatcher.ledger import subscribers as subscriber_store
from dispatcher.mail import compose as emails
from dispatcher.settings import Settings
from dispatcher.web.app import create_app
from dispatcher.web.server import BackgroundServer
from dispatcher.web.state import WebState
from tests.support.database import Database
from tests.support.delivery import ROOT, SECRET
from tests.support.ports import free_port


@dataclass
class Site:
    url: str  #: http://127.0.0.1:<port>, no trailing slash; also the public address
    database: Database
    settings: Settings
    campaign: Campaign
    confirmations: Path  #: the outbox of the double opt-in emails

    def row(self, address: str) -> subscriber_store.SubscriberRow:
        with self.database.engine.connect() as connection:
            row = subscriber_store.get(connection, address)
        assert row is not None, f"{address} is not in the ledger"
        return row

    def state_of(self, address: str) -> str | None:
        with self.database.engine.connect() as connection:
            row = subscriber_store.get(connection, address)
        return None if row is None else str(row.state)

    def unsubscribe_path(self, address: str) -> str:
        sender = emails.Sender(self.settings.mail_from, self.url, SECRET)
        url = emails.unsubscribe_url(
            sender, subscriber_id=self.row(address).id, campaign_id=self.campaign.id
        )
        return urlsplit(url).path


@contextmanager
def serve_site(
    database: Database,
    tmp_path: Path,
    campaign_file: Path,
    before_serving: Callable[[Settings, Campaign], None] = lambda _settings, _campaign: None,
) -> Iterator[Site]:
    """The app for `campaign_file` on SQLite `database`; `before_serving` may fill the
    ledger (send a day) with the site's settings first."""
    port = free_port()
    settings = Settings(  # type: ignore[call-arg]
        _env_file=None,
        database_url=database.url,
        campaign_file=campaign_file,
        outbox_dir=tmp_path / "outbox",
        templates_dir=ROOT / "templates",
        # Links in pages and emails and the form's Origin check use PUBLIC_URL: the real port.
        public_url=f"http://127.0.0.1:{port}",
        mail_from="Clusterplattform <newsletter@news.example.org>",
        secret_key=SecretStr(SECRET),
    )
    campaign = load_campaign(campaign_file)
    before_serving(settings, campaign)
    confirmations = tmp_path / "confirmations"
    state = WebState(
        settings=settings,
        engine=database.engine,
        campaign=lambda: campaign,
        email_channel=lambda: Outbox(confirmations),
    )
    server = BackgroundServer(create_app(state), "127.0.0.1", port)
    server.start()
    try:
        yield Site(settings.public_url, database, settings, campaign, confirmations)
    finally:
        server.stop()
