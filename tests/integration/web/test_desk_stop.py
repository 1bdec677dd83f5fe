"""The stop switch at the desk over real HTTP and a real ledger: a running send is cancelled
after a confirmation (the unsent rest `cancelled`, who/why recorded, nothing sent by the next
tick), a finished one cannot be, CSRF is enforced, and a pause shows on every desk page.
"""

from __future__ import annotations

import datetime as dt
import html
import re
from typing import Any

import requests

from dispatcher.campaign.model import Channel
from dispatcher.delivery import controls
from dispatcher.ledger import editors, store
from dispatcher.web.desk import session
from tests.support.browser import after_new_page, check_accessibility, main_text
from tests.support.database import Database
from tests.support.delivery import email_time
from tests.support.desk_items import serve
from tests.support.desk_week import NOW, SLOW_READER, a_sent_a_running_and_a_missed_day
from tests.support.ledger import delivery_states, tick_at
from tests.support.smtpd import SmtpServer

RUNNING_ITEM = "saxony-mikroelektronik"  #: Wednesday 3 April, one reader deferred (451)


def _dispatch(database: Database, day: dt.date) -> store.DispatchRow:
    with database.engine.connect() as connection:
        found = store.get_dispatch(connection, "clusterwoche-2019", day, Channel.EMAIL)
    assert found is not None
    return found


def test_an_editor_cancels_a_running_send_after_confirming(
    database: Database, smtp_server: SmtpServer
) -> None:
    settings = a_sent_a_running_and_a_missed_day(database, smtp_server)
    running = _dispatch(database, dt.date(2019, 4, 3))
    assert running.state == "running"
    for desk in serve(settings, database, now=NOW):
        item = html.unescape(
            requests.get(f"{desk.url}/desk/items/{RUNNING_ITEM}", headers=desk.headers,
                         timeout=10).text
        )  # fmt: skip
        link = f"/desk/dispatches/{running.id}/abbrechen"
        assert link in item and f"Versand {running.id} (email, 3. April) abbrechen" in item
        page = requests.get(desk.url + link, headers=desk.headers, timeout=10)
        assert page.status_code == 200 and "Ja, Versand" in page.text
        token = re.search(r'name="csrf_token" value="([^"]+)"', page.text)
        assert token is not None
        forged = requests.post(desk.url + link, headers=desk.headers, timeout=10,
                               data={"reason": "x", "csrf_token": "falsch"})  # fmt: skip
        assert forged.status_code == 403
        assert _dispatch(database, dt.date(2019, 4, 3)).state == "running"

        done = requests.post(desk.url + link, headers=desk.headers, timeout=30,
                             allow_redirects=False,
                             data={"reason": "falscher Link", "csrf_token": token.group(1)})  # fmt: skip
        assert done.status_code == 303 and done.headers["location"] == link
        answer = html.unescape(requests.get(desk.url + link, headers=desk.headers, timeout=10).text)
        assert "Abgebrochen am" in answer and "desk:rita.redaktion@example.org" in answer
        assert (
            "falscher Link" in answer and f"dispatcher resend {running.id} --only-unsent" in answer
        )

        again = requests.post(desk.url + link, headers=desk.headers, timeout=30,
                              allow_redirects=False,
                              data={"reason": "nochmal", "csrf_token": token.group(1)})  # fmt: skip
        assert again.status_code == 303  # a second cancel changes nothing
        shown = html.unescape(requests.get(desk.url + link, headers=desk.headers, timeout=10).text)
        assert "falscher Link" in shown and "nochmal" not in shown

        with database.engine.connect() as connection:
            audit = editors.audit_log(connection)
        assert any(
            row.action == "dispatch_cancel" and "falscher Link" in row.detail for row in audit
        )

        sent_day = _dispatch(database, dt.date(2019, 4, 2))
        finished = requests.get(f"{desk.url}/desk/dispatches/{sent_day.id}/abbrechen",
                                headers=desk.headers, timeout=10)  # fmt: skip
        assert "nichts mehr zu stoppen" in html.unescape(finished.text)

    assert _dispatch(database, dt.date(2019, 4, 3)).state == "cancelled"
    # The reader that was deferred is never sent, not by the next tick either.
    smtp_server.clear()
    tick_at(settings, database, NOW + dt.timedelta(minutes=30))
    assert SLOW_READER not in {r.rcpt_tos[0] for r in smtp_server.received}
    assert delivery_states(database)["cancelled"] == 1


def test_a_pause_shows_on_every_desk_page(database: Database, smtp_server: SmtpServer) -> None:
    settings = a_sent_a_running_and_a_missed_day(database, smtp_server)
    controls.pause(
        database.engine, Channel.EMAIL, by="cli:erika", now=email_time(dt.date(2019, 4, 4))
    )
    for desk in serve(settings, database, now=NOW):
        for path in ("/desk/", f"/desk/items/{RUNNING_ITEM}", "/desk/history"):
            page = html.unescape(
                requests.get(desk.url + path, headers=desk.headers, timeout=10).text
            )
            assert (
                "Versand angehalten:" in page and "email seit 04.04.2019 08:00 (cli:erika)" in page
            )
        controls.resume(database.engine, Channel.EMAIL, by="cli:erika", now=NOW)
        page = html.unescape(
            requests.get(desk.url + "/desk/", headers=desk.headers, timeout=10).text
        )
        assert "Versand angehalten:" not in page


def test_the_stop_pages_in_a_browser_are_accessible(
    sqlite_database: Database, smtp_server: SmtpServer, browser: Any
) -> None:
    from selenium.webdriver.common.by import By

    settings = a_sent_a_running_and_a_missed_day(sqlite_database, smtp_server)
    running = _dispatch(sqlite_database, dt.date(2019, 4, 3))
    for desk in serve(settings, sqlite_database, now=NOW):
        cookie = desk.headers["Cookie"].split("=", 1)[1]
        browser.get(desk.url + "/desk/anmelden")
        browser.add_cookie({"name": session.COOKIE, "value": cookie, "path": "/desk"})
        try:
            browser.get(f"{desk.url}/desk/dispatches/{running.id}/abbrechen")
            check_accessibility(browser, "GET /desk/dispatches/{id}/abbrechen")
            browser.find_element(By.ID, "reason").send_keys("falscher Link")
            button = browser.find_element(By.XPATH, "//main//form//button")
            after_new_page(browser, button.click, "the cancel button")
            assert "Abgebrochen am" in main_text(browser)
            check_accessibility(browser, "the cancelled dispatch")
        finally:
            browser.delete_all_cookies()
            browser.get("about:blank")
    assert _dispatch(sqlite_database, dt.date(2019, 4, 3)).state == "cancelled"
