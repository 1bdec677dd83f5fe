"""A relay that refuses whole sessions: no recipient pays for the channel's outage.

Postfix with its milter down answers `451 4.7.1` at EHLO and MAIL FROM; with a full
queue disk `452 4.3.1`. Both are the relay's state, not a verdict on a recipient: the
deliveries stay `pending` with no attempt used, the channel backs off (so the relay is
not hammered once a minute), and once the relay is back every message goes out once.
Each test runs on SQLite and on PostgreSQL, with simulated ticks (`tick --at`).
"""

from __future__ import annotations

import datetime as dt
from collections import Counter
from dataclasses import dataclass
from typing import Any

import sqlalchemy as sa

from dispatcher.campaign.loading import load_campaign
from dispatcher.cli.ops import format_status, status_rows
from dispatcher.clock import clock_from
from dispatcher.delivery.metrics import LedgerCollector
from dispatcher.ledger import outages
from dispatcher.ledger.tables import deliveries
from dispatcher.settings import Settings
from tests.support.database import Database
from tests.support.delivery import SEND_DAYS, email_time, settings_for
from tests.support.ledger import add_subscribers, delivery_states, tick_at
from tests.support.smtpd import SmtpServer

MILTER_DOWN = "451 4.7.1 Service unavailable - try again later"
DISK_FULL = "452 4.3.1 Insufficient system storage"


def attempts_used(database: Database) -> int:
    with database.engine.connect() as connection:
        return int(connection.execute(sa.select(sa.func.sum(deliveries.c.attempts))).scalar_one())


def outage_of(database: Database) -> outages.Outage | None:
    with database.engine.connect() as connection:
        return outages.outages(connection).get("email")


@dataclass
class OpsView:
    status: dict[str, Any]  #: `dispatcher status --json`
    metrics: dict[tuple[str, str], float]  #: (sample name, channel) -> value, from /metrics


def ops_view(settings: Settings, database: Database, at: dt.datetime) -> OpsView:
    campaign = load_campaign(settings.campaign_file)
    collector = LedgerCollector(database.engine, lambda: campaign, clock_from(at), cache_seconds=0)
    metrics = {
        (sample.name, sample.labels.get("channel", "")): sample.value
        for family in collector.collect()
        for sample in family.samples
    }
    return OpsView(status_rows(settings, campaign, at), metrics)


def test_a_60_minute_outage_uses_no_attempt_and_delivers_everything_once_after(
    database: Database, smtp_server: SmtpServer
) -> None:
    readers = add_subscribers(database, 40)
    settings = settings_for(database, smtp_server)
    start = email_time(SEND_DAYS[0])
    smtp_server.refusal = MILTER_DOWN

    for minute in range(61):  # `run` ticks about once a minute; so do we
        report = tick_at(settings, database, start + dt.timedelta(minutes=minute))
        assert report.failed_deliveries == 0 and report.finished == {}
        assert delivery_states(database) == {"pending": 40}, f"minute {minute}"
        assert report.channel_errors, f"minute {minute}: the outage must be reported"
        assert "451 4.7.1" in report.channel_errors[0].message
        assert "next try at" in report.channel_errors[0].message
    assert attempts_used(database) == 0
    outage = outage_of(database)
    assert outage is not None and start <= outage.since < start + dt.timedelta(seconds=5)
    # Backed off: tries at 0, 0.5, 1.5, 3.5, 7.5, 15.5 min, then every 10 min — not 61 times.
    assert outage.failures <= 12
    assert smtp_server.connections <= 4 * outage.failures  # each of 4 connections, per try
    assert smtp_server.received == []
    shown = ops_view(settings, database, start + dt.timedelta(minutes=60))
    assert shown.status["outages"]["email"]["refused_tries"] == outage.failures
    assert "unavailable: email since" in format_status(shown.status)
    assert shown.metrics[("dispatcher_channel_unavailable", "email")] == 1
    retry_at = shown.metrics[("dispatcher_channel_next_try_timestamp_seconds", "email")]
    assert retry_at == outage.retry_at.timestamp()

    smtp_server.refusal = None  # the milter is back
    back = start + dt.timedelta(minutes=61)
    for minute in range(11):  # the longest wait is 10 minutes
        tick_at(settings, database, back + dt.timedelta(minutes=minute))
    assert delivery_states(database) == {"sent": 40}
    assert Counter(r.rcpt_tos[0] for r in smtp_server.received) == Counter(readers)
    assert outage_of(database) is None  # the first send that got through ended it
    assert attempts_used(database) == 40
    shown = ops_view(settings, database, back + dt.timedelta(minutes=11))
    assert shown.status["outages"] == {}
    assert shown.metrics[("dispatcher_channel_unavailable", "email")] == 0


def test_a_full_relay_disk_mid_batch_stops_the_channel_without_a_verdict(
    database: Database, smtp_server: SmtpServer
) -> None:
    readers = add_subscribers(database, 30)
    settings = settings_for(database, smtp_server, smtp_connections=1)
    # The queue disk fills after 12 accepted messages, and frees up again later.
    smtp_server.script(
        "newsletter@news.example.org", *["250 2.1.0 Ok"] * 12, DISK_FULL, DISK_FULL, at="mail"
    )
    at = email_time(SEND_DAYS[0])
    first = tick_at(settings, database, at)
    assert first.finished == {} and first.failed_deliveries == 0
    assert delivery_states(database) == {"sent": 12, "pending": 18}
    assert attempts_used(database) == 12  # the 18 not sent kept every attempt
    assert "452 4.3.1" in first.channel_errors[0].message

    quiet = tick_at(settings, database, at + dt.timedelta(seconds=20))  # inside the backoff
    assert quiet.channel_errors and "unavailable since" in quiet.channel_errors[0].message
    assert len(smtp_server.received) == 12  # not asked again before the retry time

    for seconds in (35, 100, 200):  # the second 452 backs off further, then the disk is free
        tick_at(settings, database, at + dt.timedelta(seconds=seconds))
    assert delivery_states(database) == {"sent": 30}
    assert Counter(r.rcpt_tos[0] for r in smtp_server.received) == Counter(readers)
    assert attempts_used(database) == 30
