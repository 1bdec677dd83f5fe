"""Changing the queue in headless Chromium: each action is a real click, and the campaign
file is diffed afterwards (only the intended lines differ); the forms, the preview, the
answer pages, the conflict page and the history pass the accessibility checks of every desk
page (axe-core, visible keyboard focus, reflow at 200 and 400 %). Skipped without
DISPATCHER_TEST_BROWSER (see tests/support/browser.py).
"""

from __future__ import annotations

import difflib
import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from dispatcher.campaign.loading import load_campaign
from dispatcher.web.desk import session
from tests.support.browser import (
    after_new_page,
    check_accessibility,
    docs_screenshot,
    main_text,
    path_of,
)
from tests.support.database import Database
from tests.support.desk_items import ITEM, Desk, all_channels, serve
from tests.support.smtpd import SmtpServer

SECOND = "/desk/items/saxony-mikroelektronik"


@pytest.fixture
def desk(sqlite_database: Database, smtp_server: SmtpServer, tmp_path: Path) -> Iterator[Desk]:
    yield from serve(all_channels(sqlite_database, smtp_server, tmp_path), sqlite_database)


def sign_in(driver: Any, desk: Desk) -> None:
    cookie = desk.headers["Cookie"].split("=", 1)[1]
    driver.get(desk.url + "/desk/anmelden")
    driver.add_cookie({"name": session.COOKIE, "value": cookie, "path": "/desk"})


def diff(before: str, after: str) -> tuple[list[str], list[str]]:
    lines = list(difflib.ndiff(before.splitlines(), after.splitlines()))
    return [d[2:] for d in lines if d.startswith("- ")], [
        d[2:] for d in lines if d.startswith("+ ")
    ]


def click(driver: Any, label: str, what: str) -> None:
    from selenium.webdriver.common.by import By

    button = driver.find_element(By.XPATH, f"//main//button[normalize-space(.)='{label}']")
    after_new_page(driver, button.click, what)


def test_queue_actions_by_click_change_only_their_lines(browser: Any, desk: Desk) -> None:
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support.ui import Select

    path = desk.state.settings.campaign_file
    original = path.read_text("utf-8")
    sign_in(browser, desk)
    try:
        # Hold: one line.
        browser.get(desk.url + ITEM)
        check_accessibility(browser, "GET /desk/items/{id} with the queue forms")
        click(browser, "Zurückhalten", "hold")
        assert path_of(browser).startswith("/desk/history/")
        assert "Gespeichert" in main_text(browser)
        check_accessibility(browser, "GET /desk/history/{n} after a change")
        held = path.read_text("utf-8")
        assert diff(original, held) == (["    status: ready"], ["    status: hold"])

        # Pin to Friday: one new line.
        browser.get(desk.url + SECOND)
        Select(browser.find_element(By.ID, "pin-day")).select_by_value("2019-04-05")
        click(browser, "Auf diesen Tag legen", "pin")
        pinned = path.read_text("utf-8")
        assert diff(held, pinned) == ([], ["    date: 2019-04-05"])

        # Move the first unpinned item back: the two blocks swap, no line changes.
        third = "/desk/items/bayern-medizintechnik"
        order = [i.id for i in load_campaign(path).items]
        browser.get(desk.url + third)
        click(browser, "Nach hinten", "move down")
        moved = [i.id for i in load_campaign(path).items]
        at = order.index("bayern-medizintechnik")
        assert moved[at + 1] == "bayern-medizintechnik" and moved[at] == order[at + 1]
        assert sorted(pinned.splitlines()) == sorted(path.read_text("utf-8").splitlines())

        # Edit: the preview writes nothing, saving changes only the teaser's lines.
        before_edit = path.read_text("utf-8")
        browser.get(desk.url + SECOND + "/bearbeiten")
        check_accessibility(browser, "GET /desk/items/{id}/bearbeiten")
        teaser = browser.find_element(By.ID, "f-teaser")
        teaser.clear()
        teaser.send_keys("Reinräume teilen: ein Besuch im Elbtal.")
        click(browser, "Vorschau", "preview")
        assert "Vorschau (noch nicht gespeichert)" in main_text(browser)
        assert "Reinräume teilen: ein Besuch im Elbtal." in main_text(browser)
        check_accessibility(browser, "POST /desk/items/{id}/bearbeiten (preview)")
        assert path.read_text("utf-8") == before_edit
        click(browser, "Speichern", "save")
        assert "bearbeitet (teaser)" in main_text(browser)  # the body was not touched
        docs_screenshot(browser, "desk-change")
        edited = path.read_text("utf-8")
        removed, added = diff(before_edit, edited)
        assert added == ["      Reinräume teilen: ein Besuch im Elbtal."]
        assert len(removed) == 2 and all(line.startswith("      ") for line in removed)

        # The history lists the four changes; undoing the first gives Tuesday's item back
        # (as a new change: the later ones stay).
        browser.get(desk.url + "/desk/history")
        check_accessibility(browser, "GET /desk/history")
        docs_screenshot(browser, "desk-history")
        assert len(re.findall(r"Änderung \d+ ansehen", main_text(browser))) == 4
        links = browser.find_elements(By.PARTIAL_LINK_TEXT, "ansehen")
        after_new_page(browser, links[-1].click, "the oldest change")
        click(browser, "Stand vor Änderung 1 wiederherstellen", "restore")
        assert diff(edited, path.read_text("utf-8")) == (
            ["    status: hold"],
            ["    status: ready"],
        )

        # A stale form: the file changes by hand between loading and clicking.
        browser.get(desk.url + ITEM)
        path.write_text(path.read_text("utf-8") + "\n# von Hand ergänzt\n", "utf-8")
        stale = path.read_text("utf-8")
        click(browser, "Zurückhalten", "a stale form")
        assert "Datei inzwischen geändert" in main_text(browser)
        check_accessibility(browser, "the conflict page (409)")
        assert path.read_text("utf-8") == stale
    finally:
        browser.execute_cdp_cmd("Emulation.clearDeviceMetricsOverride", {})
        browser.delete_all_cookies()
        browser.get("about:blank")
