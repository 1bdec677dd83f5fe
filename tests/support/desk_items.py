"""The app with the desk for tests of item pages: wired like `dispatcher web`, a signed-in
editor's cookie at hand, the sample campaign with every channel."""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

from dispatcher.campaign.source import CampaignSource
from dispatcher.delivery import wiring
from dispatcher.settings import Settings
from dispatcher.web.state import WebState
from tests.support.campaigns import campaign_copy
from tests.support.database import Database
from tests.support.desk_editor import session_headers
from tests.support.smtpd import SmtpServer
from tests.support.webapp import START, ManualClock, running_app, web_settings

ALL = ("email", "mastodon", "bluesky", "linkedin", "webhook")
ITEM = "/desk/items/nordwind-maritim"  #: the sample's first item: with image and body


@dataclass
class Desk:
    url: str
    headers: dict[str, str]  #: the signed-in editor's session cookie
    state: WebState
    database: Database


def desk_state(settings: Settings, database: Database, clock: ManualClock) -> WebState:
    """As `dispatcher web` wires it (cli/ops.py `cmd_web`), the email channel included."""
    source = CampaignSource(settings.campaign_file)
    return WebState(
        settings=settings,
        engine=database.engine,
        campaign=source.current,
        email_channel=lambda: wiring.email_channel(settings),
        reload_errors=lambda: source.rejected,
        campaign_problems=source.current_problems,
        campaign_changed=source.check,
        clock=clock,
    )


def serve(settings: Settings, database: Database, now: dt.datetime = START) -> Iterator[Desk]:
    """The app on a free port (a generator: `for desk in serve(...)` or `yield from`)."""
    state = desk_state(settings, database, ManualClock(now))
    with running_app(state) as url:
        yield Desk(url, session_headers(state), state, database)


def all_channels(database: Database, smtp: SmtpServer, directory: Path) -> Settings:
    """Settings with the sample's every channel; mail through `smtp`."""
    (directory / "campaign").mkdir()
    return web_settings(
        database, smtp, directory, campaign_file=campaign_copy(directory / "campaign", channels=ALL)
    )
