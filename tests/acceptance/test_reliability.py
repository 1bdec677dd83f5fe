"""Slow relays, lost claims, a database that stops answering, a relay that hangs.

Real `dispatcher run` processes against real PostgreSQL (or SQLite where one process
is the point) and an aiosmtpd relay that can be made slow; a userspace TCP proxy in front
of PostgreSQL swallows traffic the way a broken NAT or load balancer does.
"""

from __future__ import annotations

import os
import signal
import time
import urllib.error
import urllib.request
from collections import Counter
from collections.abc import Iterator
from pathlib import Path

import pytest
import sqlalchemy as sa

from dispatcher.ledger.tables import deliveries, dispatches
from tests.support.campaigns import campaign_copy
from tests.support.database import Database
from tests.support.fleet import Fleet, wait_for
from tests.support.ledger import add_subscribers, delivery_states
from tests.support.smtpd import SmtpServer
from tests.support.tcpproxy import SwallowingProxy

pytestmark = pytest.mark.slow

START = "2019-04-02T07:59:58+02:00"  # two seconds before the 08:00 email


def base_env(database_url: str, smtp_server: SmtpServer, tmp_path: Path) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("DISPATCHER_")}
    env.update(
        DISPATCHER_DATABASE_URL=database_url,
        DISPATCHER_SMTP_URL=smtp_server.url,
        DISPATCHER_CAMPAIGN_FILE=str(campaign_copy(tmp_path, channels=("email",))),
        DISPATCHER_OUTBOX_DIR=str(tmp_path / "outbox"),
        DISPATCHER_LOG_FORMAT="json",
        DISPATCHER_HTTP_PORT="0",
        DISPATCHER_POLL_SECONDS="1",
    )
    return env


@pytest.fixture
def postgres(database: Database) -> Database:
    if database.backend != "postgresql":
        pytest.skip("several senders share a PostgreSQL ledger; SQLite is for one process")
    return database


@pytest.fixture
def fleet(tmp_path: Path) -> Iterator[Fleet]:
    running = Fleet({}, tmp_path)
    yield running
    running.stop()


def copies(smtp_server: SmtpServer) -> Counter[str]:
    return Counter(r.rcpt_tos[0] for r in smtp_server.received)


def max_attempts(database: Database) -> int:
    with database.engine.connect() as connection:
        return int(connection.execute(sa.select(sa.func.max(deliveries.c.attempts))).scalar_one())


def http_port(fleet: Fleet, process: object) -> int:
    for event in fleet.events(process):  # type: ignore[arg-type]
        if event.get("event") == "http_started":
            return int(str(event["message"]).rsplit(":", 1)[1])
    raise AssertionError("the service did not log its HTTP port")


def healthz(port: int) -> tuple[int, str]:
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/healthz", timeout=5) as response:
            return response.status, response.read().decode()
    except urllib.error.HTTPError as error:
        return error.code, error.read().decode()


# 1. A claim lives exactly as long as its worker works on it --------------------------------


@pytest.mark.parametrize("senders", [2, 3])
def test_batches_that_outlast_the_lease_are_sent_once(
    postgres: Database, smtp_server: SmtpServer, fleet: Fleet, tmp_path: Path, senders: int
) -> None:
    """A relay taking 1 s per message, one connection per sender, 15 per claim: a batch
    takes 15 s against a 10 s lease. The heartbeat keeps the claims; nobody takes over."""
    smtp_server.data_delay = 1.0
    addresses = set(add_subscribers(postgres, 15 * senders))  # one batch each
    fleet.env = base_env(postgres.url, smtp_server, tmp_path) | {
        "DISPATCHER_SMTP_CONNECTIONS": "1",
        "DISPATCHER_CLAIM_BATCH": "15",
        "DISPATCHER_LEASE_SECONDS": "10",
    }
    for _ in range(senders):
        fleet.start(START)
    wait_for(lambda: delivery_states(postgres)["sent"] >= len(addresses), 150, "every email")
    time.sleep(3)  # a copy too many would arrive now
    received = copies(smtp_server)
    assert set(received) == addresses
    assert set(received.values()) == {1}, Counter(received.values())
    assert max_attempts(postgres) == 1  # no claim was ever taken over
    print(f"{senders} senders, 1 s/message, 10 s lease: {len(addresses)} subscribers, "
          f"copies per reader {sorted(set(received.values()))}")  # fmt: skip


def test_a_sender_killed_mid_batch_costs_at_most_that_batch(
    postgres: Database, smtp_server: SmtpServer, fleet: Fleet, tmp_path: Path
) -> None:
    smtp_server.data_delay = 0.5
    addresses = set(add_subscribers(postgres, 90))
    fleet.env = base_env(postgres.url, smtp_server, tmp_path) | {
        "DISPATCHER_SMTP_CONNECTIONS": "1",
        "DISPATCHER_CLAIM_BATCH": "15",
        "DISPATCHER_LEASE_SECONDS": "10",
    }
    for _ in range(3):
        fleet.start(START)
    wait_for(lambda: len(smtp_server.received) >= 20, 60, "the send to be under way")
    victim = fleet.processes[-1]
    victim.send_signal(signal.SIGKILL)
    victim.wait()
    wait_for(lambda: delivery_states(postgres)["sent"] >= 90, 150, "the others to finish")
    time.sleep(2)
    received = copies(smtp_server)
    assert set(received) == addresses  # nothing lost
    repeats = sum(n - 1 for n in received.values())
    assert repeats <= 15, f"{repeats} repeats, more than the one batch in flight"
    print(f"SIGKILL of one of 3 senders mid-batch: {repeats} repeated messages (batch 15)")


# 3. Database faults end, they do not hang ---------------------------------------------------


def test_a_database_that_swallows_traffic_is_abandoned_and_sending_resumes_once(
    postgres: Database, smtp_server: SmtpServer, fleet: Fleet, tmp_path: Path
) -> None:
    """The proxy acknowledges and drops everything for 5 s: no error ever reaches the
    client on its own. The client-side bound abandons those connections; the outcomes
    of messages already sent are written once the database answers again."""
    url = sa.engine.make_url(postgres.url)
    assert url.host and url.port
    addresses = set(add_subscribers(postgres, 400))
    with SwallowingProxy((url.host, url.port)) as proxy:
        proxied = url.set(port=proxy.port).render_as_string(hide_password=False)
        fleet.env = base_env(proxied, smtp_server, tmp_path) | {
            "DISPATCHER_DB_TIMEOUT_SECONDS": "3",  # the client gives up after 3 + 5 s
            "DISPATCHER_SEND_RATE": "20",
            "DISPATCHER_CLAIM_BATCH": "20",
        }
        fleet.start(START)
        wait_for(lambda: len(smtp_server.received) >= 60, 60, "the send to be under way")
        proxy.swallow()
        time.sleep(5)
        proxy.forward()
        restored, before = time.monotonic(), len(smtp_server.received)
        resumed = wait_for(lambda: len(smtp_server.received) > before + 20, 60, "sending to resume")
        wait_for(lambda: delivery_states(postgres)["sent"] >= 400, 120, "the send to complete")
        time.sleep(2)
    received = copies(smtp_server)
    assert proxy.swallowed_bytes > 0  # the outage really cut traffic
    assert set(received) == addresses
    assert set(received.values()) == {1}, Counter(received.values())
    print(f"5 s swallowed by a proxy: sending resumed {resumed:.1f} s after traffic flowed "
          f"again ({time.monotonic() - restored:.1f} s to the end), copies per reader 1")  # fmt: skip


def test_a_hung_database_makes_healthz_unhealthy_and_sigterm_still_ends_the_process(
    postgres: Database, smtp_server: SmtpServer, fleet: Fleet, tmp_path: Path
) -> None:
    url = sa.engine.make_url(postgres.url)
    assert url.host and url.port
    add_subscribers(postgres, 400)
    with SwallowingProxy((url.host, url.port)) as proxy:
        proxied = url.set(port=proxy.port).render_as_string(hide_password=False)
        fleet.env = base_env(proxied, smtp_server, tmp_path) | {
            "DISPATCHER_DB_TIMEOUT_SECONDS": "3",
            "DISPATCHER_SEND_RATE": "20",
            "DISPATCHER_CLAIM_BATCH": "20",
            # Below the connection's answer timeout (3 + 5 s): the swallowed query stalls the
            # lane either until a ledger write gets through (waited out, the lane hangs on)
            # or until the connection is abandoned at 8 s and the lane gives up (then idle,
            # and alive again: the database is /readyz's business). Which one depends on
            # the query the swallow hits; the stall shows in both.
            "DISPATCHER_HANG_SECONDS": "5",
            "DISPATCHER_SHUTDOWN_SECONDS": "5",
        }
        process = fleet.start(START)
        wait_for(lambda: len(smtp_server.received) >= 40, 60, "the send to be under way")
        port = http_port(fleet, process)
        assert healthz(port)[0] == 200
        proxy.swallow()  # and it stays that way
        answers: list[tuple[int, str]] = []

        def unhealthy_now() -> bool:
            answers.append(healthz(port))
            return answers[-1][0] == 503

        unhealthy = wait_for(unhealthy_now, 40, "/healthz to turn 503")
        status, body = answers[-1]
        assert status == 503 and "no progress" in body and "send lane email" in body
        stopped = time.monotonic()
        process.send_signal(signal.SIGTERM)
        process.wait(timeout=5 + 5 + 5)  # SHUTDOWN_SECONDS + grace + slack
        took = time.monotonic() - stopped
    print(f"database swallowed: /healthz 503 after {unhealthy:.1f} s (limit 5 s); "
          f"SIGTERM ended the process in {took:.1f} s (limit 5 + 5 s)")  # fmt: skip


# 5. Channels progress independently -----------------------------------------------------------


def test_a_hanging_relay_delays_only_the_email(
    sqlite_database: Database, smtp_server: SmtpServer, fleet: Fleet, tmp_path: Path
) -> None:
    """The relay never answers the end of DATA; the webhook post due at 08:00 and the one
    a minute later (due while the email hangs) go out on time and are never `missed`."""
    smtp_server.data_delay = 3600
    add_subscribers(sqlite_database, 5)
    env = base_env(sqlite_database.url, smtp_server, tmp_path)
    env["DISPATCHER_CAMPAIGN_FILE"] = str(
        campaign_copy(tmp_path, channels=("email", "webhook", "mastodon"),
                      times={"mastodon": "08:01"})
    )  # fmt: skip
    env["DISPATCHER_SHUTDOWN_SECONDS"] = "3"  # the hanging send cannot finish anyway
    fleet.env = env
    started = time.monotonic()
    fleet.start(START)
    outbox = tmp_path / "outbox"

    def posted(channel: str) -> int:
        return len(list((outbox / channel).glob("*.json"))) if (outbox / channel).is_dir() else 0

    wait_for(lambda: posted("webhook") >= 1, 30, "the 08:00 webhook post")
    assert len(smtp_server.received) == 0  # the email is stuck at DATA meanwhile
    webhook_after = time.monotonic() - started
    wait_for(lambda: posted("mastodon") >= 1, 90, "the 08:01 Mastodon post")
    mastodon_after = time.monotonic() - started
    assert mastodon_after < 2 + 60 + 15  # due 62 s after start, poll 1 s, start-up slack

    def dispatch_states() -> dict[str, str]:
        with sqlite_database.engine.connect() as connection:
            rows = connection.execute(sa.select(dispatches.c.channel, dispatches.c.state))
            return {channel: state for channel, state in rows}

    # The post's file is written just before its dispatch is recorded done: wait for that.
    wait_for(lambda: dispatch_states().get("mastodon") == "done", 10, "the Mastodon dispatch done")
    states = dispatch_states()
    assert states["webhook"] == "done" and states["mastodon"] == "done"
    assert states["email"] == "running"  # still waiting on the relay, not missed
    assert delivery_states(sqlite_database)["sent"] == 0
    events = [e.get("event") for e in fleet.events(fleet.processes[0])]
    assert "dispatch_missed" not in events
    print(f"relay hanging at DATA: webhook posted {webhook_after:.1f} s after start (due 2 s), "
          f"Mastodon {mastodon_after:.1f} s (due 62 s)")  # fmt: skip
