"""`status`, `retry`, `tick`, `db upgrade` and `demo` as an operator runs them."""

from __future__ import annotations

import json
import re
import subprocess
import sys
from pathlib import Path

from tests.support.database import Database
from tests.support.ledger import add_subscribers
from tests.support.processes import ROOT, environment
from tests.support.smtpd import SmtpServer


def run(env: dict[str, str], *args: str, cwd: Path = ROOT) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "dispatcher", *args],
        cwd=cwd, env=env, capture_output=True, text=True, timeout=120,
    )  # fmt: skip


def test_failed_delivery_shows_in_status_and_retry_sends_it(
    sqlite_database: Database, smtp_server: SmtpServer
) -> None:
    add_subscribers(sqlite_database, 4)
    smtp_server.script("leser00001@example.org", "554 5.6.0 Message content rejected", at="data")
    env = environment(sqlite_database, smtp_server)
    tick = run(env, "tick", "--at", "2019-04-02T08:00:05+02:00")
    assert tick.returncode == 3, tick.stderr  # a delivery failed
    assert "dispatch 1 2019-04-02 email nordwind-maritim: partial (1 failed, 3 sent)" in tick.stdout

    status = run(env, "status", "--at", "2019-04-02T09:00:00+02:00")
    assert status.returncode == 0, status.stderr
    row = next(line for line in status.stdout.splitlines() if line.strip().startswith("1 "))
    assert re.search(r"partial\s+0\s+0\s+3\s+0\s+1\s+0\s+0", row), row
    assert "error: 1× SMTP server" in status.stdout and "554" in status.stdout
    assert "next send: email 2019-04-03T06:00:00+00:00" in status.stdout

    data = json.loads(run(env, "status", "--json").stdout)
    assert data["dispatches"][0]["counts"] == {"sent": 3, "failed": 1}
    assert data["subscribers"]["active"] == 4

    retry = run(env, "retry", "--dispatch", "1")
    assert retry.returncode == 0 and "re-queued 1 failed deliveries" in retry.stdout
    again = run(env, "tick", "--at", "2019-04-02T08:30:00+02:00")
    assert again.returncode == 0, again.stderr
    assert "done (4 sent)" in again.stdout
    got = [r.rcpt_tos[0] for r in smtp_server.received]
    assert got.count("leser00001@example.org") == 1 and len(got) == 4

    unknown = run(env, "retry", "--dispatch", "99")
    assert unknown.returncode == 1 and "no dispatch with id 99" in unknown.stderr


def test_db_upgrade_never_prints_the_password(tmp_path: Path) -> None:
    env = {"DISPATCHER_DATABASE_URL": f"sqlite:///{tmp_path / 'x.sqlite3'}", "PATH": ""}
    result = run(env, "db", "upgrade")
    assert result.returncode == 0 and "is up to date" in result.stdout
    env["DISPATCHER_DATABASE_URL"] = "postgresql+psycopg://u:hunter2secret@127.0.0.1:1/none"
    failing = run(env, "db", "upgrade")
    assert failing.returncode == 1
    assert "cannot open the ledger at postgresql+psycopg://u:***@127.0.0.1:1/none" in failing.stderr
    assert "hunter2secret" not in failing.stdout + failing.stderr


def test_demo_replays_the_week(tmp_path: Path) -> None:
    result = run({"PATH": ""}, "demo", "--dir", str(tmp_path / "demo"), "--subscribers", "150")
    assert result.returncode == 0, result.stderr
    out = result.stdout
    assert "2019-04-02  Di   email     08:00" in out  # the plan
    assert len(re.findall(r"email \S+: done \(150 sent\)", out)) == 8  # a line per dispatch
    assert out.count("     done ") >= 8  # the final status table
    assert "1200 emails in" in out
    assert len(list((tmp_path / "demo" / "outbox").rglob("*.eml"))) == 1200


def test_an_outage_shows_in_tick_and_status_and_retry_lifts_its_backoff(
    sqlite_database: Database, smtp_server: SmtpServer
) -> None:
    """The relay's milter is down: tick says so and keeps everything queued; once ops fixed
    it, `retry` lets the next tick try at once instead of after the channel's backoff."""
    add_subscribers(sqlite_database, 3)
    smtp_server.refusal = "451 4.7.1 Service unavailable - try again later"
    # One process: with helper workers each may count a refusal before it sees the other's.
    env = environment(sqlite_database, smtp_server, DISPATCHER_WORKERS="1")
    tick = run(env, "tick", "--at", "2019-04-02T08:00:05+02:00")
    assert tick.returncode == 3
    assert "error: channel email: SMTP server" in tick.stderr and "451 4.7.1" in tick.stderr
    assert "next try at 2019-04-02 08:00:35 CEST" in tick.stderr  # 30 s after the refusal

    status = run(env, "status", "--at", "2019-04-02T08:00:10+02:00")
    assert "unavailable: email since 2019-04-02T06:00:05" in status.stdout
    assert json.loads(run(env, "status", "--json").stdout)["outages"]["email"]["refused_tries"] == 1

    smtp_server.refusal = None  # fixed
    early = run(env, "tick", "--at", "2019-04-02T08:00:20+02:00")  # still inside the backoff
    assert early.returncode == 3 and "unavailable since" in early.stderr
    assert smtp_server.received == []

    retry = run(env, "retry")
    assert "channel email: its outage backoff is lifted" in retry.stdout
    again = run(env, "tick", "--at", "2019-04-02T08:00:25+02:00")
    assert again.returncode == 0, again.stderr
    assert "done (3 sent)" in again.stdout
    assert len(smtp_server.received) == 3
    assert "unavailable" not in run(env, "status").stdout
