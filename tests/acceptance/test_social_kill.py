"""A `tick` process killed between the provider acting and the ledger recording it.

Each provider is made to answer late (after it has created the post), and the
process is killed while it waits. Restarted after the lease, Mastodon (same
Idempotency-Key) and Bluesky (same record key) give back the post they already
made; LinkedIn has no idempotency, so its delivery becomes `unknown` and is not
posted again.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

import sqlalchemy as sa

from dispatcher.ledger.tables import deliveries, dispatches
from tests.support import fake_bluesky
from tests.support.campaigns import campaign_copy
from tests.support.database import Database
from tests.support.fake_bluesky import FakeBluesky
from tests.support.fake_linkedin import FakeLinkedIn
from tests.support.fake_mastodon import PNG, FakeMastodon
from tests.support.httpserver import Response

ROOT = Path(__file__).parents[2]
LATE = Response(504, delay=30, after_handling=True)  #: acted, then never answers in time


def tick(env: dict[str, str], at: str) -> subprocess.Popen[str]:
    return subprocess.Popen(
        [sys.executable, "-m", "dispatcher", "tick", "--at", at],
        cwd=ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )  # fmt: skip


def kill_when(process: subprocess.Popen[str], happened: Callable[[], bool]) -> None:
    deadline = time.monotonic() + 60
    while not happened() and time.monotonic() < deadline:
        if process.poll() is not None:
            raise AssertionError(f"tick ended early: {process.communicate()}")
        time.sleep(0.05)
    assert happened(), "the provider never received the post"
    process.send_signal(signal.SIGKILL)
    process.communicate(timeout=10)


def states(database: Database) -> dict[str, str]:
    query = sa.select(dispatches.c.channel, deliveries.c.state).join(
        dispatches, dispatches.c.id == deliveries.c.dispatch_id
    )
    with database.engine.connect() as connection:
        return dict(connection.execute(query).all())


def test_killed_between_request_and_ledger_update(database: Database, tmp_path: Path) -> None:
    with FakeMastodon() as mastodon, FakeBluesky() as bluesky, FakeLinkedIn() as linkedin:
        mastodon.images["/images/nordwind-maritim.jpg"] = (PNG, "image/png")
        env = {k: v for k, v in os.environ.items() if not k.startswith("DISPATCHER_")}
        env.update(
            DISPATCHER_DATABASE_URL=database.url,
            DISPATCHER_CAMPAIGN_FILE=str(
                campaign_copy(
                    tmp_path,
                    channels=("mastodon", "bluesky", "linkedin"),
                    image_base=f"{mastodon.url}/images",
                )
            ),
            DISPATCHER_OUTBOX_DIR=str(tmp_path / "outbox"),
            DISPATCHER_MASTODON_BASE_URL=mastodon.url,
            DISPATCHER_MASTODON_ACCESS_TOKEN=mastodon.token,
            DISPATCHER_BLUESKY_PDS_URL=bluesky.url,
            DISPATCHER_BLUESKY_HANDLE=fake_bluesky.HANDLE,
            DISPATCHER_BLUESKY_APP_PASSWORD=fake_bluesky.PASSWORD,
            DISPATCHER_LINKEDIN_ACCESS_TOKEN=linkedin.token,
            DISPATCHER_LINKEDIN_AUTHOR_URN=linkedin.author,
            DISPATCHER_LINKEDIN_API_URL=linkedin.url,
            DISPATCHER_LOG_FORMAT="json",
        )
        mastodon.fail_next("/api/v1/statuses", LATE)
        bluesky.fail_next("/xrpc/com.atproto.repo.putRecord", LATE)
        linkedin.fail_next("/rest/posts", LATE)

        # Each run is killed inside one provider's late answer; the next run starts after
        # the 5-minute lease of the killed one has run out.
        kill_when(tick(env, "2019-04-02T09:00:05+02:00"), lambda: len(mastodon.statuses) == 1)
        kill_when(tick(env, "2019-04-02T09:06:05+02:00"), lambda: len(bluesky.posts()) == 1)
        kill_when(tick(env, "2019-04-02T09:12:05+02:00"), lambda: len(linkedin.posts) == 1)
        last = tick(env, "2019-04-02T09:18:05+02:00")
        _out, err = last.communicate(timeout=60)
        assert last.returncode == 0, err

        assert len(mastodon.statuses) == 1
        assert len(mastodon.requests_to("/api/v1/statuses")) == 2  # retried with the same key
        assert len(bluesky.posts()) == 1
        assert len(bluesky.requests_to("/xrpc/com.atproto.repo.putRecord")) == 2
        assert len(linkedin.posts) == 1
        assert len(linkedin.requests_to("/rest/posts")) == 1  # never posted again
        assert states(database) == {"mastodon": "sent", "bluesky": "sent", "linkedin": "unknown"}
