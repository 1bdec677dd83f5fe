"""The pages and the daily email in a real browser: headless Chromium driven by Selenium.

Switched on by DISPATCHER_TEST_BROWSER and DISPATCHER_TEST_AXE (`.ci/run` sets both after
`scripts/browser-setup`); skipped elsewhere (see `tests/support/browser.py`).

* The unsubscribe page is clicked as a person would: a real click on the button of a page
  without JavaScript, a real form POST, and the ledger records the unsubscribe.
* Accessibility (BITV 2.0 = WCAG 2.1 AA) of every page a subscriber sees and of the email:
  axe-core finds no serious or critical violation; `<html lang="de">`; a level-one heading;
  every element reached with the Tab key shows a focus indicator; and at 200 % zoom (and
  400 %, WCAG 1.4.10 "Reflow") nothing needs horizontal scrolling or is cut off.
"""

from __future__ import annotations

import datetime as dt
import re
import struct
import zlib
from collections.abc import Iterator
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import pytest

from dispatcher.campaign.model import Campaign
from dispatcher.clock import clock_from
from dispatcher.content import rendering
from dispatcher.delivery import pipeline
from dispatcher.delivery.context import build_context
from dispatcher.settings import Settings
from tests.support.browser import after_new_page, check_accessibility
from tests.support.campaigns import campaign_copy
from tests.support.database import Database
from tests.support.httpserver import FakeHTTPServer, Request, Response
from tests.support.ledger import add_subscribers
from tests.support.outbox_mail import body_text, confirmation_email
from tests.support.site import Site, serve_site

BERLIN = dt.timezone(dt.timedelta(hours=2))  # CEST, all of April 2019
FIRST_DAY = dt.date(2019, 4, 2)
SECOND_DAY = dt.date(2019, 4, 3)
READER = "leser00000@example.org"  #: the first subscriber that `add_subscribers` creates
NEW_READER = "neu@example.org"


# --- a local image host: the sample's images live on a host this machine cannot reach -------


def _png(width: int, height: int, rgb: tuple[int, int, int]) -> bytes:
    def chunk(kind: bytes, data: bytes) -> bytes:
        body = kind + data
        return struct.pack(">I", len(data)) + body + struct.pack(">I", zlib.crc32(body))

    raw = b"".join(b"\x00" + bytes(rgb) * width for _ in range(height))
    header = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)  # 8-bit RGB
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header) + chunk(b"IDAT", zlib.compress(raw))


class ImageHost(FakeHTTPServer):
    """Answers every GET with a 1104×620 PNG (a 2× image for the email's 552 px slot)."""

    image = _png(1104, 620, (60, 110, 150))

    def handle(self, request: Request) -> Response:
        return Response(body=self.image, headers={"Content-Type": "image/png"})


# --- the site: ledger with one sent day, the app on a free loopback port --------------------


@pytest.fixture
def image_host() -> Iterator[ImageHost]:
    with ImageHost() as host:
        yield host


@pytest.fixture
def site(sqlite_database: Database, tmp_path: Path, image_host: ImageHost) -> Iterator[Site]:
    add_subscribers(sqlite_database, 3, named=True)

    def send_the_first_day(settings: Settings, campaign: Campaign) -> None:
        """To the outbox, so the archive has something to list."""
        at = dt.datetime.combine(FIRST_DAY, dt.time(8, 0, 5), tzinfo=BERLIN)
        engine = sqlite_database.engine
        context = build_context(settings, campaign, engine=engine, clock=clock_from(at))
        try:
            report = pipeline.tick(context)
        finally:
            context.email_channel.close()
        assert list(report.finished.values()) == ["done"]

    campaign_file = campaign_copy(tmp_path, image_base=f"{image_host.url}/bilder")
    with serve_site(sqlite_database, tmp_path, campaign_file, send_the_first_day) as site:
        yield site


@pytest.fixture
def driver(browser: Any) -> Iterator[Any]:
    """The session's browser, left blank and unzoomed for the next test."""
    yield browser
    browser.execute_cdp_cmd("Emulation.clearDeviceMetricsOverride", {})
    browser.get("about:blank")


def _body_text(driver: Any) -> str:
    text: str = driver.execute_script("return document.body.innerText")
    return " ".join(text.split())


# --- 1. the unsubscribe click ---------------------------------------------------------------


def test_unsubscribe_page_click_unsubscribes(site: Site, driver: Any) -> None:
    from selenium.webdriver.common.by import By

    assert site.state_of(READER) == "active"
    driver.get(site.url + site.unsubscribe_path(READER))
    assert site.campaign.name in _body_text(driver)  # who is being unsubscribed from what
    assert driver.execute_script("return document.scripts.length") == 0  # works without JS
    button = driver.find_element(
        By.XPATH,
        "//form//button[contains(normalize-space(.), 'Abmelden')]"
        " | //form//input[@type='submit' and contains(@value, 'Abmelden')]",
    )
    # A real click: the browser submits the form itself.
    after_new_page(driver, button.click, "the unsubscribe click")
    heading = driver.find_element(By.TAG_NAME, "h1").text
    assert "abgemeldet" in heading, f"the answer page says: {_body_text(driver)[:300]!r}"
    assert READER in _body_text(driver)
    assert urlsplit(driver.current_url).path == site.unsubscribe_path(READER)  # no redirect
    assert site.state_of(READER) == "unsubscribed"
    assert site.state_of("leser00001@example.org") == "active"  # only this one


# --- 2. accessibility -----------------------------------------------------------------------


def test_archive_is_accessible(site: Site, driver: Any) -> None:
    driver.get(site.url + "/archive")
    sent = site.campaign.items[0].title
    assert sent in _body_text(driver)  # the day that went out is listed
    check_accessibility(driver, "GET /archive")


def test_unsubscribe_page_and_its_answer_are_accessible(site: Site, driver: Any) -> None:
    from selenium.webdriver.common.by import By

    driver.get(site.url + site.unsubscribe_path(READER))
    check_accessibility(driver, "GET /u/{token}")
    button = driver.find_element(By.CSS_SELECTOR, "form button, form input[type=submit]")
    after_new_page(driver, button.click, "the unsubscribe click")
    assert site.state_of(READER) == "unsubscribed"
    check_accessibility(driver, "POST /u/{token} (the answer page)")
    driver.get(site.url + site.unsubscribe_path(READER)[:-3] + "xyz")  # a tampered token
    assert "ungültig" in driver.find_element(By.TAG_NAME, "h1").text
    check_accessibility(driver, "GET /u/{tampered} (the 404 page)")


def test_subscribe_and_confirm_pages_are_accessible(
    site: Site, driver: Any, tmp_path: Path
) -> None:
    from selenium.webdriver.common.by import By

    driver.get(site.url + "/subscribe")
    check_accessibility(driver, "GET /subscribe")

    # A form the server rejects (the browser's own checks switched off, as in old browsers).
    driver.execute_script("document.querySelector('form').noValidate = true")
    button = driver.find_element(By.CSS_SELECTOR, "form button, form input[type=submit]")
    after_new_page(driver, button.click, "the empty form sent")
    assert driver.find_elements(By.CSS_SELECTOR, "[aria-invalid=true]"), "no field marked invalid"
    check_accessibility(driver, "POST /subscribe (the form with errors)")

    # Sign up as a person would: type, tick the consent box, submit.
    form = driver.find_element(By.CSS_SELECTOR, "form")
    form.find_element(By.CSS_SELECTOR, "input[type=email]").send_keys(NEW_READER)
    form.find_element(By.CSS_SELECTOR, "input[type=checkbox]").click()
    button = form.find_element(By.CSS_SELECTOR, "button, input[type=submit]")
    after_new_page(driver, button.click, "the filled-in form sent")
    assert "/subscribe" in driver.current_url
    assert site.state_of(NEW_READER) == "pending"
    check_accessibility(driver, "POST /subscribe (the answer page)")

    # The confirmation email is part of what a subscriber sees, so it is checked too.
    message = confirmation_email(site.confirmations, NEW_READER)
    page = tmp_path / "confirm.html"
    page.write_text(body_text(message, "html"), encoding="utf-8")
    driver.get(page.as_uri())
    check_accessibility(driver, "the confirmation email")

    links = re.findall(r"https?://\S+/confirm/\S+", body_text(message, "plain"))
    assert links, f"no /confirm/ link in: {body_text(message, 'plain')!r}"
    driver.get(site.url + urlsplit(links[0]).path)
    assert site.state_of(NEW_READER) == "active"
    check_accessibility(driver, "GET /confirm/{token}")


def test_daily_email_is_accessible(site: Site, driver: Any, tmp_path: Path) -> None:
    """The second day's email: an image, a Markdown body, the "already published" list."""
    env = rendering.create_environment(site.settings.templates_dir)
    first, second = site.campaign.items[:2]
    shared = rendering.render_email(
        env,
        site.campaign,
        first if first.image else second,
        day=SECOND_DAY,
        published=[(FIRST_DAY, second if first.image else first)],
        imprint=site.settings.imprint,
        public_url=site.url,
    )
    html, _ = shared.personalise(
        name="Erika Mustermann", unsubscribe_url=site.url + site.unsubscribe_path(READER)
    )
    page = tmp_path / "newsletter.html"
    page.write_text(html, encoding="utf-8")
    driver.get(page.as_uri())
    images = driver.execute_script(
        "return Array.from(document.images, i => i.complete && i.naturalWidth > 0)"
    )
    assert images == [True]  # the image loaded: contrast and layout are checked as seen
    check_accessibility(driver, "the daily email")
