"""The desk's calendar over a real ledger and real HTTP.

The days are sent by real ticks against an aiosmtpd server (a recipient answering 451 keeps a
day running), so the calendar shows exactly what the pipeline recorded. The app is wired like
`dispatcher web`: the campaign comes from `CampaignSource`, so a broken save shows up first
on the page, with `file:line:col`, while the last good version stays on screen.
"""

from __future__ import annotations

import datetime as dt
import html
import time
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import requests

from dispatcher.campaign.source import CHECK_SECONDS, CampaignSource
from dispatcher.ledger.engine import reader
from dispatcher.settings import Settings
from dispatcher.web.desk.calendar import CalendarView, Day, calendar_view, read_ledger
from tests.support.browser import check_accessibility, keep_screenshot
from tests.support.database import Database
from tests.support.delivery import BERLIN, settings_for
from tests.support.desk_editor import session_headers
from tests.support.desk_items import desk_state
from tests.support.desk_week import EDITED_TITLE, NOW, SENT_TITLE, a_sent_a_running_and_a_missed_day
from tests.support.smtpd import SmtpServer
from tests.support.webapp import ManualClock, running_app


def day_of(view: CalendarView, day: dt.date) -> Day:
    return next(d for week in view.weeks for d in week.days if d.date == day)


@contextmanager
def desk(
    settings: Settings, database: Database, now: dt.datetime
) -> Iterator[tuple[str, dict[str, str]]]:
    state = desk_state(settings, database, ManualClock(now))
    with running_app(state) as url:
        yield url, session_headers(state)


def test_the_view_model_reads_sent_running_and_missed_days_from_the_ledger(
    database: Database, smtp_server: SmtpServer
) -> None:
    settings = a_sent_a_running_and_a_missed_day(database, smtp_server)
    campaign = CampaignSource(settings.campaign_file).campaign
    with reader(database.engine).connect() as connection:
        plan, facts = read_ledger(connection, campaign, NOW)
    view = calendar_view(campaign, plan, facts, NOW)

    sent = day_of(view, dt.date(2019, 4, 2))
    assert [s.state_label for s in sent.sends] == ["gesendet"]
    assert sent.item is not None and sent.item.as_sent
    assert sent.item.title == SENT_TITLE  # what was sent, not the edited file
    assert sent.item.href == "/desk/items/nordwind-maritim?tag=2019-04-02"
    running = day_of(view, dt.date(2019, 4, 3))
    assert [s.state_label for s in running.sends] == ["läuft"]
    progress = running.sends[0].progress
    assert progress is not None and (progress.done, progress.total) == (2, 3)
    missed = day_of(view, dt.date(2019, 4, 4))
    assert missed.is_today and [s.state_label for s in missed.sends] == ["verpasst"]
    friday = day_of(view, dt.date(2019, 4, 5))
    assert friday.is_next and [s.state_label for s in friday.sends] == ["geplant"]


def test_the_calendar_page_for_a_signed_in_editor(
    database: Database, smtp_server: SmtpServer
) -> None:
    settings = a_sent_a_running_and_a_missed_day(database, smtp_server)
    with desk(settings, database, NOW) as (url, cookie):
        anonymous = requests.get(f"{url}/desk/", allow_redirects=False, timeout=10)
        response = requests.get(f"{url}/desk/", headers=cookie, timeout=10)

    assert anonymous.status_code == 303
    assert anonymous.headers["location"].startswith("/desk/anmelden?next=/desk/")
    assert response.status_code == 200
    assert response.headers["cache-control"] == "no-store"
    page = html.unescape(response.text)
    assert "<script" not in page
    assert (
        "<caption>Sendeplan 2. Clusterwoche Deutschland, 2. April 2019 bis 11. April 2019" in page
    )
    assert '<th scope="col">Montag</th>' in page and '<th scope="row">KW 14</th>' in page
    assert f'<a href="/desk/items/nordwind-maritim?tag=2019-04-02">{SENT_TITLE}</a>' in page
    assert EDITED_TITLE not in page
    assert 'E-Mail 08:00:\n<span class="state state-running">läuft</span>, 2 von 3 erledigt' in page
    assert 'class="state state-missed">verpasst' in page
    assert page.count('aria-current="date"') == 1
    assert "Heute ist <strong>Donnerstag, 4. April 2019</strong>" in page
    assert "Nächster Versand:</strong> Freitag, 5. April 2019, 08:00 Uhr" in page
    assert "Jeder freigegebene Beitrag hat einen Sendetag." in page
    assert "Die Kampagnendatei hat" not in page


def wait_for_page(
    url: str, cookie: dict[str, str], text: str, *, present: bool
) -> tuple[str, float]:
    """Load the calendar until `text` is (or is no longer) on it; the page and the seconds
    it took after the save."""
    started = time.monotonic()
    while True:
        page = html.unescape(requests.get(f"{url}/desk/", headers=cookie, timeout=10).text)
        waited = time.monotonic() - started
        if (text in page) == present or waited > 2 * CHECK_SECONDS + 3:
            return page, waited
        time.sleep(0.2)


def test_a_broken_save_comes_first_on_the_page_and_the_last_good_version_stays(
    database: Database, smtp_server: SmtpServer
) -> None:
    settings = settings_for(database, smtp_server)
    path = settings.campaign_file
    good = path.read_text("utf-8")
    now = dt.datetime(2019, 4, 1, 12, 0, tzinfo=BERLIN)
    with desk(settings, database, now) as (url, cookie):
        broken = good.replace(SENT_TITLE, EDITED_TITLE).replace(
            "url: https://www.clusterplattform.de/reportage/2019/medizintechnik-franken",
            "url: htps://www.clusterplattform.de/reportage/2019/medizintechnik-franken",
        )
        path.write_text(broken, "utf-8")
        shown, noticed = wait_for_page(url, cookie, "Die Kampagnendatei hat", present=True)
        path.write_text(good.replace(SENT_TITLE, EDITED_TITLE), "utf-8")
        fixed, cleared = wait_for_page(url, cookie, "Die Kampagnendatei hat", present=False)

    line = next(n for n, text in enumerate(broken.splitlines(), 1) if "htps://" in text)
    assert "Die Kampagnendatei hat 1 Problem" in shown
    assert f"<code>{path}:{line}:10: items[2].url: not a valid URL" in shown
    assert "letzte fehlerfreie Fassung" in shown
    # the problems come before the calendar, which still shows the last good version
    assert shown.index("Die Kampagnendatei hat") < shown.index("<table")
    assert SENT_TITLE in shown and EDITED_TITLE not in shown
    assert noticed < CHECK_SECONDS + 2

    assert "Die Kampagnendatei hat" not in fixed and "fehlerfreie Fassung" not in fixed
    assert EDITED_TITLE in fixed
    assert cleared < CHECK_SECONDS + 2


def test_the_calendar_in_a_browser_is_accessible(
    sqlite_database: Database, smtp_server: SmtpServer, browser: Any
) -> None:
    """axe-core, keyboard focus and reflow at 200 and 400 % on the calendar with every kind
    of day, and again with a problem in the file (the same checks as the public pages)."""
    settings = a_sent_a_running_and_a_missed_day(sqlite_database, smtp_server)
    path = settings.campaign_file
    try:
        with desk(settings, sqlite_database, NOW) as (url, cookie):
            browser.get(f"{url}/desk/anmelden")
            name, _, value = cookie["Cookie"].partition("=")
            browser.add_cookie({"name": name, "value": value, "path": "/desk"})
            browser.get(f"{url}/desk/")
            assert "Nächster Versand" in browser.find_element("tag name", "main").text
            keep_screenshot(browser, "desk calendar")  # docs/images/desk-calendar.png
            check_accessibility(browser, "GET /desk/ calendar")

            path.write_text(path.read_text("utf-8").replace("region: Bayern", "region: [", 1))
            wait_for_page(url, cookie, "Die Kampagnendatei hat", present=True)
            browser.get(f"{url}/desk/")
            assert "Die Kampagnendatei hat" in browser.find_element("tag name", "main").text
            check_accessibility(browser, "GET /desk/ calendar with a problem")
    finally:
        browser.execute_cdp_cmd("Emulation.clearDeviceMetricsOverride", {})
        browser.delete_all_cookies()
        browser.get("about:blank")
