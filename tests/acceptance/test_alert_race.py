"""Three `dispatcher run` processes meet the same failed dispatch at the same moment: ops get
one alert, not three (docs/operations.md, "Alerts").

Every process runs the alert job at the same wall-clock instants (`alerts.ALIGNED_START`), so
they evaluate the ledger at once and race to insert the alert's row; the unique key lets one
win. PostgreSQL only: several processes share a PostgreSQL ledger, SQLite is for one.
"""

from __future__ import annotations

import datetime as dt
import logging
import math
import os
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from pydantic import SecretStr

from dispatcher.campaign.loading import load_campaign
from dispatcher.campaign.model import item_to_json
from dispatcher.clock import SimulatedClock
from dispatcher.delivery import alerts
from dispatcher.ledger import engine as ledger_engine
from dispatcher.ledger import store
from dispatcher.ledger.tables import DispatchState
from dispatcher.settings import Settings
from tests.support.campaigns import SAMPLE, campaign_copy
from tests.support.database import Database
from tests.support.fleet import Fleet, wait_for
from tests.support.smtpd import SmtpServer

OPS = "ops@example.org"
AT = dt.datetime(2019, 4, 2, 7, 0, tzinfo=dt.timezone(dt.timedelta(hours=2)))  # nothing due


def failed_dispatch(database: Database, day: dt.date, *, at: dt.datetime) -> int:
    """A failed dispatch of another campaign sharing the ledger; its id."""
    content = item_to_json(load_campaign(SAMPLE).items[0])
    with database.engine.begin() as connection:
        row = store.ensure_dispatch(
            connection,
            campaign_id="nebenkampagne",
            day=day,
            channel="email",
            item_id="nordwind-maritim",
            content_hash="0" * 64,
            content=content,
            send_at=at,
            state=DispatchState.RUNNING,
            now=at,
        )
        store.mark_dispatch(connection, row.id, DispatchState.FAILED, now=at, error="test")
    return row.id


def alert_mails(smtp: SmtpServer) -> list[str]:
    return [str(r.message["Subject"]) for r in smtp.received if r.rcpt_tos == [OPS]]


@pytest.fixture
def postgres(database: Database) -> Database:
    if database.backend != "postgresql":
        pytest.skip("several processes share a PostgreSQL ledger; SQLite is for one process")
    return database


@pytest.fixture
def fleet(postgres: Database, smtp_server: SmtpServer, tmp_path: Path) -> Iterator[Fleet]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("DISPATCHER_")}
    env.update(
        DISPATCHER_DATABASE_URL=postgres.url,
        DISPATCHER_SMTP_URL=smtp_server.url,
        DISPATCHER_CAMPAIGN_FILE=str(campaign_copy(tmp_path)),
        DISPATCHER_TEMPLATES_DIR=str(Path(__file__).parents[2] / "templates"),
        DISPATCHER_OUTBOX_DIR=str(tmp_path / "outbox"),
        DISPATCHER_LOG_FORMAT="json",
        DISPATCHER_HTTP_PORT="0",
        DISPATCHER_POLL_SECONDS="1",  # the alert job still runs every 30 s at most
        DISPATCHER_ALERT_EMAILS=OPS,
    )
    running = Fleet(env, tmp_path)
    yield running
    running.stop()


def test_three_processes_meeting_one_failed_dispatch_send_one_alert(
    postgres: Database, smtp_server: SmtpServer, fleet: Fleet
) -> None:
    for _ in range(3):
        fleet.start(AT.isoformat())
    wait_for(
        lambda: all(
            any(e.get("event") == "service_started" for e in fleet.events(p))
            for p in fleet.processes
        ),
        60,
        "three running processes",
    )
    # The failure appears between two of the instants all three run the job at, so that all
    # three meet it at the same next one; then a few seconds for their runs to end.
    period = alerts.interval(1)
    now = time.time() - alerts.ALIGNED_START.timestamp()
    tick = math.ceil(now / period) * period
    if tick - now < 3:  # too close to be sure the row is in before it
        tick += period
    failed_dispatch(postgres, dt.date(2019, 4, 1), at=AT)
    time.sleep(tick - (time.time() - alerts.ALIGNED_START.timestamp()) + 5)
    assert all(p.poll() is None for p in fleet.processes)

    assert alert_mails(smtp_server) == [
        "[dispatcher] dispatch 1 failed: 2019-04-01 email nordwind-maritim"
    ]
    sent = [
        p for p in fleet.processes if any(e.get("event") == "alert_sent" for e in fleet.events(p))
    ]
    assert len(sent) == 1
    lost = sum(
        1 for p in fleet.processes if any(e.get("event") == "alert_taken" for e in fleet.events(p))
    )
    print(f"alert race: one alert mail from 3 processes; {lost} lost at the INSERT itself")


def test_three_monitors_released_at_once_send_each_alert_once(
    postgres: Database, smtp_server: SmtpServer, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """The same race without process start-up in between: three monitors with engines of
    their own, released by a barrier into the same run, ten times over."""
    settings = Settings(
        _env_file=None,  # type: ignore[call-arg]
        database_url=postgres.url,
        smtp_url=SecretStr(smtp_server.url),
        campaign_file=campaign_copy(tmp_path),
        outbox_dir=tmp_path / "outbox",
        alert_emails=OPS,
    )
    engines = [ledger_engine.create_engine(postgres.url) for _ in range(3)]
    clock = SimulatedClock(AT + dt.timedelta(minutes=1))
    monitors = []
    for engine in engines:
        monitor = alerts.monitor_for(settings, engine, clock=clock, campaign_id="clusterwoche-2019")
        assert monitor is not None
        monitors.append(monitor)
    caplog.set_level(logging.INFO, logger="dispatcher")
    rounds = 10
    start, done = threading.Barrier(4), threading.Barrier(4)  # three monitors and this test

    def race(monitor: alerts.Monitor) -> None:
        for _ in range(rounds):
            start.wait(timeout=60)
            monitor.run_once()
            done.wait(timeout=60)

    threads = [threading.Thread(target=race, args=(m,), daemon=True) for m in monitors]
    try:
        for thread in threads:
            thread.start()
        for n in range(rounds):
            failed_dispatch(postgres, dt.date(2019, 3, 1) + dt.timedelta(days=n), at=AT)
            start.wait(timeout=60)  # all three look at the new failure at once …
            done.wait(timeout=120)  # … and have sent what they won
            assert len(alert_mails(smtp_server)) == n + 1, f"round {n}"
        for thread in threads:
            thread.join(timeout=60)
    finally:
        if any(thread.is_alive() for thread in threads):  # a round failed: free the others
            start.abort()
            done.abort()
        for engine in engines:
            engine.dispose()
    taken = sum(1 for r in caplog.records if getattr(r, "event", "") == "alert_taken")
    print(f"alert race: {rounds} alerts from 3 monitors; {taken} times lost at the INSERT")
    subjects = alert_mails(smtp_server)
    assert subjects == [
        f"[dispatcher] dispatch {n + 1} failed: 2019-03-{n + 1:02d} email nordwind-maritim"
        for n in range(rounds)
    ]
