"""One plan: `plan`, `plan --json` and `status` agree with the ledger about the past.

A sent day keeps its item and state whatever the editors do to the file afterwards;
`plan --at` on a ledger shows each recorded state as recorded.
"""

from __future__ import annotations

import datetime as dt
import json
import os
import re
import subprocess
import sys
from pathlib import Path

import sqlalchemy as sa

from dispatcher.campaign.loading import load_campaign
from dispatcher.campaign.model import Channel
from dispatcher.delivery import schedule
from dispatcher.ledger import store
from dispatcher.ledger.tables import DispatchState, dispatches
from tests.support.campaigns import campaign_copy
from tests.support.database import Database

ROOT = Path(__file__).parents[2]
SENT_ITEM = "nordwind-maritim"  # the first item of the sample week: 2 April


def dispatcher(env: dict[str, str], *args: str) -> subprocess.CompletedProcess[str]:
    environment = {k: v for k, v in os.environ.items() if not k.startswith("DISPATCHER_")}
    environment.update(env)
    return subprocess.run(
        [sys.executable, "-m", "dispatcher", *args],
        cwd=ROOT, env=environment, capture_output=True, text=True, timeout=120, check=False,
    )  # fmt: skip


def remove_item(text: str, item_id: str) -> str:
    """The campaign text without the item `item_id` (its whole list entry)."""
    pattern = rf"  - id: {re.escape(item_id)}\n(?:    .*\n|\n)*?(?=  - id: |\Z)"
    edited, count = re.subn(pattern, "", text)
    assert count == 1, f"item {item_id} not found in the sample's shape"
    return edited


def test_a_sent_day_keeps_its_item_after_the_file_is_edited(tmp_path: Path) -> None:
    campaign_file = campaign_copy(tmp_path)
    env = {
        "DISPATCHER_DATABASE_URL": f"sqlite:///{tmp_path / 'ledger.sqlite3'}",
        "DISPATCHER_OUTBOX_DIR": str(tmp_path / "outbox"),
        "DISPATCHER_CAMPAIGN_FILE": str(campaign_file),
    }
    sent = dispatcher(env, "tick", "--at", "2019-04-02T08:00:30+02:00")
    assert sent.returncode == 0, sent.stderr
    # The editors delete the sent item and retitle the next one.
    text = remove_item(campaign_file.read_text(encoding="utf-8"), SENT_ITEM)
    text = text.replace('title: "', 'title: "Neu: ', 1)
    campaign_file.write_text(text, encoding="utf-8")
    assert dispatcher(env, "validate").returncode == 0

    at = "2019-04-03T12:00+02:00"
    rows = json.loads(dispatcher(env, "plan", "--json", "--at", at).stdout)
    first = [r for r in rows if r["date"] == "2019-04-02"]
    assert [(r["channel"], r["item"], r["state"]) for r in first] == [("email", SENT_ITEM, "sent")]
    second = next(r for r in rows if r["date"] == "2019-04-03")
    assert second["item"] != SENT_ITEM and second["state"] == "due"  # within catch_up
    table = dispatcher(env, "plan", "--at", at).stdout
    line = next(line for line in table.splitlines() if line.startswith("2019-04-02"))
    assert SENT_ITEM in line and line.split()[-1] == "sent"
    status = json.loads(dispatcher(env, "status", "--json", "--at", at).stdout)
    (recorded,) = status["dispatches"]
    assert (recorded["day"], recorded["item"], recorded["state"]) == (
        "2019-04-02",
        SENT_ITEM,
        "done",
    )
    # `status` and `plan` name the same next send: one function computes it.
    upcoming = [r for r in rows if r["state"] in ("planned", "due")]
    assert status["next_send"]["email"].startswith(upcoming[0]["send_at_utc"][:16])


def test_plan_at_shows_each_recorded_state_as_recorded(database: Database) -> None:
    campaign = load_campaign(ROOT / "config" / "campaign.yaml")
    days = [dt.date(2019, 4, d) for d in (2, 3, 4, 5)]
    recorded = [DispatchState.DONE, DispatchState.PARTIAL, DispatchState.FAILED,
                DispatchState.MISSED]  # fmt: skip
    now = dt.datetime(2019, 4, 1, tzinfo=dt.UTC)  # before all of it: time alone says "planned"
    with database.engine.begin() as connection:
        for day, state in zip(days, recorded, strict=True):
            store.ensure_dispatch(
                connection, campaign_id=campaign.id, day=day, channel="email",
                item_id=f"item-of-{day:%d}", content_hash="h", content="{}",
                send_at=dt.datetime.combine(day, dt.time(6), tzinfo=dt.UTC),
                state=state, now=now,
            )  # fmt: skip
    with database.engine.connect() as connection:
        plan = schedule.ledger_plan(connection, campaign, now)
        assert connection.execute(sa.select(sa.func.count()).select_from(dispatches)).scalar() == 4
    shown = {
        row.day: (row.item_id, row.state)
        for row in plan.rows
        if row.channel is Channel.EMAIL and row.day in days
    }
    assert shown[days[0]] == ("item-of-02", "sent")
    assert shown[days[1]] == ("item-of-03", "partial")
    assert shown[days[2]] == ("item-of-04", "failed")
    # Nothing went out on a missed day, so its content is not fixed; its state is.
    assert shown[days[3]][1] == "missed"
    # The next email is the first day the ledger has not decided, not a recorded one.
    assert schedule.next_sends(plan, campaign)[Channel.EMAIL] == dt.datetime(
        2019, 4, 8, 6, 0, tzinfo=dt.UTC
    )
