"""Headless Chromium (Debian's `chromium` + `chromium-driver`) and axe-core for browser tests.

Like the PostgreSQL and real-PDS tests, these run only when switched on: `.ci/run` runs
`scripts/browser-setup` (installs Chromium, ChromeDriver and axe-core, prints the path of
axe.min.js) and exports DISPATCHER_TEST_BROWSER=1 and DISPATCHER_TEST_AXE=<that path>;
elsewhere the `browser` fixture skips with a reason. One browser serves the whole session
(start-up takes about a second); tests leave it on a blank page and unzoomed.

Use it as a pytest plugin (`pytest_plugins = [..., "tests.support.browser"]`).

`check_accessibility(driver, what)` is the one check of a page every browser test runs (public
pages, the email, every desk page): axe-core without a serious or critical violation,
`lang="de"` (or the `lang=` the test expects), an `<h1>`, a visible focus at every Tab stop,
and no horizontal scrolling at 200 and 400 % zoom. With DISPATCHER_TEST_SCREENSHOTS=<dir> it keeps what the browser showed.

`after_new_page(driver, action, what)` runs a click or key press that submits a form and waits
until the document it loaded is complete; `main_text` reads `<main>` by script. Together they
keep a test from reading the old page, or holding an element of it, while the browser
navigates (a stale element on a busy machine otherwise).
"""

from __future__ import annotations

import os
import re
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import pytest

CHROMIUM = Path("/usr/bin/chromium")
CHROMEDRIVER = Path("/usr/bin/chromedriver")
#: As on this kind of machine: no sandbox as root, and no background connections to Google,
#: which the closed network refuses (noisy, and slow at every start).
CHROMIUM_FLAGS = (
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--disable-dev-shm-usage",  # a small /dev/shm in containers crashes tabs
    "--lang=de-DE",
    "--window-size=1280,900",
)
#: BITV 2.0 refers to WCAG 2.1 level AA; best-practice rules are not part of it.
AXE_TAGS = ("wcag2a", "wcag2aa", "wcag21a", "wcag21aa")
BLOCKING = frozenset({"serious", "critical"})  #: axe impacts that fail a test
AXE_TIMEOUT = 30.0  #: seconds for one axe.run; well under a second on these pages
WAIT = 10.0  #: seconds a page may take after a click or key press


def _axe_source() -> str:
    path = os.environ.get("DISPATCHER_TEST_AXE")
    if not path:
        pytest.fail(
            "DISPATCHER_TEST_AXE is not set; run `scripts/browser-setup` and export its output"
        )
    try:
        return Path(path).read_text(encoding="utf-8")
    except OSError as error:
        pytest.fail(f"DISPATCHER_TEST_AXE={path}: {error}; run `scripts/browser-setup`")


@pytest.fixture(scope="session")
def browser(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Any]:
    """A `selenium.webdriver.Chrome` driving headless Chromium, shared by the session."""
    if not os.environ.get("DISPATCHER_TEST_BROWSER"):
        pytest.skip(
            "browser tests need DISPATCHER_TEST_BROWSER=1 and DISPATCHER_TEST_AXE "
            "(set by .ci/run after scripts/browser-setup)"
        )
    missing = [str(p) for p in (CHROMIUM, CHROMEDRIVER) if not p.exists()]
    if missing:
        pytest.fail(f"{', '.join(missing)} missing; run `scripts/browser-setup`")
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    options = webdriver.ChromeOptions()
    options.binary_location = str(CHROMIUM)
    for flag in CHROMIUM_FLAGS:
        options.add_argument(flag)
    options.add_argument(f"--user-data-dir={tmp_path_factory.mktemp('chromium-profile')}")
    # What a German reader's browser asks for: pages that negotiate `Accept-Language` answer
    # in German (headless Chromium sends en-US whatever --lang says).
    options.add_experimental_option("prefs", {"intl.accept_languages": "de-DE,de"})
    # Both paths are given, so Selenium Manager has nothing to look up or download.
    driver = webdriver.Chrome(service=Service(str(CHROMEDRIVER)), options=options)
    driver.set_page_load_timeout(30)
    driver.set_script_timeout(AXE_TIMEOUT)
    try:
        yield driver
    finally:
        driver.quit()


_RUN_AXE = """
const done = arguments[arguments.length - 1];
axe.run(document, {runOnly: arguments[0], resultTypes: ["violations"]})
  .then(results => done({violations: results.violations}))
  .catch(error => done({error: String(error)}));
"""


def run_axe(driver: Any) -> list[dict[str, Any]]:
    """axe-core's WCAG 2.1 A/AA violations on the page `driver` shows now.

    Each violation is axe's own dict: `id`, `impact` ("minor" … "critical"), `help`,
    `helpUrl`, and `nodes` (each with `target` selectors and a `failureSummary`).
    """
    driver.execute_script(_axe_source())
    result = driver.execute_async_script(_RUN_AXE, list(AXE_TAGS))
    if "error" in result:
        raise RuntimeError(f"axe.run failed: {result['error']}")
    violations: list[dict[str, Any]] = result["violations"]
    return violations


def describe_violations(violations: list[dict[str, Any]]) -> str:
    """One readable block per violation: rule, impact, help, and where (CSS selectors)."""
    lines = []
    for violation in violations:
        lines.append(
            f"- {violation['id']} ({violation['impact']}): {violation['help']} "
            f"<{violation['helpUrl']}>"
        )
        for node in violation["nodes"]:
            target = " ".join(str(t) for t in node["target"])
            summary = " ".join(str(node.get("failureSummary", "")).split())
            lines.append(f"    {target}: {summary}")
    return "\n".join(lines)


# --- the accessibility checks of every page (BITV 2.0 = WCAG 2.1 AA) ----------------------

#: A 1280×900 window at 200 % zoom lays out 640×450 CSS pixels (WCAG 1.4.4 "Resize text");
#: at 400 % it is 320 CSS pixels wide, the width of WCAG 1.4.10 "Reflow".
ZOOMS = (2, 4)
WINDOW = (1280, 900)

_LAYOUT = r"""
window.scrollTo(0, 0);  // the Tab walk may have scrolled; boxes are measured from the viewport
const width = document.documentElement.clientWidth;
const cut = [];
for (const el of document.body.querySelectorAll(
        "h1, h2, h3, h4, p, li, a, button, input, select, textarea, label, img, table")) {
  const style = getComputedStyle(el);
  const box = el.getBoundingClientRect();
  if (style.visibility === "hidden" || (box.width === 0 && box.height === 0)) continue;
  if (box.left < -1 || box.right > width + 1) {
    const text = (el.innerText || el.alt || el.value || "").replace(/\s+/g, " ").trim().slice(0, 40);
    cut.push(`<${el.tagName.toLowerCase()}> "${text}" spans ${Math.round(box.left)}..${Math.round(box.right)}`);
  }
}
return {width: width, scrollWidth: document.documentElement.scrollWidth, cut: cut};
"""

_FOCUS = r"""
const el = document.activeElement;
if (!el || el === document.body || el.hasAttribute("data-tab-seen")) return null;
el.setAttribute("data-tab-seen", "");
const style = getComputedStyle(el);
const outline = style.outlineStyle !== "none" && parseFloat(style.outlineWidth) > 0;
const shadow = style.boxShadow && style.boxShadow !== "none";
const text = (el.innerText || el.value || el.name || "").replace(/\s+/g, " ").trim();
return {tag: el.tagName.toLowerCase(), text: text.slice(0, 40), visible: Boolean(outline || shadow)};
"""


def keep_screenshot(driver: Any, what: str, zoom: int = 1) -> None:
    """With DISPATCHER_TEST_SCREENSHOTS=<dir>, keep what the browser showed (for a person)."""
    directory = os.environ.get("DISPATCHER_TEST_SCREENSHOTS")
    if directory:
        slug = re.sub(r"[^a-z0-9]+", "-", what.lower()).strip("-")
        Path(directory).mkdir(parents=True, exist_ok=True)
        driver.save_screenshot(str(Path(directory) / f"{slug}-{zoom * 100}.png"))


def zoom_problems(driver: Any, what: str = "page") -> list[str]:
    """What needs horizontal scrolling or sticks out of the viewport at 200 % and 400 %.

    Browser zoom makes a CSS pixel bigger, so the layout viewport shrinks: Chrome's device
    metrics override with `width = 1280 / zoom` and `deviceScaleFactor = zoom` is exactly
    what a 1280 px wide window shows when zoomed (text and images drawn `zoom` times as large,
    media queries seeing the narrower width). `document.body.style.zoom` would not trigger
    media queries and so test a layout no reader ever sees.
    """
    problems = []
    try:
        for zoom in ZOOMS:
            driver.execute_cdp_cmd(
                "Emulation.setDeviceMetricsOverride",
                {
                    "width": WINDOW[0] // zoom,
                    "height": WINDOW[1] // zoom,
                    "deviceScaleFactor": zoom,
                    "mobile": False,
                },
            )
            layout = driver.execute_script(_LAYOUT)
            keep_screenshot(driver, what, zoom)
            if layout["scrollWidth"] > layout["width"] + 1:
                problems.append(
                    f"at {zoom * 100} % the page is {layout['scrollWidth']} px wide for a "
                    f"{layout['width']} px viewport (horizontal scrolling)"
                )
            cut = layout["cut"]
            problems += [f"at {zoom * 100} %, cut off: {c}" for c in cut[:8]]
            if len(cut) > 8:
                problems.append(f"at {zoom * 100} %: … and {len(cut) - 8} more elements cut off")
    finally:
        driver.execute_cdp_cmd("Emulation.clearDeviceMetricsOverride", {})
    return problems


def focus_problems(driver: Any, limit: int = 40) -> list[str]:
    """Tab through the page as a keyboard user: every stop must show a focus indicator."""
    from selenium.webdriver.common.action_chains import ActionChains
    from selenium.webdriver.common.keys import Keys

    driver.execute_script("document.activeElement && document.activeElement.blur()")
    problems = []
    for _ in range(limit):
        ActionChains(driver).send_keys(Keys.TAB).perform()
        focused = driver.execute_script(_FOCUS)
        if focused is None:
            break  # left the document or came round again
        if not focused["visible"]:
            problems.append(f"no visible focus on <{focused['tag']}> {focused['text']!r}")
    return problems


def check_accessibility(driver: Any, what: str, *, lang: str = "de") -> None:
    """Every check on the page the browser shows now, a page in `lang`; one failure lists
    everything found."""
    found = driver.execute_script("return document.documentElement.getAttribute('lang')")
    headings = driver.execute_script("return document.querySelectorAll('h1').length")
    violations = run_axe(driver)
    blocking = [v for v in violations if v["impact"] in BLOCKING]
    minor = [v for v in violations if v["impact"] not in BLOCKING]
    if minor:  # shown with -rA or on failure; not a failure by themselves
        print(f"{what}: minor/moderate axe findings:\n{describe_violations(minor)}")
    problems = []
    if found != lang:
        problems.append(f'<html lang="{found}">, expected lang="{lang}"')
    if headings < 1:
        problems.append("no <h1>: the page has no top-level heading")
    if blocking:
        problems.append("axe-core, serious or critical:\n" + describe_violations(blocking))
    problems += focus_problems(driver)
    keep_screenshot(driver, what, 1)
    problems += zoom_problems(driver, what)
    assert not problems, f"{what} ({driver.current_url}):\n" + "\n".join(problems)


DOCS_IMAGES = Path(__file__).parents[2] / "docs" / "images"

_PAINTED = """
const done = arguments[arguments.length - 1];
requestAnimationFrame(() => requestAnimationFrame(() => done(true)));
"""


def wait_for_paint(driver: Any) -> None:
    """Until the page has painted two frames since now (after a resize or a load): a
    condition, where a fixed sleep would be too short on a busy machine or waste time."""
    driver.execute_async_script(_PAINTED)


def docs_screenshot(driver: Any, name: str) -> None:
    """With DISPATCHER_TEST_DOCS_IMAGES=1, the viewport as docs/images/<name>.png (for README
    and docs/desk.md), once the page has painted two frames since now."""
    if not os.environ.get("DISPATCHER_TEST_DOCS_IMAGES"):
        return
    wait_for_paint(driver)
    DOCS_IMAGES.mkdir(parents=True, exist_ok=True)
    assert driver.save_screenshot(str(DOCS_IMAGES / f"{name}.png")), name


def wait_until(driver: Any, condition: Callable[[Any], Any], what: str) -> Any:
    """Poll `condition(driver)` until it is truthy (and return it); fail with `what`."""
    from selenium.webdriver.support.ui import WebDriverWait

    return WebDriverWait(driver, WAIT, poll_frequency=0.05).until(condition, message=what)


def path_of(driver: Any) -> str:
    return str(urlsplit(driver.current_url).path)


def main_text(driver: Any) -> str:
    """The text of the page's <main> ("" while none is loaded). Read by a script, not an
    element reference: a wait that polls during a navigation never holds a stale element."""
    text = driver.execute_script(
        "const m = document.querySelector('main'); return m ? m.innerText : ''"
    )
    return str(text or "")


def after_new_page(driver: Any, action: Callable[[], object], what: str) -> None:
    """Run `action` (a click or key press that submits a form or follows a link) and wait
    until the window shows the new document, completely loaded.

    Selenium's ``staleness_of`` asks Chrome about the old element, and during the navigation
    Chrome may answer "Node … does not belong to the document" (a plain WebDriverException)
    instead of "stale element"; a marker on the old window object has no such race.
    """
    from selenium.common.exceptions import WebDriverException

    driver.execute_script("window.__dispatcherOldPage = true")
    action()

    def loaded(d: Any) -> bool:
        try:
            return bool(
                d.execute_script(
                    "return window.__dispatcherOldPage === undefined"
                    " && document.readyState === 'complete'"
                )
            )
        except WebDriverException:  # the new document is still being committed
            return False

    wait_until(driver, loaded, f"{what}: no new page loaded")
