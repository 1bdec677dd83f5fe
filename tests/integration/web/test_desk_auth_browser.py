"""The desk's sign-in pages in headless Chromium: axe-core clean, keyboard focus visible, reflow
at 200 and 400 % (`tests.support.browser.check_accessibility`) — the form, its answer and
its error, the link's button page (pressed with the keyboard), an expired link, and the audit
log after sign-in. PUBLIC_URL is an http URL here, so the cookie is not `Secure` and the browser
keeps it over plain http. The whole editor journey is in the desk's end-to-end browser test.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import pytest

from tests.support.browser import after_new_page, check_accessibility, main_text, path_of
from tests.support.database import Database
from tests.support.desk import EDITOR, add_editor, sign_in_links
from tests.support.smtpd import SmtpServer
from tests.support.webapp import WebApp, serve_webapp


@pytest.fixture
def app(sqlite_database: Database, smtp_server: SmtpServer, tmp_path: Path) -> Iterator[WebApp]:
    yield from serve_webapp(sqlite_database, smtp_server, tmp_path, public_url="http://127.0.0.1")


def test_sign_in_pages_are_accessible(app: WebApp, smtp_server: SmtpServer, browser: Any) -> None:
    from selenium.webdriver.common.by import By
    from selenium.webdriver.common.keys import Keys

    add_editor(app)
    try:
        browser.get(f"{app.url}/desk/protokoll")  # not signed in: the sign-in form
        assert urlsplit(browser.current_url).path == "/desk/anmelden"
        check_accessibility(browser, "GET /desk/anmelden")

        field = browser.find_element(By.ID, "email")
        field.send_keys("kein-at-zeichen")
        browser.execute_script("document.querySelector('form').noValidate = true")
        after_new_page(browser, lambda: field.send_keys(Keys.ENTER), "invalid address sent")
        assert "gültige E-Mail-Adresse" in main_text(browser)
        check_accessibility(browser, "POST /desk/anmelden, invalid address")

        field = browser.find_element(By.ID, "email")
        field.clear()
        after_new_page(browser, lambda: field.send_keys(EDITOR, Keys.ENTER), "address sent")
        assert "Anmeldelink an diese Adresse unterwegs" in main_text(browser)
        assert EDITOR in main_text(browser)
        check_accessibility(browser, "POST /desk/anmelden, link sent")
        assert app.state.background.join()

        [link] = sign_in_links(smtp_server)
        browser.get(app.url + urlsplit(link).path)
        check_accessibility(browser, "GET /desk/anmelden/link/…")
        button = browser.find_element(By.CSS_SELECTOR, "main form button")
        # The keyboard presses it.
        after_new_page(browser, lambda: button.send_keys(Keys.ENTER), "link button pressed")
        assert path_of(browser) == "/desk/protokoll"
        assert "angemeldet" in main_text(browser)
        check_accessibility(browser, "GET /desk/protokoll")

        browser.get(app.url + urlsplit(link).path)  # used: the link is gone
        assert "gilt nicht mehr" in main_text(browser)
        check_accessibility(browser, "GET /desk/anmelden/link/… used")

        browser.get(f"{app.url}/desk/protokoll")
        sign_out = browser.find_element(By.CSS_SELECTOR, "header form button")
        after_new_page(browser, lambda: sign_out.send_keys(Keys.ENTER), "sign-out pressed")
        assert path_of(browser) == "/desk/anmelden"
        assert "Sie sind abgemeldet" in main_text(browser)
    finally:
        browser.execute_cdp_cmd("Emulation.clearDeviceMetricsOverride", {})
        browser.delete_all_cookies()
        browser.get("about:blank")
