"""The sample week as the desk shows it on Thursday, 4 April 2019 at 15:00, made by real ticks
against the test SMTP server: Tuesday sent (its title edited in the file afterwards, so the
desk must show the snapshot), Wednesday running (one reader answers 451), Thursday missed
(nobody ticked until 15:00), Friday the next send. The calendar's tests and the editor's
end-to-end browser walk (whose screenshots are the docs') start from it."""

from __future__ import annotations

import datetime as dt

from dispatcher.settings import Settings
from tests.support.database import Database
from tests.support.delivery import BERLIN, email_time, settings_for
from tests.support.ledger import add_subscribers, tick_at
from tests.support.smtpd import SmtpServer

SENT_TITLE = "Vorhang auf: Nordwind Maritim e. V."
EDITED_TITLE = "Vorhang auf: Nordwind (überarbeitet)"
SLOW_READER = "leser00002@example.org"
NOW = dt.datetime(2019, 4, 4, 15, 0, tzinfo=BERLIN)  # Thursday, after 08:00 + 6 h catch-up


def a_sent_a_running_and_a_missed_day(database: Database, smtp: SmtpServer) -> Settings:
    """Tue sent (then its title edited in the file), Wed running with one reader answering
    451, Thu missed (nobody ticked until 15:00)."""
    settings = settings_for(database, smtp, clock_jump_hours=72)
    add_subscribers(database, 3)
    tick_at(settings, database, email_time(dt.date(2019, 4, 2)))
    path = settings.campaign_file
    path.write_text(path.read_text("utf-8").replace(SENT_TITLE, EDITED_TITLE), "utf-8")
    smtp.script(SLOW_READER, *["451 4.2.0 Mailbox busy, try later"] * 20)
    tick_at(settings, database, email_time(dt.date(2019, 4, 3)))
    tick_at(settings, database, NOW)
    return settings
