"""Settings and send times for tests that run the email pipeline against a real relay."""

from __future__ import annotations

import datetime as dt
import tempfile
from pathlib import Path
from typing import Any, Protocol

from dispatcher.settings import Settings
from tests.support.campaigns import campaign_copy
from tests.support.database import Database

ROOT = Path(__file__).parents[2]
BERLIN = dt.timezone(dt.timedelta(hours=2))  # CEST, all of April 2019
SEND_DAYS = [dt.date(2019, 4, d) for d in (2, 3, 4, 5, 8, 9, 10, 11)]
SECRET = "test-secret-key-0123456789-abcdefghijkl"


class Relay(Protocol):
    """An SMTP server under test: `tests/support/smtpd.py`'s aiosmtpd or `mta.py`'s Postfix."""

    @property
    def url(self) -> str: ...


def settings_for(database: Database, smtp: Relay, **extra: Any) -> Settings:
    """Email only: the social channels have their own tests."""
    directory = Path(tempfile.mkdtemp(prefix="dispatcher-test-"))
    # Any: the values are checked by Settings itself, as they would be from the environment.
    values: dict[str, Any] = dict(
        database_url=database.url,
        smtp_url=smtp.url,
        smtp_connections=4,
        campaign_file=campaign_copy(directory),
        outbox_dir=directory / "outbox",
        templates_dir=ROOT / "templates",
        public_url="https://news.example.org",
        mail_from="Clusterplattform <newsletter@news.example.org>",
        secret_key=SECRET,
    )
    values.update(extra)
    return Settings(_env_file=None, **values)  # type: ignore[call-arg]


def email_time(day: dt.date) -> dt.datetime:
    """The moment just after the sample campaign's 08:00 email send time on `day`."""
    return dt.datetime.combine(day, dt.time(8, 0, 5), tzinfo=BERLIN)
