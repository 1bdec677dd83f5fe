"""The Matrix webhook target against a REAL homeserver (Synapse, tests/support/synapse.py).

The dispatcher's ticks run as `dispatcher tick --at` runs them; what counts is what a room
member sees: the room's messages, read back through the client API. Skipped unless
DISPATCHER_TEST_SYNAPSE is set (`scripts/synapse-setup`, `.ci/run`).
"""

from __future__ import annotations

import datetime as dt
import json
import subprocess
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa
from pydantic import SecretStr

from dispatcher.campaign.loading import load_campaign
from dispatcher.channels import webhook
from dispatcher.channels.webhook import parse_webhook_urls
from dispatcher.ledger import store
from dispatcher.ledger.tables import deliveries, dispatches
from dispatcher.settings import Settings
from tests.support import processes
from tests.support.campaigns import campaign_copy
from tests.support.database import Database
from tests.support.faultproxy import Fault, FaultProxy
from tests.support.ledger import tick_at
from tests.support.smtpd import SmtpServer
from tests.support.synapse import SynapseServer

ROOT = Path(__file__).parents[2]
BERLIN = dt.timezone(dt.timedelta(hours=2))  # CEST, all of April 2019
SEND_DAYS = [dt.date(2019, 4, d) for d in (2, 3, 4, 5, 8, 9, 10, 11)]


def local(day: dt.date, hour: int, minute: int, second: int = 5) -> dt.datetime:
    return dt.datetime.combine(day, dt.time(hour, minute, second), tzinfo=BERLIN)


def matrix_settings(database: Database, tmp_path: Path, *urls: str) -> Settings:
    """The sample week, posts to `urls` only (the webhook goes out at 08:00)."""
    return Settings(
        _env_file=None,  # type: ignore[call-arg]
        database_url=database.url,
        campaign_file=campaign_copy(tmp_path, channels=("webhook",)),
        templates_dir=ROOT / "templates",
        outbox_dir=tmp_path / "outbox",
        webhook_urls=SecretStr(",".join(urls)),
        # Ticking only around the send times jumps from Friday to Monday.
        clock_jump_hours=24 * 4,
    )


@dataclass(frozen=True)
class Row:
    day: dt.date
    link: str  #: the day's reportage URL (every post carries it)
    state: str
    attempts: int
    provider_id: str | None
    last_error: str | None
    next_attempt_at: dt.datetime | None


def rows(database: Database) -> list[Row]:
    query = (
        sa.select(
            dispatches.c.day,
            dispatches.c.content,
            deliveries.c.state,
            deliveries.c.attempts,
            deliveries.c.provider_id,
            deliveries.c.last_error,
            deliveries.c.next_attempt_at,
        )
        .join(dispatches, dispatches.c.id == deliveries.c.dispatch_id)
        .order_by(dispatches.c.day, deliveries.c.id)
    )
    with database.engine.connect() as connection:
        return [
            Row(day, json.loads(content)["url"], state, attempts, provider_id, error, retry)
            for day, content, state, attempts, provider_id, error, retry in connection.execute(
                query
            )
        ]


def bodies(events: list[dict[str, Any]]) -> list[str]:
    return [str(event["content"]["body"]) for event in events]


def test_a_week_of_repeated_ticks_posts_one_message_per_day(
    synapse: SynapseServer, sqlite_database: Database, tmp_path: Path
) -> None:
    bot = synapse.register("bot", rate_limited=False)
    room = synapse.create_room(invite=(bot,))
    settings = matrix_settings(sqlite_database, tmp_path, synapse.webhook_url(room, bot))

    for day in SEND_DAYS:
        for at in (local(day, 7, 59), local(day, 8, 0), local(day, 8, 5), local(day, 12, 0)):
            tick_at(settings, sqlite_database, at)
        # after each day exactly the days so far are in the room
        assert len(synapse.messages(room)) == SEND_DAYS.index(day) + 1

    events = synapse.messages(room)
    ledger = rows(sqlite_database)
    assert [row.state for row in ledger] == ["sent"] * 8
    assert [event["sender"] for event in events] == [bot.user_id] * 8
    # one message per day, in order, each the day's post (its link) and recorded by its id
    assert [row.provider_id for row in ledger] == [event["event_id"] for event in events]
    for row, body in zip(ledger, bodies(events), strict=True):
        assert row.link in body
    assert len(set(bodies(events))) == 8
    formatted = events[0]["content"]
    assert formatted["format"] == "org.matrix.custom.html"
    assert f'<a href="{ledger[0].link}">' in formatted["formatted_body"]


@pytest.mark.parametrize("fault", ["502", "drop"])
def test_an_answer_lost_after_synapse_stored_the_event_still_gives_one_message(
    synapse: SynapseServer, sqlite_database: Database, tmp_path: Path, fault: Fault
) -> None:
    bot = synapse.register("bot", rate_limited=False)
    room = synapse.create_room(invite=(bot,))
    with FaultProxy(synapse.url) as proxy:
        url = synapse.webhook_url(room, bot, base=proxy.url)
        settings = matrix_settings(sqlite_database, tmp_path, url)
        proxy.fail_next("PUT", "/send/m.room.message/", fault)
        at = local(SEND_DAYS[0], 8, 0)

        tick_at(settings, sqlite_database, at)

        [row] = rows(sqlite_database)
        assert row.state == "deferred"  # no verdict: retried, after a look into the room
        assert row.last_error is not None
        assert ("HTTP 502" if fault == "502" else "connection failed") in row.last_error
        assert bot.access_token not in row.last_error
        [stored] = synapse.messages(room)  # Synapse did store it before the answer was lost

        assert row.next_attempt_at is not None
        tick_at(settings, sqlite_database, row.next_attempt_at + dt.timedelta(seconds=1))
        for later in (local(SEND_DAYS[0], 9, 0), local(SEND_DAYS[0], 12, 0)):
            tick_at(settings, sqlite_database, later)

        puts = [f for f in proxy.forwarded if f.method == "PUT"]
        lookups = [f for f in proxy.forwarded if f.method == "GET" and "/messages?" in f.path]
    # The retry found the stored event (the key in its content) among the bot's latest
    # messages: no second PUT at all.
    assert [(f.status, f.fault) for f in puts] == [(200, fault)]
    assert [f.status for f in lookups] == [200, 200]
    [row] = rows(sqlite_database)
    assert row.state == "sent" and row.attempts == 2
    assert [event["event_id"] for event in synapse.messages(room)] == [stored["event_id"]]
    assert row.provider_id == stored["event_id"]


def test_default_rate_limits_429s_are_honoured_and_every_room_gets_its_post_once(
    synapse: SynapseServer, sqlite_database: Database, tmp_path: Path
) -> None:
    """One bot, twelve rooms: Synapse's default `rc_message` (0.2/s, burst 10) answers the
    posts past the burst with `429 M_LIMIT_EXCEEDED`; each comes again later, once."""
    bot = synapse.register("bot", rate_limited=False)  # joining counts against rc_message
    rooms = [synapse.create_room(invite=(bot,)) for _ in range(12)]
    synapse.restore_rate_limits(bot)  # from now on limited like any real bot account
    settings = matrix_settings(
        sqlite_database, tmp_path, *(synapse.webhook_url(room, bot) for room in rooms)
    )
    at = local(SEND_DAYS[0], 8, 0)

    tick_at(settings, sqlite_database, at)

    first = rows(sqlite_database)
    limited = [row for row in first if row.state == "deferred"]
    assert limited, "Synapse's default limits answered no post with 429"
    assert {row.state for row in first} == {"sent", "deferred"}
    for row in limited:
        assert row.last_error is not None
        assert "HTTP 429" in row.last_error and "M_LIMIT_EXCEEDED" in row.last_error
        assert row.next_attempt_at is not None and row.next_attempt_at > at
    posted = [room for room in rooms if synapse.messages(room)]
    assert len(posted) == len(first) - len(limited)

    for _ in range(6):  # bounded: Synapse frees one post per 5 s of real time
        waiting = [row for row in rows(sqlite_database) if row.state == "deferred"]
        if not waiting:
            break
        time.sleep(5.5 * len(waiting))
        due = max(row.next_attempt_at for row in waiting if row.next_attempt_at is not None)
        at = max(at, due) + dt.timedelta(seconds=1)
        tick_at(settings, sqlite_database, at)

    final = rows(sqlite_database)
    assert [row.state for row in final] == ["sent"] * 12
    assert [len(synapse.messages(room)) for room in rooms] == [1] * 12
    assert sum(row.attempts for row in final) > 12  # the limited ones really came again


def test_an_event_without_the_key_is_still_recognised_by_its_txn_id_on_the_same_device(
    synapse: SynapseServer, sqlite_database: Database, tmp_path: Path
) -> None:
    """A post in flight across the upgrade to a version that writes the delivery key into the
    content: the room lookup cannot recognise its event, so the send goes out, and Synapse
    answers the same txnId from the same device with the event it stored."""
    bot = synapse.register("bot", rate_limited=False)
    room = synapse.create_room(invite=(bot,))
    url = synapse.webhook_url(room, bot)
    settings = matrix_settings(sqlite_database, tmp_path, url)
    [target] = parse_webhook_urls(url)
    key = webhook.delivery_key(
        campaign_id=load_campaign(settings.campaign_file).id,
        day=SEND_DAYS[0],
        send_at=local(SEND_DAYS[0], 8, 0),
        recipient=target.recipient,
    )
    earlier = synapse.send(bot, room, key, {"msgtype": "m.text", "body": "posted before"})

    tick_at(settings, sqlite_database, local(SEND_DAYS[0], 8, 0))

    [row] = rows(sqlite_database)
    assert row.state == "sent" and row.provider_id == earlier
    assert [event["event_id"] for event in synapse.messages(room)] == [earlier]


# Credentials rotated mid-week (a token leaked, expired or was revoked) ----------------------


def matrix_env(database: Database, smtp: SmtpServer, tmp_path: Path, url: str) -> dict[str, str]:
    """The environment of `dispatcher …` processes: the sample week, posts to `url` only."""
    directory = tmp_path / "webhook-only"
    directory.mkdir()
    return processes.environment(
        database,
        smtp,
        tmp_path,
        DISPATCHER_CAMPAIGN_FILE=str(campaign_copy(directory, channels=("webhook",))),
        DISPATCHER_WEBHOOK_URLS=url,
        DISPATCHER_CLOCK_JUMP_HOURS="96",  # ticking only at the send times: Friday → Monday
    )


def dispatcher(env: dict[str, str], *args: str) -> subprocess.CompletedProcess[str]:
    process = processes.start(env, *args)
    out, err = process.communicate(timeout=120)
    return subprocess.CompletedProcess(process.args, process.returncode, out, err)


def test_a_token_renewed_after_a_401_mid_week_loses_no_day_and_doubles_none(
    synapse: SynapseServer, sqlite_database: Database, smtp_server: SmtpServer, tmp_path: Path
) -> None:
    """What ops do after a leak: revoke the token, see the day fail with what to renew, log
    the bot in again (a new device), put the new token into DISPATCHER_WEBHOOK_URLS and run
    `dispatcher retry`: every day of the week is in the room exactly once."""
    bot = synapse.register("bot", rate_limited=False)
    room = synapse.create_room(invite=(bot,))
    env = matrix_env(sqlite_database, smtp_server, tmp_path, synapse.webhook_url(room, bot))
    for day in SEND_DAYS[:3]:
        assert dispatcher(env, "tick", "--at", local(day, 8, 0).isoformat()).returncode == 0

    synapse.logout(bot)  # the token leaked: revoked on the homeserver
    failed = dispatcher(env, "tick", "--at", local(SEND_DAYS[3], 8, 0).isoformat())

    assert failed.returncode == 3, failed.stderr
    row = rows(sqlite_database)[3]
    assert row.state == "failed" and row.last_error is not None
    assert "M_UNKNOWN_TOKEN" in row.last_error and "DISPATCHER_WEBHOOK_URLS" in row.last_error
    assert bot.access_token not in row.last_error + failed.stdout + failed.stderr

    renewed = synapse.login(bot)  # a new device and token
    env["DISPATCHER_WEBHOOK_URLS"] = synapse.webhook_url(room, renewed)
    retry = dispatcher(env, "retry")
    assert retry.returncode == 0, retry.stderr
    again = dispatcher(env, "tick", "--at", local(SEND_DAYS[3], 8, 30).isoformat())
    assert again.returncode == 0, again.stdout + again.stderr
    for day in SEND_DAYS[4:]:
        assert dispatcher(env, "tick", "--at", local(day, 8, 0).isoformat()).returncode == 0

    ledger = rows(sqlite_database)
    assert [row.state for row in ledger] == ["sent"] * 8
    events = synapse.messages(room)
    assert [row.provider_id for row in ledger] == [event["event_id"] for event in events]
    for row, body in zip(ledger, bodies(events), strict=True):
        assert row.link in body
    status = dispatcher(env, "status", "--json")
    assert status.returncode == 0, status.stderr
    assert renewed.access_token not in status.stdout and bot.access_token not in status.stdout
    listed = json.loads(status.stdout)["dispatches"]
    assert [d["state"] for d in listed] == ["done"] * 8
    posts = [post for d in listed for post in d["posts"]]
    # one target the whole week (its name has no token), each post findable by its link
    assert len({post["target"] for post in posts}) == 1 and room in posts[0]["target"]
    assert [post["provider_id"] for post in posts] == [e["event_id"] for e in events]
    for post in posts:
        assert post["link"].startswith("https://matrix.to/#/") and post["state"] == "sent"


def test_a_token_renewed_on_the_same_device_while_a_retry_is_pending_gives_one_message(
    synapse: SynapseServer, sqlite_database: Database, tmp_path: Path
) -> None:
    """Synapse dedupes a txnId per device: a new token for the SAME device (`/login` with its
    `device_id`) keeps the retry of an event it stored idempotent."""
    bot = synapse.register("bot", rate_limited=False)
    room = synapse.create_room(invite=(bot,))
    with FaultProxy(synapse.url) as proxy:
        settings = matrix_settings(
            sqlite_database, tmp_path, synapse.webhook_url(room, bot, base=proxy.url)
        )
        proxy.fail_next("PUT", "/send/m.room.message/", "502")
        tick_at(settings, sqlite_database, local(SEND_DAYS[0], 8, 0))
        [stored] = synapse.messages(room)
        assert rows(sqlite_database)[0].state == "deferred"

        renewed = synapse.login(bot, device_id=bot.device_id)
        assert renewed.access_token != bot.access_token
        url = synapse.webhook_url(room, renewed, base=proxy.url)
        settings = settings.model_copy(update={"webhook_urls": SecretStr(url)})
        tick_at(settings, sqlite_database, local(SEND_DAYS[0], 8, 5))

    [row] = rows(sqlite_database)
    assert row.state == "sent", row.last_error
    assert [event["event_id"] for event in synapse.messages(room)] == [stored["event_id"]]
    assert row.provider_id == stored["event_id"]


def test_a_token_of_a_new_device_while_a_retry_is_pending_does_not_double_the_post(
    synapse: SynapseServer, sqlite_database: Database, tmp_path: Path
) -> None:
    """Synapse dedupes a txnId per device, and a leaked token is revoked with its device: the
    retry finds the stored event by the key in its content among the bot's latest messages
    and records it, instead of posting the day again (docs/architecture.md)."""
    bot = synapse.register("bot", rate_limited=False)
    room = synapse.create_room(invite=(bot,))
    with FaultProxy(synapse.url) as proxy:
        settings = matrix_settings(
            sqlite_database, tmp_path, synapse.webhook_url(room, bot, base=proxy.url)
        )
        proxy.fail_next("PUT", "/send/m.room.message/", "502")
        tick_at(settings, sqlite_database, local(SEND_DAYS[0], 8, 0))
        assert len(synapse.messages(room)) == 1

        synapse.logout(bot)  # a leaked token: revoked, its device gone
        renewed = synapse.login(bot)
        url = synapse.webhook_url(room, renewed, base=proxy.url)
        settings = settings.model_copy(update={"webhook_urls": SecretStr(url)})
        tick_at(settings, sqlite_database, local(SEND_DAYS[0], 8, 5))

    [row] = rows(sqlite_database)
    assert len(synapse.messages(room)) == 1  # not doubled …
    assert row.state in ("sent", "unknown")  # … and not called failed: it is in the room


# A 403 that is not about the token ----------------------------------------------------------


def test_a_bot_that_is_not_in_the_room_gets_a_message_saying_so_and_what_to_do(
    synapse: SynapseServer, sqlite_database: Database, tmp_path: Path
) -> None:
    bot = synapse.register("bot", rate_limited=False)
    room = synapse.create_room()  # the bot was never invited
    settings = matrix_settings(sqlite_database, tmp_path, synapse.webhook_url(room, bot))

    tick_at(settings, sqlite_database, local(SEND_DAYS[0], 8, 0))

    [row] = rows(sqlite_database)
    assert row.state == "failed" and row.last_error is not None
    error = row.last_error
    assert "HTTP 403" in error and bot.user_id in error and room in error
    assert "not a member" in error and "invite" in error and "join" in error
    assert "credential was refused" not in error  # the token is fine
    assert bot.access_token not in error
    assert synapse.messages(room) == []

    # What the message says to do works: invite the bot, let it join, `dispatcher retry`.
    synapse.invite(bot, room)
    synapse.join(bot, room)
    campaign = load_campaign(settings.campaign_file)
    with sqlite_database.engine.begin() as connection:
        store.requeue(
            connection,
            campaign_id=campaign.id,
            dispatch_id=None,
            force=False,
            now=dt.datetime.now(dt.UTC),
        )
    tick_at(settings, sqlite_database, local(SEND_DAYS[0], 8, 10))
    [row] = rows(sqlite_database)
    assert row.state == "sent"
    assert [event["event_id"] for event in synapse.messages(room)] == [row.provider_id]
