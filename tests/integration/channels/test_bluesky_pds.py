"""BlueskyChannel against the REAL reference PDS (`@atproto/pds`): lexicon validation, facets
as stored, and what a retried write really does. Skipped unless DISPATCHER_TEST_PDS_DIR is set
(`scripts/pds-setup`, `.ci/run`); the fixture `real_pds` is in tests/support/pds.py."""

from __future__ import annotations

import datetime as dt
import struct
import zlib
from collections.abc import Iterator
from typing import Any

import pytest
import requests

from dispatcher.channels import bluesky, links
from dispatcher.channels.base import ChannelError, ErrorKind, Post
from tests.support.httpserver import FakeHTTPServer, Request, Response
from tests.support.pds import ADMIN_PASSWORD, RealPds

LINK = "https://clusterwoche.example.de/reportage/köln-werften?teil=2"
TEXT = (
    "Grüße aus Köln! Wie Mittelständler an der Weser #KünstlicheIntelligenz nutzen – "
    f"und was das für Fachkräfte heißt. #Zukunft #Mittelstand {LINK}"
)
HASHTAGS = ("#KünstlicheIntelligenz", "#Zukunft", "#Mittelstand")


def make_post(
    send_at: dt.datetime, text: str = TEXT, image_url: str | None = None
) -> tuple[Post, str]:
    post = Post(
        network="bluesky",
        text=text,
        link=LINK,
        title="Werften im Wandel: Köln und die Weser",
        description="Wie Betriebe sich mit KI neu erfinden – eine Reportage über Größe und Mut.",
        hashtags=HASHTAGS,
        image_url=image_url,
        image_alt="Eine Werfthalle",
        created_at=send_at,
    )
    key = bluesky.delivery_key(
        campaign_id="werften", day=send_at.date(), send_at=send_at, recipient="bluesky"
    )
    return post, key


def png(width: int = 8, height: int = 8) -> bytes:
    """A real PNG (the PDS sniffs the bytes of uploaded blobs)."""

    def chunk(kind: bytes, data: bytes) -> bytes:
        body = kind + data
        return struct.pack(">I", len(data)) + body + struct.pack(">I", zlib.crc32(body))

    rows = b"".join(b"\x00" + b"\xc8\x64\x32" * width for _ in range(height))
    header = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    return (
        b"\x89PNG\r\n\x1a\n"
        + chunk(b"IHDR", header)
        + chunk(b"IDAT", zlib.compress(rows))
        + chunk(b"IEND", b"")
    )


class Proxy(FakeHTTPServer):
    """Forwards to the real PDS, so `fail_next(..., after_handling=True)` can lose an answer
    after the PDS acted; also serves a test image for the thumbnail."""

    def __init__(self, target: str) -> None:
        super().__init__()
        self.target = target
        self.http = requests.Session()

    def handle(self, request: Request) -> Response:
        if request.path == "/images/werft.png":
            return Response(body=png(), headers={"Content-Type": "image/png"})
        if request.path == "/images/kaputt.png":  # cut off after the signature
            return Response(body=png()[:20], headers={"Content-Type": "image/png"})
        keep = ("authorization", "content-type", "accept")
        answer = self.http.request(
            request.method,
            self.target + request.path,
            params=request.query,
            data=request.body,
            headers={k: v for k, v in request.headers.items() if k in keep},
            timeout=30,
        )
        content_type = answer.headers.get("Content-Type", "application/json")
        return Response(
            answer.status_code, body=answer.content, headers={"Content-Type": content_type}
        )


@pytest.fixture
def proxy(real_pds: RealPds) -> Iterator[Proxy]:
    with Proxy(real_pds.pds_url) as server:
        assert isinstance(server, Proxy)
        yield server
        server.http.close()


@pytest.fixture
def channel(real_pds: RealPds) -> Iterator[bluesky.BlueskyChannel]:
    channel = bluesky.BlueskyChannel(real_pds.pds_url, real_pds.handle, real_pds.password)
    yield channel
    channel.close()


def get_record(pds: RealPds, rkey: str) -> dict[str, Any]:
    params = {"repo": pds.did, "collection": "app.bsky.feed.post", "rkey": rkey}
    answer = requests.get(
        f"{pds.pds_url}/xrpc/com.atproto.repo.getRecord", params=params, timeout=10
    )
    answer.raise_for_status()
    body: dict[str, Any] = answer.json()
    return body


def rkeys(pds: RealPds) -> list[str]:
    params = {"repo": pds.did, "collection": "app.bsky.feed.post", "limit": "100"}
    answer = requests.get(
        f"{pds.pds_url}/xrpc/com.atproto.repo.listRecords", params=params, timeout=10
    )
    answer.raise_for_status()
    return [r["uri"].rsplit("/", 1)[1] for r in answer.json()["records"]]


def test_german_post_passes_lexicon_validation_and_facets_hit_the_right_bytes(
    real_pds: RealPds, channel: bluesky.BlueskyChannel
) -> None:
    post, key = make_post(dt.datetime(2026, 3, 2, 8, 0, 0, 250_000, tzinfo=dt.UTC))

    receipt = channel.send(post, key=key)

    assert receipt.details["validation"] == "valid"
    assert receipt.provider_id == f"at://{real_pds.did}/app.bsky.feed.post/{key}"
    # `status` links it on bsky.app: the real PDS's DID and record key fit the link's shape.
    link = links.post_url("bluesky", receipt.provider_id, receipt.details)
    assert link == f"https://bsky.app/profile/{real_pds.did}/post/{key}"
    stored = get_record(real_pds, key)
    value = stored["value"]
    assert stored["cid"] == receipt.details["cid"]
    assert value == bluesky.build_record(post)  # kept as sent: umlauts, facets, createdAt
    assert value["createdAt"] == "2026-03-02T08:00:00.250Z"
    data = value["text"].encode("utf-8")
    spans = {}
    for facet in value["facets"]:
        (feature,) = facet["features"]
        piece = data[facet["index"]["byteStart"] : facet["index"]["byteEnd"]].decode("utf-8")
        spans[piece] = feature
    assert spans == {
        "#KünstlicheIntelligenz": {
            "$type": "app.bsky.richtext.facet#tag",
            "tag": "KünstlicheIntelligenz",
        },
        "#Zukunft": {"$type": "app.bsky.richtext.facet#tag", "tag": "Zukunft"},
        "#Mittelstand": {"$type": "app.bsky.richtext.facet#tag", "tag": "Mittelstand"},
        LINK: {"$type": "app.bsky.richtext.facet#link", "uri": LINK},
    }


def test_sending_twice_with_the_same_key_leaves_one_post(
    real_pds: RealPds, channel: bluesky.BlueskyChannel
) -> None:
    post, key = make_post(dt.datetime(2026, 3, 3, 8, 0, tzinfo=dt.UTC))
    before = rkeys(real_pds)

    first = channel.send(post, key=key)
    second = channel.send(post, key=key)

    assert second.provider_id == first.provider_id
    assert second.details["cid"] == first.details["cid"]
    assert "write" not in first.details  # a new commit
    assert second.details["write"].startswith("unchanged")  # the PDS wrote nothing
    after = rkeys(real_pds)
    assert len(after) == len(before) + 1 and after.count(key) == 1


def test_lost_answer_then_retry_leaves_one_post_with_its_thumbnail(
    real_pds: RealPds, proxy: Proxy
) -> None:
    post, key = make_post(
        dt.datetime(2026, 3, 4, 8, 0, tzinfo=dt.UTC), image_url=proxy.url + "/images/werft.png"
    )
    channel = bluesky.BlueskyChannel(proxy.url, real_pds.handle, real_pds.password)
    before = rkeys(real_pds)
    proxy.fail_next(
        "/xrpc/com.atproto.repo.putRecord",
        Response(502, json={"error": "UpstreamFailure"}, after_handling=True),
    )
    try:
        with pytest.raises(ChannelError) as raised:
            channel.send(post, key=key)
        assert raised.value.ambiguous
        stored = get_record(real_pds, key)  # the PDS did act

        receipt = channel.send(post, key=key)  # the retry: uploads the same bytes again
    finally:
        channel.close()

    assert receipt.provider_id == stored["uri"] and receipt.details["cid"] == stored["cid"]
    assert receipt.details["write"].startswith("unchanged")
    thumb = stored["value"]["embed"]["external"]["thumb"]
    assert thumb["mimeType"] == "image/png" and thumb["ref"]["$link"].startswith("bafkrei")
    after = rkeys(real_pds)
    assert len(after) == len(before) + 1 and after.count(key) == 1


def test_a_different_post_under_the_key_is_a_permanent_conflict(
    real_pds: RealPds, channel: bluesky.BlueskyChannel
) -> None:
    send_at = dt.datetime(2026, 3, 5, 8, 0, tzinfo=dt.UTC)
    post, key = make_post(send_at)
    channel.send(post, key=key)
    changed, _ = make_post(send_at, text="Ein ganz anderer Text #Zukunft")

    with pytest.raises(ChannelError) as raised:
        channel.send(changed, key=key)

    assert raised.value.permanent and "different post already exists" in raised.value.message
    assert get_record(real_pds, key)["value"]["text"] == TEXT


def test_wrong_password_names_the_setting(real_pds: RealPds) -> None:
    channel = bluesky.BlueskyChannel(real_pds.pds_url, real_pds.handle, "falsch-0815")
    post, key = make_post(dt.datetime(2026, 3, 6, 8, 0, tzinfo=dt.UTC))
    try:
        with pytest.raises(ChannelError) as raised:
            channel.send(post, key=key)
    finally:
        channel.close()
    assert raised.value.kind is ErrorKind.UNAVAILABLE  # the login, not the post: it waits
    assert raised.value.message.startswith(
        "bluesky: HTTP 401: AuthenticationRequired: Invalid identifier or password; the PDS "
        f"refused the login of {real_pds.handle}: create an app password"
    )
    assert "DISPATCHER_BLUESKY_APP_PASSWORD" in raised.value.message
    assert "falsch-0815" not in raised.value.message


def test_a_taken_down_account_is_named_as_such(real_pds: RealPds) -> None:
    """The PDS's own answer for an account its admin took down: no "renew the password"."""
    handle, password = "abgeschaltet.test", "takedown-pass-4711"
    created = requests.post(
        f"{real_pds.pds_url}/xrpc/com.atproto.server.createAccount",
        json={"handle": handle, "email": "abgeschaltet@example.org", "password": password},
        timeout=10,
    )
    created.raise_for_status()
    takedown = requests.post(
        f"{real_pds.pds_url}/xrpc/com.atproto.admin.updateSubjectStatus",
        auth=("admin", ADMIN_PASSWORD),
        json={
            "subject": {"$type": "com.atproto.admin.defs#repoRef", "did": created.json()["did"]},
            "takedown": {"applied": True, "ref": "dispatcher-test"},
        },
        timeout=10,
    )
    takedown.raise_for_status()
    channel = bluesky.BlueskyChannel(real_pds.pds_url, handle, password)
    post, key = make_post(dt.datetime(2026, 3, 6, 9, 0, tzinfo=dt.UTC))
    try:
        with pytest.raises(ChannelError) as raised:
            channel.send(post, key=key)
    finally:
        channel.close()
    assert raised.value.kind is ErrorKind.UNAVAILABLE
    assert raised.value.message == (
        "bluesky: HTTP 401: AccountTakedown: Account has been taken down; the account "
        f"{handle} has been taken down by its PDS or by moderation: appeal there; a new "
        "password will not help"
    )


def test_corrupt_thumbnail_is_a_temporary_error_and_nothing_is_posted(
    real_pds: RealPds, proxy: Proxy
) -> None:
    """The reference PDS answers a truncated PNG with 500 (its log: End-Of-Stream)."""
    post, key = make_post(
        dt.datetime(2026, 3, 9, 8, 0, tzinfo=dt.UTC), image_url=proxy.url + "/images/kaputt.png"
    )
    channel = bluesky.BlueskyChannel(proxy.url, real_pds.handle, real_pds.password)
    try:
        with pytest.raises(ChannelError) as raised:
            channel.send(post, key=key)
    finally:
        channel.close()

    assert not raised.value.permanent and not raised.value.ambiguous
    assert "HTTP 500" in raised.value.message and "thumbnail" in raised.value.message
    assert key not in rkeys(real_pds)
