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
import socket
import struct
import zlib
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import pytest
from pydantic import SecretStr

from dispatcher.campaign.loading import load_campaign
from dispatcher.campaign.model import Campaign
from dispatcher.channels.outbox import Outbox
from dispatcher.clock import clock_from
from dispatcher.content import rendering
from dispatcher.delivery import pipeline
from dispatcher.delivery.context import build_context
from dispatcher.ledger import subscribers as subscriber_store
from dispatcher.mail import compose as emails
from dispatcher.settings import Settings
from dispatcher.web.app import create_app
from dispatcher.web.server import BackgroundServer
from dispatcher.web.state import WebState
from tests.support.browser import after_new_page, check_accessibility
from tests.support.campaigns import campaign_copy
from tests.support.database import Database
from tests.support.httpserver import FakeHTTPServer, Request, Response
from tests.support.ledger import add_subscribers
from tests.support.outbox_mail import body_text, confirmation_email

ROOT = Path(__file__).parents[3]
SECRET = "test-secret-key-0123456789-abcdefghijkl"
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


@dataclass
class Site:
    url: str  #: http://127.0.0.1:<port>, no trailing slash
    database: Database
    settings: Settings
    campaign: Campaign
    confirmations: Path  #: the outbox of the double opt-in emails

    def reader_id(self, address: str = READER) -> int:
        with self.database.engine.connect() as connection:
            row = subscriber_store.get(connection, address)
        assert row is not None, f"{address} is not in the ledger"
        return row.id

    def state_of(self, address: str) -> str | None:
        with self.database.engine.connect() as connection:
            row = subscriber_store.get(connection, address)
        return None if row is None else str(row.state)

    def unsubscribe_path(self, address: str = READER) -> str:
        sender = emails.Sender(self.settings.mail_from, self.url, SECRET)
        url = emails.unsubscribe_url(
            sender, subscriber_id=self.reader_id(address), campaign_id=self.campaign.id
        )
        return urlsplit(url).path


@pytest.fixture
def image_host() -> Iterator[ImageHost]:
    with ImageHost() as host:
        yield host


@pytest.fixture
def site(sqlite_database: Database, tmp_path: Path, image_host: ImageHost) -> Iterator[Site]:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = int(probe.getsockname()[1])
    settings = Settings(  # type: ignore[call-arg]
        _env_file=None,
        database_url=sqlite_database.url,
        campaign_file=campaign_copy(tmp_path, image_base=f"{image_host.url}/bilder"),
        outbox_dir=tmp_path / "outbox",
        templates_dir=ROOT / "templates",
        # Links in pages and emails and the form's Origin check use PUBLIC_URL: the real port.
        public_url=f"http://127.0.0.1:{port}",
        mail_from="Clusterplattform <newsletter@news.example.org>",
        secret_key=SecretStr(SECRET),
    )
    add_subscribers(sqlite_database, 3, named=True)
    campaign = load_campaign(settings.campaign_file)
    # The first day goes out (to the outbox), so the archive has something to list.
    at = dt.datetime.combine(FIRST_DAY, dt.time(8, 0, 5), tzinfo=BERLIN)
    context = build_context(settings, campaign, engine=sqlite_database.engine, clock=clock_from(at))
    try:
        report = pipeline.tick(context)
    finally:
        context.email_channel.close()
    assert list(report.finished.values()) == ["done"]

    confirmations = tmp_path / "confirmations"
    state = WebState(
        settings=settings,
        engine=sqlite_database.engine,
        campaign=lambda: campaign,
        email_channel=lambda: Outbox(confirmations),
    )
    server = BackgroundServer(create_app(state), "127.0.0.1", port)
    server.start()
    url = settings.public_url
    try:
        yield Site(url, sqlite_database, state.settings, campaign, confirmations)
    finally:
        server.stop()


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
    driver.get(site.url + site.unsubscribe_path())
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
    assert urlsplit(driver.current_url).path == site.unsubscribe_path()  # no redirect
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

    driver.get(site.url + site.unsubscribe_path())
    check_accessibility(driver, "GET /u/{token}")
    button = driver.find_element(By.CSS_SELECTOR, "form button, form input[type=submit]")
    after_new_page(driver, button.click, "the unsubscribe click")
    assert site.state_of(READER) == "unsubscribed"
    check_accessibility(driver, "POST /u/{token} (the answer page)")
    driver.get(site.url + site.unsubscribe_path()[:-3] + "xyz")  # a tampered token
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
        name="Erika Mustermann", unsubscribe_url=site.url + site.unsubscribe_path()
    )
    page = tmp_path / "newsletter.html"
    page.write_text(html, encoding="utf-8")
    driver.get(page.as_uri())
    images = driver.execute_script(
        "return Array.from(document.images, i => i.complete && i.naturalWidth > 0)"
    )
    assert images == [True]  # the image loaded: contrast and layout are checked as seen
    check_accessibility(driver, "the daily email")
