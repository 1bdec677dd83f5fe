"""BlueskyChannel against FakeBluesky (a PDS on loopback with the reference PDS's answers)."""

from __future__ import annotations

import datetime as dt
import logging
from collections.abc import Iterator

import pytest

from dispatcher.channels import bluesky, tid
from dispatcher.channels.base import ChannelError, ErrorKind, Post
from tests.support.fake_bluesky import PASSWORD, FakeBluesky, error, rate_limited
from tests.support.httpserver import Response

NOW = dt.datetime(2026, 3, 2, 7, 55, tzinfo=dt.UTC)
SEND_AT = dt.datetime(2026, 3, 2, 8, 0, 0, 123456, tzinfo=dt.UTC)
LINK = "https://example.org/a"
TEXT = f"Grüße aus Köln #Zukunft {LINK}"


def make_post(
    text: str = TEXT,
    *,
    hashtags: tuple[str, ...] = ("#Zukunft",),
    image_url: str | None = None,
    created_at: dt.datetime = SEND_AT,
) -> Post:
    return Post(
        network="bluesky",
        text=text,
        link=LINK,
        title="Werften im Wandel",
        description="Wie Kölner Betriebe sich neu erfinden – eine Reportage.",
        hashtags=hashtags,
        image_url=image_url,
        image_alt="Eine Werfthalle",
        created_at=created_at,
    )


def key_for(campaign: str = "werften", send_at: dt.datetime = SEND_AT) -> str:
    return bluesky.delivery_key(
        campaign_id=campaign, day=send_at.date(), send_at=send_at, recipient="bluesky"
    )


@pytest.fixture
def pds() -> Iterator[FakeBluesky]:
    with FakeBluesky() as server:
        assert isinstance(server, FakeBluesky)
        yield server


@pytest.fixture
def channel(pds: FakeBluesky) -> Iterator[bluesky.BlueskyChannel]:
    channel = bluesky.BlueskyChannel(pds.url, pds.login_handle, PASSWORD, clock=lambda: NOW)
    yield channel
    channel.close()


def test_facet_byte_offsets_count_umlauts_as_two_bytes(
    pds: FakeBluesky, channel: bluesky.BlueskyChannel
) -> None:
    receipt = channel.send(make_post(), key=key_for())

    ((_, record),) = pds.records.values()
    # "Grüße aus Köln " is 15 characters but 18 bytes (ü, ß, ö).
    assert record["facets"] == [
        {
            "index": {"byteStart": 18, "byteEnd": 26},
            "features": [{"$type": "app.bsky.richtext.facet#tag", "tag": "Zukunft"}],
        },
        {
            "index": {"byteStart": 27, "byteEnd": 48},
            "features": [{"$type": "app.bsky.richtext.facet#link", "uri": LINK}],
        },
    ]
    data = TEXT.encode()
    assert data[18:26].decode() == "#Zukunft" and data[27:48].decode() == LINK
    assert record["createdAt"] == "2026-03-02T08:00:00.123Z"
    assert record["langs"] == ["de"]
    assert record["embed"]["external"]["uri"] == LINK
    assert receipt.provider_id == f"at://{pds.did}/app.bsky.feed.post/{key_for()}"
    assert receipt.details["cid"] == pds.records[("app.bsky.feed.post", key_for())][0]


def test_facets_whole_hashtags_only_and_not_inside_urls() -> None:
    text = "#Zukunftsfragen und #Zukunft. Mehr: https://example.org/x#Zukunft. (https://e.org/y)"
    found = bluesky.facets(text, ("#Zukunft", "#Fehlt"))
    data = text.encode()
    spans = [data[f["index"]["byteStart"] : f["index"]["byteEnd"]].decode() for f in found]
    assert spans == ["#Zukunft", "https://example.org/x#Zukunft", "https://e.org/y"]
    assert found[0]["features"][0]["tag"] == "Zukunft"


def test_one_session_for_several_posts(pds: FakeBluesky, channel: bluesky.BlueskyChannel) -> None:
    for minute in range(3):
        send_at = SEND_AT + dt.timedelta(minutes=minute)
        channel.send(make_post(created_at=send_at), key=key_for(send_at=send_at))

    assert len(pds.requests_to("/xrpc/com.atproto.server.createSession")) == 1
    assert len(pds.records) == 3


def test_expired_token_is_refreshed_and_the_post_made_once(
    pds: FakeBluesky, channel: bluesky.BlueskyChannel
) -> None:
    channel.send(make_post(), key=key_for("a"))
    pds.expire_access_tokens()

    receipt = channel.send(make_post(), key=key_for("b"))

    assert len(pds.requests_to("/xrpc/com.atproto.server.refreshSession")) == 1
    assert len(pds.requests_to("/xrpc/com.atproto.server.createSession")) == 1
    puts = pds.requests_to("/xrpc/com.atproto.repo.putRecord")
    assert [r.headers["authorization"] for r in puts] == [
        "Bearer fake-access-1",
        "Bearer fake-access-1",  # refused: ExpiredToken
        "Bearer fake-access-2",
    ]
    assert len(pds.records) == 2
    assert receipt.provider_id.endswith(key_for("b"))


def test_failed_refresh_logs_in_again(pds: FakeBluesky, channel: bluesky.BlueskyChannel) -> None:
    channel.send(make_post(), key=key_for("a"))
    pds.expire_access_tokens()
    pds.expire_refresh_tokens()

    channel.send(make_post(), key=key_for("b"))

    assert len(pds.requests_to("/xrpc/com.atproto.server.createSession")) == 2
    assert len(pds.records) == 2


def test_revoked_session_logs_in_again(pds: FakeBluesky, channel: bluesky.BlueskyChannel) -> None:
    channel.send(make_post(), key=key_for("a"))
    pds.revoke_sessions()

    channel.send(make_post(), key=key_for("b"))

    assert len(pds.requests_to("/xrpc/com.atproto.server.createSession")) == 2
    assert len(pds.records) == 2


def test_500_after_storing_is_ambiguous_and_the_retry_finds_the_same_post(
    pds: FakeBluesky, channel: bluesky.BlueskyChannel
) -> None:
    # The PDS stores the record, then the answer is a 500: the client cannot know.
    pds.fail_next(
        "/xrpc/com.atproto.repo.putRecord",
        Response(500, json={"error": "InternalServerError"}, after_handling=True),
    )
    with pytest.raises(ChannelError) as raised:
        channel.send(make_post(), key=key_for())
    assert raised.value.ambiguous and not raised.value.permanent
    assert len(pds.records) == 1

    receipt = channel.send(make_post(), key=key_for())

    assert receipt.provider_id == f"at://{pds.did}/app.bsky.feed.post/{key_for()}"
    assert receipt.details["write"].startswith("unchanged")
    assert len(pds.records) == 1


def test_different_post_under_the_key_is_a_permanent_conflict(
    pds: FakeBluesky, channel: bluesky.BlueskyChannel
) -> None:
    channel.send(make_post("Erster Text #Zukunft"), key=key_for())

    with pytest.raises(ChannelError) as raised:
        channel.send(make_post("Ganz anderer Text #Zukunft"), key=key_for())

    assert raised.value.permanent
    assert "different post already exists" in raised.value.message
    assert pds.posts()[0]["text"] == "Erster Text #Zukunft"


def test_same_post_without_its_thumbnail_counts_as_sent(
    pds: FakeBluesky, channel: bluesky.BlueskyChannel
) -> None:
    """An earlier attempt stored the card with image; now the image is gone (404)."""
    url = pds.add_image("werft.jpg", b"\xff\xd8\xff" + b"x" * 5000)
    first = channel.send(make_post(image_url=url), key=key_for())
    del pds.images["werft.jpg"]

    again = channel.send(make_post(image_url=url), key=key_for())

    assert again.provider_id == first.provider_id and again.details["cid"] == first.details["cid"]
    assert len(pds.records) == 1


def test_rate_limit_reset_is_epoch_seconds(
    pds: FakeBluesky, channel: bluesky.BlueskyChannel
) -> None:
    pds.fail_next("/xrpc/com.atproto.repo.putRecord", rate_limited(int(NOW.timestamp()) + 120))

    with pytest.raises(ChannelError) as raised:
        channel.send(make_post(), key=key_for())

    assert raised.value.retry_after == 120
    assert not raised.value.permanent and not raised.value.ambiguous
    assert pds.records == {}


def test_wrong_password_keeps_the_post_and_names_the_setting_not_the_password(
    pds: FakeBluesky, caplog: pytest.LogCaptureFixture
) -> None:
    secret = "wrong-secret-9876"
    channel = bluesky.BlueskyChannel(pds.url, pds.login_handle, secret, clock=lambda: NOW)
    caplog.set_level(logging.DEBUG)

    with pytest.raises(ChannelError) as raised:
        channel.send(make_post(), key=key_for())

    assert raised.value.kind is ErrorKind.UNAVAILABLE  # the login, not the post: it waits
    assert raised.value.message == (
        "bluesky: HTTP 401: AuthenticationRequired: Invalid identifier or password; the PDS "
        f"refused the login of {pds.login_handle}: create an app password (Settings → Privacy "
        "and security → App passwords), set DISPATCHER_BLUESKY_APP_PASSWORD and check "
        "DISPATCHER_BLUESKY_HANDLE"
    )
    assert secret not in raised.value.message and secret not in repr(channel)
    assert secret not in caplog.text
    assert pds.requests_to("/xrpc/com.atproto.repo.putRecord") == []


# The reference PDS's own answers (@atproto/pds auth-verifier.ts, createSession.ts)
@pytest.mark.parametrize(
    ("path", "answer", "says"),
    [
        (
            "/xrpc/com.atproto.server.createSession",
            error(401, "AccountTakedown", "Account has been taken down"),
            "has been taken down by its PDS or by moderation: appeal there; a new password "
            "will not help",
        ),
        (
            "/xrpc/com.atproto.repo.putRecord",
            error(401, "AccountDeactivated", "Account is deactivated"),
            "is deactivated: reactivate it by logging in",
        ),
        (
            "/xrpc/com.atproto.server.createSession",
            error(401, "AuthFactorTokenRequired", "A sign in code has been sent to your email"),
            "use an app password instead",
        ),
        (
            "/xrpc/com.atproto.repo.putRecord",
            error(501, "MethodNotImplemented", "Method Not Implemented"),
            "does not answer as the account's PDS: check DISPATCHER_BLUESKY_PDS_URL",
        ),
    ],
)
def test_account_errors_name_the_cause_and_keep_the_post(
    pds: FakeBluesky, channel: bluesky.BlueskyChannel, path: str, answer: Response, says: str
) -> None:
    pds.fail_next(path, answer)

    with pytest.raises(ChannelError) as raised:
        channel.send(make_post(), key=key_for())

    assert raised.value.kind is ErrorKind.UNAVAILABLE
    name, text = answer.json["error"], answer.json["message"]
    assert f"HTTP {answer.status}: {name}: {text}; " in raised.value.message
    assert says in raised.value.message
    assert PASSWORD not in raised.value.message
    assert pds.records == {}


def test_lexicon_rejection_is_permanent_with_the_pds_message(
    pds: FakeBluesky, channel: bluesky.BlueskyChannel
) -> None:
    message = 'Invalid app.bsky.feed.post record: Missing required key "createdAt" at $.record'
    pds.fail_next("/xrpc/com.atproto.repo.putRecord", error(400, "InvalidRequest", message))

    with pytest.raises(ChannelError) as raised:
        channel.send(make_post(), key=key_for())

    assert raised.value.permanent and message in raised.value.message


def test_text_too_long_fails_before_any_request(
    pds: FakeBluesky, channel: bluesky.BlueskyChannel
) -> None:
    with pytest.raises(ChannelError) as raised:
        channel.send(make_post("ä" * 301, hashtags=()), key=key_for())

    assert raised.value.permanent and "301 graphemes" in raised.value.message
    assert pds.requests == []


def test_thumbnail_is_uploaded_and_retry_safe(
    pds: FakeBluesky, channel: bluesky.BlueskyChannel
) -> None:
    url = pds.add_image("werft.jpg", b"\xff\xd8\xff" + b"j" * 20_000)

    first = channel.send(make_post(image_url=url), key=key_for())
    again = channel.send(make_post(image_url=url), key=key_for())

    thumb = pds.posts()[0]["embed"]["external"]["thumb"]
    assert thumb["mimeType"] == "image/jpeg" and thumb["size"] == 20_003
    assert thumb["ref"]["$link"].startswith("bafkrei") and thumb["ref"]["$link"] in pds.blobs
    assert again.details["cid"] == first.details["cid"] and len(pds.records) == 1
    assert first.details["thumb"].startswith("uploaded")


def test_oversized_thumbnail_leaves_a_card_without_picture(
    pds: FakeBluesky, channel: bluesky.BlueskyChannel
) -> None:
    url = pds.add_image("riesig.jpg", b"\xff\xd8\xff" + b"x" * 1_000_000)

    receipt = channel.send(make_post(image_url=url), key=key_for())

    external = pds.posts()[0]["embed"]["external"]
    assert "thumb" not in external and external["title"] == "Werften im Wandel"
    assert "omitted" in receipt.details["thumb"] and "1,000,000" in receipt.details["thumb"]
    assert pds.requests_to("/xrpc/com.atproto.repo.uploadBlob") == []


def test_thumbnail_that_is_no_image_or_refused_leaves_a_card_without_picture(
    pds: FakeBluesky, channel: bluesky.BlueskyChannel
) -> None:
    html = pds.add_image("seite.html", b"<html></html>", "text/html")
    receipt = channel.send(make_post(image_url=html), key=key_for("a"))
    assert receipt.details["thumb"] == f"omitted: image {html} is text/html, not an image"

    image = pds.add_image("bild.gif", b"GIF89a" + b"x" * 100, "image/gif")
    pds.fail_next("/xrpc/com.atproto.repo.uploadBlob", error(400, "InvalidRequest", "Bad blob"))
    receipt = channel.send(make_post(image_url=image), key=key_for("b"))
    assert receipt.details["thumb"] == "omitted: the PDS refused it: Bad blob"

    assert all("thumb" not in post["embed"]["external"] for post in pds.posts())


def test_failed_thumbnail_upload_is_a_temporary_error_before_posting(
    pds: FakeBluesky, channel: bluesky.BlueskyChannel
) -> None:
    image = pds.add_image("bild.png", b"\x89PNG\r\n\x1a\n" + b"x" * 100, "image/png")
    pds.fail_next("/xrpc/com.atproto.repo.uploadBlob", error(500, "InternalServerError", "boom"))

    with pytest.raises(ChannelError) as raised:
        channel.send(make_post(image_url=image), key=key_for())

    assert not raised.value.permanent and not raised.value.ambiguous
    assert "uploading the thumbnail" in raised.value.message
    assert pds.requests_to("/xrpc/com.atproto.repo.putRecord") == []


def test_unreachable_thumbnail_host_is_a_plain_temporary_error(
    pds: FakeBluesky, channel: bluesky.BlueskyChannel
) -> None:
    with pytest.raises(ChannelError) as raised:
        channel.send(make_post(image_url="http://127.0.0.1:9/bild.jpg"), key=key_for())

    error = raised.value
    assert not (error.permanent or error.ambiguous or error.unavailable)
    assert pds.records == {}


def test_describe_request_is_what_the_channel_sends_without_authorization(
    pds: FakeBluesky, channel: bluesky.BlueskyChannel
) -> None:
    described = bluesky.describe_request(make_post(), key=key_for(), pds_url=pds.url, repo=pds.did)
    channel.send(make_post(), key=key_for())

    (sent,) = pds.requests_to("/xrpc/com.atproto.repo.putRecord")
    assert "Authorization" not in described["headers"]
    assert described["headers"].items() <= {k.title(): v for k, v in sent.headers.items()}.items()
    assert described["method"] == "POST" and sent.method == "POST"
    assert described["url"] == pds.url + sent.path
    assert described["json"] == sent.json()
    assert described["json"]["swapRecord"] is None and described["json"]["rkey"] == key_for()


def test_describe_request_names_the_thumbnail_it_would_upload() -> None:
    post = make_post(image_url="https://example.org/bild.jpg")
    described = bluesky.describe_request(
        post, key=key_for(), pds_url="https://bsky.social/", repo="x.example"
    )
    assert described["url"] == "https://bsky.social/xrpc/com.atproto.repo.putRecord"
    assert "thumb" not in described["json"]["record"]["embed"]["external"]
    assert described["thumb_source"] == "https://example.org/bild.jpg"


def test_delivery_key_is_a_deterministic_tid_of_the_send_time() -> None:
    key = key_for()
    assert tid.is_valid(key) and key == key_for()
    micros, _ = tid.decode(key)
    assert micros == tid.micros_since_epoch(SEND_AT)
    assert len({key_for(f"kampagne-{n}") for n in range(50)}) > 45  # clock ids differ
    with pytest.raises(ValueError, match="aware"):
        key_for(send_at=SEND_AT.replace(tzinfo=None))
