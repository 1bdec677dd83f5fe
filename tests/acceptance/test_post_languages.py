"""An account that posts in two languages is replaced: ops move both posts of the day at once.

`dispatcher` commands against two fake Mastodon instances (tests/support/fake_mastodon.py):
the old instance refuses the day's German and English statuses; the account moves to a new
instance; `validate` reports the old target's posts, `retry --target NEW` moves both (each with
its idempotency key) and the next tick posts each once, in its language; `status` lists them.
"""

from __future__ import annotations

import datetime as dt
import json
import subprocess
import sys
from pathlib import Path

import sqlalchemy as sa

from dispatcher.ledger import store
from dispatcher.ledger import targets as ledger_targets
from dispatcher.ledger.tables import DispatchState, deliveries
from tests.support.database import Database
from tests.support.fake_mastodon import FakeMastodon
from tests.support.httpserver import Response
from tests.support.post_languages import BOTH, campaign_file
from tests.support.processes import ROOT, environment
from tests.support.smtpd import SmtpServer

DAY1 = "2019-04-02T08:05:05+02:00"


def run(env: dict[str, str], *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "dispatcher", *args],
        cwd=ROOT, env=env, capture_output=True, text=True, timeout=120,
    )  # fmt: skip


def keys_sent(server: FakeMastodon) -> dict[str, str]:
    """Idempotency-Key → language of every status request the server got."""
    return {
        request.headers["idempotency-key"]: request.json()["language"]
        for request in server.requests_to("/api/v1/statuses")
    }


def test_retry_target_moves_both_languages_of_a_replaced_account_with_their_keys(
    sqlite_database: Database, smtp_server: SmtpServer, tmp_path: Path
) -> None:
    with FakeMastodon() as old, FakeMastodon() as new:
        refused = Response(422, json={"error": "Validation failed: account suspended"})
        old.fail_next("/api/v1/statuses", refused, refused)
        own = tmp_path / "languages"  # `environment` writes its own campaign to tmp_path
        own.mkdir()
        env = environment(
            sqlite_database,
            smtp_server,
            tmp_path,
            DISPATCHER_CAMPAIGN_FILE=str(campaign_file(own, {"mastodon": BOTH["mastodon"]})),
            DISPATCHER_MASTODON_BASE_URL=old.url,
            DISPATCHER_MASTODON_ACCESS_TOKEN=old.token,
        )
        old_target = f"mastodon:{old.url.removeprefix('http://')}"
        new_target = f"mastodon:{new.url.removeprefix('http://')}"
        first = run(env, "tick", "--at", DAY1)
        assert "dispatch 1 2019-04-02 mastodon werften: failed (2 failed)" in first.stdout
        assert f"{old_target}#en failed" in first.stderr
        tried = keys_sent(old)
        assert sorted(tried.values()) == ["de", "en"] and old.statuses == []

        env.update(DISPATCHER_MASTODON_BASE_URL=new.url, DISPATCHER_MASTODON_ACCESS_TOKEN=new.token)
        validate = run(env, "validate")
        assert (
            f"target {old_target} is not configured: 2 mastodon post(s) not sent to it (dispatch 1 "
            "2019-04-02 failed, dispatch 1 2019-04-02 en post failed)"
        ) in validate.stderr
        moved = run(env, "retry", "--target", new_target)
        assert moved.returncode == 0, moved.stderr
        what = "dispatch 1 2019-04-02 mastodon werften"
        assert moved.stdout.splitlines() == [
            f"moved {what} (failed) from {old_target} to {new_target}",
            f"moved {what}, its en post (failed) from {old_target} to {new_target}",
            f"moved 2 deliveries to {new_target}; the next tick sends them with their "
            "idempotency keys",
        ]

        second = run(env, "tick", "--at", "2019-04-02T08:30:00+02:00")
        assert "dispatch 1 2019-04-02 mastodon werften: done (2 sent)" in second.stdout
        assert [s["language"] for s in new.statuses] == ["de", "en"]
        assert [s["text"].split("\n")[0] for s in new.statuses] == [
            "Werften im Wandel",
            "Shipyards in change",
        ]
        assert keys_sent(new) == tried  # each language kept its key across the move

        status = json.loads(run(env, "status", "--json").stdout)
        [dispatch] = status["dispatches"]
        assert [(p["target"], p["state"]) for p in dispatch["posts"]] == [
            (new_target, "sent"),
            (f"{new_target}#en", "sent"),
        ]
        assert status["stranded"] == []


def test_a_renamed_target_takes_its_further_languages_along(sqlite_database: Database) -> None:
    now = dt.datetime(2019, 4, 2, 6, 0, tzinfo=dt.UTC)
    with sqlite_database.engine.begin() as connection:
        dispatch = store.ensure_dispatch(
            connection, campaign_id="c", day=now.date(), channel="webhook", item_id="i",
            content_hash="h", content="{}", send_at=now, state=DispatchState.PLANNED, now=now,
        )  # fmt: skip
        rows = [
            store.TargetDelivery("webhook:generic:f00d", "k-de", "de"),
            store.TargetDelivery("webhook:generic:f00d#en", "k-en", "en"),
            store.TargetDelivery("webhook:generic:other#en", "k-other", "en"),
        ]
        store.fan_out_targets(connection, dispatch, rows, now=now)
        renames = {"webhook:generic:f00d": "webhook:generic:hooks.example"}
        assert ledger_targets.rename(connection, "webhook", renames, now=now) == 2
        assert ledger_targets.rename(connection, "webhook", renames, now=now) == 0
        found = connection.execute(
            sa.select(deliveries.c.recipient, deliveries.c.key, deliveries.c.lang).order_by(
                deliveries.c.id
            )
        ).all()
    assert [tuple(row) for row in found] == [
        ("webhook:generic:hooks.example", "k-de", "de"),
        ("webhook:generic:hooks.example#en", "k-en", "en"),
        ("webhook:generic:other#en", "k-other", "en"),
    ]


def test_retry_target_from_one_languages_name_moves_only_that_post(
    sqlite_database: Database,
) -> None:
    now = dt.datetime(2019, 4, 2, 6, 0, tzinfo=dt.UTC)
    with sqlite_database.engine.begin() as connection:
        dispatch = store.ensure_dispatch(
            connection, campaign_id="c", day=now.date(), channel="mastodon", item_id="i",
            content_hash="h", content="{}", send_at=now, state=DispatchState.RUNNING, now=now,
        )  # fmt: skip
        rows = [
            store.TargetDelivery("mastodon:old.example", "k-de", "de"),
            store.TargetDelivery("mastodon:old.example#en", "k-en", "en"),
        ]
        store.fan_out_targets(connection, dispatch, rows, now=now)
        connection.execute(deliveries.update().values(state="failed"))
        stranded = ledger_targets.stranded(connection, "c", {"mastodon": ["mastodon:new.example"]})
        assert [(s.target, s.lang) for s in stranded] == [
            ("mastodon:old.example", None),
            ("mastodon:old.example", "en"),
        ]
        moved = ledger_targets.move(
            connection, campaign_id="c", channel="mastodon", sources=["mastodon:old.example#en"],
            target="mastodon:new.example", states=["failed"], dispatch_id=None, now=now,
        )  # fmt: skip
        assert [(m.moved, m.lang) for m in moved] == [(True, "en")]
        found = connection.execute(
            sa.select(deliveries.c.recipient, deliveries.c.key, deliveries.c.state).order_by(
                deliveries.c.id
            )
        ).all()
    assert [tuple(row) for row in found] == [
        ("mastodon:old.example", "k-de", "failed"),
        ("mastodon:new.example#en", "k-en", "pending"),
    ]
