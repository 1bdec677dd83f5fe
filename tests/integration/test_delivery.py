"""Every email exactly once: the pipeline against a real SMTP server and a real ledger.

Each test runs on SQLite and on PostgreSQL (see `tests/conftest.py`). The SMTP
server is aiosmtpd on a free loopback port (`tests/support/smtpd.py`).
"""

from __future__ import annotations

import datetime as dt
import re
from collections import Counter
from pathlib import Path

import pytest
import sqlalchemy as sa

from dispatcher.campaign.loading import load_campaign
from dispatcher.clock import clock_from
from dispatcher.delivery import pipeline
from dispatcher.delivery.context import build_context
from dispatcher.ledger import subscribers as subscriber_store
from dispatcher.ledger.tables import SubscriberState, deliveries, dispatches
from dispatcher.mail import tokens
from dispatcher.settings import Settings
from tests.support.database import Database
from tests.support.delivery import ROOT, SECRET, SEND_DAYS, email_time, settings_for
from tests.support.ledger import add_subscribers, delivery_states, tick_at
from tests.support.smtpd import SmtpServer


def test_a_week_to_200_subscribers_arrives_complete(
    database: Database, smtp_server: SmtpServer
) -> None:
    addresses = add_subscribers(database, 200, named=True)
    # Ticking only at the send times jumps from Friday to Monday: no clock jump to refuse.
    settings = settings_for(database, smtp_server, clock_jump_hours=24 * 4)
    for day in SEND_DAYS:
        report = tick_at(settings, database, email_time(day))
        assert list(report.finished.values()) == ["done"]

    received = smtp_server.received
    assert len(received) == 8 * 200
    per_day = Counter((r.rcpt_tos[0], r.message["Date"][:16]) for r in received)
    assert set(per_day.values()) == {1}  # one message per subscriber per day
    assert {r.rcpt_tos[0] for r in received} == set(addresses)
    assert len({r.message["Message-ID"] for r in received}) == 8 * 200

    by_subject = Counter(str(r.message["Subject"]) for r in received)
    assert len(by_subject) == 8 and set(by_subject.values()) == {200}
    first = next(r for r in received if r.rcpt_tos == ["leser00007@example.org"])
    message = first.message
    assert message.get_content_type() == "multipart/alternative"
    assert message["From"] == "Clusterplattform <newsletter@news.example.org>"
    assert message["To"] == "Leserin 7 <leser00007@example.org>"
    assert str(message["Subject"]).startswith("Vorhang auf: Nordwind Maritim")
    assert re.fullmatch(r"Tue, 02 Apr 2019 08:00:\d\d \+0200", message["Date"])
    assert re.fullmatch(
        r"<clusterwoche-2019\.20190402\.email\.\d+@news\.example\.org>", message["Message-ID"]
    )
    assert message["List-Id"] == "2. Clusterwoche Deutschland <clusterwoche-2019.news.example.org>"
    assert message["List-Unsubscribe-Post"] == "List-Unsubscribe=One-Click"
    https, mailto = (part.strip(" <>") for part in message["List-Unsubscribe"].split(","))
    assert https.startswith("https://news.example.org/u/")
    assert mailto.startswith("mailto:unsubscribe@news.example.org?subject=unsubscribe%20")
    token = https.rpartition("/")[2]
    subject = tokens.verify(token, purpose="unsubscribe", key=SECRET)
    assert subject is not None and subject.campaign_id == "clusterwoche-2019"
    # 7-bit safe on the wire: non-ASCII only in encoded words and quoted-printable.
    assert max(first.data) < 128
    assert b"Content-Transfer-Encoding: quoted-printable" in first.data
    text = message.get_body(("plain",)).get_content()  # type: ignore[union-attr]
    html = message.get_body(("html",)).get_content()  # type: ignore[union-attr]
    assert "Guten Tag Leserin 7," in text and "Guten Tag Leserin 7," in html
    assert https in text and https in html
    assert "Dienstag, 2. April 2019" in text
    last = next(
        r
        for r in received
        if r.rcpt_tos == ["leser00007@example.org"] and "11 Apr" in r.message["Date"]
    )
    last_text = last.message.get_body(("plain",)).get_content()  # type: ignore[union-attr]
    assert "Vorhang auf: Nordwind Maritim" in last_text  # "already published" links
    assert delivery_states(database) == {"sent": 1600}


def test_tick_twice_sends_nothing_twice(database: Database, smtp_server: SmtpServer) -> None:
    add_subscribers(database, 30)
    settings = settings_for(database, smtp_server)
    tick_at(settings, database, email_time(SEND_DAYS[0]))
    second = tick_at(settings, database, email_time(SEND_DAYS[0]) + dt.timedelta(minutes=1))
    assert second.created == [] and second.finished == {}
    assert len(smtp_server.received) == 30


def test_451_then_250_ends_sent_after_retry(database: Database, smtp_server: SmtpServer) -> None:
    add_subscribers(database, 3)
    smtp_server.script("leser00001@example.org", "451 4.7.1 Greylisted, try again later")
    settings = settings_for(database, smtp_server)
    at = email_time(SEND_DAYS[0])
    first = tick_at(settings, database, at)
    assert first.finished == {}  # still running: one delivery deferred
    assert delivery_states(database) == {"sent": 2, "deferred": 1}
    with database.engine.connect() as connection:
        retry_at, error = connection.execute(
            sa.select(deliveries.c.next_attempt_at, deliveries.c.last_error).where(
                deliveries.c.state == "deferred"
            )
        ).one()
    assert "451" in error
    assert dt.timedelta(seconds=55) < retry_at - at < dt.timedelta(minutes=2)
    assert tick_at(settings, database, at + dt.timedelta(seconds=20)).finished == {}
    later = tick_at(settings, database, retry_at + dt.timedelta(seconds=1))
    assert list(later.finished.values()) == ["done"]
    assert delivery_states(database) == {"sent": 3}
    assert [r.rcpt_tos[0] for r in smtp_server.received].count("leser00001@example.org") == 1


def test_550_fails_and_marks_the_subscriber_bounced(
    database: Database, smtp_server: SmtpServer
) -> None:
    add_subscribers(database, 3)
    smtp_server.script("leser00002@example.org", "550 5.1.1 <leser00002@example.org>: user unknown")
    settings = settings_for(database, smtp_server)
    report = tick_at(settings, database, email_time(SEND_DAYS[0]))
    assert list(report.finished.values()) == ["partial"] and report.failed_deliveries == 1
    with database.engine.connect() as connection:
        bounced = subscriber_store.get(connection, "leser00002@example.org")
    assert bounced is not None and bounced.state is SubscriberState.BOUNCED
    tick_at(settings, database, email_time(SEND_DAYS[1]))
    day_two = [r for r in smtp_server.received if "03 Apr" in r.message["Date"]]
    assert sorted(r.rcpt_tos[0] for r in day_two) == [
        "leser00000@example.org",
        "leser00001@example.org",
    ]


def test_dropped_connection_is_reopened_and_nothing_is_lost(
    database: Database, smtp_server: SmtpServer
) -> None:
    addresses = add_subscribers(database, 40)
    smtp_server.drop_after(10)  # at the end of DATA of message 11: it may have arrived
    settings = settings_for(database, smtp_server, smtp_connections=1)
    report = tick_at(settings, database, email_time(SEND_DAYS[0]))
    assert report.finished == {}  # one delivery waits for its single resend
    assert delivery_states(database) == {"sent": 39, "deferred": 1}
    assert smtp_server.connections >= 2  # the rest went on over a new connection
    report = tick_at(settings, database, email_time(SEND_DAYS[0]) + dt.timedelta(minutes=2))
    assert list(report.finished.values()) == ["done"]
    assert sorted(r.rcpt_tos[0] for r in smtp_server.received) == sorted(addresses)
    assert delivery_states(database) == {"sent": 40}


def test_unsubscribe_between_two_days_is_honoured(
    database: Database, smtp_server: SmtpServer
) -> None:
    add_subscribers(database, 5)
    settings = settings_for(database, smtp_server)
    tick_at(settings, database, email_time(SEND_DAYS[0]))
    with database.engine.begin() as connection:
        assert subscriber_store.remove(
            connection, "leser00003@example.org", now=dt.datetime(2019, 4, 2, 12, tzinfo=dt.UTC)
        )
    tick_at(settings, database, email_time(SEND_DAYS[1]))
    got = Counter(r.rcpt_tos[0] for r in smtp_server.received)
    assert got["leser00003@example.org"] == 1
    assert got["leser00004@example.org"] == 2


def test_unsubscribe_after_fan_out_is_skipped(database: Database, smtp_server: SmtpServer) -> None:
    """Rows already fanned out for someone who leaves before the claim end as `skipped`."""
    add_subscribers(database, 5)
    settings = settings_for(database, smtp_server)
    campaign = load_campaign(settings.campaign_file)
    context = build_context(
        settings,
        campaign,
        engine=database.engine,
        clock=clock_from(email_time(SEND_DAYS[0])),
    )
    report = pipeline.TickReport()
    pipeline.make_due_dispatches(context, report)
    [dispatch] = report.created
    pipeline.fan_out(context, dispatch)
    with database.engine.begin() as connection:
        subscriber_store.remove(connection, "leser00000@example.org", now=context.clock())
    pipeline.tick(context)
    context.email_channel.close()
    assert delivery_states(database) == {"sent": 4, "skipped": 1}
    assert "leser00000@example.org" not in {r.rcpt_tos[0] for r in smtp_server.received}


def test_a_send_missed_beyond_catch_up_is_marked_missed(
    database: Database, smtp_server: SmtpServer
) -> None:
    add_subscribers(database, 2)
    settings = settings_for(database, smtp_server)
    # Thursday 4 April 13:00 Berlin: 2 and 3 April are beyond 6 h catch-up, 4 April is not.
    report = tick_at(settings, database, dt.datetime(2019, 4, 4, 11, 0, tzinfo=dt.UTC))
    assert sorted(str(d.day) for d in report.missed) == ["2019-04-02", "2019-04-03"]
    assert [str(d.day) for d in report.created] == ["2019-04-04"]
    with database.engine.connect() as connection:
        states = dict(connection.execute(sa.select(dispatches.c.day, dispatches.c.state)).all())
    assert states == {
        dt.date(2019, 4, 2): "missed",
        dt.date(2019, 4, 3): "missed",
        dt.date(2019, 4, 4): "done",
    }
    assert len(smtp_server.received) == 2


@pytest.mark.parametrize("backend", ["sqlite"])
def test_outbox_without_smtp(backend: str, sqlite_database: Database, tmp_path: Path) -> None:
    add_subscribers(sqlite_database, 3)
    settings = Settings(
        _env_file=None,  # type: ignore[call-arg]
        database_url=sqlite_database.url,
        campaign_file=ROOT / "config" / "campaign.yaml",
        templates_dir=ROOT / "templates",
        outbox_dir=tmp_path / "outbox",
    )
    tick_at(settings, sqlite_database, email_time(SEND_DAYS[0]))
    files = sorted((tmp_path / "outbox").rglob("*.eml"))
    assert len(files) == 3
    assert b"List-Unsubscribe-Post: List-Unsubscribe=One-Click" in files[0].read_bytes()


def test_smtp_server_down_keeps_everything_queued(database: Database) -> None:
    add_subscribers(database, 12)
    with SmtpServer() as gone:
        pass  # its port is closed again: nothing listens there
    down = settings_for(database, gone, smtp_url=gone.url + "?timeout=2")
    report = tick_at(down, database, email_time(SEND_DAYS[0]))
    assert report.finished == {} and report.failed_deliveries == 0
    assert report.channel_errors and "cannot connect" in report.channel_errors[0].message
    assert delivery_states(database) == {"pending": 12}  # nothing lost, no attempt used up
    with SmtpServer() as back:
        up = settings_for(database, back)
        later = tick_at(up, database, email_time(SEND_DAYS[0]) + dt.timedelta(minutes=5))
        assert list(later.finished.values()) == ["done"]
        assert len(back.received) == 12
    assert delivery_states(database) == {"sent": 12}


def test_a_relay_that_answers_the_final_dot_too_late_gets_at_most_two_copies(
    database: Database, smtp_server: SmtpServer
) -> None:
    """RFC 5321 §4.5.3.2.6: the relay stores each message, then answers after the client
    gave up. The outcome is open: one resend, then `unknown` — never `failed`, never more
    copies, and only `retry --force` sends again."""
    addresses = add_subscribers(database, 3)
    smtp_server.reply_delay = 1.5
    settings = settings_for(database, smtp_server, smtp_url=f"{smtp_server.url}?data_timeout=0.3")
    day = SEND_DAYS[0]
    tick_at(settings, database, email_time(day))
    assert delivery_states(database) == Counter(deferred=3)
    report = tick_at(settings, database, email_time(day) + dt.timedelta(minutes=2))
    assert delivery_states(database) == Counter(unknown=3)
    assert list(report.finished.values()) == ["partial"]  # not "failed": it may have arrived
    for minutes in (10, 40, 120):  # later ticks leave it alone
        tick_at(settings, database, email_time(day) + dt.timedelta(minutes=minutes))
    received = Counter(r.rcpt_tos[0] for r in smtp_server.received)
    assert received == Counter({address: 2 for address in addresses})
    with database.engine.connect() as connection:
        errors = connection.execute(sa.select(deliveries.c.last_error)).scalars().all()
    assert all("may have accepted" in str(error) for error in errors)


def test_a_permanent_refusal_after_an_uncertain_attempt_is_unknown_not_failed(
    database: Database, smtp_server: SmtpServer
) -> None:
    (address,) = add_subscribers(database, 1)
    settings = settings_for(database, smtp_server, smtp_url=f"{smtp_server.url}?data_timeout=0.3")
    smtp_server.reply_delay = 1.5
    day = SEND_DAYS[0]
    tick_at(settings, database, email_time(day))
    smtp_server.reply_delay = 0
    smtp_server.script(address, "550 5.7.1 Message rejected as duplicate", at="data")
    tick_at(settings, database, email_time(day) + dt.timedelta(minutes=2))
    assert delivery_states(database) == Counter(unknown=1)
    with database.engine.connect() as connection:
        state = connection.execute(sa.select(dispatches.c.state)).scalar_one()
    assert state == "partial"
