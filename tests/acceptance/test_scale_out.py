"""Several `dispatcher run` processes on one PostgreSQL database (docs/operations.md).

One schedules (advisory lock), all send (FOR UPDATE SKIP LOCKED with a lease).
These tests start real processes against the real server and an aiosmtpd sink.
"""

from __future__ import annotations

import os
import signal
import subprocess
import time
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

ROOT = Path(__file__).parents[2]


@pytest.fixture
def fleet_env(database: Database, smtp_server: SmtpServer, tmp_path: Path) -> dict[str, str]:
    if database.backend != "postgresql":
        pytest.skip("several processes share a PostgreSQL ledger; SQLite is for one process")
    env = {k: v for k, v in os.environ.items() if not k.startswith("DISPATCHER_")}
    env.update(
        DISPATCHER_DATABASE_URL=database.url,
        DISPATCHER_SMTP_URL=smtp_server.url,
        DISPATCHER_CAMPAIGN_FILE=str(campaign_copy(tmp_path, channels=("email", "webhook"))),
        DISPATCHER_OUTBOX_DIR=str(tmp_path / "outbox"),
        DISPATCHER_LOG_FORMAT="json",
        DISPATCHER_HTTP_PORT="0",
        DISPATCHER_POLL_SECONDS="1",
        DISPATCHER_CLAIM_BATCH="200",
        DISPATCHER_LEASE_SECONDS="8",
    )
    return env


@pytest.fixture
def fleet(fleet_env: dict[str, str], tmp_path: Path) -> Iterator[Fleet]:
    running = Fleet(fleet_env, tmp_path)
    yield running
    running.stop()


def shares(database: Database) -> Counter[str]:
    """Deliveries sent per worker process (claimed_by is host:pid:nonce)."""
    query = (
        sa.select(deliveries.c.claimed_by)
        .join(dispatches, dispatches.c.id == deliveries.c.dispatch_id)
        .where(deliveries.c.state == "sent", dispatches.c.channel == "email")
    )
    with database.engine.connect() as connection:
        return Counter(str(w).split(":")[1] for (w,) in connection.execute(query))


def test_three_processes_share_20000_emails_exactly_once(
    database: Database, smtp_server: SmtpServer, fleet: Fleet
) -> None:
    addresses = set(add_subscribers(database, 20_000))
    started = time.monotonic()
    for _ in range(3):
        fleet.start("2019-04-02T07:59:58+02:00")
    wall = wait_for(lambda: len(smtp_server.received) >= 20_000, 300, "20,000 emails")
    time.sleep(1.5)  # anything sent twice would arrive now
    received = Counter(r.rcpt_tos[0] for r in smtp_server.received)
    assert set(received) == addresses and set(received.values()) == {1}
    per_process = shares(database)
    assert len(per_process) == 3 and all(n > 0 for n in per_process.values()), per_process
    assert sum(per_process.values()) == 20_000
    print(f"scale-out: 20,000 emails in {wall:.1f} s after start "
          f"({time.monotonic() - started:.1f} s incl. start-up); per process {dict(per_process)}")  # fmt: skip


def test_killing_the_scheduler_moves_the_lock_and_the_next_dispatch_goes_out_once(
    database: Database, smtp_server: SmtpServer, fleet: Fleet
) -> None:
    addresses = set(add_subscribers(database, 50))
    for _ in range(3):
        fleet.start("2019-04-02T07:59:48+02:00")  # 12 s before the 08:00 send
    wait_for(lambda: fleet.leader() is not None, 20, "a scheduler")
    first = fleet.leader()
    assert first is not None
    first.send_signal(signal.SIGKILL)
    first.wait()
    took = wait_for(lambda: fleet.leader() not in (None, first), 15, "a new scheduler")
    assert took < 10  # LEADER_CHECK_SECONDS = 2, plus start-up slack
    wait_for(lambda: len(smtp_server.received) >= 50, 60, "the 08:00 email")
    time.sleep(2)
    received = Counter(r.rcpt_tos[0] for r in smtp_server.received)
    assert set(received) == addresses and set(received.values()) == {1}


def test_a_worker_killed_mid_batch_has_its_claims_finished_by_the_others(
    database: Database, smtp_server: SmtpServer, fleet: Fleet, fleet_env: dict[str, str]
) -> None:
    addresses = set(add_subscribers(database, 6000))
    fleet_env["DISPATCHER_SEND_RATE"] = "400"  # per process: the send takes ~5 s
    for _ in range(3):
        fleet.start("2019-04-02T07:59:58+02:00")
    wait_for(lambda: len(smtp_server.received) >= 1500, 60, "the send to be under way")
    victim = next(p for p in fleet.processes if p is not fleet.leader())
    victim.send_signal(signal.SIGKILL)
    victim.wait()
    wait_for(lambda: delivery_states(database)["sent"] >= 6000, 120, "the others to finish")
    received = Counter(r.rcpt_tos[0] for r in smtp_server.received)
    assert set(received) == addresses  # nothing lost
    assert sum(n - 1 for n in received.values()) <= 200  # at most its claimed batch repeated


def test_postgresql_restarted_during_a_send_and_the_send_completes(
    database: Database, smtp_server: SmtpServer, fleet: Fleet, fleet_env: dict[str, str]
) -> None:
    clusters = Path("/etc/postgresql")
    cluster = sorted(p.name for p in clusters.iterdir())[0] if clusters.is_dir() else ""
    if not cluster:
        pytest.skip("needs a local PostgreSQL cluster managed by pg_ctlcluster")
    addresses = set(add_subscribers(database, 6000))
    fleet_env["DISPATCHER_SEND_RATE"] = "300"
    for _ in range(2):
        fleet.start("2019-04-02T07:59:58+02:00")
    wait_for(lambda: len(smtp_server.received) >= 1000, 60, "the send to be under way")
    subprocess.run(
        ["pg_ctlcluster", "--skip-systemctl-redirect", cluster, "main", "restart"],
        check=True, timeout=120,
    )  # fmt: skip
    database.engine.dispose()  # the test's own pooled connections died with the server
    wait_for(lambda: len(set(r.rcpt_tos[0] for r in smtp_server.received)) >= 6000, 180,
             "the send to complete after the restart")  # fmt: skip
    time.sleep(2)
    received = Counter(r.rcpt_tos[0] for r in smtp_server.received)
    assert set(received) == addresses
    assert sum(n - 1 for n in received.values()) <= 2 * 200  # at most the batches in flight
    assert all(p.poll() is None for p in fleet.processes), "the service survived the outage"
