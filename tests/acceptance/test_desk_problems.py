"""Problems first, in the real processes: `dispatcher run` (the service's reload) and
`dispatcher web` (no scheduler: its own check when a page is asked for) both put a broken
save's `file:line:col` problems at the top of the desk, keep showing the last good version,
and drop the problems once the file is fixed."""

from __future__ import annotations

import html
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import requests
from pydantic import SecretStr

from dispatcher.campaign.loading import load_campaign
from dispatcher.channels.base import EmailChannel
from dispatcher.settings import Settings
from dispatcher.web.state import WebState
from tests.support.campaigns import campaign_copy
from tests.support.database import Database
from tests.support.desk_editor import session_headers
from tests.support.ports import free_port

ROOT = Path(__file__).parents[2]
SECRET = "test-secret-key-0123456789-abcdefghijkl"
TITLE = "Vorhang auf: Medizintechnik-Allianz Franken"
EDITED = "Vorhang auf: MedTech Franken"
GOOD_URL = "url: https://www.clusterplattform.de/reportage/2019/medizintechnik-franken"
BAD_URL = "url: htps://www.clusterplattform.de/reportage/2019/medizintechnik-franken"
HEADING = "Die Kampagnendatei hat 1 Problem"


def _no_email() -> EmailChannel:
    raise AssertionError("no email in this test")


def page(url: str, headers: dict[str, str]) -> str:
    return html.unescape(requests.get(f"{url}/desk/", headers=headers, timeout=10).text)


def wait_until(url: str, headers: dict[str, str], text: str, *, present: bool) -> str:
    deadline = time.monotonic() + 10
    while True:
        try:
            shown = page(url, headers)
        except requests.ConnectionError:
            shown = ""
        if (text in shown) == present or time.monotonic() > deadline:
            return shown
        time.sleep(0.2)


@pytest.mark.parametrize("command", ["run", "web"])
def test_a_broken_save_is_shown_first_and_the_last_good_version_stays(
    command: str, sqlite_database: Database, tmp_path: Path
) -> None:
    path = campaign_copy(tmp_path)
    good = path.read_text("utf-8")
    port = free_port()
    env = {k: v for k, v in os.environ.items() if not k.startswith("DISPATCHER_")}
    env.update(
        DISPATCHER_DATABASE_URL=sqlite_database.url,
        DISPATCHER_CAMPAIGN_FILE=str(path),
        DISPATCHER_OUTBOX_DIR=str(tmp_path / "outbox"),
        DISPATCHER_TEMPLATES_DIR=str(ROOT / "templates"),
        DISPATCHER_SECRET_KEY=SECRET,
        DISPATCHER_PUBLIC_URL=f"http://127.0.0.1:{port}",
        DISPATCHER_HTTP_HOST="127.0.0.1",
        DISPATCHER_HTTP_PORT=str(port),
        DISPATCHER_LOG_FORMAT="json",
    )
    settings = Settings(  # type: ignore[call-arg]
        _env_file=None,
        database_url=sqlite_database.url,
        campaign_file=path,
        templates_dir=ROOT / "templates",
        secret_key=SecretStr(SECRET),
    )
    # the editor's session, in the ledger the process uses
    state = WebState(settings, sqlite_database.engine, lambda: load_campaign(path), _no_email)
    cookie = session_headers(state)
    url = f"http://127.0.0.1:{port}"
    log = tmp_path / f"{command}.log"
    with log.open("w") as output:
        process = subprocess.Popen(
            [sys.executable, "-m", "dispatcher", command],
            cwd=ROOT, env=env, stdout=output, stderr=subprocess.STDOUT,
        )  # fmt: skip
    try:
        before = wait_until(url, cookie, TITLE, present=True)
        path.write_text(good.replace(TITLE, EDITED).replace(GOOD_URL, BAD_URL), "utf-8")
        saved = time.monotonic()
        broken = wait_until(url, cookie, HEADING, present=True)
        noticed = time.monotonic() - saved
        path.write_text(good.replace(TITLE, EDITED), "utf-8")
        fixed = wait_until(url, cookie, HEADING, present=False)
        metrics = requests.get(f"{url}/metrics", timeout=10).text
    finally:
        process.send_signal(signal.SIGTERM)
        try:
            process.wait(timeout=30)
        finally:
            if process.poll() is None:
                process.kill()
    stderr = log.read_text("utf-8", errors="replace")

    assert TITLE in before and HEADING not in before, stderr
    line = next(n for n, text in enumerate(good.splitlines(), 1) if GOOD_URL in text)
    assert f"{path}:{line}:10: items[2].url: not a valid URL" in broken, broken[:3000]
    assert "letzte fehlerfreie Fassung" in broken
    assert TITLE in broken and EDITED not in broken  # the last good version
    assert noticed < 2 + 2  # checked every 2 s (run) or at most every 2 s when asked (web)
    assert HEADING not in fixed and EDITED in fixed
    assert "dispatcher_config_reload_errors_total 1.0" in metrics
