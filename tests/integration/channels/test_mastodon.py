"""MastodonChannel against FakeMastodon on a loopback port: real HTTP, no mocks of requests."""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterator

import pytest
import requests

from dispatcher.channels import mastodon
from dispatcher.channels.base import ChannelError, ErrorKind, Post
from dispatcher.channels.mastodon import MastodonChannel, delivery_key, describe_request
from tests.support.fake_mastodon import PNG, FakeMastodon
from tests.support.httpserver import Response
from tests.support.ports import free_port

NOW = dt.datetime(2026, 11, 26, 7, 58, 30, tzinfo=dt.UTC)
KEY = "kw48-20261126-mastodon_clusterwoche"
TEXT = (
    "Grüße aus Köln! Die Werften an der Förde: Wie Kiel seine maritime Wirtschaft "
    "neu erfindet. https://clusterwoche.example.de/reportagen/kiel-werften-2026 "
    "#MaritimeWirtschaft #SchleswigHolstein #Zukunft"
)


def make_post(text: str = TEXT, *, image_url: str | None = None) -> Post:
    return Post(
        network="mastodon",
        text=text,
        link="https://clusterwoche.example.de/reportagen/kiel-werften-2026",
        title="Die Werften an der Förde",
        description="Wie Kiel seine maritime Wirtschaft neu erfindet",
        hashtags=("#MaritimeWirtschaft", "#Zukunft"),
        image_url=image_url,
        image_alt="Ein Containerschiff im Trockendock der Kieler Werft bei Sonnenaufgang",
        created_at=NOW,
        lang="de",
    )


@pytest.fixture
def fake() -> Iterator[FakeMastodon]:
    with FakeMastodon(clock=lambda: NOW) as server:
        assert isinstance(server, FakeMastodon)
        yield server


class Sleeps(list[float]):
    """The injected `sleep`: records the waits instead of sleeping."""

    def __call__(self, seconds: float) -> None:
        self.append(seconds)


@pytest.fixture
def sleeps() -> Sleeps:
    return Sleeps()


@pytest.fixture
def channel(fake: FakeMastodon, sleeps: Sleeps) -> Iterator[MastodonChannel]:
    channel = MastodonChannel(
        fake.url, fake.token, clock=lambda: NOW, sleep=sleeps, timeout=(2.0, 2.0)
    )
    yield channel
    channel.close()


def test_german_post_arrives_intact_with_the_key(
    fake: FakeMastodon, channel: MastodonChannel
) -> None:
    receipt = channel.send(make_post(), key=KEY)

    assert len(fake.statuses) == 1
    status = fake.statuses[0]
    assert status["text"] == TEXT  # umlauts, ß, URL and hashtags byte for byte
    assert status["language"] == "de"
    assert status["visibility"] == "public"
    (request,) = fake.requests_to("/api/v1/statuses")
    assert request.headers["idempotency-key"] == KEY
    assert request.headers["authorization"] == f"Bearer {fake.token}"
    assert receipt.provider_id == status["id"]
    assert receipt.details == {"url": status["url"]}


def test_instance_limits_are_asked_once_per_channel(
    fake: FakeMastodon, channel: MastodonChannel
) -> None:
    channel.send(make_post(), key="k1")
    channel.send(make_post("Zweiter Beitrag #Zukunft"), key="k2")

    assert len(fake.requests_to("/api/v2/instance")) == 1
    assert len(fake.statuses) == 2


def test_image_is_uploaded_with_alt_text_polled_and_attached(
    fake: FakeMastodon, channel: MastodonChannel, sleeps: Sleeps
) -> None:
    fake.processing_polls = 2  # 202, then 206, 206, then 200 with a url
    post = make_post(image_url=f"{fake.url}/images/werft.png")

    channel.send(post, key=KEY)

    (media,) = fake.media.values()
    assert media.description == post.image_alt
    assert media.data == PNG
    assert media.content_type == "image/png"
    assert [r.path for r in fake.requests_to("/api/v1/media/")] == [f"/api/v1/media/{media.id}"] * 3
    assert sleeps == [1.0, 1.0, 1.0]
    (status,) = fake.statuses
    assert [m["id"] for m in status["media_attachments"]] == [media.id]
    assert fake.requests_to("/api/v1/statuses")[0].json()["media_ids"] == [media.id]
    # The image host is not the instance: it must never see the token.
    (download,) = fake.requests_to("/images/")
    assert "authorization" not in download.headers


def test_image_still_processing_after_poll_timeout_is_temporary(
    fake: FakeMastodon, sleeps: Sleeps
) -> None:
    fake.processing_polls = 100
    channel = MastodonChannel(fake.url, fake.token, sleep=sleeps, poll_interval=2, poll_timeout=5)
    with pytest.raises(ChannelError) as caught:
        channel.send(make_post(image_url=f"{fake.url}/images/werft.png"), key=KEY)
    channel.close()

    error = caught.value
    assert not (error.permanent or error.ambiguous or error.unavailable)
    assert "processing" in error.message
    assert sleeps == [2, 2, 2]
    assert fake.statuses == []


def test_image_download_failure_is_temporary_and_posts_nothing(
    fake: FakeMastodon, channel: MastodonChannel
) -> None:
    with pytest.raises(ChannelError) as caught:
        channel.send(make_post(image_url=f"{fake.url}/images/missing.png"), key=KEY)

    error = caught.value
    assert not (error.permanent or error.ambiguous or error.unavailable)
    assert "HTTP 404" in error.message
    assert fake.media == {}
    assert fake.statuses == []


def test_a_non_image_is_permanent(fake: FakeMastodon, channel: MastodonChannel) -> None:
    fake.images["/images/page.png"] = (b"<html>Anmelden</html>", "text/html; charset=utf-8")

    with pytest.raises(ChannelError) as caught:
        channel.send(make_post(image_url=f"{fake.url}/images/page.png"), key=KEY)

    assert caught.value.permanent
    assert "text/html" in caught.value.message
    assert fake.statuses == []


def test_500_after_creating_is_ambiguous_and_the_retry_returns_the_same_status(
    fake: FakeMastodon, channel: MastodonChannel
) -> None:
    fake.fail_next(
        "/api/v1/statuses",
        Response(500, json={"error": "We're sorry, but something went wrong"}, after_handling=True),
    )

    with pytest.raises(ChannelError) as caught:
        channel.send(make_post(), key=KEY)
    assert caught.value.ambiguous
    assert not caught.value.permanent
    assert len(fake.statuses) == 1  # Mastodon did create it

    receipt = channel.send(make_post(), key=KEY)

    assert len(fake.statuses) == 1
    assert receipt.provider_id == fake.statuses[0]["id"]
    keys = [r.headers["idempotency-key"] for r in fake.requests_to("/api/v1/statuses")]
    assert keys == [KEY, KEY]


def test_read_timeout_is_ambiguous_and_the_retry_is_safe(fake: FakeMastodon) -> None:
    channel = MastodonChannel(fake.url, fake.token, timeout=(2.0, 0.3))
    fake.fail_next("/api/v1/statuses", Response(200, json={}, delay=0.8, after_handling=True))

    with pytest.raises(ChannelError) as caught:
        channel.send(make_post(), key=KEY)
    assert caught.value.ambiguous
    assert not caught.value.permanent

    receipt = channel.send(make_post(), key=KEY)
    channel.close()
    assert len(fake.statuses) == 1
    assert receipt.provider_id == fake.statuses[0]["id"]


def test_key_older_than_an_hour_is_forgotten_by_mastodon(fake: FakeMastodon) -> None:
    """Documents the limit of the protection: a retry after 1 h posts again."""
    moments = iter([NOW, NOW + dt.timedelta(minutes=59), NOW + dt.timedelta(minutes=61)])
    fake.clock = lambda: next(moments)
    channel = MastodonChannel(fake.url, fake.token)
    ids = [channel.send(make_post(), key=KEY).provider_id for _ in range(3)]
    channel.close()

    assert ids[0] == ids[1] != ids[2]
    assert len(fake.statuses) == 2


def test_429_waits_until_x_ratelimit_reset(fake: FakeMastodon, channel: MastodonChannel) -> None:
    fake.rate_limit = 0
    fake.rate_limit_reset = NOW + dt.timedelta(seconds=90)

    with pytest.raises(ChannelError) as caught:
        channel.send(make_post(), key=KEY)

    error = caught.value
    assert error.retry_after == pytest.approx(90, abs=1)
    assert not error.permanent
    assert "Too many requests" in error.message
    assert len(fake.requests_to("/api/v1/statuses")) == 1
    assert fake.statuses == []


def test_401_names_the_setting_and_hides_the_token(fake: FakeMastodon) -> None:
    token = "wrong-9f8e7d6c5b4a-token"
    channel = MastodonChannel(fake.url, token)

    with pytest.raises(ChannelError) as caught:
        channel.send(make_post(), key=KEY)
    channel.close()

    error = caught.value
    # The account's credential, not the post: no verdict, the post waits for the new token.
    assert error.kind is ErrorKind.UNAVAILABLE
    assert error.message == (
        "mastodon: HTTP 401: The access token is invalid; the access token was refused: create "
        "a new one for the account (Preferences → Development, scopes write:statuses and "
        "write:media) and set DISPATCHER_MASTODON_ACCESS_TOKEN"
    )
    assert token not in repr(channel)
    assert fake.statuses == []


# Mastodon's own 403 bodies (app/controllers/api/base_controller.rb, application_controller.rb)
@pytest.mark.parametrize(
    ("error", "says"),
    [
        (
            "This action is outside the authorized scopes",
            "the access token lacks a scope: create a token with write:statuses and "
            "write:media and set DISPATCHER_MASTODON_ACCESS_TOKEN",
        ),
        (
            "Your login is currently disabled",
            "the account is disabled or suspended on 127.0.0.1: ask its moderators",
        ),
        (
            "Your login is missing a confirmed e-mail address",
            "the account's e-mail address is not confirmed",
        ),
        (
            "Your login is currently pending approval",
            "127.0.0.1 has not approved the account yet: wait for its moderators",
        ),
    ],
)
def test_403_says_what_mastodon_refused_and_what_to_do(
    fake: FakeMastodon, channel: MastodonChannel, error: str, says: str
) -> None:
    fake.fail_next("/api/v1/statuses", Response(403, json={"error": error}))

    with pytest.raises(ChannelError) as caught:
        channel.send(make_post(), key=KEY)

    assert caught.value.kind is ErrorKind.UNAVAILABLE
    assert caught.value.message.startswith(f"mastodon: HTTP 403: {error}; {says}")
    assert fake.token not in caught.value.message
    assert fake.statuses == []


def test_an_address_without_mastodon_names_the_base_url_setting(
    fake: FakeMastodon, channel: MastodonChannel
) -> None:
    html = Response(404, body=b"<html>Not Found</html>", headers={"Content-Type": "text/html"})
    fake.fail_next("/api/v1/statuses", html)

    with pytest.raises(ChannelError) as caught:
        channel.send(make_post(), key=KEY)

    assert caught.value.kind is ErrorKind.UNAVAILABLE
    assert caught.value.message.endswith(
        f"{fake.url} does not answer as a Mastodon API: check DISPATCHER_MASTODON_BASE_URL"
    )


def test_422_over_long_is_permanent_with_mastodons_message() -> None:
    # An old or forked server without /api/v2/instance: the channel assumes 500 characters,
    # the server enforces 300 and says so.
    with FakeMastodon(max_characters=300, instance_v2=False) as fake:
        assert isinstance(fake, FakeMastodon)
        channel = MastodonChannel(fake.url, fake.token)
        with pytest.raises(ChannelError) as caught:
            channel.send(make_post("Ä" * 400), key=KEY)
        channel.close()

    assert caught.value.permanent
    assert "Validation failed: Text character limit of 300 exceeded" in caught.value.message
    assert fake.statuses == []


def test_stricter_instance_refuses_before_posting() -> None:
    with FakeMastodon(max_characters=300) as fake:
        assert isinstance(fake, FakeMastodon)
        channel = MastodonChannel(fake.url, fake.token)
        with pytest.raises(ChannelError) as caught:
            channel.send(make_post("ö" * 400), key=KEY)
        channel.close()

    assert caught.value.permanent
    assert "400 characters" in caught.value.message
    assert "allows 300" in caught.value.message
    assert fake.requests_to("/api/v1/statuses") == []


def test_urls_count_as_reserved_length(fake: FakeMastodon, channel: MastodonChannel) -> None:
    link = "https://clusterwoche.example.de/" + "a" * 200
    text = "ü" * 470 + " " + link  # 470 + 1 + 23 = 494 by Mastodon's rule, 703 by len()

    channel.send(make_post(text), key=KEY)

    assert fake.length(text) == 494
    assert len(fake.statuses) == 1


def test_describe_request_is_what_the_channel_sends(
    fake: FakeMastodon, channel: MastodonChannel
) -> None:
    post = make_post(image_url=f"{fake.url}/images/werft.png")
    channel.send(post, key=KEY)
    (sent,) = fake.requests_to("/api/v1/statuses")
    media_ids = sent.json()["media_ids"]

    described = describe_request(post, key=KEY, base_url=fake.url + "/", media_ids=media_ids)

    assert described["method"] == sent.method
    assert described["url"] == fake.url + sent.path
    assert "Authorization" not in described["headers"]
    assert fake.token not in repr(described)
    assert described["headers"]["Idempotency-Key"] == sent.headers["idempotency-key"]
    assert described["json"] == sent.json()
    assert described["json"] == {
        "status": TEXT,
        "language": "de",
        "visibility": "public",
        "media_ids": media_ids,
    }


def test_delivery_key_is_stable_short_and_ascii() -> None:
    day = dt.date(2026, 11, 26)
    at = dt.datetime(2026, 11, 26, 8, 0, tzinfo=dt.UTC)
    key = delivery_key(campaign_id="kw48", day=day, send_at=at, recipient="clusterwoche")

    assert key == "kw48-20261126-clusterwoche"
    assert key == delivery_key(
        campaign_id="kw48", day=day, send_at=at + dt.timedelta(hours=2), recipient="clusterwoche"
    )
    odd = delivery_key(campaign_id="Förde/Woche " * 10, day=day, send_at=at, recipient="@a@b.de")
    assert odd.isascii() and len(odd) <= 64
    assert odd != delivery_key(
        campaign_id="Forde/Woche " * 10, day=day, send_at=at, recipient="@a@b.de"
    )


def test_module_constants() -> None:
    assert mastodon.KIND == "mastodon" == MastodonChannel.kind
    assert MastodonChannel.idempotent


@pytest.mark.parametrize(
    ("header", "expected"),
    [
        ("2026-11-26T08:00:00.000000Z", 90.0),  # Mastodon: iso8601(6)
        (str(int((NOW + dt.timedelta(seconds=90)).timestamp())), 90.0),  # GoToSocial: epoch
        ("2026-11-26T07:00:00.000000Z", 0.0),  # already past
        ("soon", None),
    ],
)
def test_rate_limit_reset_formats(header: str, expected: float | None) -> None:
    response = requests.Response()
    response.status_code = 429
    response.headers["X-RateLimit-Reset"] = header

    assert mastodon.rate_limit_wait(response, now=NOW) == expected


def test_unreachable_instance_is_unavailable() -> None:
    port = free_port()
    channel = MastodonChannel(f"http://127.0.0.1:{port}", "secret-token")

    with pytest.raises(ChannelError) as caught:
        channel.send(make_post(), key=KEY)
    channel.close()

    assert caught.value.unavailable
    assert not caught.value.ambiguous
