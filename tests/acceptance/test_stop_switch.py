"""The stop switch as ops use it: `dispatcher cancel|pause|resume|resend` against real
`dispatcher run` processes (docs/operations.md, "A wrong link went out").

The promises: after `cancel` returns, the relay gets at most the batch each process had
claimed, every delivery ends sent or cancelled (none twice), a restart does not resume the
dispatch, and `resend --only-unsent` sends exactly the cancelled ones; after `pause` nothing
more is claimed until `resume`, and then every subscriber gets the email once. Three
processes need PostgreSQL; the commands' messages and exit codes are checked on both.
"""

from __future__ import annotations

import json
import subprocess
import sys
import time
from collections import Counter
from collections.abc import Iterator
from pathlib import Path

import pytest
import sqlalchemy as sa

from dispatcher.ledger.tables import deliveries, subscribers
from tests.support.database import Database
from tests.support.fleet import Fleet, wait_for
from tests.support.ledger import add_subscribers, delivery_states, dispatch_states
from tests.support.processes import ROOT, environment, start
from tests.support.smtpd import SmtpServer

SUBSCRIBERS = 20_000
CLAIM_BATCH = 200
PROCESSES = 3
START = "2019-04-02T07:59:58+02:00"  # two seconds before the 08:00 email


def dispatcher(env: dict[str, str], *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "dispatcher", *args],
        cwd=ROOT, env=env, capture_output=True, text=True, timeout=120,
    )  # fmt: skip


@pytest.fixture
def fleet_env(database: Database, smtp_server: SmtpServer, tmp_path: Path) -> dict[str, str]:
    if database.backend != "postgresql":
        pytest.skip("several `run` processes share a PostgreSQL ledger; SQLite is for one")
    return environment(
        database, smtp_server, tmp_path,
        DISPATCHER_POLL_SECONDS="1",
        DISPATCHER_CLAIM_BATCH=str(CLAIM_BATCH),
        DISPATCHER_WORKERS="1",  # `run` starts no helpers; said here for the bound below
        # 3 × 200/s: the 20,000 take ~35 s, so each command lands mid-send.
        DISPATCHER_SEND_RATE="200",
    )  # fmt: skip


@pytest.fixture
def fleet(fleet_env: dict[str, str], tmp_path: Path) -> Iterator[Fleet]:
    running = Fleet(fleet_env, tmp_path)
    yield running
    running.stop()


def received(smtp: SmtpServer) -> Counter[str]:
    return Counter(r.rcpt_tos[0] for r in smtp.received)


def addresses_in(database: Database, state: str) -> set[str]:
    query = (
        sa.select(subscribers.c.email)
        .join(deliveries, deliveries.c.subscriber_id == subscribers.c.id)
        .where(deliveries.c.state == state)
    )
    with database.engine.connect() as connection:
        return {email for (email,) in connection.execute(query)}


def settled(database: Database) -> bool:
    """Nothing in flight: every claim recorded or given back."""
    return delivery_states(database)["sending"] == 0


def test_cancel_mid_send_of_20000_stops_every_process_and_resend_sends_exactly_the_rest(
    database: Database, smtp_server: SmtpServer, fleet: Fleet, fleet_env: dict[str, str]
) -> None:
    addresses = set(add_subscribers(database, SUBSCRIBERS))
    for _ in range(PROCESSES):
        fleet.start(START)
    wait_for(lambda: len(smtp_server.received) >= 2000, 120, "the send to be under way")

    cancel = start(fleet_env, "cancel", "1", "--reason", "falscher Link im Teaser")
    assert cancel.stdout is not None
    first_line = cancel.stdout.readline()  # printed once the cancel has committed
    at_return = len(smtp_server.received)
    _rest, err = cancel.communicate(timeout=60)
    assert cancel.returncode == 0, err
    assert first_line.startswith("cancelled dispatch 1 2019-04-02 email nordwind-maritim: ")
    assert at_return < SUBSCRIBERS, "the cancel must land in the middle of the send"

    wait_for(lambda: settled(database), 60, "the batches in flight to be recorded")
    time.sleep(2)  # two polls: anything still claimed would arrive now
    after = len(smtp_server.received) - at_return
    assert after <= PROCESSES * CLAIM_BATCH  # at most the batch each process held
    states = delivery_states(database)
    assert set(states) == {"sent", "cancelled"} and sum(states.values()) == SUBSCRIBERS
    got = received(smtp_server)
    assert set(got.values()) == {1} and set(got) == addresses_in(database, "sent")
    assert dispatch_states(database) == {"cancelled": 1}

    # A restart (and every poll of it) leaves the dispatch alone.
    fleet.stop()
    for _ in range(PROCESSES):
        fleet.start("2019-04-02T08:05:00+02:00")
    wait_for(lambda: all(any(e.get("event") == "service_started" for e in fleet.events(p))
                         for p in fleet.processes[PROCESSES:]), 60, "the restart")  # fmt: skip
    time.sleep(3)
    assert received(smtp_server) == got and dispatch_states(database) == {"cancelled": 1}

    unsent = addresses_in(database, "cancelled")
    refused = dispatcher(fleet_env, "resend", "1")
    assert refused.returncode == 2 and "--only-unsent" in refused.stderr
    resend = dispatcher(fleet_env, "resend", "1", "--only-unsent")
    assert resend.returncode == 0, resend.stderr
    assert f"queued {len(unsent)} unsent deliveries of dispatch 1" in resend.stdout
    wait_for(lambda: len(smtp_server.received) >= SUBSCRIBERS, 120, "the resend")
    time.sleep(2)
    final = received(smtp_server)
    assert set(final) == addresses and set(final.values()) == {1}
    assert set(final - got) == unsent  # the resend sent exactly the cancelled ones
    wait_for(lambda: dispatch_states(database) == {"done": 1}, 30, "the dispatch to finish")
    print(
        f"cancel: {at_return} received when `dispatcher cancel` returned, {after} after it "
        f"(bound {PROCESSES * CLAIM_BATCH}); {len(unsent)} cancelled, resent once each"
    )


def test_pause_mid_send_holds_every_process_and_resume_sends_everyone_once(
    database: Database, smtp_server: SmtpServer, fleet: Fleet, fleet_env: dict[str, str]
) -> None:
    addresses = set(add_subscribers(database, SUBSCRIBERS))
    for _ in range(PROCESSES):
        fleet.start(START)
    wait_for(lambda: len(smtp_server.received) >= 2000, 120, "the send to be under way")
    paused = dispatcher(fleet_env, "pause", "email")
    assert paused.returncode == 0 and paused.stdout.startswith("paused channel email"), paused
    at_return = len(smtp_server.received)
    wait_for(lambda: settled(database), 60, "the batches in flight to be recorded")
    time.sleep(3)  # three polls of every process
    held = len(smtp_server.received)
    assert held - at_return <= PROCESSES * CLAIM_BATCH and held < SUBSCRIBERS
    states = delivery_states(database)
    assert states["sent"] == held and "cancelled" not in states  # the rest keeps its place
    assert dispatch_states(database) == {"running": 1}
    events = [e for p in fleet.processes for e in fleet.events(p)]
    logged = [e for e in events if e.get("event") == "channel_paused"]
    assert 1 <= len(logged) <= PROCESSES  # once per process that was sending, not per poll

    status = json.loads(dispatcher(fleet_env, "status", "--json").stdout)
    assert set(status["paused"]) == {"email"}

    resumed = dispatcher(fleet_env, "resume", "email")
    assert resumed.returncode == 0 and "resumed channel email" in resumed.stdout
    wait_for(lambda: len(smtp_server.received) >= SUBSCRIBERS, 120, "the rest after resume")
    time.sleep(2)
    final = received(smtp_server)
    assert set(final) == addresses and set(final.values()) == {1}
    wait_for(lambda: dispatch_states(database) == {"done": 1}, 30, "the dispatch to finish")


def test_the_commands_say_what_they_did_and_refuse_what_they_cannot_do(
    database: Database, smtp_server: SmtpServer, tmp_path: Path
) -> None:
    add_subscribers(database, 30)
    env = environment(database, smtp_server, tmp_path, DISPATCHER_WORKERS="1")
    unknown = dispatcher(env, "cancel", "1")
    assert unknown.returncode == 1
    assert "no dispatch with id 1; `dispatcher status` lists them" in unknown.stderr

    assert dispatcher(env, "pause").stdout.startswith("paused all sending")
    again = dispatcher(env, "pause")
    assert again.returncode == 0 and again.stdout.startswith("all sending was paused already")
    held = dispatcher(env, "tick", "--at", "2019-04-02T08:00:05+02:00")
    assert held.returncode == 0 and smtp_server.received == []
    assert "email: due but paused (all sending since" in held.stdout  # not "nothing due"
    assert "paused: all sending since" in dispatcher(env, "status").stdout
    resumed = dispatcher(env, "resume")
    assert resumed.stdout.splitlines() == ["resumed all sending: sending continues where it "
                                           "stopped (within a poll)"]  # fmt: skip
    assert dispatcher(env, "resume", "email").stdout.startswith("channel email was not paused")

    # A relay that refuses the session leaves the day's email running with all 30 queued.
    smtp_server.refusal = "451 4.7.1 Service unavailable - try again later"
    assert dispatcher(env, "tick", "--at", "2019-04-02T08:00:10+02:00").returncode == 3
    smtp_server.refusal = None
    cancel = dispatcher(env, "cancel", "1", "--reason", "falscher Link")
    assert cancel.returncode == 0, cancel.stderr
    assert cancel.stdout.startswith(
        "cancelled dispatch 1 2019-04-02 email nordwind-maritim: 0 sent, 30 not sent"
    )
    assert "was cancelled already" in dispatcher(env, "cancel", "1").stdout
    status = dispatcher(env, "status").stdout
    assert ": falscher Link" in status and "30 not sent; `dispatcher resend 1" in status
    dispatcher(env, "tick", "--at", "2019-04-02T08:30:00+02:00")
    assert smtp_server.received == []  # not resumed by a tick

    resend = dispatcher(env, "resend", "1", "--only-unsent")
    assert resend.stdout.startswith("queued 30 unsent deliveries of dispatch 1"), resend
    assert dispatcher(env, "tick", "--at", "2019-04-02T08:31:00+02:00").returncode == 0
    assert len(smtp_server.received) == 30
    finished = dispatcher(env, "cancel", "1")
    assert finished.returncode == 1
    assert "dispatch 1 is done already: there is nothing left to stop" in finished.stderr
    not_cancelled = dispatcher(env, "resend", "1", "--only-unsent")
    assert not_cancelled.returncode == 1 and "not cancelled" in not_cancelled.stderr
