"""A desk change reaches a running `dispatcher run`: the queue moves as the editor said.

The service runs as its own process on a rehearsal clock 30 s before Tuesday's 08:00 send;
an editor moves Tuesday's reportage (pinned to 2 April in the sample) to Friday through the
desk that process serves; at 08:00 the readers get the next reportage of the queue instead.
"""

from __future__ import annotations

import datetime as dt
import html
import json
import re
import signal
import time
from pathlib import Path

import requests

from dispatcher.campaign.loading import load_campaign
from dispatcher.settings import Settings
from tests.support.database import Database
from tests.support.desk_editor import session_headers
from tests.support.desk_items import desk_state
from tests.support.ledger import add_subscribers, dispatch_states
from tests.support.processes import environment, start
from tests.support.smtpd import SmtpServer
from tests.support.webapp import ManualClock

MOVED = "nordwind-maritim"  #: pinned to Tuesday 2 April in the sample, moved to Friday here
NEXT = "saxony-mikroelektronik"  #: the first item without a fixed day: Tuesday's after the move


def test_a_pin_from_the_desk_is_sent_by_the_running_service(
    database: Database, smtp_server: SmtpServer, tmp_path: Path
) -> None:
    add_subscribers(database, 3)
    env = environment(
        database, smtp_server, tmp_path,
        DISPATCHER_POLL_SECONDS="1", DISPATCHER_DESK_FREEZE_MINUTES="0",
    )  # fmt: skip
    campaign_file = Path(env["DISPATCHER_CAMPAIGN_FILE"])
    next_title = load_campaign(campaign_file).item(NEXT).title
    settings = Settings(  # type: ignore[call-arg]
        _env_file=None, database_url=database.url, campaign_file=campaign_file
    )
    service = start(env, "run", "--at", "2019-04-02T07:59:30+02:00")
    try:
        assert service.stdout is not None
        port = None
        for line in service.stdout:
            if '"http_started"' in line:
                port = re.search(r":(\d+)\b", json.loads(line)["message"].split("//")[1])
                break
        assert port is not None, "the service did not start its HTTP endpoints"
        url = f"http://127.0.0.1:{port.group(1)}"
        # A session of an editor in the same ledger, signed with the same (development) key,
        # started on the service's rehearsal day (a session lasts hours).
        clock = ManualClock(dt.datetime(2019, 4, 2, 5, 59, tzinfo=dt.UTC))
        headers = session_headers(desk_state(settings, database, clock))
        page = requests.get(f"{url}/desk/items/{MOVED}", headers=headers, timeout=10,
                            allow_redirects=False)  # fmt: skip
        assert page.status_code == 200, page.text
        form = {
            name: html.unescape(value)
            for name, value in re.findall(r'name="(csrf_token|version)" value="([^"]*)"', page.text)
        }
        pinned = requests.post(f"{url}/desk/items/{MOVED}/queue", headers=headers, timeout=30,
                               data={**form, "action": "pin", "day": "2019-04-05"},
                               allow_redirects=False)  # fmt: skip
        assert pinned.status_code == 303, html.unescape(pinned.text)[:2000]
        deadline = time.monotonic() + 90
        while dispatch_states(database)["done"] < 1 and time.monotonic() < deadline:
            time.sleep(0.2)
        service.send_signal(signal.SIGTERM)
        service.communicate(timeout=40)
    finally:
        if service.poll() is None:
            service.kill()
    subjects = {str(r.message["Subject"]) for r in smtp_server.received}
    assert len(smtp_server.received) == 3
    assert subjects == {f"{next_title} – 2. Clusterwoche Deutschland"}
