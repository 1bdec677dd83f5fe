"""Every post exactly once: the pipeline against local servers that behave like each API.

Runs on SQLite and PostgreSQL. Mastodon, Bluesky, LinkedIn and the chat webhooks are
fakes on free loopback ports (`tests/support/fake_*.py`) with the providers' status
codes, headers, idempotency semantics and rate limits.
"""

from __future__ import annotations

import datetime as dt
import email.utils
import json
import re
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
import sqlalchemy as sa
from pydantic import SecretStr

from dispatcher.ledger.tables import deliveries, dispatches
from dispatcher.settings import Settings
from tests.support import fake_webhooks
from tests.support.campaigns import campaign_copy
from tests.support.database import Database
from tests.support.fake_mastodon import PNG
from tests.support.httpserver import Response
from tests.support.ledger import add_subscribers, delivery_states, tick_at
from tests.support.networks import Networks, local, network_settings, running_networks
from tests.support.smtpd import SmtpServer

SEND_DAYS = [dt.date(2019, 4, d) for d in (2, 3, 4, 5, 8, 9, 10, 11)]
SOCIAL = ("mastodon", "bluesky", "linkedin", "webhook")


@dataclass
class Providers(Networks):
    smtp: SmtpServer


@pytest.fixture
def providers(smtp_server: SmtpServer) -> Iterator[Providers]:
    with running_networks() as networks:
        for name in ("nordwind-maritim.jpg", "medizintechnik-franken.jpg"):
            networks.mastodon.images[f"/images/{name}"] = (PNG, "image/png")
        yield Providers(**vars(networks), smtp=smtp_server)


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
        **network_settings(providers, webhook_urls),
    )


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
    article = providers.linkedin.posts[0].article  # and LinkedIn's thumbnail, with its alt text
    assert article["thumbnail"] in providers.linkedin.uploads and article["thumbnailAltText"]
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


def waits(error: str) -> tuple[float, float]:
    """The provider's wait and the wait applied, in seconds, as a deferral's message states
    them: "rate limited (the provider asks to wait 9 min 59 s): …; next attempt in 10 min"."""

    def parse(text: str) -> float:
        units = {"h": 3600, "min": 60, "s": 1}
        return sum(float(n) * units[u] for n, u in re.findall(r"(\d+) (h|min|s)\b", text))

    asked = re.search(r"asks to wait ([^)]*)\)", error)
    applied = re.search(r"; next attempt in (.*)$", error)
    assert applied is not None, error
    return (parse(asked.group(1)) if asked else -1.0), parse(applied.group(1))


def test_429_delays_the_retry_by_the_networks_reset_header(
    database: Database, providers: Providers, tmp_path: Path
) -> None:
    """Mastodon's reset is an instant on the real clock: a rehearsal in 2019 waits as long as
    a live run would (5 min), instead of computing a wait against 2019."""
    settings = settings_for(database, providers, tmp_path, ("mastodon",))
    at = local(SEND_DAYS[0], 8, 5)
    reset = dt.datetime.now(dt.UTC) + dt.timedelta(seconds=300)
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
    assert abs((retry_at - at).total_seconds() - 300) < 5
    [(_, _, state, error)] = social_rows(database)
    assert state == "deferred"
    assert error is not None and error.startswith("mastodon: HTTP 429: rate limited (the provider")
    assert 295 <= waits(error)[1] <= 300
    tick_at(settings, database, at + dt.timedelta(seconds=120))  # before the reset: nothing
    assert providers.mastodon.statuses == []
    tick_at(settings, database, at + dt.timedelta(seconds=305))
    assert len(providers.mastodon.statuses) == 1


def test_retry_after_as_an_http_date_is_real_time_in_a_rehearsal(
    database: Database, providers: Providers, tmp_path: Path
) -> None:
    """`Retry-After: <HTTP date>` (RFC 9110) from Slack, read in a tick at 2019: the wait is the
    10 minutes the date is ahead of the real clock, not "242,093,975 s"."""
    settings = settings_for(database, providers, tmp_path, ("webhook",))
    at = local(SEND_DAYS[0], 8, 0)
    until = dt.datetime.now(dt.UTC) + dt.timedelta(minutes=10)
    retry_after = email.utils.format_datetime(until, usegmt=True)
    providers.webhooks.fail_next(
        fake_webhooks.SLACK_PATH,
        fake_webhooks.slack_error(429, "rate_limited", {"Retry-After": retry_after}),
    )
    tick_at(settings, database, at)
    [slack] = [row for row in social_rows(database) if row[1].startswith("webhook:slack:")]
    assert slack[2] == "deferred"
    assert slack[3] is not None and slack[3].startswith("webhook webhook:slack:")
    asked, applied = waits(slack[3])
    assert 595 <= asked == applied <= 600
    tick_at(settings, database, at + dt.timedelta(minutes=9))
    assert providers.webhooks.slack == []
    tick_at(settings, database, at + dt.timedelta(minutes=10, seconds=5))
    assert len(providers.webhooks.slack) == 1


def test_a_short_provider_wait_is_reported_as_the_backoff_actually_applied(
    database: Database, providers: Providers, tmp_path: Path
) -> None:
    """Matrix asks for 3 s; the first backoff is 1 min, and that is the wait the message shows."""
    settings = settings_for(database, providers, tmp_path, ("webhook",))
    at = local(SEND_DAYS[0], 8, 0)
    providers.webhooks.fail_next(fake_webhooks.MATRIX_SEND, fake_webhooks.matrix_rate_limited(3000))
    tick_at(settings, database, at)
    [matrix] = [row for row in social_rows(database) if row[1].startswith("webhook:matrix:")]
    assert matrix[2] == "deferred"
    assert matrix[3] is not None
    assert "rate limited (the provider asks to wait 3 s): M_LIMIT_EXCEEDED" in matrix[3]
    assert "looking for the post" not in matrix[3]  # the send's 429, not the room lookup's
    assert matrix[3].endswith("; next attempt in 1 min")
    with database.engine.connect() as connection:
        retry_at = connection.execute(
            sa.select(deliveries.c.next_attempt_at).where(deliveries.c.recipient == matrix[1])
        ).scalar_one()
    assert abs((retry_at - at).total_seconds() - 60) < 5


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


def test_a_refused_token_keeps_the_post_until_the_token_is_renewed(
    database: Database, providers: Providers, tmp_path: Path
) -> None:
    """A 401 is about the account, not the post: the tick names the setting to renew, the post
    waits without using an attempt, and the tick after the renewal posts it."""
    good = settings_for(database, providers, tmp_path, ("mastodon",))
    expired = good.model_copy(update={"mastodon_access_token": SecretStr("expired-token-value")})
    at = local(SEND_DAYS[0], 8, 5)
    report = tick_at(expired, database, at)
    failures = " ".join(str(failure) for failure in report.channel_errors)
    assert "DISPATCHER_MASTODON_ACCESS_TOKEN" in failures
    assert "expired-token-value" not in failures
    [(_, _, state, _)] = social_rows(database)
    assert state == "pending"
    assert providers.mastodon.statuses == []

    tick_at(good, database, at + dt.timedelta(hours=1))
    assert [row[2] for row in social_rows(database)] == ["sent"]
    assert len(providers.mastodon.statuses) == 1


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
