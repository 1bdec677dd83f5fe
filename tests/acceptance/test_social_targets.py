"""Social targets keep their deliveries when a credential changes, and ops see every post.

The operator's path after a refused token, as `dispatcher` commands against local fake
providers (tests/support/fake_*.py): the tick says which day, channel, item and target failed
and why; renewing the token in `DISPATCHER_WEBHOOK_URLS` (also reordered) keeps the target,
so `retry` and the next tick post the day once; `status` shows each post with its link. A
ledger written by an earlier version (targets named by a hash of the URL with its token) is
renamed at start; a target whose URL changed before the upgrade is reported, and
`retry --target NEW --from OLD` posts its day there with the same Matrix txnId.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import json
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
import sqlalchemy as sa
from alembic import command
from pydantic import SecretStr

from dispatcher.delivery.context import open_ledger
from dispatcher.ledger import engine as ledger_engine
from dispatcher.ledger.tables import deliveries, dispatches
from dispatcher.settings import Settings
from tests.support import fake_webhooks as fw
from tests.support.campaigns import campaign_copy
from tests.support.database import Database
from tests.support.fake_mastodon import PNG, FakeMastodon
from tests.support.fake_webhooks import FakeWebhooks
from tests.support.processes import ROOT, environment
from tests.support.smtpd import SmtpServer

DAY1 = "2019-04-02T08:00:05+02:00"
ITEMS = {2: "nordwind-maritim", 3: "saxony-mikroelektronik"}
ROOM_LINK = "https://matrix.to/#/!clusterwoche%3Aexample.org/"


def run(env: dict[str, str], *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "dispatcher", *args],
        cwd=ROOT, env=env, capture_output=True, text=True, timeout=120,
    )  # fmt: skip


@pytest.fixture
def hooks() -> Iterator[FakeWebhooks]:
    with FakeWebhooks() as server:
        yield server


def own_campaign(tmp_path: Path, channel: str, image_base: str | None = None) -> str:
    """A campaign file of its own (`environment` writes an email-only one to `tmp_path`)."""
    directory = tmp_path / channel
    directory.mkdir(exist_ok=True)
    return str(campaign_copy(directory, channels=(channel,), image_base=image_base))


def webhook_env(
    database: Database, smtp: SmtpServer, tmp_path: Path, urls: list[str]
) -> dict[str, str]:
    return environment(
        database,
        smtp,
        tmp_path,
        DISPATCHER_CAMPAIGN_FILE=own_campaign(tmp_path, "webhook"),
        DISPATCHER_WEBHOOK_URLS=",".join(urls),
    )


def matrix_target(hooks: FakeWebhooks) -> str:
    host = hooks.url.removeprefix("http://")
    return f"webhook:matrix:{host}/{fw.MATRIX_ROOM}"


def test_a_renewed_token_keeps_the_post_and_status_links_it(
    sqlite_database: Database, smtp_server: SmtpServer, hooks: FakeWebhooks, tmp_path: Path
) -> None:
    revoked = hooks.matrix_url.replace(fw.MATRIX_TOKEN, "syt_revokedToken_0000000000")
    env = webhook_env(sqlite_database, smtp_server, tmp_path, [revoked, hooks.slack_url])

    first = run(env, "tick", "--at", DAY1)
    assert first.returncode == 3, first.stderr
    assert "dispatch 1 2019-04-02 webhook nordwind-maritim: partial (1 failed, 1 sent)" in (
        first.stdout
    )
    # The reason, on stderr, naming day, channel, item and target — never the token.
    reason = next(line for line in first.stderr.splitlines() if "M_UNKNOWN_TOKEN" in line)
    assert reason.startswith(
        f"error: dispatch 1 2019-04-02 webhook nordwind-maritim: {matrix_target(hooks)} failed: "
    )
    assert "syt_revokedToken" not in first.stdout + first.stderr
    assert hooks.matrix == []

    # The routine fix: the new token into the setting (the list reordered too), then retry.
    env["DISPATCHER_WEBHOOK_URLS"] = f"{hooks.slack_url},{hooks.matrix_url}"
    retry = run(env, "retry")
    assert retry.returncode == 0 and "re-queued 1 failed deliveries" in retry.stdout
    second = run(env, "tick", "--at", "2019-04-02T08:30:00+02:00")
    assert second.returncode == 0, second.stderr
    # Finished in a later tick than the one that created it: still day, channel and item.
    assert "dispatch 1 2019-04-02 webhook nordwind-maritim: done (2 sent)" in second.stdout
    assert len(hooks.matrix) == 1 and len(hooks.slack) == 1  # the day posted once each

    data = json.loads(run(env, "status", "--json").stdout)
    [dispatch] = data["dispatches"]
    posts = {post["target"]: post for post in dispatch["posts"]}
    matrix = posts[matrix_target(hooks)]
    event = hooks.matrix[0]["event_id"]
    assert (matrix["state"], matrix["attempts"], matrix["provider_id"]) == ("sent", 1, event)
    assert matrix["link"] == ROOM_LINK + event.replace("$", "%24").replace(":", "%3A")
    slack = posts["webhook:slack:T0CW2024/B0CW2024"]
    assert (slack["state"], slack["link"]) == ("sent", None)  # Slack answers without an id
    assert data["stranded"] == []

    text = run(env, "status").stdout
    assert f"      {matrix_target(hooks)}: sent, 1 attempt, id {event}, {matrix['link']}" in text
    assert "      webhook:slack:T0CW2024/B0CW2024: sent, 1 attempt\n" in text
    assert "syt_" not in text


def test_status_links_mastodon_posts_and_tick_reports_a_refused_token(
    sqlite_database: Database, smtp_server: SmtpServer, tmp_path: Path
) -> None:
    with FakeMastodon() as mastodon:
        mastodon.images["/images/nordwind-maritim.jpg"] = (PNG, "image/png")
        env = environment(
            sqlite_database,
            smtp_server,
            tmp_path,
            DISPATCHER_CAMPAIGN_FILE=own_campaign(tmp_path, "mastodon", f"{mastodon.url}/images"),
            DISPATCHER_MASTODON_BASE_URL=mastodon.url,
            DISPATCHER_MASTODON_ACCESS_TOKEN="expired-token-value",
        )
        at = "2019-04-02T08:05:05+02:00"
        first = run(env, "tick", "--at", at)
        assert first.returncode == 3
        assert "DISPATCHER_MASTODON_ACCESS_TOKEN" in first.stderr
        assert "expired-token-value" not in first.stdout + first.stderr

        env["DISPATCHER_MASTODON_ACCESS_TOKEN"] = mastodon.token
        run(env, "retry")
        second = run(env, "tick", "--at", "2019-04-02T08:20:00+02:00")
        assert second.returncode == 0, second.stderr
        assert "2019-04-02 mastodon nordwind-maritim: done (1 sent)" in second.stdout
        assert len(mastodon.statuses) == 1
        [dispatch] = json.loads(run(env, "status", "--json").stdout)["dispatches"]
        [post] = dispatch["posts"]
        host = mastodon.url.removeprefix("http://")
        assert post["target"] == f"mastodon:{host}"
        assert post["provider_id"] == str(mastodon.statuses[0]["id"])
        assert post["link"] == mastodon.statuses[0]["url"] and post["link"].startswith("http")


# --- a ledger written before targets had names -------------------------------------------


def old_name(kind: str, url: str) -> str:
    """How earlier versions named a webhook target: a hash of the URL, token included."""
    return f"webhook:{kind}:{hashlib.sha256(url.encode()).hexdigest()[:12]}"


def test_an_old_ledger_is_renamed_and_a_vanished_target_is_moved_with_its_key(
    database: Database, smtp_server: SmtpServer, hooks: FakeWebhooks, tmp_path: Path
) -> None:
    # A ledger at revision 0006, as the previous version left it: day 1 half done, its
    # Matrix post failed under a URL whose token has since been renewed (hash unknown now).
    config = ledger_engine.alembic_config(database.url)
    with database.engine.begin() as connection:
        config.attributes["connection"] = connection
        command.downgrade(config, "0006")
    now = dt.datetime(2019, 4, 2, 6, 0, tzinfo=dt.UTC)
    rotated_away = hooks.matrix_url.replace(fw.MATRIX_TOKEN, "syt_leakedToken_111111111")
    slack_url = hooks.slack_url  # `slack+URL`: earlier versions hashed the URL without `slack+`
    slack_hash = old_name("slack", slack_url.removeprefix("slack+"))
    with database.engine.begin() as connection:
        ids = {}
        for day in (2, 3):
            ids[day] = connection.execute(
                dispatches.insert().values(
                    campaign_id="clusterwoche-2019",
                    day=dt.date(2019, 4, day),
                    channel="webhook",
                    item_id=ITEMS[day],
                    content_hash="h",
                    content=item_json(tmp_path, day),
                    state="running",
                    send_at=now + dt.timedelta(days=day - 2),
                    fanout_done=True,
                    created_at=now,
                )
            ).inserted_primary_key[0]  # type: ignore[index]
        rows = [
            (ids[2], slack_hash, "clusterwoche-2019-20190402-a", "sent"),
            (ids[2], old_name("matrix", rotated_away), "clusterwoche-2019-20190402-m", "failed"),
            (ids[3], slack_hash, "clusterwoche-2019-20190403-a", "pending"),
        ]
        for dispatch_id, recipient, key, state in rows:
            connection.execute(
                deliveries.insert().values(
                    dispatch_id=dispatch_id, recipient=recipient, key=key, state=state,
                    attempts=1, created_at=now, updated_at=now,
                )
            )  # fmt: skip

    # The new version starts: migrated, and rows of configured targets renamed.
    settings = Settings(
        _env_file=None,  # type: ignore[call-arg]
        database_url=database.url,
        webhook_urls=SecretStr(f"{hooks.matrix_url},{slack_url}"),
    )
    open_ledger(settings).dispose()
    with database.engine.connect() as connection:
        names = connection.execute(
            sa.select(deliveries.c.recipient, deliveries.c.key).order_by(deliveries.c.id)
        ).all()
    assert [tuple(row) for row in names] == [
        ("webhook:slack:T0CW2024/B0CW2024", "clusterwoche-2019-20190402-a"),
        (old_name("matrix", rotated_away), "clusterwoche-2019-20190402-m"),  # cannot be known
        ("webhook:slack:T0CW2024/B0CW2024", "clusterwoche-2019-20190403-a"),
    ]

    env = webhook_env(database, smtp_server, tmp_path, [hooks.matrix_url, slack_url])
    # validate and status name the stranded post and the command that moves it.
    validate = run(env, "validate")
    assert validate.returncode == 0, validate.stdout + validate.stderr
    stranded = old_name("matrix", rotated_away)
    advice = f"run `dispatcher retry --target NEW --from {stranded}`"
    assert f"warning: target {stranded} is not configured: 1 webhook post(s)" in validate.stderr
    assert advice in validate.stderr and matrix_target(hooks) in validate.stderr
    assert advice in run(env, "status").stdout

    moved = run(env, "retry", "--target", matrix_target(hooks))
    assert moved.returncode == 0, moved.stderr
    assert (
        f"moved dispatch {ids[2]} 2019-04-02 webhook nordwind-maritim (failed) from {stranded} "
        f"to {matrix_target(hooks)}"
    ) in moved.stdout
    tick = run(env, "tick", "--at", "2019-04-03T08:00:05+02:00")
    assert tick.returncode == 0, tick.stdout + tick.stderr
    assert f"dispatch {ids[2]} 2019-04-02 webhook nordwind-maritim: done (2 sent)" in tick.stdout
    # The moved post went out with its stored key as the Matrix txnId; day 3's Slack post too.
    [put] = [r for r in hooks.requests if r.method == "PUT" and r.path.startswith("/_matrix/")]
    assert put.path.endswith("/send/m.room.message/clusterwoche-2019-20190402-m")
    assert len(hooks.matrix) == 1 and len(hooks.slack) == 1
    assert json.loads(run(env, "status", "--json").stdout)["stranded"] == []


def item_json(tmp_path: Path, day: int) -> str:
    """The item snapshot a dispatch of that day holds, as the pipeline writes it."""
    from dispatcher.campaign.loading import load_campaign
    from dispatcher.campaign.model import item_to_json

    campaign = load_campaign(Path(own_campaign(tmp_path, "webhook")))
    return item_to_json(campaign.item(ITEMS[day]))


def test_retry_target_refuses_what_it_cannot_do(
    sqlite_database: Database, smtp_server: SmtpServer, hooks: FakeWebhooks, tmp_path: Path
) -> None:
    env = webhook_env(sqlite_database, smtp_server, tmp_path, [hooks.matrix_url])
    unknown = run(env, "retry", "--target", "webhook:matrix:elsewhere/!x:y")
    assert unknown.returncode == 1
    assert f"is not a configured target; configured: {matrix_target(hooks)}" in unknown.stderr
    nothing = run(env, "retry", "--target", matrix_target(hooks))
    assert nothing.returncode == 0 and "moved 0 deliveries" in nothing.stdout
    with sqlite_database.engine.connect() as connection:
        assert connection.execute(sa.select(sa.func.count()).select_from(dispatches)).scalar() == 0
