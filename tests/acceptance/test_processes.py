"""`tick` and `run` as separate processes: concurrency, SIGKILL, reload, SIGTERM.

These are the promises ops rely on: two ticks at once send nothing twice; a killed
process loses nothing and repeats at most what was in flight; an invalid campaign
edit is rejected while the service keeps sending with the last good file.
"""

from __future__ import annotations

import json
import signal
import subprocess
import sys
import time
from collections import Counter
from pathlib import Path

from tests.support.campaigns import campaign_copy
from tests.support.database import Database
from tests.support.ledger import add_subscribers, dispatch_states
from tests.support.ledger import delivery_states as states
from tests.support.processes import ROOT, environment, start
from tests.support.smtpd import SmtpServer

T0 = "2019-04-02T08:00:05+02:00"


def test_two_concurrent_ticks_send_nothing_twice(
    database: Database, smtp_server: SmtpServer
) -> None:
    addresses = set(add_subscribers(database, 600))
    env = environment(database, smtp_server, DISPATCHER_CLAIM_BATCH="25")
    processes = [start(env, "tick", "--at", T0) for _ in range(2)]
    outputs = [p.communicate(timeout=180) for p in processes]
    assert [p.returncode for p in processes] == [0, 0], outputs
    received = Counter(r.rcpt_tos[0] for r in smtp_server.received)
    assert set(received) == addresses
    assert set(received.values()) == {1}
    assert states(database) == {"sent": 600}


def test_sigkill_mid_send_loses_nothing_and_repeats_at_most_the_batch_in_flight(
    database: Database, smtp_server: SmtpServer
) -> None:
    addresses = set(add_subscribers(database, 2000))
    claim_batch = 50
    env = environment(
        database, smtp_server,
        DISPATCHER_CLAIM_BATCH=str(claim_batch), DISPATCHER_SEND_RATE="400",
        DISPATCHER_WORKERS="1",  # one process's claims (helpers: the test below)
    )  # fmt: skip
    victim = start(env, "tick", "--at", T0)
    deadline = time.monotonic() + 60
    # 520: in the middle of the 11th claimed batch of 50, so a batch is certainly in flight.
    while len(smtp_server.received) < 520 and time.monotonic() < deadline:
        time.sleep(0.02)
    victim.send_signal(signal.SIGKILL)
    victim.communicate(timeout=10)
    before_restart = len(smtp_server.received)
    assert 520 <= before_restart < 2000, "the kill must land in the middle of the send"
    assert states(database)["sending"] > 0  # the killed process's claims are still held

    # Started again after the lease (5 min) has run out: the held claims are taken over.
    survivor = start(env, "tick", "--at", "2019-04-02T08:06:00+02:00")
    _out, err = survivor.communicate(timeout=180)
    assert survivor.returncode == 0, err

    received = Counter(r.rcpt_tos[0] for r in smtp_server.received)
    repeated = sum(n - 1 for n in received.values())
    assert set(received) == addresses  # lost: none
    assert repeated <= claim_batch  # repeated: at most one claimed batch in flight
    assert states(database) == {"sent": 2000}
    print(f"kill test: delivered {len(received)}, repeated {repeated}, lost 0, "
          f"received before kill {before_restart}")  # fmt: skip


def test_run_rejects_an_invalid_edit_and_keeps_sending(
    database: Database, smtp_server: SmtpServer, tmp_path: Path
) -> None:
    campaign = campaign_copy(tmp_path)
    addresses = set(add_subscribers(database, 20))
    env = environment(
        database, smtp_server,
        DISPATCHER_CAMPAIGN_FILE=str(campaign), DISPATCHER_POLL_SECONDS="1",
    )  # fmt: skip
    # A rehearsal clock 4 s before the first send of the week.
    service = start(env, "run", "--at", "2019-04-02T07:59:56+02:00")
    try:
        # Edit only once the service runs (start-up takes seconds on a busy machine).
        assert service.stdout is not None
        early: list[str] = []
        for line in service.stdout:
            early.append(line)
            if '"service_started"' in line:
                break
        good = campaign.read_text(encoding="utf-8")
        campaign.write_text(good.replace("timezone: Europe/Berlin", "timezone: Mars/Olympus"))
        # Stop once the ledger has finished the dispatch, not when the relay has the 20th
        # message: the finishing record comes a moment after the last send.
        deadline = time.monotonic() + 30
        while dispatch_states(database)["done"] < 1 and time.monotonic() < deadline:
            time.sleep(0.1)
        service.send_signal(signal.SIGTERM)
        out, err = service.communicate(timeout=40)
    finally:
        if service.poll() is None:
            service.kill()
    assert service.returncode == 0, err
    lines = [*early, *out.splitlines()]
    events = [json.loads(line) for line in lines if line.startswith("{")]
    rejected = [e for e in events if e.get("event") == "reload_rejected"]
    assert rejected and "Mars/Olympus" in rejected[0]["error"]
    assert {r.rcpt_tos[0] for r in smtp_server.received} == addresses
    assert any(e.get("event") == "dispatch_finished" for e in events)
    assert events[-1]["event"] == "service_stopped"


def test_sigterm_mid_send_exits_0_and_releases_what_was_not_sent(
    database: Database, smtp_server: SmtpServer
) -> None:
    addresses = set(add_subscribers(database, 1500))
    env = environment(
        database, smtp_server,
        DISPATCHER_SEND_RATE="300", DISPATCHER_CLAIM_BATCH="50", DISPATCHER_SHUTDOWN_SECONDS="10",
    )  # fmt: skip
    service = start(env, "run", "--at", "2019-04-02T08:00:01+02:00")
    deadline = time.monotonic() + 60
    while len(smtp_server.received) < 200 and time.monotonic() < deadline:
        time.sleep(0.02)
    stopped_at = time.monotonic()
    service.send_signal(signal.SIGTERM)
    out, err = service.communicate(timeout=30)
    assert service.returncode == 0, err
    assert time.monotonic() - stopped_at < 10  # bounded by the shutdown time
    sent_before = len(smtp_server.received)
    assert sent_before < 1500, "the stop must land in the middle of the send"
    left = states(database)
    assert left["sending"] == 0  # nothing left claimed: in-flight finished, the rest released
    assert left["sent"] == sent_before and left["pending"] == 1500 - sent_before
    assert json.loads(out.splitlines()[-1])["event"] == "service_stopped"

    finish = subprocess.run(
        [sys.executable, "-m", "dispatcher", "tick", "--at", "2019-04-02T08:10:00+02:00"],
        cwd=ROOT, env=env, capture_output=True, text=True, timeout=120,
    )  # fmt: skip
    assert finish.returncode == 0, finish.stderr
    received = Counter(r.rcpt_tos[0] for r in smtp_server.received)
    assert set(received) == addresses and set(received.values()) == {1}


def test_tick_with_helper_workers_sends_each_email_once(
    database: Database, smtp_server: SmtpServer
) -> None:
    addresses = set(add_subscribers(database, 900))
    env = environment(database, smtp_server, DISPATCHER_WORKERS="3", DISPATCHER_CLAIM_BATCH="50")
    result = subprocess.run(
        [sys.executable, "-m", "dispatcher", "tick", "--at", T0],
        cwd=ROOT, env=env, capture_output=True, text=True, timeout=180,
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    received = Counter(r.rcpt_tos[0] for r in smtp_server.received)
    assert set(received) == addresses and set(received.values()) == {1}
    assert states(database) == {"sent": 900}
    # One report, by the tick that was started, whichever process finished the dispatch.
    report = [line for line in result.stdout.splitlines() if not line.startswith("{")]
    assert report == ["dispatch 1 2019-04-02 email nordwind-maritim: done (900 sent)"], report


def _stat(pid: int) -> list[str]:
    """/proc/PID/stat after the command name: [state, ppid, …]; [] once the process is gone."""
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except OSError:
        return []


def test_a_killed_tick_takes_its_helper_workers_with_it(
    database: Database, smtp_server: SmtpServer
) -> None:
    add_subscribers(database, 3000)
    env = environment(
        database, smtp_server,
        DISPATCHER_WORKERS="2", DISPATCHER_CLAIM_BATCH="50", DISPATCHER_SEND_RATE="150",
    )  # fmt: skip
    victim = start(env, "tick", "--at", T0)
    children = Path(f"/proc/{victim.pid}/task/{victim.pid}/children")
    deadline = time.monotonic() + 60
    helpers: list[int] = []
    # Until the helper sends: its lane and send threads run (the 20th field of stat).
    while time.monotonic() < deadline and not (
        helpers and all(int((_stat(pid) or ["0"] * 18)[17]) > 3 for pid in helpers)
    ):
        helpers = [int(pid) for pid in children.read_text().split()] if children.exists() else []
        time.sleep(0.05)
    assert helpers, "the tick started no helper"
    victim.send_signal(signal.SIGKILL)
    victim.wait(timeout=10)
    deadline = time.monotonic() + 5  # sending the rest would take the helper ~15 s
    while any(_stat(pid)[:1] not in ([], ["Z"]) for pid in helpers):
        assert time.monotonic() < deadline, "a helper sends on without its tick"
        time.sleep(0.05)
    victim.communicate(timeout=10)
    settled = len(smtp_server.received)
    time.sleep(1.0)
    assert len(smtp_server.received) == settled < 3000
