"""Every post exactly once: the pipeline against local servers that behave like each API.

Runs on SQLite and PostgreSQL. Mastodon, Bluesky, LinkedIn and the chat webhooks are
fakes on free loopback ports (`tests/support/fake_*.py`) with the providers' status
codes, headers, idempotency semantics and rate limits.
"""

from __future__ import annotations

import datetime as dt
import json
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
import sqlalchemy as sa
from pydantic import SecretStr

from dispatcher.ledger.tables import deliveries, dispatches
from dispatcher.settings import Settings
from tests.support import fake_bluesky
from tests.support.campaigns import campaign_copy
from tests.support.database import Database
from tests.support.fake_bluesky import FakeBluesky
from tests.support.fake_linkedin import FakeLinkedIn
from tests.support.fake_mastodon import PNG, FakeMastodon
from tests.support.fake_webhooks import FakeWebhooks
from tests.support.httpserver import Response
from tests.support.ledger import add_subscribers, delivery_states, tick_at
from tests.support.smtpd import SmtpServer

BERLIN = dt.timezone(dt.timedelta(hours=2))
SEND_DAYS = [dt.date(2019, 4, d) for d in (2, 3, 4, 5, 8, 9, 10, 11)]
SOCIAL = ("mastodon", "bluesky", "linkedin", "webhook")


@dataclass
class Providers:
    mastodon: FakeMastodon
    bluesky: FakeBluesky
    linkedin: FakeLinkedIn
    webhooks: FakeWebhooks
    smtp: SmtpServer


@pytest.fixture
def providers(smtp_server: SmtpServer) -> Iterator[Providers]:
    with (
        FakeMastodon() as mastodon,
        FakeBluesky() as bluesky,
        FakeLinkedIn() as linkedin,
        FakeWebhooks() as webhooks,
    ):
        for name in ("nordwind-maritim.jpg", "medizintechnik-franken.jpg"):
            mastodon.images[f"/images/{name}"] = (PNG, "image/png")
        yield Providers(mastodon, bluesky, linkedin, webhooks, smtp_server)


def settings_for(
    database: Database, providers: Providers, tmp_path: Path, channels: tuple[str, ...]
) -> Settings:
    webhook_urls = [
        providers.webhooks.slack_url,
        providers.webhooks.discord_url,
        providers.webhooks.teams_url,
        providers.webhooks.matrix_url,
    ]
    return Settings(
        _env_file=None,  # type: ignore[call-arg]
        database_url=database.url,
        smtp_url=SecretStr(providers.smtp.url),
        campaign_file=campaign_copy(
            tmp_path, channels=channels, image_base=f"{providers.mastodon.url}/images"
        ),
        templates_dir=Path(__file__).parents[2] / "templates",
        outbox_dir=tmp_path / "outbox",
        mastodon_base_url=providers.mastodon.url,
        mastodon_access_token=SecretStr(providers.mastodon.token),
        bluesky_pds_url=providers.bluesky.url,
        bluesky_handle=fake_bluesky.HANDLE,
        bluesky_app_password=SecretStr(fake_bluesky.PASSWORD),
        linkedin_access_token=SecretStr(providers.linkedin.token),
        linkedin_author_urn=providers.linkedin.author,
        linkedin_api_url=providers.linkedin.url,
        webhook_urls=SecretStr(",".join(webhook_urls)),
    )


def local(day: dt.date, hour: int, minute: int, second: int = 5) -> dt.datetime:
    return dt.datetime.combine(day, dt.time(hour, minute, second), tzinfo=BERLIN)


def social_rows(database: Database) -> list[tuple[str, str, str, str | None]]:
    query = (
        sa.select(
            dispatches.c.channel,
            deliveries.c.recipient,
            deliveries.c.state,
            deliveries.c.last_error,
        )
        .join(dispatches, dispatches.c.id == deliveries.c.dispatch_id)
        .where(dispatches.c.channel != "email")
        .order_by(deliveries.c.id)
    )
    with database.engine.connect() as connection:
        return [tuple(row) for row in connection.execute(query)]


def test_a_week_with_every_channel_gives_one_post_per_day_and_network(
    database: Database, providers: Providers, tmp_path: Path
) -> None:
    add_subscribers(database, 3)
    settings = settings_for(database, providers, tmp_path, ("email", *SOCIAL))
    # Ticking only at the send times jumps from Friday to Monday: no clock jump to refuse.
    settings = settings.model_copy(update={"clock_jump_hours": 24 * 4})
    for day in SEND_DAYS:
        for at in (local(day, 8, 0), local(day, 8, 5), local(day, 9, 0)):
            tick_at(settings, database, at)
        tick_at(settings, database, local(day, 12, 0))  # a later tick adds nothing

    assert len(providers.mastodon.statuses) == 8
    assert len(providers.bluesky.posts()) == 8
    assert len(providers.linkedin.posts) == 8
    hooks = providers.webhooks
    assert [len(hooks.slack), len(hooks.discord), len(hooks.teams), len(hooks.matrix)] == [8] * 4
    assert len(providers.smtp.received) == 8 * 3
    states = Counter((channel, state) for channel, _, state, _ in social_rows(database))
    assert states == {
        ("mastodon", "sent"): 8,
        ("bluesky", "sent"): 8,
        ("linkedin", "sent"): 8,
        ("webhook", "sent"): 8 * 4,
    }
    first = providers.mastodon.statuses[0]
    assert first["language"] == "de" and "#MaritimeWirtschaft" in first["content"]
    assert first["media_attachments"], "the day's image is attached"
    post = providers.bluesky.posts()[0]
    assert post["langs"] == ["de"]
    text = post["text"].encode()
    for facet in post["facets"]:
        piece = text[facet["index"]["byteStart"] : facet["index"]["byteEnd"]].decode()
        feature = facet["features"][0]
        assert piece == (feature.get("uri") or "#" + feature.get("tag", ""))


def test_mastodon_500_after_posting_retries_into_the_same_status(
    database: Database, providers: Providers, tmp_path: Path
) -> None:
    settings = settings_for(database, providers, tmp_path, ("mastodon",))
    providers.mastodon.fail_next("/api/v1/statuses", Response(500, after_handling=True))
    at = local(SEND_DAYS[0], 8, 5)
    tick_at(settings, database, at)
    [(_, _, state, error)] = social_rows(database)
    assert state == "deferred" and error is not None and "500" in error
    tick_at(settings, database, at + dt.timedelta(minutes=2))
    assert [row[2] for row in social_rows(database)] == ["sent"]
    assert len(providers.mastodon.statuses) == 1
    keys = {
        r.headers["idempotency-key"] for r in providers.mastodon.requests_to("/api/v1/statuses")
    }
    assert len(keys) == 1  # the same key on both attempts


def test_429_delays_the_retry_by_the_networks_reset_header(
    database: Database, providers: Providers, tmp_path: Path
) -> None:
    settings = settings_for(database, providers, tmp_path, ("mastodon",))
    at = local(SEND_DAYS[0], 8, 5)
    reset = at.astimezone(dt.UTC) + dt.timedelta(seconds=300)
    providers.mastodon.fail_next(
        "/api/v1/statuses",
        Response(
            429,
            json={"error": "Too many requests"},
            headers={"X-RateLimit-Reset": reset.isoformat().replace("+00:00", "Z")},
        ),
    )
    tick_at(settings, database, at)
    with database.engine.connect() as connection:
        retry_at = connection.execute(sa.select(deliveries.c.next_attempt_at)).scalar_one()
    assert abs((retry_at - reset).total_seconds()) < 5
    tick_at(settings, database, at + dt.timedelta(seconds=120))  # before the reset: nothing
    assert providers.mastodon.statuses == []
    tick_at(settings, database, reset + dt.timedelta(seconds=5))
    assert len(providers.mastodon.statuses) == 1


def test_linkedin_outcome_unknown_is_not_retried(
    database: Database, providers: Providers, tmp_path: Path
) -> None:
    settings = settings_for(database, providers, tmp_path, ("linkedin",))
    providers.linkedin.fail_next("/rest/posts", Response(504, after_handling=True))
    at = local(SEND_DAYS[0], 9, 0)
    report = tick_at(settings, database, at)
    [(_, _, state, error)] = social_rows(database)
    assert state == "unknown" and error is not None and "504" in error
    assert list(report.finished.values()) == ["partial"] or list(report.finished.values()) == [
        "failed"
    ]
    tick_at(settings, database, at + dt.timedelta(hours=1))
    assert len(providers.linkedin.posts) == 1  # posted once, never again automatically


def test_a_refused_token_fails_with_the_setting_to_renew(
    database: Database, providers: Providers, tmp_path: Path
) -> None:
    settings = settings_for(database, providers, tmp_path, ("mastodon",))
    settings = settings.model_copy(
        update={"mastodon_access_token": SecretStr("expired-token-value")}
    )
    tick_at(settings, database, local(SEND_DAYS[0], 8, 5))
    [(_, _, state, error)] = social_rows(database)
    assert state == "failed"
    assert error is not None and "DISPATCHER_MASTODON_ACCESS_TOKEN" in error
    assert "expired-token-value" not in error


def test_without_credentials_each_channel_writes_its_exact_request(
    database: Database, tmp_path: Path
) -> None:
    settings = Settings(
        _env_file=None,  # type: ignore[call-arg]
        database_url=database.url,
        campaign_file=campaign_copy(tmp_path, channels=SOCIAL),
        templates_dir=Path(__file__).parents[2] / "templates",
        outbox_dir=tmp_path / "outbox",
    )
    tick_at(settings, database, local(SEND_DAYS[0], 9, 0))
    files = {
        p.parent.name: json.loads(p.read_text()) for p in (tmp_path / "outbox").rglob("*.json")
    }
    assert set(files) == set(SOCIAL)
    assert files["mastodon"]["url"].endswith("/api/v1/statuses")
    assert files["mastodon"]["headers"]["Idempotency-Key"]
    assert files["bluesky"]["json"]["collection"] == "app.bsky.feed.post"
    assert files["linkedin"]["json"]["content"]["article"]["source"].startswith("https://")
    for request in files.values():
        assert "Authorization" not in request["headers"]
    assert delivery_states(database, channel=None) == {"sent": 4}
