"""`/desk/plan.ics` and `/desk/kalender-abo` over real HTTP, as a calendar program and an
editor use them.

The sample week (email) is sent by real ticks against an aiosmtpd server: Tuesday 2 April
2019 goes out, Wednesday's tick comes after the catch-up window (the ledger records it
missed), and the desk's clock stands on Thursday 07:00 in Berlin, before Thursday's send.
"""

from __future__ import annotations

import datetime as dt
import logging
import os
import re
from collections.abc import Iterator
from dataclasses import dataclass
from functools import partial
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import icalendar
import pytest
import requests

from dispatcher.campaign.loading import load_campaign
from dispatcher.channels.base import EmailChannel
from dispatcher.cli import main as cli
from dispatcher.ledger import editors
from dispatcher.web.desk import session
from dispatcher.web.state import WebState
from tests.support.browser import after_new_page, check_accessibility
from tests.support.database import Database
from tests.support.delivery import email_time
from tests.support.ledger import add_subscribers, tick_at
from tests.support.smtpd import SmtpServer
from tests.support.webapp import PUBLIC_URL, ManualClock, running_app, web_settings

BERLIN = ZoneInfo("Europe/Berlin")
TUESDAY, WEDNESDAY, THURSDAY = dt.date(2019, 4, 2), dt.date(2019, 4, 3), dt.date(2019, 4, 4)
THURSDAY_MORNING = dt.datetime(2019, 4, 4, 7, 0, tzinfo=BERLIN)
EDITOR = "rita@example.org"
FEED_LINK = re.compile(r'value="(https://news\.example\.org/desk/plan\.ics\?token=[^"]+)"')


def _no_email() -> EmailChannel:
    raise AssertionError("the feed sends no email")


@dataclass
class Desk:
    url: str
    state: WebState
    database: Database
    clock: ManualClock
    editor_id: int
    token: str

    def feed(self, token: str | None = None, **headers: str) -> requests.Response:
        return requests.get(
            f"{self.url}/desk/plan.ics",
            params={"token": self.token if token is None else token},
            headers=headers,
            timeout=10,
        )

    def local(self, public: str) -> str:
        """A URL the desk shows (under DISPATCHER_PUBLIC_URL) on the test server."""
        assert public.startswith(PUBLIC_URL)
        return self.url + public.removeprefix(PUBLIC_URL)

    def tick(self, at: dt.datetime) -> None:
        tick_at(self.state.settings, self.database, at)

    def audit(self) -> list[editors.AuditRow]:
        with self.database.engine.connect() as connection:
            return editors.audit_log(connection)


@pytest.fixture
def desk(database: Database, smtp_server: SmtpServer, tmp_path: Path) -> Iterator[Desk]:
    """The sample week's desk over the test's ledger (SQLite and PostgreSQL)."""
    yield from serve_desk(database, smtp_server, tmp_path)


def serve_desk(database: Database, smtp_server: SmtpServer, tmp_path: Path) -> Iterator[Desk]:
    settings = web_settings(database, smtp_server, tmp_path)
    add_subscribers(database, 3)
    tick_at(settings, database, email_time(TUESDAY))
    tick_at(settings, database, dt.datetime(2019, 4, 2, 20, 0, tzinfo=BERLIN))
    # Wednesday's first tick comes after the catch-up window (08:00 + 6 h): recorded missed.
    tick_at(settings, database, dt.datetime(2019, 4, 3, 16, 0, tzinfo=BERLIN))
    campaign = load_campaign(settings.campaign_file)
    clock = ManualClock(THURSDAY_MORNING.astimezone(dt.UTC))
    state = WebState(
        settings=settings,
        engine=database.engine,
        campaign=lambda: campaign,
        email_channel=_no_email,
        clock=clock,
    )
    with database.engine.begin() as connection:
        editor, _ = editors.add(connection, EDITOR, "Rita", now=clock())
        token = editors.create_feed_token(connection, editor.id, now=clock())
    with running_app(state) as url:
        yield Desk(url, state, database, clock, editor.id, token)


def parse(response: requests.Response) -> dict[str, icalendar.Event]:
    calendar = icalendar.Calendar.from_ical(response.content)
    assert isinstance(calendar, icalendar.Calendar)
    assert [zone.tz_name for zone in calendar.timezones] == ["Europe/Berlin"]
    return {str(event.uid): event for event in calendar.events}


def uid(day: dt.date) -> str:
    return f"clusterwoche-2019-{day:%Y%m%d}-email@news.example.org"


def test_the_feed_shows_the_week_sent_missed_and_planned(
    desk: Desk, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    response = desk.feed()
    assert response.status_code == 200
    assert response.headers["content-type"] == "text/calendar; charset=utf-8"
    assert response.headers["content-disposition"] == 'inline; filename="clusterwoche-2019.ics"'
    assert response.headers["cache-control"] == "private, max-age=300"
    assert "set-cookie" not in response.headers  # no session needed, none made

    events = parse(response)
    assert len(events) == 8  # 2.–11. April, weekdays, email only
    assert str(events[uid(TUESDAY)].summary) == (
        "E-Mail · Vorhang auf: Nordwind Maritim e. V. · gesendet"
    )
    assert str(events[uid(WEDNESDAY)].summary) == (
        "E-Mail · Vorhang auf: Mikroelektronik-Netzwerk Elbtal · verpasst"
    )
    thursday = events[uid(THURSDAY)]
    assert str(thursday.summary) == "E-Mail · Vorhang auf: Medizintechnik-Allianz Franken · geplant"
    assert thursday.start == dt.datetime(2019, 4, 4, 8, 0, tzinfo=BERLIN)
    assert thursday["DTSTART"].params["TZID"] == "Europe/Berlin"
    assert f"{PUBLIC_URL}/desk/items/bayern-medizintechnik" in str(thursday.description)

    # A calendar's conditional GET: nothing new, nothing sent.
    etag = response.headers["etag"]
    assert desk.feed(**{"If-None-Match": etag}).status_code == 304
    desk.clock.advance(minutes=30)
    later = desk.feed(**{"If-None-Match": etag})
    assert later.status_code == 304, "the ETag follows the plan, not the time of the answer"
    assert desk.feed().content == response.content  # the same plan is rendered once

    # Thursday goes out: same event (UID), new state, new ETag.
    desk.tick(email_time(THURSDAY))
    desk.clock.now = email_time(THURSDAY).astimezone(dt.UTC) + dt.timedelta(minutes=5)
    after = desk.feed(**{"If-None-Match": etag})
    assert after.status_code == 200
    assert after.headers["etag"] != etag
    updated = parse(after)
    assert set(updated) == set(events)
    assert str(updated[uid(THURSDAY)].summary).endswith(" · gesendet")
    assert updated[uid(THURSDAY)].sequence > thursday.sequence

    server_side = [r for r in caplog.records if not r.name.startswith("urllib3")]  # the client's
    assert server_side, "the app's logs were captured"
    assert all(desk.token not in record.getMessage() for record in server_side)


def test_a_wrong_revoked_or_removed_editors_token_is_not_found(desk: Desk) -> None:
    unknown_path = requests.get(f"{desk.url}/desk/gibt-es-nicht.ics", timeout=10)
    assert unknown_path.status_code == 404

    def assert_hidden(response: requests.Response) -> None:
        # The same answer as for a path that does not exist: the URL's existence stays secret.
        assert response.status_code == 404
        assert response.content == unknown_path.content
        assert response.headers["content-type"] == unknown_path.headers["content-type"]

    assert desk.feed().status_code == 200
    assert_hidden(desk.feed(token=""))
    assert_hidden(desk.feed(token=desk.token[:-1] + ("A" if desk.token[-1] != "A" else "B")))
    assert_hidden(desk.feed(token="x" * 5000))
    assert_hidden(requests.get(f"{desk.url}/desk/plan.ics", timeout=10))

    with desk.database.engine.begin() as connection:
        editors.revoke_feed_tokens(connection, desk.editor_id, now=desk.clock())
    assert_hidden(desk.feed())

    with desk.database.engine.begin() as connection:
        token = editors.create_feed_token(connection, desk.editor_id, now=desk.clock())
    assert desk.feed(token=token).status_code == 200
    with desk.database.engine.begin() as connection:
        editors.remove(connection, EDITOR, now=desk.clock())
    assert_hidden(desk.feed(token=token))


def signed_in_browser(desk: Desk) -> requests.Session:
    """A browser with a session in force for the editor (as after the emailed link)."""
    token = session.start_session(desk.state, desk.editor_id, method="link")
    browser = requests.Session()
    browser.cookies.set(session.COOKIE, session.cookie_value(desk.state, token))
    return browser


def test_rotating_on_the_page_ends_the_old_address(desk: Desk) -> None:
    browser = signed_in_browser(desk)
    page = browser.get(f"{desk.url}/desk/kalender-abo", timeout=10)
    assert page.status_code == 200
    assert "Sie haben eine persönliche Adresse" in page.text
    assert desk.token not in page.text  # only its hash is kept: it cannot be shown again
    csrf = re.search(r'name="csrf_token" value="([^"]+)"', page.text)
    assert csrf is not None

    refused = browser.post(f"{desk.url}/desk/kalender-abo", data={"aktion": "erzeugen"}, timeout=10)
    assert refused.status_code == 403
    assert desk.feed().status_code == 200

    rotated = browser.post(
        f"{desk.url}/desk/kalender-abo",
        data={"aktion": "erzeugen", "csrf_token": csrf[1]},
        timeout=10,
    )
    assert rotated.status_code == 200
    assert rotated.headers["cache-control"] == "no-store"
    assert "Die bisherige Adresse gilt nicht mehr" in rotated.text
    link = FEED_LINK.search(rotated.text)
    assert link is not None
    new_url = link[1].replace("&amp;", "&")
    assert 'href="webcal://news.example.org/desk/plan.ics?token=' in rotated.text

    assert desk.feed().status_code == 404  # the old address
    fresh = requests.get(desk.local(new_url), timeout=10)
    assert fresh.status_code == 200
    assert len(parse(fresh)) == 8

    ended = browser.post(
        f"{desk.url}/desk/kalender-abo",
        data={"aktion": "beenden", "csrf_token": csrf[1]},
        timeout=10,
    )
    assert ended.status_code == 200
    assert "Ihr Kalender-Abo ist beendet" in ended.text
    assert requests.get(desk.local(new_url), timeout=10).status_code == 404

    actions = [(row.email, row.action, row.detail) for row in reversed(desk.audit())]
    assert actions[-2:] == [(EDITOR, "ical_rotate", ""), (EDITOR, "ical_revoke", "")]
    new_token = new_url.split("token=", 1)[1]
    assert all(new_token not in row.detail for row in desk.audit())


def test_the_page_needs_a_session(desk: Desk) -> None:
    page = requests.get(f"{desk.url}/desk/kalender-abo", timeout=10, allow_redirects=False)
    assert page.status_code == 303
    assert page.headers["location"].startswith("/desk/anmelden?next=/desk/kalender-abo")


def test_the_page_is_accessible_and_works_by_keyboard(
    sqlite_database: Database, smtp_server: SmtpServer, tmp_path: Path, browser: Any
) -> None:
    from selenium.webdriver.common.by import By
    from selenium.webdriver.common.keys import Keys

    for desk in serve_desk(sqlite_database, smtp_server, tmp_path):
        with desk.database.engine.begin() as connection:
            editors.revoke_feed_tokens(connection, desk.editor_id, now=desk.clock())
        token = session.start_session(desk.state, desk.editor_id, method="link")
        try:
            browser.get(f"{desk.url}/desk/anmelden")
            browser.add_cookie(
                {
                    "name": session.COOKIE,
                    "value": session.cookie_value(desk.state, token),
                    "path": "/desk",
                }
            )
            browser.get(f"{desk.url}/desk/kalender-abo")
            assert "Sie haben noch keine persönliche Adresse" in browser.page_source
            check_accessibility(browser, "GET /desk/kalender-abo")

            # Keyboard only: Tab to the button, Enter submits the form.
            button = browser.find_element(By.CSS_SELECTOR, "button[value=erzeugen]")
            for _ in range(20):
                if browser.switch_to.active_element == button:
                    break
                browser.switch_to.active_element.send_keys(Keys.TAB)
            assert browser.switch_to.active_element == button, "the button is reachable by Tab"
            after_new_page(browser, partial(button.send_keys, Keys.ENTER), "Enter on the button")
            field = browser.find_element(By.ID, "abo-adresse")
            url = str(field.get_attribute("value"))
            check_accessibility(browser, "POST /desk/kalender-abo (new address)")
            shots = os.environ.get("DISPATCHER_TEST_SCREENSHOTS")
            if shots:  # for a person to look at (docs/desk.md)
                Path(shots).mkdir(parents=True, exist_ok=True)
                browser.save_screenshot(str(Path(shots) / "desk-kalender-abo.png"))
        finally:
            browser.delete_all_cookies()
            browser.get("about:blank")
        assert url.startswith(f"{PUBLIC_URL}/desk/plan.ics?token=")
        assert requests.get(desk.local(url), timeout=10).status_code == 200


def test_the_command_line_hands_out_and_ends_an_address(
    desk: Desk, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv("DISPATCHER_DATABASE_URL", desk.database.url)
    monkeypatch.setenv("DISPATCHER_PUBLIC_URL", PUBLIC_URL)

    assert cli.main(["editors", "ical-url", "Rita@Example.org"]) == 0
    out, err = capsys.readouterr()
    new_url = out.strip()
    assert new_url.startswith(f"{PUBLIC_URL}/desk/plan.ics?token=")
    assert "previous feed address no longer works" in err
    assert desk.feed().status_code == 404
    assert requests.get(desk.local(new_url), timeout=10).status_code == 200

    assert cli.main(["editors", "ical-url", EDITOR, "--revoke"]) == 0
    assert capsys.readouterr().out == f"calendar feed of {EDITOR} ended\n"
    assert requests.get(desk.local(new_url), timeout=10).status_code == 404

    assert cli.main(["editors", "ical-url", "niemand@example.org"]) == 1
    assert "is no editor" in capsys.readouterr().err
    actions = [(row.action, row.detail) for row in reversed(desk.audit())]
    assert actions[-2:] == [("ical_rotate", f"{EDITOR} (cli)"), ("ical_revoke", f"{EDITOR} (cli)")]
