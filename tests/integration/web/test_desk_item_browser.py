"""The item page in headless Chromium: the email really shows in both sandboxed frames (the
frame route's policy and the page's `frame-src 'self'` let it, and no more) at 600 and 375 px;
a click on "Test an mich senden" sends the test; the item page, its answer page and the 404
page pass the same accessibility checks as the public pages (axe-core, visible keyboard focus,
reflow at 200 and 400 %). Skipped without DISPATCHER_TEST_BROWSER (see tests/support/browser.py).
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from dispatcher.web.desk import session
from tests.support.browser import after_new_page, check_accessibility, main_text, wait_for_paint
from tests.support.database import Database
from tests.support.desk_editor import EDITOR
from tests.support.desk_items import ITEM, Desk, all_channels, serve
from tests.support.smtpd import SmtpServer


@pytest.fixture
def desk(sqlite_database: Database, smtp_server: SmtpServer, tmp_path: Path) -> Iterator[Desk]:
    yield from serve(all_channels(sqlite_database, smtp_server, tmp_path), sqlite_database)


def screenshot(driver: Any, name: str, *, height: int | None = None) -> None:
    """With DISPATCHER_TEST_SCREENSHOTS=<dir>, the page as `<name>.png` (for a person; the
    docs' pictures come from test_desk_browser.py):
    `height` CSS pixels of it from the top, or all of it."""
    directory = os.environ.get("DISPATCHER_TEST_SCREENSHOTS")
    if not directory:
        return
    full = int(driver.execute_script("return document.documentElement.scrollHeight"))
    driver.set_window_size(1280, min(height or full + 120, 4000))
    wait_for_paint(driver)  # the resized frames are painted a moment later (blank before)
    try:
        Path(directory).mkdir(parents=True, exist_ok=True)
        driver.save_screenshot(str(Path(directory) / f"{name}.png"))
    finally:
        driver.set_window_size(1280, 900)


def sign_in(driver: Any, desk: Desk) -> None:
    cookie = desk.headers["Cookie"].split("=", 1)[1]
    driver.get(desk.url + "/desk/anmelden")
    driver.add_cookie({"name": session.COOKIE, "value": cookie, "path": "/desk"})


def test_the_item_page_in_a_browser(browser: Any, desk: Desk, smtp_server: SmtpServer) -> None:
    from selenium.webdriver.common.by import By

    sign_in(browser, desk)
    try:
        browser.get(desk.url + ITEM)
        frames = browser.find_elements(By.TAG_NAME, "iframe")
        assert len(frames) == 4  # the German edition's two, then the English edition's
        widths = []
        for index, frame in enumerate(frames):
            browser.switch_to.frame(frame)
            try:
                body = browser.find_element(By.TAG_NAME, "body")
                greeting = "Guten Tag Erika Mustermann," if index < 2 else "Hello Erika Mustermann,"
                assert greeting in body.text
                table = browser.find_element(By.CSS_SELECTOR, "table.container")
                widths.append(table.size["width"])
            finally:
                browser.switch_to.default_content()
        # the phone layout fills the frame: no scrollbar took room
        assert widths == [600, 375, 600, 375]
        screenshot(browser, "desk-item", height=1500)
        check_accessibility(browser, "GET /desk/items/{id}")

        send = browser.find_element(By.XPATH, "//button[normalize-space(.)='Test an mich senden']")
        after_new_page(browser, send.click, "the test-send click")
        heading = browser.find_element(By.TAG_NAME, "h1").text
        assert heading == "Test gesendet", main_text(browser)
        assert [m.rcpt_tos for m in smtp_server.received] == [[EDITOR]]
        check_accessibility(browser, "POST /desk/items/{id}/test-send (the answer page)")

        browser.get(desk.url + "/desk/items/gibt-es-nicht")
        assert browser.find_element(By.TAG_NAME, "h1").text == "Beitrag nicht gefunden"
        check_accessibility(browser, "GET /desk/items/{unknown} (the 404 page)")
    finally:
        browser.execute_cdp_cmd("Emulation.clearDeviceMetricsOverride", {})
        browser.delete_all_cookies()
        browser.get("about:blank")
