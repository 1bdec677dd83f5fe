"""The item page in headless Chromium: the email really shows in both sandboxed frames (the
frame route's policy and the page's `frame-src 'self'` let it, and no more), at the two widths,
and the page is axe-clean. Skipped without DISPATCHER_TEST_BROWSER (see tests/support/browser.py).
"""

from __future__ import annotations

import os
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from dispatcher.web.desk import session
from tests.support.browser import describe_violations, run_axe
from tests.support.database import Database
from tests.support.desk_items import ITEM, Desk, all_channels, serve
from tests.support.smtpd import SmtpServer


@pytest.fixture
def desk(sqlite_database: Database, smtp_server: SmtpServer, tmp_path: Path) -> Iterator[Desk]:
    yield from serve(all_channels(sqlite_database, smtp_server, tmp_path), sqlite_database)


def screenshot(driver: Any, name: str) -> None:
    """With DISPATCHER_TEST_SCREENSHOTS=<dir>, the whole page as `<name>.png` (for the docs)."""
    directory = os.environ.get("DISPATCHER_TEST_SCREENSHOTS")
    if not directory:
        return
    height = driver.execute_script("return document.documentElement.scrollHeight")
    driver.set_window_size(1280, min(int(height) + 120, 4000))
    time.sleep(1.0)  # the resized frames are painted a moment later (blank otherwise)
    try:
        Path(directory).mkdir(parents=True, exist_ok=True)
        driver.save_screenshot(str(Path(directory) / f"{name}.png"))
    finally:
        driver.set_window_size(1280, 900)


def signed_in(driver: Any, desk: Desk) -> None:
    cookie = desk.headers["Cookie"].split("=", 1)[1]
    driver.get(desk.url + "/desk/anmelden")
    driver.add_cookie({"name": session.COOKIE, "value": cookie, "path": "/desk"})


def test_the_email_shows_in_both_frames_and_the_page_is_axe_clean(browser: Any, desk: Desk) -> None:
    from selenium.webdriver.common.by import By

    signed_in(browser, desk)
    try:
        browser.get(desk.url + ITEM)
        frames = browser.find_elements(By.TAG_NAME, "iframe")
        assert len(frames) == 2
        widths = []
        for frame in frames:
            browser.switch_to.frame(frame)
            try:
                body = browser.find_element(By.TAG_NAME, "body")
                assert "Guten Tag Erika Mustermann," in body.text
                widths.append(
                    browser.find_element(By.CSS_SELECTOR, "table.container").size["width"]
                )
            finally:
                browser.switch_to.default_content()
        assert widths == [600, 375]  # the phone layout fills the frame: no scrollbar took room
        screenshot(browser, "desk-item")
        serious = [v for v in run_axe(browser) if v["impact"] in ("serious", "critical")]
        assert not serious, describe_violations(serious)
    finally:
        browser.delete_all_cookies()
        browser.get("about:blank")
