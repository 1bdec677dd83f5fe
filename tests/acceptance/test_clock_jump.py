"""A clock far ahead of the last tick is refused, and a missed day can be sent after all.

One tick with a clock three days ahead used to record the days in between as
`missed` for good. Now `tick` refuses until an operator confirms with `--force`,
`run` waits for that confirmation, and `reopen DAY` sends a missed day later.
Every scenario runs against aiosmtpd and the ledger on SQLite and PostgreSQL.
"""

from __future__ import annotations

import json
import signal
import subprocess
import sys
import time
from collections import Counter
from pathlib import Path

import pytest
import sqlalchemy as sa

from dispatcher.ledger.tables import dispatches
from tests.support.database import Database
from tests.support.ledger import add_subscribers
from tests.support.processes import environment
from tests.support.smtpd import SmtpServer

ROOT = Path(__file__).parents[2]
DAY_1 = "2019-04-02T08:00:05+02:00"  # Tuesday's email
DAY_4 = "2019-04-05T08:00:05+02:00"  # Friday's: Wednesday and Thursday lie in between


def dispatcher(env: dict[str, str], *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "dispatcher", *args],
        cwd=ROOT, env=env, capture_output=True, text=True, timeout=120,
    )  # fmt: skip


def ledger(database: Database) -> dict[str, str]:
    """Day → state of the email dispatches."""
    query = sa.select(dispatches.c.day, dispatches.c.state).order_by(dispatches.c.day)
    with database.engine.connect() as connection:
        return {str(day): state for day, state in connection.execute(query)}


def received_per_day(smtp: SmtpServer) -> Counter[tuple[str, str]]:
    """(recipient, subject) → how many messages arrived."""
    return Counter((r.rcpt_tos[0], str(r.message["Subject"])) for r in smtp.received)


def test_a_tick_three_days_ahead_refuses_until_forced(
    database: Database, smtp_server: SmtpServer, tmp_path: Path
) -> None:
    add_subscribers(database, 3)
    env = environment(database, smtp_server, tmp_path)
    first = dispatcher(env, "tick", "--at", DAY_1)
    assert first.returncode == 0, first.stderr
    assert "2019-04-02 email nordwind-maritim: done (3 sent)" in first.stdout

    ahead = dispatcher(env, "tick", "--at", DAY_4)
    assert ahead.returncode == 1, ahead.stderr
    assert (
        "tick refused: the clock (2019-04-05 06:00 UTC) is 3 days 0 h ahead of the last tick "
        "(2019-04-02 06:00 UTC), more than DISPATCHER_CLOCK_JUMP_HOURS (26 h); nothing was "
        "sent or recorded" in ahead.stderr
    )
    assert "dispatcher tick --force" in ahead.stderr
    assert ledger(database) == {"2019-04-02": "done"}  # nothing written off
    assert len(smtp_server.received) == 3

    forced = dispatcher(env, "tick", "--force", "--at", DAY_4)
    assert forced.returncode == 0, forced.stderr
    assert ledger(database) == {
        "2019-04-02": "done",
        "2019-04-03": "missed",
        "2019-04-04": "missed",
        "2019-04-05": "done",
    }
    assert forced.stdout.count(": MISSED") == 2
    assert len(smtp_server.received) == 6

    # A day later is within the limit again: no confirmation needed.
    next_day = dispatcher(env, "tick", "--at", "2019-04-05T20:00:00+02:00")
    assert next_day.returncode == 0 and next_day.stdout.strip() == "nothing due", next_day.stderr


def test_reopen_sends_a_missed_day_exactly_once(
    database: Database, smtp_server: SmtpServer, tmp_path: Path
) -> None:
    addresses = add_subscribers(database, 3)
    env = environment(database, smtp_server, tmp_path)
    # Wednesday's send time plus catch_up (6 h) has passed: the first tick records it missed.
    assert dispatcher(env, "tick", "--at", "2019-04-03T15:00:00+02:00").returncode == 0
    assert ledger(database) == {"2019-04-02": "missed", "2019-04-03": "missed"}
    assert smtp_server.received == []

    reopened = dispatcher(env, "reopen", "2019-04-03", "--at", "2019-04-03T15:05:00+02:00")
    assert reopened.returncode == 0, reopened.stderr
    assert reopened.stdout.splitlines() == [
        "re-opened dispatch 2 2019-04-03 email saxony-mikroelektronik: planned, "
        "send at 2019-04-03 13:05 UTC",
        "the next tick sends it",
    ]
    assert ledger(database)["2019-04-03"] == "planned"

    sent = dispatcher(env, "tick", "--at", "2019-04-03T15:06:00+02:00")
    assert sent.returncode == 0, sent.stderr
    assert (
        "dispatch 2 2019-04-03 email saxony-mikroelektronik: done (3 sent)"
        in sent.stdout.splitlines()
    )
    again = dispatcher(env, "tick", "--at", "2019-04-03T15:30:00+02:00")
    assert again.returncode == 0 and again.stdout.strip() == "nothing due"
    per_day = received_per_day(smtp_server)
    assert sorted(rcpt for rcpt, _ in per_day) == sorted(addresses)
    assert set(per_day.values()) == {1}
    assert ledger(database) == {"2019-04-02": "missed", "2019-04-03": "done"}

    twice = dispatcher(env, "reopen", "2019-04-03")
    assert twice.returncode == 1
    assert "reopen refused: 2019-04-03 is not missed (email done)" in twice.stderr
    nothing = dispatcher(env, "reopen", "2019-04-04")
    assert nothing.returncode == 1
    assert "reopen refused: no dispatch is recorded for 2019-04-04" in nothing.stderr
    other_channel = dispatcher(env, "reopen", "2019-04-02", "--channel", "mastodon")
    assert other_channel.returncode == 1
    assert "no dispatch is recorded for 2019-04-02 mastodon" in other_channel.stderr
    german = dispatcher(env, "reopen", "02.04.2019")
    assert german.returncode == 1 and "write it as YYYY-MM-DD" in german.stderr
    assert len(smtp_server.received) == 3


@pytest.mark.slow  # starts the service: about 10 s per database
def test_run_waits_for_confirmation_of_a_clock_jump(
    database: Database, smtp_server: SmtpServer, tmp_path: Path
) -> None:
    add_subscribers(database, 2)
    env = environment(database, smtp_server, tmp_path)
    assert dispatcher(env, "tick", "--at", DAY_1).returncode == 0

    rehearsal = dispatcher(env, "run", "--at", DAY_4)
    assert rehearsal.returncode == 1
    assert "run refused: the clock (2019-04-05 06:00 UTC) is 3 days 0 h ahead" in rehearsal.stderr

    # The real clock is years past the last tick (2019): the service serves, logs the
    # jump, and records nothing until an operator confirms.
    service = subprocess.Popen(
        [sys.executable, "-m", "dispatcher", "run"],
        cwd=ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )  # fmt: skip
    try:
        assert service.stdout is not None
        events: list[dict[str, object]] = []
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline and not any(
            e.get("event") == "clock_jump" for e in events
        ):
            line = service.stdout.readline()
            if not line:
                break
            events.append(json.loads(line))
        jump = next(e for e in events if e.get("event") == "clock_jump")
        assert jump["level"] == "error"
        assert "ahead of the last tick (2019-04-02 06:00 UTC)" in str(jump["message"])
        assert ledger(database) == {"2019-04-02": "done"}
    finally:
        service.send_signal(signal.SIGTERM)
        service.communicate(timeout=60)
    assert service.returncode == 0

    # The confirmation: the days in between are now recorded as missed.
    confirmed = dispatcher(env, "tick", "--force")
    assert confirmed.returncode == 0, confirmed.stderr
    assert confirmed.stdout.count(": MISSED") == 7
    assert set(ledger(database).values()) == {"done", "missed"}
    assert len(smtp_server.received) == 2
