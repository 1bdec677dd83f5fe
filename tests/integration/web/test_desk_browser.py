"""The editor's whole visit to the desk in headless Chromium, by keyboard, over the sample week.

Sign in through the emailed link (the test SMTP server catches the mail; the link's page is
opened and its button pressed), the calendar, an item, a test send (the SMTP server receives
it), sign out (the desk sends the browser back to sign-in). Every action is reached with Tab
and pressed with Enter or Space, as a keyboard user would. Then what an attacker tries: a
form without its CSRF token is refused with 403 and sends nothing; a cookie signed with
another key, or forged, gets the sign-in page.

The ledger is the sample week as the calendar test builds it (Tuesday sent, Wednesday
running, Thursday missed, Friday next). With DISPATCHER_TEST_DOCS_IMAGES=1 the test writes the
README's and docs/desk.md's screenshots: docs/images/desk-calendar.png and desk-item.png, at a
fixed 1280 px viewport. Skipped without DISPATCHER_TEST_BROWSER (see tests/support/browser.py).
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlsplit

import pytest
import requests
from pydantic import SecretStr

from dispatcher.ledger import editors
from dispatcher.web.app import create_app
from dispatcher.web.desk import session
from dispatcher.web.desk.pages import CSRF_REFUSED
from dispatcher.web.server import BackgroundServer
from dispatcher.web.state import WebState
from tests.support.browser import after_new_page, docs_screenshot, main_text, path_of, wait_until
from tests.support.database import Database
from tests.support.desk import EDITOR, sign_in_links
from tests.support.desk_items import desk_state
from tests.support.desk_week import NOW, a_sent_a_running_and_a_missed_day
from tests.support.ports import free_port
from tests.support.smtpd import SmtpServer
from tests.support.webapp import ManualClock

WAIT = 10.0  #: seconds for an HTTP request made beside the browser
SIGN_IN = "/desk/anmelden"


@dataclass
class Visit:
    url: str  #: http://127.0.0.1:<port>, also PUBLIC_URL (links in mails, the Origin check)
    state: WebState


@pytest.fixture
def visit(sqlite_database: Database, smtp_server: SmtpServer, browser: Any) -> Iterator[Visit]:
    settings = a_sent_a_running_and_a_missed_day(sqlite_database, smtp_server)
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    settings = settings.model_copy(update={"public_url": url})
    state = desk_state(settings, sqlite_database, ManualClock(NOW))
    with state.engine.begin() as connection:
        editors.add(connection, EDITOR, "Erika Muster", now=state.clock())
    server = BackgroundServer(create_app(state), "127.0.0.1", port)
    server.start()
    try:
        yield Visit(url, state)
    finally:
        server.stop()
        browser.execute_cdp_cmd("Emulation.clearDeviceMetricsOverride", {})
        browser.delete_all_cookies()
        browser.get("about:blank")


def heading(browser: Any) -> str:
    text = browser.execute_script(
        "const h = document.querySelector('h1'); return h ? h.innerText : ''"
    )
    return str(text or "").strip()


_ACTIVE = """
const el = document.activeElement;
if (!el || el === document.body) return null;
return {tag: el.tagName.toLowerCase(), text: (el.innerText || el.value || "").trim(),
        href: el.getAttribute("href") || ""};
"""


def tab_to(browser: Any, wanted: Callable[[dict[str, str]], bool], what: str) -> dict[str, str]:
    """Press Tab from the top of the page until the focused element is `wanted`."""
    from selenium.webdriver.common.action_chains import ActionChains
    from selenium.webdriver.common.keys import Keys

    browser.execute_script("document.activeElement && document.activeElement.blur()")
    seen = []
    for _ in range(80):
        ActionChains(browser).send_keys(Keys.TAB).perform()
        focused: dict[str, str] | None = browser.execute_script(_ACTIVE)
        if focused is None:
            break
        if wanted(focused):
            return focused
        seen.append(f"<{focused['tag']}> {focused['text'][:30]!r}")
    raise AssertionError(f"Tab never reached {what}; the stops were: {', '.join(seen)}")


def press(browser: Any, key: str) -> None:
    from selenium.webdriver.common.action_chains import ActionChains

    ActionChains(browser).send_keys(key).perform()


def button(label: str) -> Callable[[dict[str, str]], bool]:
    return lambda focused: focused["tag"] == "button" and focused["text"] == label


def viewport(browser: Any, height: int) -> None:
    """A fixed 1280 px wide viewport: the docs' screenshots have the same size every run."""
    browser.execute_cdp_cmd(
        "Emulation.setDeviceMetricsOverride",
        {"width": 1280, "height": height, "deviceScaleFactor": 1, "mobile": False},
    )


def frames_show_the_email(browser: Any) -> bool:
    """Every sandboxed frame has loaded its email (its greeting is in their text): two of the
    German edition, two of the English one (the sample's second language)."""
    frames = browser.find_elements("tag name", "iframe")
    shown = 0
    for frame in frames:
        greeting = "Hello" if "ausgabe=en" in (frame.get_attribute("src") or "") else "Guten Tag"
        browser.switch_to.frame(frame)
        try:
            ready = browser.execute_script("return document.readyState") == "complete"
            text = browser.find_element("tag name", "body").text
            shown += ready and greeting in text
        finally:
            browser.switch_to.default_content()
    return len(frames) == 4 and shown == 4


def test_an_editor_signs_in_by_link_sends_a_test_and_signs_out_by_keyboard(
    visit: Visit, smtp_server: SmtpServer, browser: Any
) -> None:
    from selenium.webdriver.common.keys import Keys

    viewport(browser, 760)
    browser.get(f"{visit.url}/desk/")
    assert path_of(browser) == SIGN_IN  # not signed in

    # 1. Ask for the link: type the address, press Enter.
    tab_to(browser, lambda f: f["tag"] == "input", "the address field")
    after_new_page(browser, lambda: press(browser, EDITOR + Keys.ENTER), "the address sent")
    # "unterwegs" is only on the answer page ("Anmeldelink" is also the form's button).
    wait_until(browser, lambda b: "Anmeldelink an diese Adresse unterwegs" in main_text(b), "sent")
    assert visit.state.background.join()  # the link mail is sent after the answer
    [link] = sign_in_links(smtp_server, EDITOR)

    # 2. Open the link from the mail; the button on its page signs in (Enter).
    browser.get(visit.url + urlsplit(link).path)
    tab_to(browser, button("Jetzt anmelden"), "the sign-in button")
    after_new_page(browser, lambda: press(browser, Keys.ENTER), "the sign-in button pressed")
    wait_until(browser, lambda b: path_of(b) == "/desk/", "the calendar after signing in")

    # 3. The calendar of the sample week (read once the page is complete, not mid-load).
    wait_until(browser, lambda b: "Nächster Versand" in main_text(b), "the calendar's content")
    calendar = main_text(browser)
    for shown in ("Nächster Versand", "gesendet", "läuft, 2 von 3 erledigt", "verpasst"):
        assert shown in calendar, f"{shown!r} not on the calendar: {calendar[:500]!r}"
    docs_screenshot(browser, "desk-calendar")

    # 4. An item: the first item link in Tab order, opened with Enter.
    viewport(browser, 1500)
    item = tab_to(browser, lambda f: f["href"].startswith("/desk/items/"), "an item link")
    after_new_page(browser, lambda: press(browser, Keys.ENTER), "the item link followed")
    wait_until(browser, lambda b: path_of(b) == item["href"], "the item page")
    wait_until(browser, lambda b: heading(b) == item["text"], "the item's heading")
    wait_until(browser, frames_show_the_email, "the email in both frames")
    docs_screenshot(browser, "desk-item")

    # 5. Send a test to me (Space), which the SMTP server receives.
    before = len(smtp_server.received)
    tab_to(browser, button("Test an mich senden"), "the test-send button")
    after_new_page(browser, lambda: press(browser, Keys.SPACE), "the test-send button pressed")
    wait_until(browser, lambda b: heading(b) == "Test gesendet", "sent")
    tests = smtp_server.received[before:]
    assert [m.rcpt_tos for m in tests] == [[EDITOR]]
    assert str(tests[0].message["Subject"]).startswith("[TEST] ")
    assert EDITOR in main_text(browser)  # says where it went

    # 6. The same form without its CSRF token: 403, nothing sent.
    browser.get(visit.url + item["href"])
    browser.execute_script(
        "document.querySelector('form[action$=\"/test-send\"] input[name=csrf_token]').remove()"
    )
    before = len(smtp_server.received)
    tab_to(browser, button("Test an mich senden"), "the test-send button")
    after_new_page(browser, lambda: press(browser, Keys.ENTER), "the form without its token")
    wait_until(browser, lambda b: "CSRF-Prüfung" in b.page_source, "the refusal")
    assert CSRF_REFUSED.split("(")[0].strip() in browser.find_element("tag name", "body").text
    cookie = {session.COOKIE: browser.get_cookie(session.COOKIE)["value"]}
    answer = requests.post(  # the status the browser got, asked again without the browser
        f"{visit.url}{item['href']}/test-send",
        cookies=cookie,
        headers={"Origin": visit.url},
        data={},
        timeout=WAIT,
        allow_redirects=False,
    )
    assert answer.status_code == 403 and "CSRF" in answer.text
    assert visit.state.background.join()
    assert len(smtp_server.received) == before

    # 7. Sign out (the header's button, Enter): the desk sends the browser to sign-in.
    browser.get(f"{visit.url}/desk/")
    tab_to(browser, button("Abmelden"), "the sign-out button")
    after_new_page(browser, lambda: press(browser, Keys.ENTER), "the sign-out button pressed")
    wait_until(browser, lambda b: path_of(b) == SIGN_IN, "the sign-in page after signing out")
    wait_until(browser, lambda b: "Sie sind abgemeldet" in main_text(b), "the signed-out note")
    browser.get(f"{visit.url}/desk/")
    assert path_of(browser) == SIGN_IN
    old = requests.get(f"{visit.url}/desk/", cookies=cookie, timeout=WAIT, allow_redirects=False)
    assert old.status_code in (302, 303, 307) and SIGN_IN in old.headers["Location"]


def foreign_cookies(state: WebState) -> dict[str, str]:
    """Cookies the desk must not trust: a live session's token signed with another key, and
    a made-up value in the cookie's shape."""
    with state.engine.begin() as connection:
        editor = editors.active(connection, EDITOR)
        assert editor is not None
        token = editors.create_session(
            connection,
            editor.id,
            method="link",
            now=state.clock(),
            lifetime=session.lifetime(state),
        )
    other_key = state.settings.model_copy(update={"secret_key": SecretStr("another-" * 6)})
    other = WebState(
        settings=other_key,
        engine=state.engine,
        campaign=state.campaign,
        email_channel=state.email_channel,
    )
    return {
        "signed with another key": session.cookie_value(other, token),
        "forged": f"{token}.{'A' * 22}",
    }


def test_a_foreign_or_forged_session_cookie_gets_the_sign_in_page(
    visit: Visit, browser: Any
) -> None:
    for what, value in foreign_cookies(visit.state).items():
        browser.get(f"{visit.url}{SIGN_IN}")
        browser.delete_all_cookies()
        browser.add_cookie({"name": session.COOKIE, "value": value, "path": "/desk"})
        for page in ("/desk/", "/desk/items/nordwind-maritim", "/desk/protokoll"):
            browser.get(visit.url + page)
            assert path_of(browser) == SIGN_IN, f"{what}: {page} -> {browser.current_url}"
            assert heading(browser) == "Anmelden", what
