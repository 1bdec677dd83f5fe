"""The LinkedIn article thumbnail against the fake_linkedin Images API: upload, alt text, degradation."""

from __future__ import annotations

import datetime as dt
import logging
from collections.abc import Iterator

import pytest

from dispatcher.channels import http, linkedin
from dispatcher.channels.base import ChannelError, Post
from tests.support.fake_linkedin import AUTHOR, THROTTLED, TOKEN, FakeLinkedIn, error
from tests.support.fake_mastodon import PNG
from tests.support.httpserver import FakeHTTPServer, Request, Response

WHEN = dt.datetime(2024, 4, 2, 7, 30, tzinfo=dt.UTC)
ALT = "Ein Containerschiff im Trockendock der Kieler Werft bei Sonnenaufgang"


def post(image_url: str | None, text: str = "Werften im Wandel") -> Post:
    return Post(
        network="linkedin",
        text=text,
        link="https://example.de/reportage/werften",
        title="Werften im Wandel",
        description="Grüße aus Kiel",
        hashtags=(),
        image_url=image_url,
        image_alt=ALT if image_url else None,
        created_at=WHEN,
    )


@pytest.fixture
def thumbnails() -> linkedin.Thumbnails:
    """A process's memory of uploaded images, fresh for each test."""
    return linkedin.Thumbnails()


@pytest.fixture
def channel(
    fake_linkedin: FakeLinkedIn, thumbnails: linkedin.Thumbnails
) -> Iterator[linkedin.LinkedInChannel]:
    chan = linkedin.LinkedInChannel(
        TOKEN, AUTHOR, base_url=fake_linkedin.url, thumbnails=thumbnails
    )
    yield chan
    chan.close()


@pytest.fixture
def warnings(caplog: pytest.LogCaptureFixture) -> pytest.LogCaptureFixture:
    caplog.set_level(logging.WARNING, logger="dispatcher.channels.linkedin")
    return caplog


def image_url(fake_linkedin: FakeLinkedIn, path: str = "/images/werft.png") -> str:
    return fake_linkedin.url + path


def test_image_is_uploaded_and_attached_with_its_alt_text(
    fake_linkedin: FakeLinkedIn, channel: linkedin.LinkedInChannel
) -> None:
    receipt = channel.send(post(image_url(fake_linkedin)), key="k1")

    [published] = fake_linkedin.posts
    [upload] = fake_linkedin.uploads.values()
    assert published.article["thumbnail"] == upload.urn
    assert upload.urn.startswith("urn:li:image:")
    assert published.article["thumbnailAltText"] == ALT
    assert upload.data == PNG  # the bytes LinkedIn stores are the image's
    assert upload.owner == AUTHOR
    assert receipt.details["thumbnail"].startswith(upload.urn)
    # Every LinkedIn call carries the version headers and the token; the image host sees none.
    [initialize] = fake_linkedin.requests_to("/rest/images")
    assert initialize.query == {"action": ["initializeUpload"]}
    assert initialize.json() == {"initializeUploadRequest": {"owner": AUTHOR}}
    assert initialize.headers["linkedin-version"] == linkedin.DEFAULT_VERSION
    assert initialize.headers["x-restli-protocol-version"] == "2.0.0"
    [download] = fake_linkedin.requests_to("/images/")
    assert "authorization" not in download.headers
    [put] = fake_linkedin.requests_to("/dms-uploads/")
    assert put.method == "PUT" and put.headers["authorization"] == f"Bearer {TOKEN}"


def test_the_post_sent_is_what_describe_request_shows_for_the_thumbnail(
    fake_linkedin: FakeLinkedIn, channel: linkedin.LinkedInChannel
) -> None:
    channel.send(post(image_url(fake_linkedin)), key="k1")
    [upload] = fake_linkedin.uploads.values()
    described = linkedin.describe_request(
        post(image_url(fake_linkedin)),
        key="k1",
        author_urn=AUTHOR,
        version=linkedin.DEFAULT_VERSION,
        base_url=fake_linkedin.url,
        thumbnail=upload.urn,
    )
    [sent] = fake_linkedin.requests_to("/rest/posts")
    assert sent.json() == described["json"]
    assert "thumbnail_source" not in described


def test_the_outbox_names_the_image_it_would_upload() -> None:
    described = linkedin.describe_request(
        post("https://example.org/werft.jpg"), key="k1", author_urn=AUTHOR, version="202607"
    )
    assert described["thumbnail_source"] == "https://example.org/werft.jpg"
    assert described["thumbnail_alt"] == ALT
    assert "thumbnail" not in described["json"]["content"]["article"]


def test_image_download_failure_posts_without_image_and_warns(
    fake_linkedin: FakeLinkedIn,
    channel: linkedin.LinkedInChannel,
    warnings: pytest.LogCaptureFixture,
) -> None:
    receipt = channel.send(post(image_url(fake_linkedin, "/images/fehlt.png")), key="k1")

    [published] = fake_linkedin.posts
    assert "thumbnail" not in published.article
    assert "thumbnailAltText" not in published.article
    assert fake_linkedin.uploads == {}
    assert receipt.details["thumbnail"].startswith("omitted:")
    [record] = warnings.records
    assert record.levelno == logging.WARNING
    assert "HTTP 404" in record.getMessage() and "/images/fehlt.png" in record.getMessage()
    assert TOKEN not in warnings.text


def test_an_image_type_linkedin_does_not_take_is_left_out(
    fake_linkedin: FakeLinkedIn,
    channel: linkedin.LinkedInChannel,
    warnings: pytest.LogCaptureFixture,
) -> None:
    fake_linkedin.images["/images/werft.webp"] = (b"RIFF\x00\x00\x00\x00WEBPVP8 ", "image/webp")
    channel.send(post(image_url(fake_linkedin, "/images/werft.webp")), key="k1")

    assert "thumbnail" not in fake_linkedin.posts[0].article
    assert fake_linkedin.requests_to("/rest/images") == []
    assert "image/webp" in warnings.text


@pytest.mark.parametrize(
    ("path", "failure"),
    [
        ("/rest/images", Response(500, json={"message": "Internal Server Error", "status": 500})),
        ("/rest/images", THROTTLED),
        ("/rest/images", Response(200, json={"value": {}})),
        ("/dms-uploads/", Response(500, body=b"")),
        ("/dms-uploads/", error(400, "Invalid image upload")),
    ],
    ids=["initialize-500", "initialize-429", "initialize-no-url", "put-500", "put-400"],
)
def test_upload_failure_posts_without_image(
    fake_linkedin: FakeLinkedIn,
    channel: linkedin.LinkedInChannel,
    warnings: pytest.LogCaptureFixture,
    path: str,
    failure: Response,
) -> None:
    fake_linkedin.fail_next(path, failure)
    receipt = channel.send(post(image_url(fake_linkedin)), key="k1")

    [published] = fake_linkedin.posts
    assert receipt.provider_id == published.urn
    assert "thumbnail" not in published.article
    assert "posting without the image" in warnings.text
    assert TOKEN not in warnings.text


def test_upload_timeout_posts_without_image(
    fake_linkedin: FakeLinkedIn,
    channel: linkedin.LinkedInChannel,
    warnings: pytest.LogCaptureFixture,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(http, "READ_TIMEOUT", 0.2)
    fake_linkedin.fail_next("/dms-uploads/", Response(201, delay=1.0, after_handling=True))
    channel.send(post(image_url(fake_linkedin)), key="k1")

    assert "thumbnail" not in fake_linkedin.posts[0].article
    assert "no answer within 0.2 s" in warnings.text
    assert "may have been created" not in warnings.text  # an upload creates no post


def test_an_owner_the_token_may_not_use_leaves_the_image_out(
    fake_linkedin: FakeLinkedIn, warnings: pytest.LogCaptureFixture
) -> None:
    fake_linkedin.author = "urn:li:organization:1"  # the token may post as this one only
    chan = linkedin.LinkedInChannel(
        TOKEN, AUTHOR, base_url=fake_linkedin.url, thumbnails=linkedin.Thumbnails()
    )
    try:
        with pytest.raises(ChannelError):
            chan.send(post(image_url(fake_linkedin)), key="k1")
    finally:
        chan.close()
        fake_linkedin.author = AUTHOR
    assert "HTTP 403" in warnings.text and "initializing the image upload" in warnings.text
    assert len(fake_linkedin.requests_to("/rest/posts")) == 1  # the post itself decided, once


def test_a_refused_token_stops_at_the_upload(fake_linkedin: FakeLinkedIn) -> None:
    chan = linkedin.LinkedInChannel(
        "expired-token-XYZ", AUTHOR, base_url=fake_linkedin.url, thumbnails=linkedin.Thumbnails()
    )
    try:
        with pytest.raises(ChannelError) as caught:
            chan.send(post(image_url(fake_linkedin)), key="k1")
    finally:
        chan.close()
    assert linkedin.CREDENTIAL in caught.value.message
    assert "expired-token-XYZ" not in caught.value.message
    assert fake_linkedin.requests_to("/rest/posts") == []  # it would be refused alike
    assert fake_linkedin.posts == []


def test_a_retry_after_a_failed_post_reuses_the_uploaded_image(
    fake_linkedin: FakeLinkedIn, thumbnails: linkedin.Thumbnails
) -> None:
    fake_linkedin.fail_next("/rest/posts", THROTTLED)
    first = linkedin.LinkedInChannel(
        TOKEN, AUTHOR, base_url=fake_linkedin.url, thumbnails=thumbnails
    )
    with pytest.raises(ChannelError) as caught:
        first.send(post(image_url(fake_linkedin)), key="k1")
    first.close()
    assert not caught.value.ambiguous  # a 429: refused, nothing posted
    # The retry comes in a later tick, through a newly opened channel of the same process.
    again = linkedin.LinkedInChannel(
        TOKEN, AUTHOR, base_url=fake_linkedin.url, thumbnails=thumbnails
    )
    receipt = again.send(post(image_url(fake_linkedin)), key="k1")
    again.close()

    [upload] = fake_linkedin.uploads.values()  # uploaded once
    assert len(fake_linkedin.requests_to("/rest/images")) == 1
    [published] = fake_linkedin.posts
    assert published.article["thumbnail"] == upload.urn
    assert receipt.details["thumbnail"] == f"{upload.urn} (uploaded before)"


def test_a_thumbnail_linkedin_no_longer_knows_costs_only_the_image(
    fake_linkedin: FakeLinkedIn,
    channel: linkedin.LinkedInChannel,
    warnings: pytest.LogCaptureFixture,
) -> None:
    channel.send(post(image_url(fake_linkedin), text="Montag"), key="k1")
    fake_linkedin.uploads.clear()  # LinkedIn dropped the image the process remembers

    receipt = channel.send(post(image_url(fake_linkedin), text="Dienstag"), key="k2")

    assert [p.text for p in fake_linkedin.posts] == ["Montag", "Dienstag"]
    assert "thumbnail" not in fake_linkedin.posts[1].article
    assert receipt.details["thumbnail"].startswith("omitted: refused with the post")
    assert "/content/article/thumbnail" in warnings.text
    # Forgotten: the next post uploads the image again and carries it.
    channel.send(post(image_url(fake_linkedin), text="Mittwoch"), key="k3")
    assert fake_linkedin.posts[2].article["thumbnail"] in fake_linkedin.uploads


class UploadHost(FakeHTTPServer):
    """An upload URL on another origin than the API: it must not get the token."""

    def handle(self, request: Request) -> Response:
        return Response(201)


def test_the_token_goes_only_to_linkedins_own_upload_host(
    fake_linkedin: FakeLinkedIn, channel: linkedin.LinkedInChannel
) -> None:
    with UploadHost() as other:
        value = {
            "uploadUrlExpiresAt": 1_900_000_000_000,
            "uploadUrl": f"{other.url}/upload/1",
            "image": "urn:li:image:D4E10AQHelsewhere",
        }
        fake_linkedin.fail_next("/rest/images", Response(200, json={"value": value}))
        channel.send(post(image_url(fake_linkedin)), key="k1")
        [put] = other.requests
    assert put.method == "PUT" and put.body == PNG
    assert "authorization" not in put.headers
