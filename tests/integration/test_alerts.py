"""Alerts where people look: each condition reaches ops once — by mail and in their chat —
and "resolved" once when it clears; never a secret, never more than the rate limit, and a
receiver that fails is logged and tried again while everything else goes on.

The pipeline runs on a simulated clock (`tick_at`), the alert job (`Monitor.run_once`) on
the same one; alert mail goes to the test relay (`smtp_server`), chat messages to fake Slack
and generic webhooks. Each test runs on SQLite and on PostgreSQL.
"""

from __future__ import annotations

import datetime as dt
import logging
import threading
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field
from email.message import EmailMessage
from pathlib import Path

import pytest
import sqlalchemy as sa
from pydantic import SecretStr

from dispatcher.campaign.loading import load_campaign
from dispatcher.campaign.model import item_to_json
from dispatcher.campaign.source import CampaignSource, Reload
from dispatcher.clock import SimulatedClock
from dispatcher.delivery import alert_conditions, alert_destinations, alerts, leader
from dispatcher.delivery.service import Service
from dispatcher.ledger import alerts as alert_ledger
from dispatcher.ledger import store
from dispatcher.ledger.tables import DispatchState
from dispatcher.settings import Settings
from tests.support import fake_webhooks
from tests.support.campaigns import SAMPLE, campaign_copy
from tests.support.database import Database
from tests.support.delivery import SECRET, SEND_DAYS, email_time, settings_for
from tests.support.fake_webhooks import FakeWebhooks
from tests.support.httpserver import Response
from tests.support.ledger import add_subscribers, dispatch_states, tick_at
from tests.support.smtpd import SmtpServer

OPS = "ops@example.org"
CAMPAIGN = "clusterwoche-2019"
T0 = email_time(SEND_DAYS[0])  # Tuesday 2 April 2019, 08:00:05 CEST
REFUSED = "554 5.7.1 Message refused by policy"
#: every secret a test configures: none may appear in an alert, however it is encoded
SECRETS = [
    fake_webhooks.SLACK_PATH.rsplit("/", 1)[1],
    fake_webhooks.GENERIC_PATH.rsplit("/", 1)[1],
    fake_webhooks.DISCORD_TOKEN,
    fake_webhooks.TEAMS_SIG,
    fake_webhooks.MATRIX_TOKEN,
    SECRET,
]


@dataclass
class Ops:
    """Where ops look: their mailbox on the relay, and the pager's Slack and generic hooks."""

    smtp: SmtpServer
    pager: FakeWebhooks
    secrets: list[str] = field(default_factory=lambda: list(SECRETS))

    def mails(self) -> list[EmailMessage]:
        return [r.message for r in self.smtp.received if r.rcpt_tos == [OPS]]

    def received(self) -> dict[str, list[str]]:
        """The subjects each destination got, in order (Slack's first line of text)."""
        slack = [
            entry["text"].split("\n", 1)[0].replace("&amp;", "&") for entry in self.pager.slack
        ]
        return {
            "email": [str(m["Subject"]) for m in self.mails()],
            "slack": slack,
            "generic": [entry["title"] for entry in self.pager.generic],
        }

    def everywhere(self, *subjects: str) -> dict[str, list[str]]:
        return {"email": list(subjects), "slack": list(subjects), "generic": list(subjects)}

    def bodies(self) -> list[str]:
        plain = [m.get_body(("plain",)) for m in self.mails()]
        mails = [str(part.get_content()) for part in plain if part is not None]
        return mails + [entry["text"] for entry in self.pager.slack]

    def assert_no_secret(self) -> None:
        raw = [r.data.decode("utf-8", "replace") for r in self.smtp.received if r.rcpt_tos == [OPS]]
        raw += [r.body.decode("utf-8", "replace") for r in self.pager.requests]
        for text in raw + self.bodies():
            for secret in self.secrets:
                assert secret not in text, f"a secret in an alert: {text[:200]!r}"


@pytest.fixture
def ops(smtp_server: SmtpServer) -> Iterator[Ops]:
    with FakeWebhooks() as pager:
        yield Ops(smtp_server, pager)


def alert_settings(database: Database, ops: Ops, **extra: object) -> Settings:
    hooks = f"{ops.pager.slack_url},{ops.pager.generic_url}"
    values: dict[str, object] = {
        "alert_emails": OPS,
        "alert_webhook_urls": SecretStr(hooks),
        "clock_jump_hours": 24 * 7,  # these tests jump days ahead
    }
    values.update(extra)
    return settings_for(database, ops.smtp, **values)


def monitor_for(
    settings: Settings,
    database: Database,
    clock: SimulatedClock,
    campaign_id: str = CAMPAIGN,
    **extra: object,
) -> alerts.Monitor:
    monitor = alerts.monitor_for(
        settings,
        database.engine,
        clock=clock,
        campaign_id=campaign_id,
        **extra,  # type: ignore[arg-type]
    )
    assert monitor is not None
    return monitor


def refuse_everyone(smtp: SmtpServer, addresses: list[str]) -> None:
    for address in addresses:
        smtp.script(address, REFUSED)


def requeue(database: Database, *, force: bool = False, at: dt.datetime) -> None:
    """`dispatcher retry [--force]`: the failed (and unknown) deliveries back to pending."""
    with database.engine.begin() as connection:
        store.requeue(connection, campaign_id=CAMPAIGN, dispatch_id=None, force=force, now=at)


def rows(database: Database) -> list[alert_ledger.AlertRow]:
    with database.engine.connect() as connection:
        query = sa.select(alert_ledger.alerts).order_by(alert_ledger.alerts.c.id)
        return [alert_ledger.AlertRow.from_row(row) for row in connection.execute(query)]


# --- dispatches ---------------------------------------------------------------------------------


def test_a_failed_dispatch_is_alerted_once_and_resolved_once_after_the_retry(
    database: Database, ops: Ops
) -> None:
    readers = add_subscribers(database, 3)
    settings = alert_settings(database, ops)
    refuse_everyone(ops.smtp, readers)
    tick_at(settings, database, T0)
    assert dispatch_states(database) == {"failed": 1}

    clock = SimulatedClock(T0 + dt.timedelta(minutes=1))
    this, other = monitor_for(settings, database, clock), monitor_for(settings, database, clock)
    for monitor in (this, other, this):  # every run, every process: one alert
        monitor.run_once()
    subject = "[dispatcher] dispatch 1 failed: 2019-04-02 email nordwind-maritim"
    assert ops.received() == ops.everywhere(subject)
    [body] = ops.bodies()[:1]
    assert "deliveries: 3 failed" in body
    assert REFUSED in body  # the relay's own words
    assert "dispatcher retry --dispatch 1" in body
    assert "https://www.clusterplattform.de/reportage/2019/nordwind-maritim" in body

    requeue(database, at=T0 + dt.timedelta(minutes=5))
    clock.set(T0 + dt.timedelta(minutes=6))
    this.run_once()  # retried, not settled yet: still open, nothing to say
    assert ops.received() == ops.everywhere(subject)

    tick_at(settings, database, T0 + dt.timedelta(minutes=7))  # the relay takes them now
    assert dispatch_states(database) == {"done": 1}
    clock.set(T0 + dt.timedelta(minutes=8))
    other.run_once()
    this.run_once()
    resolved = f"[dispatcher] resolved: {subject.removeprefix('[dispatcher] ')}"
    assert ops.received() == ops.everywhere(subject, resolved)
    assert "resolved: dispatch 1 is done now" in ops.bodies()[1]
    [row] = rows(database)
    assert row.alerted_at is not None and row.resolved_alerted_at is not None
    ops.assert_no_secret()


def test_partial_and_missed_dispatches_are_alerted(database: Database, ops: Ops) -> None:
    readers = add_subscribers(database, 3)
    settings = alert_settings(database, ops)
    ops.smtp.script(readers[0], REFUSED)
    tick_at(settings, database, T0)  # Tuesday: one of three refused
    # Wednesday's 08:00 email is first looked at 15:00, past its six hours of catch-up.
    tick_at(settings, database, email_time(SEND_DAYS[1]) + dt.timedelta(hours=7))
    assert dispatch_states(database) == {"partial": 1, "missed": 1}

    clock = SimulatedClock(email_time(SEND_DAYS[1]) + dt.timedelta(hours=7, minutes=1))
    monitor_for(settings, database, clock).run_once()
    assert sorted(ops.received()["email"]) == [
        "[dispatcher] dispatch 1 partial: 2019-04-02 email nordwind-maritim",
        "[dispatcher] dispatch 2 missed: 2019-04-03 email saxony-mikroelektronik",
    ]
    assert ops.received()["slack"] == ops.received()["email"]
    ops.assert_no_secret()


def test_a_failure_from_before_the_lookback_is_history_not_news(
    database: Database, ops: Ops
) -> None:
    readers = add_subscribers(database, 2)
    settings = alert_settings(database, ops)
    refuse_everyone(ops.smtp, readers)
    tick_at(settings, database, T0)
    clock = SimulatedClock(T0 + alert_conditions.LOOKBACK + dt.timedelta(hours=1))
    monitor_for(settings, database, clock).run_once()  # a fresh process on an old ledger
    assert ops.received() == ops.everywhere()


# --- social posts -------------------------------------------------------------------------------


def social_settings(
    database: Database, ops: Ops, hooks: FakeWebhooks, tmp_path: Path, url: str
) -> Settings:
    return alert_settings(
        database,
        ops,
        campaign_file=campaign_copy(tmp_path, channels=("webhook",)),
        webhook_urls=SecretStr(url),
    )


def test_an_unknown_post_says_where_to_look_and_what_to_run(
    database: Database, ops: Ops, tmp_path: Path
) -> None:
    with FakeWebhooks() as hooks:
        settings = social_settings(database, ops, hooks, tmp_path, hooks.slack_url)
        # Slack stored the post, then its answer was a 500: posted or not, nobody knows.
        hooks.fail_next(fake_webhooks.SLACK_PATH, Response(500, after_handling=True))
        tick_at(settings, database, T0)
        clock = SimulatedClock(T0 + dt.timedelta(minutes=1))
        monitor = monitor_for(settings, database, clock)
        monitor.run_once()
        monitor.run_once()
        subject = "[dispatcher] post unknown: webhook:slack:T0CW2024/B0CW2024, 2019-04-02 "
        subject += "nordwind-maritim"
        # One alert: the dispatch is `partial` only because of this post, which says it all.
        assert ops.received() == ops.everywhere(subject)
        body = ops.bodies()[0]
        assert "check: the feed of webhook:slack:T0CW2024/B0CW2024" in body
        assert "not there: dispatcher retry --force --dispatch 1" in body
        assert "reportage (the post links to it): https://www.clusterplattform.de/" in body

        # Ops looked: it was not there. `retry --force`, and the next tick posts it.
        requeue(database, force=True, at=T0 + dt.timedelta(minutes=10))
        tick_at(settings, database, T0 + dt.timedelta(minutes=11))
        clock.set(T0 + dt.timedelta(minutes=12))
        monitor.run_once()
        resolved = f"[dispatcher] resolved: {subject.removeprefix('[dispatcher] ')}"
        assert ops.received() == ops.everywhere(subject, resolved)
        assert "resolved: the post is sent now" in ops.bodies()[1]
    ops.assert_no_secret()


def test_a_refused_webhook_token_is_alerted_until_a_post_goes_out_with_the_new_one(
    database: Database, ops: Ops, tmp_path: Path
) -> None:
    with FakeWebhooks() as hooks:
        revoked = hooks.discord_url.replace(fake_webhooks.DISCORD_TOKEN, "revokedDiscordToken-0123")
        ops.secrets.append("revokedDiscordToken-0123")
        settings = social_settings(database, ops, hooks, tmp_path, revoked)
        tick_at(settings, database, T0)
        clock = SimulatedClock(T0 + dt.timedelta(minutes=1))
        monitor = monitor_for(settings, database, clock)
        monitor.run_once()
        target = f"webhook:discord:{fake_webhooks.DISCORD_ID}"
        opened = [
            f"[dispatcher] credential refused: {target}",
            "[dispatcher] dispatch 1 failed: 2019-04-02 webhook nordwind-maritim",
        ]
        assert sorted(ops.received()["email"]) == opened
        assert sorted(ops.received()["slack"]) == opened
        credential = next(b for b in ops.bodies() if "credential refused" in b.splitlines()[0])
        assert "DISPATCHER_WEBHOOK_URLS" in credential  # the setting to renew

        # The same day's post fails again (still the old token): no second alert.
        requeue(database, at=T0 + dt.timedelta(minutes=3))
        tick_at(settings, database, T0 + dt.timedelta(minutes=4))
        clock.set(T0 + dt.timedelta(minutes=5))
        monitor.run_once()
        assert sorted(ops.received()["email"]) == opened

        renewed = social_settings(database, ops, hooks, tmp_path, hooks.discord_url)
        requeue(database, at=T0 + dt.timedelta(minutes=10))
        tick_at(renewed, database, T0 + dt.timedelta(minutes=11))
        clock.set(T0 + dt.timedelta(minutes=12))
        monitor.run_once()
        resolved = [f"[dispatcher] resolved: {s.removeprefix('[dispatcher] ')}" for s in opened]
        assert sorted(ops.received()["email"][2:]) == resolved
        assert sorted(ops.received()["generic"][2:]) == resolved
        assert len(hooks.discord) == 1
    ops.assert_no_secret()


# --- channel outages ----------------------------------------------------------------------------


def test_a_relay_refusing_the_login_is_alerted_at_once_and_only_by_chat_while_it_does(
    database: Database, ops: Ops, tls_cert: tuple[Path, Path], caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger="dispatcher")
    add_subscribers(database, 2)
    password = "right-Relay-Password"
    wrong = "wrong-Relay-Password"
    ops.secrets += [password, wrong]
    with SmtpServer(tls_cert=tls_cert, require_starttls=True, auth=("mailer", password)) as relay:
        url = f"smtp://mailer:{{}}@{relay.host}:{relay.port}?starttls=true&verify=false&timeout=5"
        relay_ops = Ops(relay, ops.pager, ops.secrets)
        refused = alert_settings(database, relay_ops, smtp_url=SecretStr(url.format(wrong)))
        tick_at(refused, database, T0)
        clock = SimulatedClock(T0 + dt.timedelta(minutes=1))
        monitor = monitor_for(refused, database, clock)
        monitor.run_once()  # no waiting for DISPATCHER_ALERT_AFTER_MINUTES: it will not heal
        subject = "[dispatcher] credential refused: channel email"
        # The alert mail goes through the same relay, which refuses us: only the chat has it.
        assert relay_ops.received() == {"email": [], "slack": [subject], "generic": [subject]}
        failed = [r for r in caplog.records if getattr(r, "event", "") == "alert_failed"]
        assert [r.getMessage().split(" (attempt")[0] for r in failed] == [
            f"alert {subject!r} not delivered to email:{OPS}"
        ]
        assert "DISPATCHER_SMTP_URL" in ops.bodies()[0]

        clock.set(T0 + dt.timedelta(minutes=20))  # an outage alert would be due by now
        monitor.run_once()
        assert relay_ops.received()["slack"] == [subject]

        fixed = alert_settings(database, relay_ops, smtp_url=SecretStr(url.format(password)))
        fixed_monitor = monitor_for(fixed, database, clock)  # the process restarted with it
        tick_at(fixed, database, T0 + dt.timedelta(minutes=21))
        fixed_monitor.run_once()
        resolved = f"[dispatcher] resolved: {subject.removeprefix('[dispatcher] ')}"
        assert relay_ops.received()["slack"] == [subject, resolved]
        assert relay_ops.received()["email"] == [resolved]
        assert "resolved: channel email works again" in relay_ops.bodies()[0]
        relay_ops.assert_no_secret()
    assert not any(secret in r.getMessage() for r in caplog.records for secret in ops.secrets)


def test_a_relay_down_is_alerted_after_the_minutes_set_and_a_failing_receiver_retried(
    database: Database, ops: Ops, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger="dispatcher")
    add_subscribers(database, 2)
    settings = alert_settings(database, ops, alert_after_minutes=15)
    ops.smtp.refusal = "451 4.7.1 Service unavailable - try again later"
    tick_at(settings, database, T0)
    clock = SimulatedClock(T0 + dt.timedelta(minutes=10))
    monitor = monitor_for(settings, database, clock)
    monitor.run_once()
    assert ops.received() == ops.everywhere()  # ten minutes: backing off, not yet news

    clock.set(T0 + dt.timedelta(minutes=16))
    monitor.run_once()
    subject = "[dispatcher] channel email unavailable since 2019-04-02 06:00 UTC"
    # The mail to ops goes through the relay that is down: tried at each run, then given up.
    assert ops.received() == {"email": [], "slack": [subject], "generic": [subject]}
    for minute in (17, 18, 19):
        clock.set(T0 + dt.timedelta(minutes=minute))
        monitor.run_once()
    assert ops.received()["slack"] == [subject]  # not sent again where it arrived
    failed = [r for r in caplog.records if getattr(r, "event", "") == "alert_failed"]
    assert len(failed) == alerts.MAX_ATTEMPTS
    assert "given up" in failed[-1].getMessage()
    [row] = rows(database)
    assert row.alerted_at is None and row.attempts == alerts.MAX_ATTEMPTS
    assert row.last_error is not None and "451 4.7.1" in row.last_error

    ops.smtp.refusal = None
    tick_at(settings, database, T0 + dt.timedelta(minutes=30))  # the relay takes them now
    clock.set(T0 + dt.timedelta(minutes=31))
    monitor.run_once()
    resolved = f"[dispatcher] resolved: {subject.removeprefix('[dispatcher] ')}"
    assert ops.received() == {"email": [resolved], "slack": [subject, resolved],
                              "generic": [subject, resolved]}  # fmt: skip
    body = ops.mails()[0].get_body(("plain",)).get_content()  # type: ignore[union-attr]
    assert "opened: 2019-04-02 06:16 UTC, resolved: 2019-04-02 06:31 UTC (after 15 min)" in body
    ops.assert_no_secret()


def test_a_receiver_answering_500_is_logged_and_gets_the_alert_at_the_next_run(
    database: Database, ops: Ops, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger="dispatcher")
    readers = add_subscribers(database, 2)
    settings = alert_settings(database, ops)
    refuse_everyone(ops.smtp, readers)
    tick_at(settings, database, T0)
    ops.pager.fail_next(fake_webhooks.SLACK_PATH, Response(500, body=b"internal_error"))
    clock = SimulatedClock(T0 + dt.timedelta(minutes=1))
    monitor = monitor_for(settings, database, clock)
    monitor.run_once()
    subject = "[dispatcher] dispatch 1 failed: 2019-04-02 email nordwind-maritim"
    assert ops.received() == {"email": [subject], "slack": [], "generic": [subject]}
    [failed] = [r for r in caplog.records if getattr(r, "event", "") == "alert_failed"]
    assert "webhook:slack:T0CW2024/B0CW2024" in failed.getMessage()
    assert "HTTP 500" in failed.getMessage()

    # Sending goes on meanwhile: the next day's email leaves as if nothing happened.
    ops.smtp.clear()
    tick_at(settings, database, email_time(SEND_DAYS[1]))
    assert sorted(r.rcpt_tos[0] for r in ops.smtp.received) == readers

    clock.set(email_time(SEND_DAYS[1]) + dt.timedelta(minutes=1))
    monitor.run_once()
    assert ops.received()["slack"] == [subject]
    assert ops.received()["generic"] == [subject]  # not twice where it had arrived
    [row] = rows(database)
    assert row.alerted_at is not None and row.attempts == 2 and row.last_error is None
    assert not any(s in r.getMessage() for r in caplog.records for s in SECRETS)


def test_the_job_runs_in_a_thread_of_its_own_and_never_twice_at_once(
    database: Database, ops: Ops
) -> None:
    readers = add_subscribers(database, 1)
    settings = alert_settings(database, ops)
    refuse_everyone(ops.smtp, readers)
    tick_at(settings, database, T0)
    release, entered = threading.Event(), threading.Event()

    class Hanging:
        name = "hanging"

        def deliver(self, message: alert_destinations.Message, *, now: dt.datetime) -> None:
            entered.set()
            release.wait(timeout=60)

        def close(self) -> None:
            pass

    monitor = alerts.Monitor(
        database.engine,
        [Hanging()],
        clock=SimulatedClock(T0 + dt.timedelta(minutes=1)),
        redact=str,
        after=dt.timedelta(minutes=15),
        public_url="https://news.example.org",
        campaign_id=CAMPAIGN,
        campaign_file=settings.campaign_file,
    )
    assert monitor.start_run()  # returns while the destination hangs
    assert entered.wait(timeout=30)
    assert not monitor.start_run()  # the hanging run is not joined by a second
    release.set()
    monitor.run_once()  # waits for the first run to end, then runs
    [row] = rows(database)
    assert row.alerted_at is not None


# --- the campaign file and the scheduler lock ---------------------------------------------------


def test_an_invalid_campaign_file_is_alerted_after_the_minutes_set_and_resolved_when_fixed(
    database: Database, ops: Ops
) -> None:
    settings = alert_settings(database, ops, alert_after_minutes=15)
    path = settings.campaign_file
    source = CampaignSource(path, load_campaign(path))
    good = path.read_text(encoding="utf-8")
    # An editor pasted the pager's webhook URL (with its secret) where the zone belongs.
    bad = good.replace("timezone: Europe/Berlin", f"timezone: {ops.pager.slack_url}")
    path.write_text(bad, encoding="utf-8")
    assert source.check() is Reload.REJECTED
    assert ops.pager.slack_url in source.problems[0]  # the problem quotes it

    clock = SimulatedClock(T0)
    monitor = monitor_for(settings, database, clock, problems=lambda: source.problems)
    monitor.run_once()
    clock.set(T0 + dt.timedelta(minutes=14))
    monitor.run_once()
    assert ops.received() == ops.everywhere()  # an edit in progress is no alert
    clock.set(T0 + dt.timedelta(minutes=16))
    monitor.run_once()
    subject = f"[dispatcher] campaign file invalid: {path}"
    assert ops.received() == ops.everywhere(subject)
    body = ops.bodies()[0]
    assert "campaign.yaml:" in body and "unknown time zone" in body and "***" in body
    assert "the last good version stays in force" in body

    path.write_text(good, encoding="utf-8")
    assert source.check() is Reload.LOADED
    clock.set(T0 + dt.timedelta(minutes=17))
    monitor.run_once()
    resolved = f"[dispatcher] resolved: campaign file invalid: {path}"
    assert ops.received() == ops.everywhere(subject, resolved)
    ops.assert_no_secret()


def test_a_lost_scheduler_lock_is_alerted_and_resolved_once_a_process_holds_it(
    database: Database, ops: Ops
) -> None:
    settings = alert_settings(database, ops)
    leading = threading.Event()
    clock = SimulatedClock(T0)
    # Advisory locks are per database, not per schema: a campaign of its own keeps the
    # `run` processes of other tests on the same server from holding this one's lock.
    campaign = f"alerts-{uuid.uuid4().hex[:8]}"
    monitor = monitor_for(settings, database, clock, campaign, is_leader=leading.is_set)
    monitor.leader_lost()
    monitor.run_once()
    subject = f"[dispatcher] scheduler lock lost: {monitor.process}"
    assert ops.received() == ops.everywhere(subject)

    clock.set(T0 + alert_conditions.LEADER_EVENT_LIFE + dt.timedelta(minutes=1))
    monitor.run_once()  # nobody holds the lock: still open
    assert ops.received() == ops.everywhere(subject)

    holder: leader.PostgresLeader | None = None
    if database.backend == "postgresql":  # another process took the lock over
        holder = leader.PostgresLeader(database.url, campaign)
        assert holder.try_acquire()
        note = "resolved: another process holds the scheduler lock"
    else:  # SQLite has one process: this one, once its database answers again
        leading.set()
        note = "resolved: this process holds the scheduler lock again"
    try:
        monitor.run_once()
    finally:
        if holder is not None:
            holder.release()
    resolved = f"[dispatcher] resolved: scheduler lock lost: {monitor.process}"
    assert ops.received() == ops.everywhere(subject, resolved)
    assert note in ops.bodies()[1]


def test_the_service_runs_the_job_and_reports_a_lost_lock(database: Database, ops: Ops) -> None:
    settings = alert_settings(database, ops)
    campaign = load_campaign(settings.campaign_file)
    service = Service(settings, campaign, clock=SimulatedClock(T0 - dt.timedelta(hours=1)))

    class Flaky:  # the scheduler lock, held once and then lost with its session
        def __init__(self) -> None:
            self.answers = [True, False]

        def try_acquire(self) -> bool:
            return self.answers.pop(0) if self.answers else False

        def release(self) -> None:
            pass

    service.leadership = Flaky()
    try:
        service.start()
        job = service.scheduler.get_job("alerts")
        assert job is not None and job.next_run_time.second % 30 == 0  # aligned: :00 or :30
        service.check_leader()  # the lock is gone
        assert service.alerts is not None
        service.alerts.run_once()
    finally:
        service.shutdown()
    subject = f"[dispatcher] scheduler lock lost: {service.alerts.process}"
    assert ops.received() == ops.everywhere(subject)


# --- the rate limit -----------------------------------------------------------------------------


def failed_dispatch(database: Database, day: dt.date, item_id: str, *, at: dt.datetime) -> None:
    """A failed dispatch of another campaign sharing the ledger."""
    content = item_to_json(load_campaign(SAMPLE).items[0])
    with database.engine.begin() as connection:
        row = store.ensure_dispatch(
            connection,
            campaign_id="nebenkampagne",
            day=day,
            channel="email",
            item_id=item_id,
            content_hash="0" * 64,
            content=content,
            send_at=at,
            state=DispatchState.RUNNING,
            now=at,
        )
        store.mark_dispatch(connection, row.id, DispatchState.FAILED, now=at)


def test_more_alerts_than_the_rate_limit_come_as_one_more_message(
    database: Database, ops: Ops
) -> None:
    settings = alert_settings(database, ops)
    for n in range(15):
        failed_dispatch(database, dt.date(2019, 3, 1) + dt.timedelta(days=n), f"item-{n}", at=T0)
    ticks = [0.0]
    clock = SimulatedClock(T0 + dt.timedelta(minutes=1))
    limit = alerts.RateLimit(alerts.RATE_LIMIT, alerts.RATE_WINDOW, monotonic=lambda: ticks[0])
    monitor = monitor_for(settings, database, clock)
    monitor.rate = limit
    monitor.run_once()
    subjects = ops.received()["email"]
    assert len(subjects) == alerts.RATE_LIMIT
    assert subjects[-1] == "[dispatcher] … and 6 more"
    digest = ops.bodies()[-1]
    assert sum("failed: 2019-03-" in line for line in digest.splitlines()) == 6
    assert ops.received()["slack"] == subjects
    assert all(row.alerted_at is not None for row in rows(database))  # all 15 were told

    failed_dispatch(database, dt.date(2019, 5, 1), "late", at=T0)
    ticks[0] = alerts.RATE_WINDOW / 2
    monitor.run_once()  # the window is used up: held, not dropped
    assert len(ops.received()["email"]) == alerts.RATE_LIMIT
    ticks[0] = alerts.RATE_WINDOW + 1
    monitor.run_once()
    assert ops.received()["email"][alerts.RATE_LIMIT :] == [
        "[dispatcher] dispatch 16 failed: 2019-05-01 email late"
    ]
    ops.assert_no_secret()
