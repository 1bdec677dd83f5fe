"""The stop switch through the real pipeline and a real SMTP server (SQLite and PostgreSQL).

The cancel or pause lands mid-send, between two claim batches (the pipeline's progress
callback fires there), as an operator's command would on another connection. Ticks run on
the sample campaign's clock: 08:00 Berlin send time, six hours of catch_up.
"""

from __future__ import annotations

import datetime as dt
from collections import Counter
from collections.abc import Callable

import requests
import sqlalchemy as sa
from prometheus_client import generate_latest
from prometheus_client.parser import text_string_to_metric_families

from dispatcher.campaign.loading import load_campaign
from dispatcher.campaign.model import Channel
from dispatcher.channels.base import EmailChannel
from dispatcher.cli.ops import format_status, status_rows
from dispatcher.clock import clock_from
from dispatcher.delivery import controls, metrics, pipeline
from dispatcher.delivery.context import build_context
from dispatcher.ledger import store
from dispatcher.settings import Settings
from dispatcher.web.state import WebState
from tests.support.database import Database
from tests.support.delivery import email_time, settings_for
from tests.support.ledger import add_subscribers, delivery_states, dispatch_states, tick_at
from tests.support.smtpd import SmtpServer
from tests.support.webapp import running_app

TUESDAY, WEDNESDAY = dt.date(2019, 4, 2), dt.date(2019, 4, 3)
BATCH = 50


def tick(
    settings: Settings,
    database: Database,
    at: dt.datetime,
    after_batch: Callable[[int], None] | None = None,
) -> pipeline.TickReport:
    """One tick at `at`, claiming BATCH deliveries at a time; `after_batch(n)` runs after
    the n-th batch, on the sending lane's thread (as another process's command would)."""
    context = build_context(
        settings,
        load_campaign(settings.campaign_file),
        engine=database.engine,
        clock=clock_from(at),
    )
    context.config.claim_batch = BATCH
    context.config.fanout_batch = 120  # the cancel lands before the fan-out is complete
    batches = [0]

    def progress(_done: int, _total: int) -> None:
        batches[0] += 1
        if after_batch is not None:
            after_batch(batches[0])

    context.progress = progress
    try:
        return pipeline.tick(context)
    finally:
        context.email_channel.close()


def received(smtp: SmtpServer) -> Counter[str]:
    return Counter(r.rcpt_tos[0] for r in smtp.received)


def the_dispatch(database: Database) -> store.DispatchRow:
    with database.engine.connect() as connection:
        [row] = store.list_dispatches(connection, "clusterwoche-2019")
    return row


def test_a_cancel_mid_send_stops_claims_and_only_resend_sends_the_rest(
    database: Database, smtp_server: SmtpServer
) -> None:
    addresses = set(add_subscribers(database, 300))
    settings = settings_for(database, smtp_server)
    cancelled: list[controls.CancelResult] = []

    def cancel_after_the_second(batch: int) -> None:
        if batch == 2:
            dispatch_id = the_dispatch(database).id
            cancelled.append(
                controls.cancel_dispatch(
                    database.engine, dispatch_id, by="cli:erika", reason="falscher Link",
                    now=dt.datetime.now(dt.UTC),
                )
            )  # fmt: skip

    report = tick(settings, database, email_time(TUESDAY), cancel_after_the_second)
    # Nothing claimed after the cancel returned: exactly the two batches before it went out.
    assert len(smtp_server.received) == 2 * BATCH
    assert cancelled[0].sent == 2 * BATCH and cancelled[0].cancelled == 300 - 2 * BATCH
    assert delivery_states(database) == {"sent": 100, "cancelled": 200}
    assert report.finished == {} and dispatch_states(database) == {"cancelled": 1}

    # Neither a later tick nor `retry` (even --force) sends any of it again.
    tick(settings, database, email_time(TUESDAY) + dt.timedelta(hours=1))
    with database.engine.begin() as connection:
        store.requeue(
            connection, campaign_id="clusterwoche-2019", dispatch_id=None, force=True,
            now=dt.datetime.now(dt.UTC),
        )  # fmt: skip
    tick(settings, database, email_time(TUESDAY) + dt.timedelta(hours=2))
    assert len(smtp_server.received) == 100 and dispatch_states(database) == {"cancelled": 1}

    status = status_rows(settings, load_campaign(settings.campaign_file), email_time(TUESDAY))
    [row] = status["dispatches"]
    assert row["state"] == "cancelled" and row["counts"] == {"sent": 100, "cancelled": 200}
    assert (row["cancelled"]["by"], row["cancelled"]["reason"]) == ("cli:erika", "falscher Link")
    text = format_status(status)
    assert "by cli:erika: falscher Link" in text
    assert f"200 not sent; `dispatcher resend {row['id']} --only-unsent` sends them" in text

    # On purpose: exactly the 200 that were not sent, each once.
    queued = controls.resend_unsent(
        database.engine, row["id"], by="cli:max", now=dt.datetime.now(dt.UTC)
    )
    assert queued == 200
    report = tick(settings, database, email_time(TUESDAY) + dt.timedelta(hours=3))
    assert set(received(smtp_server)) == addresses and set(received(smtp_server).values()) == {1}
    assert report.finished == {row["id"]: "done"} and delivery_states(database) == {"sent": 300}


def test_a_pause_mid_send_keeps_the_place_and_resume_sends_everyone_once(
    database: Database, smtp_server: SmtpServer
) -> None:
    addresses = set(add_subscribers(database, 300))
    settings = settings_for(database, smtp_server)

    def pause_after_the_second(batch: int) -> None:
        if batch == 2:
            controls.pause(database.engine, Channel.EMAIL, by="cli", now=dt.datetime.now(dt.UTC))

    report = tick(settings, database, email_time(TUESDAY), pause_after_the_second)
    assert len(smtp_server.received) == 2 * BATCH and "email" in report.paused
    held = delivery_states(database)
    assert held == {"sent": 100, "pending": 200}  # fanned out before the pause, as it was
    # Paused: another tick leaves everything as it is, the dispatch stays running.
    tick(settings, database, email_time(TUESDAY) + dt.timedelta(minutes=10))
    assert delivery_states(database) == held and dispatch_states(database) == {"running": 1}

    controls.resume(database.engine, Channel.EMAIL, by="cli", now=dt.datetime.now(dt.UTC))
    report = tick(settings, database, email_time(TUESDAY) + dt.timedelta(minutes=20))
    assert set(received(smtp_server)) == addresses and set(received(smtp_server).values()) == {1}
    assert list(report.finished.values()) == ["done"]


def test_a_day_due_during_a_pause_goes_out_if_resumed_within_catch_up_else_it_is_missed(
    database: Database, smtp_server: SmtpServer
) -> None:
    addresses = set(add_subscribers(database, 20))
    settings = settings_for(database, smtp_server)
    controls.pause(database.engine, None, by="cli", now=dt.datetime.now(dt.UTC))
    report = tick(settings, database, email_time(TUESDAY))
    assert report.paused["email"].channel == "all" and dispatch_states(database) == {}
    # Resumed 5 h later, within the 6 h of catch_up: Tuesday's email goes out then.
    controls.resume(database.engine, None, by="cli", now=dt.datetime.now(dt.UTC))
    tick(settings, database, email_time(TUESDAY) + dt.timedelta(hours=5))
    assert set(received(smtp_server)) == addresses and dispatch_states(database) == {"done": 1}

    # Wednesday's pause outlasts its catch_up: the day is missed, as for a stopped service.
    controls.pause(database.engine, Channel.EMAIL, by="cli", now=dt.datetime.now(dt.UTC))
    tick(settings, database, email_time(WEDNESDAY))
    tick(settings, database, email_time(WEDNESDAY) + dt.timedelta(hours=5))
    assert dispatch_states(database) == {"done": 1}  # held, not missed, while within catch_up
    controls.resume(database.engine, Channel.EMAIL, by="cli", now=dt.datetime.now(dt.UTC))
    tick(settings, database, email_time(WEDNESDAY) + dt.timedelta(hours=7))
    assert dispatch_states(database) == {"done": 1, "missed": 1}
    assert len(smtp_server.received) == 20


def _no_email() -> EmailChannel:
    raise AssertionError("the ops endpoints send no email")


def test_readyz_metrics_and_status_show_the_pauses_and_the_cancelled_counts(
    database: Database, smtp_server: SmtpServer
) -> None:
    add_subscribers(database, 10)
    settings = settings_for(database, smtp_server)
    at = email_time(TUESDAY)
    tick_at(settings, database, at)  # 10 sent
    since = dt.datetime(2019, 4, 2, 6, 30, tzinfo=dt.UTC)
    controls.pause(database.engine, Channel.EMAIL, by="cli:erika", now=since)
    campaign = load_campaign(settings.campaign_file)
    state = WebState(
        settings=settings, engine=database.engine, campaign=lambda: campaign,
        email_channel=_no_email, clock=lambda: at, scheduler_alive=lambda: True,
    )  # fmt: skip
    with running_app(state) as base:
        ready = requests.get(f"{base}/readyz", timeout=10)
    assert ready.status_code == 200  # a pause is intended: the process is ready
    assert ready.json()["paused"] == {"email": {"since": since.isoformat(), "by": "cli:erika"}}

    collector = metrics.LedgerCollector(database.engine, lambda: campaign, lambda: at,
                                        cache_seconds=0)  # fmt: skip
    samples = {
        (s.name, tuple(sorted(s.labels.items()))): s.value
        for family in text_string_to_metric_families(
            generate_latest(metrics.build_registry(collector)).decode()
        )
        for s in family.samples
    }
    assert samples[("dispatcher_channel_paused", (("channel", "email"),))] == 1
    assert samples[("dispatcher_channel_paused", (("channel", "all"),))] == 0
    cancelled = (("channel", "email"), ("state", "cancelled"))
    assert samples[("dispatcher_deliveries", cancelled)] == 0  # a series from the start
    assert samples[("dispatcher_dispatches", cancelled)] == 0

    status = status_rows(settings, campaign, at)
    assert status["paused"] == {"email": {"since": since.isoformat(), "by": "cli:erika"}}
    assert "paused: email since 2019-04-02 06:30:00 UTC by cli:erika" in format_status(status)
    with database.engine.connect() as connection:
        assert connection.execute(sa.text("SELECT count(*) FROM channel_pauses")).scalar() == 1
