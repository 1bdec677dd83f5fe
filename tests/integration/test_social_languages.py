"""A network posting in two languages: two posts a day on one account, each its own delivery.

`send: {mastodon: {time: "08:05", lang: [de, en]}}` against local servers that behave like
each API (tests/support/fake_*.py): each post carries its language where the network has a
field for it (Mastodon `language`, Bluesky `langs`), its own idempotency key, and is posted
once however often the tick runs; a language the day's item lacks gets no post, and its
delivery says why. Runs on SQLite and PostgreSQL.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
import requests
import sqlalchemy as sa
from pydantic import SecretStr

from dispatcher.campaign.loading import load_campaign
from dispatcher.channels import mastodon as mastodon_channel
from dispatcher.delivery.status import status_of
from dispatcher.ledger.tables import deliveries, dispatches
from dispatcher.settings import Settings
from tests.support.database import Database
from tests.support.httpserver import Response
from tests.support.ledger import tick_at
from tests.support.networks import Networks, local, network_settings, running_networks
from tests.support.pds import RealPds
from tests.support.post_languages import BOTH, campaign_file

DAY1, DAY2 = dt.date(2019, 4, 2), dt.date(2019, 4, 3)


@pytest.fixture
def providers() -> Iterator[Networks]:
    with running_networks() as networks:
        yield networks


def settings_for(database: Database, providers: Networks, campaign: Path) -> Settings:
    return Settings(
        _env_file=None,  # type: ignore[call-arg]
        database_url=database.url,
        campaign_file=campaign,
        templates_dir=Path(__file__).parents[2] / "templates",
        outbox_dir=campaign.parent / "outbox",
        **network_settings(providers),
    )


@dataclass(frozen=True)
class Row:
    day: dt.date
    recipient: str
    lang: str | None
    state: str
    attempts: int
    key: str
    error: str | None


def rows_of(database: Database, channel: str) -> list[Row]:
    query = (
        sa.select(
            dispatches.c.day,
            deliveries.c.recipient,
            deliveries.c.lang,
            deliveries.c.state,
            deliveries.c.attempts,
            deliveries.c.key,
            deliveries.c.last_error,
        )
        .join(dispatches, dispatches.c.id == deliveries.c.dispatch_id)
        .where(dispatches.c.channel == channel)
        .order_by(deliveries.c.id)
    )
    with database.engine.connect() as connection:
        return [Row(*row) for row in connection.execute(query)]


def mastodon_target(providers: Networks) -> str:
    return f"mastodon:{providers.mastodon.url.removeprefix('http://')}"


def test_two_languages_on_one_account_are_two_posts_each_with_its_own_key(
    database: Database, providers: Networks, tmp_path: Path
) -> None:
    settings = settings_for(database, providers, campaign_file(tmp_path, BOTH))
    for at in (local(DAY1, 8, 0), local(DAY1, 8, 5), local(DAY1, 9, 0), local(DAY1, 12, 0)):
        tick_at(settings, database, at)

    german, english = providers.mastodon.statuses
    assert (german["language"], english["language"]) == ("de", "en")
    assert german["text"].startswith("Werften im Wandel\n")
    assert "https://example.org/werften" in german["text"] and "#Meer" in german["text"]
    assert english["text"].startswith("Shipyards in change\n")
    assert "https://example.org/en/shipyards" in english["text"] and "#Sea" in english["text"]
    keys = [r.headers["idempotency-key"] for r in providers.mastodon.requests_to("/api/v1/")]
    assert len(keys) == len(set(keys)) == 2

    target = mastodon_target(providers)
    rows = rows_of(database, "mastodon")
    assert [(r.recipient, r.lang, r.state, r.attempts) for r in rows] == [
        (target, "de", "sent", 1),
        (f"{target}#en", "en", "sent", 1),
    ]
    assert sorted(keys) == sorted(r.key for r in rows)

    # Bluesky: each record declares its language, under its own record key.
    records = providers.bluesky.posts()
    assert [(p["langs"], p["text"].split("\n")[0]) for p in records] == [
        (["de"], "Werften im Wandel"),
        (["en"], "Shipyards in change"),
    ]
    assert [p["embed"]["external"]["uri"] for p in records] == [
        "https://example.org/werften",
        "https://example.org/en/shipyards",
    ]
    assert len({r.key for r in rows_of(database, "bluesky")}) == 2

    # LinkedIn has no language field (the fake refuses unknown fields): the text is in it.
    assert [p.text.split("\n")[0] for p in providers.linkedin.posts] == [
        "Werften im Wandel",
        "Shipyards in change",
    ]
    assert [p.article["source"] for p in providers.linkedin.posts] == [
        "https://example.org/werften",
        "https://example.org/en/shipyards",
    ]
    # A chat webhook gets each language's message.
    assert [m["text"].split("\n")[0] for m in providers.webhooks.slack] == [
        "Sprachwoche: Werften im Wandel",
        "Sprachwoche: Shipyards in change",
    ]

    # `status` lists both posts of the dispatch, each with its language and link.
    campaign = load_campaign(settings.campaign_file)
    with database.engine.connect() as connection:
        shown = status_of(connection, campaign, settings, local(DAY1, 12, 0))
    [dispatch] = [d for d in shown["dispatches"] if d["channel"] == "mastodon"]
    assert [(p["target"], p["state"], p["link"]) for p in dispatch["posts"]] == [
        (target, "sent", german["url"]),
        (f"{target}#en", "sent", english["url"]),
    ]
    assert dispatch["state"] == "done"


def test_a_500_after_posting_retries_each_language_into_its_own_status(
    database: Database, providers: Networks, tmp_path: Path
) -> None:
    send = {"mastodon": BOTH["mastodon"]}
    settings = settings_for(database, providers, campaign_file(tmp_path, send))
    statuses = "/api/v1/statuses"
    failure = Response(500, after_handling=True)
    providers.mastodon.fail_next(statuses, failure, failure)  # both languages' first answers
    at = local(DAY1, 8, 5)
    tick_at(settings, database, at)
    assert [r.state for r in rows_of(database, "mastodon")] == ["deferred", "deferred"]
    assert len(providers.mastodon.statuses) == 2  # posted, but the answers were lost

    tick_at(settings, database, at + dt.timedelta(minutes=2))
    tick_at(settings, database, at + dt.timedelta(minutes=30))
    assert [(r.lang, r.state, r.attempts) for r in rows_of(database, "mastodon")] == [
        ("de", "sent", 2),
        ("en", "sent", 2),
    ]
    assert [s["language"] for s in providers.mastodon.statuses] == ["de", "en"]
    by_key: dict[str, set[str]] = {}
    for request in providers.mastodon.requests_to(statuses):
        by_key.setdefault(request.headers["idempotency-key"], set()).add(request.json()["language"])
    assert sorted(by_key.values(), key=sorted) == [{"de"}, {"en"}]  # each retry its own key


def test_an_item_without_english_under_fallback_skip_posts_only_in_german(
    database: Database, providers: Networks, tmp_path: Path
) -> None:
    send = {"mastodon": BOTH["mastodon"], "bluesky": BOTH["bluesky"]}
    campaign = campaign_file(tmp_path, send, fallback="skip", first_day_translated=False)
    settings = settings_for(database, providers, campaign)
    tick_at(settings, database, local(DAY1, 8, 5))
    tick_at(settings, database, local(DAY1, 12, 0))

    [status] = providers.mastodon.statuses
    assert status["language"] == "de" and status["text"].startswith("Werften im Wandel\n")
    [record] = providers.bluesky.posts()
    assert record["langs"] == ["de"]
    target = mastodon_target(providers)
    [german, english] = rows_of(database, "mastodon")
    assert (german.recipient, german.lang, german.state) == (target, "de", "sent")
    assert (english.recipient, english.lang, english.state) == (f"{target}#en", "en", "skipped")
    assert english.attempts == 0
    assert english.error == "the item has no en version and the campaign's fallback is skip"
    with database.engine.connect() as connection:
        states = connection.execute(sa.select(dispatches.c.channel, dispatches.c.state)).all()
    assert sorted(states) == [("bluesky", "done"), ("mastodon", "done")]


def test_an_item_without_english_under_fallback_default_is_posted_once_in_german(
    database: Database, providers: Networks, tmp_path: Path
) -> None:
    """The English post would be the German text again on the same account: a duplicate. A
    network posting in English only gets the German text, declared as German."""
    send = {"mastodon": BOTH["mastodon"], "bluesky": '{time: "08:05", lang: en}'}
    settings = settings_for(database, providers, campaign_file(tmp_path, send))
    tick_at(settings, database, local(DAY2, 8, 5))

    [status] = providers.mastodon.statuses
    assert status["language"] == "de" and status["text"].startswith("Chips aus Sachsen\n")
    [_, english] = rows_of(database, "mastodon")
    assert (english.lang, english.state) == ("en", "skipped")
    assert english.error is not None and "the same text twice" in english.error
    [record] = providers.bluesky.posts()
    assert record["langs"] == ["de"] and record["text"].startswith("Chips aus Sachsen\n")
    [only] = rows_of(database, "bluesky")
    assert (only.recipient, only.lang, only.state) == ("bluesky:herbst.test", "en", "sent")


def test_a_one_language_network_keeps_its_names_and_keys(
    database: Database, providers: Networks, tmp_path: Path
) -> None:
    """Running campaigns are unaffected: the delivery is named and keyed as it always was."""
    settings = settings_for(database, providers, campaign_file(tmp_path, {"mastodon": '"08:05"'}))
    at = local(DAY1, 8, 5)
    tick_at(settings, database, at)

    [status] = providers.mastodon.statuses
    assert status["language"] == "de"
    [row] = rows_of(database, "mastodon")
    target = mastodon_target(providers)
    send_at = local(DAY1, 8, 5, 0).astimezone(dt.UTC)
    expected = mastodon_channel.delivery_key(
        campaign_id="sprachwoche", day=DAY1, send_at=send_at, recipient=target
    )
    assert (row.recipient, row.lang, row.state, row.key) == (target, "de", "sent", expected)


def test_the_real_pds_stores_each_languages_record_with_its_langs(
    sqlite_database: Database, real_pds: RealPds, tmp_path: Path
) -> None:
    """The reference PDS validates `langs` against the lexicon and keeps both records: the
    two languages' record keys differ (their TIDs one microsecond apart)."""
    settings = Settings(
        _env_file=None,  # type: ignore[call-arg]
        database_url=sqlite_database.url,
        campaign_file=campaign_file(tmp_path, {"bluesky": BOTH["bluesky"]}),
        templates_dir=Path(__file__).parents[2] / "templates",
        outbox_dir=tmp_path / "outbox",
        bluesky_pds_url=real_pds.pds_url,
        bluesky_handle=real_pds.handle,
        bluesky_app_password=SecretStr(real_pds.password),
    )
    tick_at(settings, sqlite_database, local(DAY1, 8, 5))

    rows = rows_of(sqlite_database, "bluesky")
    assert [(r.lang, r.state) for r in rows] == [("de", "sent"), ("en", "sent")]
    stored = []
    for row in rows:
        params = {"repo": real_pds.did, "collection": "app.bsky.feed.post", "rkey": row.key}
        answer = requests.get(
            f"{real_pds.pds_url}/xrpc/com.atproto.repo.getRecord", params=params, timeout=10
        )
        answer.raise_for_status()
        stored.append(answer.json()["value"])
    assert [(v["langs"], v["text"].split("\n")[0]) for v in stored] == [
        (["de"], "Werften im Wandel"),
        (["en"], "Shipyards in change"),
    ]
