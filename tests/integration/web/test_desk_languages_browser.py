"""The desk's language switch in headless Chromium, and the English item page under the same
accessibility checks as every desk page (axe-core, visible keyboard focus, reflow at 200 and
400 %). The browser asks for German (tests/support/browser.py); the editor clicks "English"
and the desk stays English until they click "Deutsch". Skipped without
DISPATCHER_TEST_BROWSER (see tests/support/browser.py).
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from dispatcher.web.desk import pages, session
from tests.support.browser import after_new_page, check_accessibility, main_text, wait_until
from tests.support.database import Database
from tests.support.desk_items import ITEM, Desk, all_channels, serve
from tests.support.smtpd import SmtpServer


@pytest.fixture
def desk(sqlite_database: Database, smtp_server: SmtpServer, tmp_path: Path) -> Iterator[Desk]:
    yield from serve(all_channels(sqlite_database, smtp_server, tmp_path), sqlite_database)


def page_lang(browser: Any) -> str:
    return str(browser.execute_script("return document.documentElement.getAttribute('lang')"))


def frame_texts(browser: Any) -> list[str]:
    """The text of every email frame on the page, in page order."""
    texts = []
    for frame in browser.find_elements("tag name", "iframe"):
        browser.switch_to.frame(frame)
        try:
            texts.append(browser.find_element("tag name", "body").text)
        finally:
            browser.switch_to.default_content()
    return texts


def test_the_english_item_page_by_the_switch(browser: Any, desk: Desk) -> None:
    from selenium.webdriver.common.by import By

    cookie = desk.headers["Cookie"].split("=", 1)[1]
    browser.get(desk.url + "/desk/anmelden")
    browser.add_cookie({"name": session.COOKIE, "value": cookie, "path": "/desk"})
    try:
        browser.get(desk.url + ITEM)
        assert page_lang(browser) == "de"  # what the browser asks for
        switch = browser.find_element(By.CSS_SELECTOR, 'nav[aria-label="Sprache"] a[lang="en"]')
        assert switch.text == "English"
        after_new_page(browser, switch.click, "the switch to English")

        assert page_lang(browser) == "en"
        text = main_text(browser)
        assert "German edition" in text and "English edition" in text
        assert browser.find_element(By.TAG_NAME, "h1").text == "Vorhang auf: Nordwind Maritim e. V."
        wait_until(
            browser,
            lambda b: sum("Hello Erika Mustermann," in t for t in frame_texts(b)) == 2,
            "the English email in the English edition's two frames",
        )
        check_accessibility(browser, "GET /desk/items/{id} in English", lang="en")
        assert browser.get_cookie(pages.LANGUAGE_COOKIE)["value"] == "en"

        # The choice holds on the next page, whatever the browser asks for.
        calendar = browser.find_element(By.LINK_TEXT, "Calendar")
        after_new_page(browser, calendar.click, "the calendar link")
        assert page_lang(browser) == "en" and "Next send:" in main_text(browser)
        back = browser.find_element(By.CSS_SELECTOR, 'nav[aria-label="Language"] a[lang="de"]')
        assert back.text == "Deutsch"
        after_new_page(browser, back.click, "the switch back to German")
        assert page_lang(browser) == "de" and "Nächster Versand:" in main_text(browser)
    finally:
        browser.delete_all_cookies()
        browser.get("about:blank")
