"""The LinkedIn channel against a fake_linkedin Posts API: escaping, URNs, duplicates, failures."""

from __future__ import annotations

import dataclasses
import datetime as dt
from collections.abc import Iterator

import pytest

from dispatcher.channels import http, linkedin
from dispatcher.channels.base import ChannelError, ErrorKind, Post
from dispatcher.content.post_length import linkedin_escape, linkedin_hashtag
from tests.support.fake_linkedin import AUTHOR, THROTTLED, TOKEN, FakeLinkedIn, error
from tests.support.httpserver import Response

WHEN = dt.datetime(2024, 4, 2, 7, 30, tzinfo=dt.UTC)


def post(title: str = "Werften in Görlitz (Teil 3)", teaser: str = "Grüße aus Köln") -> Post:
    text = (
        f"{linkedin_escape(title)}\n\n{linkedin_escape(teaser)}\n\n{linkedin_hashtag('#Zukunft')}"
    )
    return Post(
        network="linkedin",
        text=text,
        link="https://example.de/reportage/werften",
        title=title,
        description=f"{teaser} – über Straßenbahnen & Brücken",
        hashtags=("#Zukunft",),
        image_url=None,
        image_alt=None,
        created_at=WHEN,
    )


@pytest.fixture
def channel(fake_linkedin: FakeLinkedIn) -> Iterator[linkedin.LinkedInChannel]:
    chan = linkedin.LinkedInChannel(TOKEN, AUTHOR, base_url=fake_linkedin.url)
    yield chan
    chan.close()


def test_article_post_arrives_escaped_and_whole(
    fake_linkedin: FakeLinkedIn, channel: linkedin.LinkedInChannel
) -> None:
    receipt = channel.send(post(), key="k1")

    assert receipt.provider_id == fake_linkedin.posts[0].urn
    assert receipt.provider_id.startswith("urn:li:share:")
    published = fake_linkedin.posts[0].text
    assert published == "Werften in Görlitz (Teil 3)\n\nGrüße aus Köln\n\n#Zukunft"
    article = fake_linkedin.posts[0].body["content"]["article"]
    assert article["title"] == "Werften in Görlitz (Teil 3)"  # not little text: no escaping
    assert article["description"] == "Grüße aus Köln – über Straßenbahnen & Brücken"


def test_an_unescaped_parenthesis_would_cut_the_post(
    fake_linkedin: FakeLinkedIn, channel: linkedin.LinkedInChannel
) -> None:
    unescaped = dataclasses.replace(post(), text="Werften in Görlitz (Teil 3) und mehr")
    channel.send(unescaped, key="k1")
    # LinkedIn answers 201 but shows only this: the channel must get escaped text.
    assert fake_linkedin.posts[0].text == "Werften in Görlitz "


def test_describe_request_is_what_is_sent(
    fake_linkedin: FakeLinkedIn, channel: linkedin.LinkedInChannel
) -> None:
    channel.send(post(), key="k1")
    described = linkedin.describe_request(
        post(),
        key="k1",
        author_urn=AUTHOR,
        version=linkedin.DEFAULT_VERSION,
        base_url=fake_linkedin.url,
    )
    [request] = fake_linkedin.requests
    assert described["method"] == request.method == "POST"
    assert described["url"] == fake_linkedin.url + request.path
    assert request.json() == described["json"]
    for name, value in described["headers"].items():
        assert request.headers[name.lower()] == value
    assert "Authorization" not in described["headers"]
    assert request.headers["authorization"] == f"Bearer {TOKEN}"


def test_duplicate_post_is_the_existing_post(
    fake_linkedin: FakeLinkedIn, channel: linkedin.LinkedInChannel
) -> None:
    first = channel.send(post(), key="k1")
    again = channel.send(post(), key="k1")

    assert again.provider_id == first.provider_id
    assert again.details == {"duplicate": "true"}
    assert len(fake_linkedin.posts) == 1


def test_5xx_after_posting_is_ambiguous_and_not_idempotent(
    fake_linkedin: FakeLinkedIn, channel: linkedin.LinkedInChannel
) -> None:
    fake_linkedin.fail_next(
        "/rest/posts",
        Response(
            500, json={"message": "Internal Server Error", "status": 500}, after_handling=True
        ),
    )
    with pytest.raises(ChannelError) as caught:
        channel.send(post(), key="k1")

    assert caught.value.ambiguous and not caught.value.permanent
    assert channel.idempotent is False  # so the pipeline records `unknown`, never retries
    assert len(fake_linkedin.posts) == 1  # LinkedIn did post


def test_timeout_is_ambiguous(
    fake_linkedin: FakeLinkedIn, channel: linkedin.LinkedInChannel, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(http, "READ_TIMEOUT", 0.2)
    fake_linkedin.fail_next("/rest/posts", Response(201, delay=1.0, after_handling=True))
    with pytest.raises(ChannelError) as caught:
        channel.send(post(), key="k1")
    assert caught.value.ambiguous


def test_expired_token_names_the_credential_and_hides_the_token(
    fake_linkedin: FakeLinkedIn,
) -> None:
    chan = linkedin.LinkedInChannel("expired-token-XYZ", AUTHOR, base_url=fake_linkedin.url)
    with pytest.raises(ChannelError) as caught:
        chan.send(post(), key="k1")
    chan.close()

    message = str(caught.value)
    assert caught.value.kind is ErrorKind.UNAVAILABLE  # the token, not the post: it waits
    assert message == (
        "linkedin: HTTP 401: Invalid access token; LinkedIn does not accept the access token "
        "(they expire after 60 days): authorize the app again (3-legged OAuth) and set "
        "DISPATCHER_LINKEDIN_ACCESS_TOKEN"
    )
    assert "expired-token-XYZ" not in message
    assert "expired-token-XYZ" not in repr(chan)


def test_wrong_author_explains_the_permission(fake_linkedin: FakeLinkedIn) -> None:
    chan = linkedin.LinkedInChannel(TOKEN, "urn:li:organization:999", base_url=fake_linkedin.url)
    with pytest.raises(ChannelError) as caught:
        chan.send(post(), key="k1")
    chan.close()
    assert caught.value.kind is ErrorKind.UNAVAILABLE
    assert str(caught.value).endswith(
        "; urn:li:organization:999 is not an author this token may post as: set "
        "DISPATCHER_LINKEDIN_AUTHOR_URN to the member's own urn:li:person:… or to a page the "
        "member administers (the token then needs w_organization_social)"
    )


# LinkedIn's own error bodies (serviceErrorCode, code, message) as its API answers them
@pytest.mark.parametrize(
    ("answer", "says"),
    [
        (
            error(
                401,
                "The token used in the request has been revoked by the user",
                serviceErrorCode=65601,
                code="REVOKED_ACCESS_TOKEN",
            ),
            "the member revoked the app's access: authorize the app again (3-legged OAuth) and "
            "set DISPATCHER_LINKEDIN_ACCESS_TOKEN",
        ),
        (
            error(
                401,
                "The token used in the request has expired",
                serviceErrorCode=65602,
                code="EXPIRED_ACCESS_TOKEN",
            ),
            "the access token expired (LinkedIn's last 60 days): authorize the app again",
        ),
        (
            error(
                403,
                "Not enough permissions to access: partnerApiPostsExternal.CREATE.20260701",
                serviceErrorCode=100,
                code="ACCESS_DENIED",
            ),
            "the token lacks the permission: it needs w_member_social (posting as a member) or "
            "w_organization_social",
        ),
    ],
)
def test_refusals_name_the_cause_and_keep_the_post(
    fake_linkedin: FakeLinkedIn, channel: linkedin.LinkedInChannel, answer: Response, says: str
) -> None:
    fake_linkedin.fail_next("/rest/posts", answer)
    with pytest.raises(ChannelError) as caught:
        channel.send(post(), key="k1")
    assert caught.value.kind is ErrorKind.UNAVAILABLE
    assert caught.value.message.startswith(
        f"linkedin: HTTP {answer.status}: {answer.json['message']}; {says}"
    )
    assert TOKEN not in caught.value.message
    assert fake_linkedin.posts == []


def test_429_has_no_retry_after(
    fake_linkedin: FakeLinkedIn, channel: linkedin.LinkedInChannel
) -> None:
    fake_linkedin.fail_next("/rest/posts", THROTTLED)
    with pytest.raises(ChannelError) as caught:
        channel.send(post(), key="k1")
    error = caught.value
    assert (error.retry_after, error.permanent, error.ambiguous) == (None, False, False)
    assert "rate limited" in str(error)


def test_422_schema_error_is_permanent_with_linkedins_message(
    fake_linkedin: FakeLinkedIn, channel: linkedin.LinkedInChannel
) -> None:
    fake_linkedin.fail_next(
        "/rest/posts",
        Response(422, json={"message": "ERROR :: /visibility :: invalid", "status": 422}),
    )
    with pytest.raises(ChannelError) as caught:
        channel.send(post(), key="k1")
    assert caught.value.permanent
    assert "/visibility" in str(caught.value)


def test_sunset_version_keeps_deliveries_queued(fake_linkedin: FakeLinkedIn) -> None:
    chan = linkedin.LinkedInChannel(TOKEN, AUTHOR, version="202401", base_url=fake_linkedin.url)
    with pytest.raises(ChannelError) as caught:
        chan.send(post(), key="k1")
    chan.close()
    assert caught.value.unavailable
    assert "DISPATCHER_LINKEDIN_VERSION" in str(caught.value)


def test_too_long_commentary_is_refused_before_sending(
    fake_linkedin: FakeLinkedIn, channel: linkedin.LinkedInChannel
) -> None:
    long = dataclasses.replace(post(), text="ä" * 3001)
    with pytest.raises(ChannelError) as caught:
        channel.send(long, key="k1")
    assert caught.value.permanent
    assert fake_linkedin.requests == []


@pytest.mark.parametrize(
    ("version", "author"),
    [("2024-01", AUTHOR), ("202607", "organization:1"), ("202607", "urn:li:share:1")],
)
def test_bad_settings_are_refused_at_open(version: str, author: str) -> None:
    with pytest.raises(ValueError):
        linkedin.LinkedInChannel(TOKEN, author, version=version)


def test_delivery_key_is_stable_and_ascii() -> None:
    def key(**changes: object) -> str:
        args: dict[str, object] = {
            "campaign_id": "clusterwoche-2024",
            "day": dt.date(2024, 4, 2),
            "send_at": WHEN,
            "recipient": "linkedin",
        }
        return linkedin.delivery_key(**{**args, **changes})  # type: ignore[arg-type]

    assert key() == key(send_at=WHEN + dt.timedelta(hours=1))
    assert key() == "clusterwoche-2024-20240402-linkedin"
    assert key() != key(day=dt.date(2024, 4, 3))
    assert key(campaign_id="Grüße/ä").isascii()
