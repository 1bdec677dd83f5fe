"""The public pages' languages in a real browser: headless Chromium, axe-core (issue 18).

Switched on like tests/integration/web/test_browser.py (DISPATCHER_TEST_BROWSER and
DISPATCHER_TEST_AXE, see `tests/support/browser.py`). The browser asks for German
(`--lang=de-DE`), so every English page here is reached the way a reader reaches it: by a
click on the language switch, or as the language of the subscriber a link names.

* The sign-up in English: the switch, the cookie that keeps the choice, the form with
  English preselected, the answer page and the confirmation email — each accessible
  (BITV 2.0 = WCAG 2.1 AA, `check_accessibility`) with `lang="en"`.
* The unsubscribe page of an English reader, and the change of the newsletter's language
  with its form: a real click, a real POST from a `no-referrer` page.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import pytest

from dispatcher.clock import utc_now
from dispatcher.ledger import subscribers as subscriber_store
from tests.support.bilingual import bilingual_copy
from tests.support.browser import after_new_page, check_accessibility, main_text
from tests.support.database import Database
from tests.support.ledger import add_subscribers
from tests.support.outbox_mail import body_text, confirmation_email
from tests.support.site import Site, serve_site

READER = "leser00000@example.org"
NEW_READER = "new.reader@example.org"


@pytest.fixture
def site(sqlite_database: Database, tmp_path: Path) -> Iterator[Site]:
    campaign_file = bilingual_copy(tmp_path, english=("nordwind-maritim",))
    with serve_site(sqlite_database, tmp_path, campaign_file) as site:
        assert site.campaign.locales == ("de", "en")
        yield site


@pytest.fixture
def driver(browser: Any) -> Iterator[Any]:
    """The session's browser, left blank, unzoomed and without our cookie for the next test."""
    yield browser
    browser.execute_cdp_cmd("Emulation.clearDeviceMetricsOverride", {})
    browser.delete_all_cookies()
    browser.get("about:blank")


def _lang(driver: Any) -> str:
    return str(driver.execute_script("return document.documentElement.lang"))


def _h1(driver: Any) -> str:
    return str(driver.execute_script("return document.querySelector('h1').innerText")).strip()


def _switch_to(driver: Any, name: str, what: str) -> None:
    """A click on the language switch's link named `name` ("English")."""
    from selenium.webdriver.common.by import By

    link = driver.find_element(By.CSS_SELECTOR, "nav.sprachen").find_element(By.LINK_TEXT, name)
    after_new_page(driver, link.click, what)


def test_the_english_sign_up_by_the_switch_is_accessible(
    site: Site, driver: Any, tmp_path: Path
) -> None:
    from selenium.webdriver.common.by import By

    driver.get(site.url + "/subscribe")
    assert _lang(driver) == "de"  # the browser asks for German
    assert _h1(driver) == "Newsletter der 2. Clusterwoche Deutschland abonnieren"

    _switch_to(driver, "English", "the switch to English")
    assert _lang(driver) == "en"
    assert _h1(driver) == "Subscribe to the 2. Clusterwoche Deutschland newsletter"
    assert driver.find_element(By.ID, "lang-en").is_selected()  # the page's language
    check_accessibility(driver, "GET /subscribe?lang=en", lang="en")

    driver.get(site.url + "/subscribe")  # the cookie keeps the choice
    assert _lang(driver) == "en", main_text(driver)[:200]

    form = driver.find_element(By.CSS_SELECTOR, "form")
    form.find_element(By.CSS_SELECTOR, "input[type=email]").send_keys(NEW_READER)
    form.find_element(By.ID, "consent").click()
    button = form.find_element(By.CSS_SELECTOR, "button[type=submit]")
    after_new_page(driver, button.click, "the English form sent")
    assert _h1(driver) == "Please confirm your subscription"
    check_accessibility(driver, "POST /subscribe in English (the answer page)", lang="en")
    assert (site.row(NEW_READER).state, site.row(NEW_READER).lang) == ("pending", "en")

    message = confirmation_email(site.confirmations, NEW_READER)
    assert message["Content-Language"] == "en"
    page = tmp_path / "confirm.html"
    page.write_text(body_text(message, "html"), encoding="utf-8")
    driver.get(page.as_uri())
    check_accessibility(driver, "the English confirmation email", lang="en")

    [link] = re.findall(r"https?://\S+/confirm/\S+", body_text(message, "plain"))
    driver.delete_all_cookies()  # the confirmation page follows the subscriber, not a cookie
    driver.get(site.url + urlsplit(link).path)
    assert _lang(driver) == "en" and _h1(driver) == "Subscription confirmed"
    assert site.row(NEW_READER).state == "active"
    check_accessibility(driver, "GET /confirm/{token} in English", lang="en")


def test_an_english_reader_changes_the_newsletter_to_german(site: Site, driver: Any) -> None:
    from selenium.webdriver.common.by import By

    add_subscribers(site.database, 1)
    reader_id = site.row(READER).id
    with site.database.engine.begin() as connection:
        subscriber_store.set_language(connection, reader_id, "en", now=utc_now())
    driver.get(site.url + site.unsubscribe_path(READER))
    assert _lang(driver) == "en"  # the reader's language, though the browser asks for German
    assert _h1(driver) == "Unsubscribe from the newsletter"
    assert driver.find_element(By.ID, "lang-en").is_selected()
    check_accessibility(driver, "GET /u/{token} of an English reader", lang="en")

    driver.find_element(By.CSS_SELECTOR, "label[for=lang-de]").click()
    save = driver.find_element(By.XPATH, "//button[normalize-space(.)='Save language']")
    after_new_page(driver, save.click, "the language form sent")
    assert _lang(driver) == "de"
    assert "Ab der nächsten E-Mail erhalten Sie den Newsletter auf Deutsch" in main_text(driver)
    assert site.row(READER).lang == "de" and site.row(READER).state == "active"
    check_accessibility(driver, "POST /u/{token}/language (the answer page)")

    _switch_to(driver, "English", "the switch back to English")  # shows, changes nothing
    assert _lang(driver) == "en" and site.row(READER).lang == "de"
