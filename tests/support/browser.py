"""Headless Chromium (Debian's `chromium` + `chromium-driver`) and axe-core for browser tests.

Like the PostgreSQL and real-PDS tests, these run only when switched on: `.ci/run` runs
`scripts/browser-setup` (installs Chromium, ChromeDriver and axe-core, prints the path of
axe.min.js) and exports DISPATCHER_TEST_BROWSER=1 and DISPATCHER_TEST_AXE=<that path>;
elsewhere the `browser` fixture skips with a reason. One browser serves the whole session
(start-up takes about a second); tests leave it on a blank page and unzoomed.

Use it as a pytest plugin (`pytest_plugins = [..., "tests.support.browser"]`).
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any

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
AXE_TIMEOUT = 30.0  #: seconds for one axe.run; well under a second on these pages


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
