"""Webhook targets against fakes of Slack, Discord, Teams, Matrix and a generic endpoint."""

from __future__ import annotations

import datetime as dt
import json
from collections.abc import Iterator
from urllib.parse import quote

import pytest
import requests

from dispatcher.channels import webhook
from dispatcher.channels.base import ChannelError, Post
from dispatcher.channels.webhook import WebhookChannel, parse_webhook_urls
from tests.support import fake_webhooks as fw
from tests.support.fake_webhooks import FakeWebhooks
from tests.support.httpserver import Response

WHEN = dt.datetime(2024, 4, 2, 7, 30, tzinfo=dt.UTC)
LINK = "https://example.de/reportage/werften?teil=3&x=1"
TEXT = (
    f"Clusterwoche: Werften in Görlitz (Teil 3)\n\nGrüße aus Köln – Straßenbahn & Brücken\n\n{LINK}"
)
SECRETS = (fw.SLACK_PATH, fw.DISCORD_TOKEN, fw.TEAMS_SIG, fw.MATRIX_TOKEN, fw.GENERIC_PATH)


def post(text: str = TEXT) -> Post:
    return Post(
        network="webhook",
        text=text,
        link=LINK,
        title="Werften in Görlitz (Teil 3)",
        description="Grüße aus Köln",
        hashtags=("#Zukunft", "#Lausitz"),
        image_url=None,
        image_alt=None,
        created_at=WHEN,
    )


@pytest.fixture(scope="module")
def server() -> Iterator[FakeWebhooks]:
    running = FakeWebhooks()
    with running:
        yield running


@pytest.fixture
def fake(server: FakeWebhooks) -> FakeWebhooks:
    server.reset()
    return server


def channel(url: str) -> WebhookChannel:
    [target] = parse_webhook_urls(url)
    return WebhookChannel(target)


def assert_no_secret(text: str) -> None:
    for secret in SECRETS:
        assert secret not in text, text


# --- URLs ----------------------------------------------------------------------------------


def test_kinds_are_detected_from_real_urls() -> None:
    urls = {
        "slack": "https://hooks.slack.com/services/T00000000/B00000000/XXXXXXXXXXXXXXXXXXXXXXXX",
        "discord": "https://discord.com/api/webhooks/1234567890/tokenTOKENtokenTOKEN",
        "teams": "https://prod-23.westeurope.logic.azure.com:443/workflows/abc/triggers/manual/paths/invoke?api-version=2016-06-01&sp=%2Ftriggers%2Fmanual%2Frun&sv=1.0&sig=SIGsigSIGsig",
        "matrix": "https://matrix.example.org/_matrix/client/v3/rooms/!room:example.org?access_token=syt_abcdef",
        "generic": "https://chat.example/hooks/abcdef",
    }
    targets = parse_webhook_urls(" , ".join(urls.values()) + ",")
    assert [t.kind for t in targets] == list(urls)
    for target in targets:
        assert target.recipient.startswith(f"webhook:{target.kind}:")
        for secret in ("XXXXXXXX", "tokenTOKEN", "SIGsig", "syt_abcdef", "abcdef"):
            assert secret not in target.recipient
            assert secret not in repr(target)
            assert secret not in target.shown_url
    assert [t.recipient for t in targets] == [  # what each target is, never its token
        "webhook:slack:T00000000/B00000000",
        "webhook:discord:1234567890",
        "webhook:teams:abc",
        "webhook:matrix:matrix.example.org/!room:example.org",
        "webhook:generic:chat.example",
    ]
    assert targets[0].shown_url == "https://hooks.slack.com/services/***"
    assert targets[1].shown_url == "https://discord.com/api/webhooks/1234567890/***"
    assert "api-version=2016-06-01" in targets[2].shown_url
    assert targets[3].shown_url.endswith("/rooms/!room:example.org?access_token=***")


def test_explicit_kind_and_stable_recipient() -> None:
    url = "https://matrix.example.org/_matrix/client/v3/rooms/%21room%3Aexample.org?access_token=t0ken12"
    [explicit] = parse_webhook_urls(f"matrix+{url}")
    [detected] = parse_webhook_urls(url)
    assert explicit == detected
    [slack] = parse_webhook_urls("Slack+https://proxy.internal/slack/abc")
    assert slack.kind == "slack"


@pytest.mark.parametrize(
    "entry",
    [
        "ftp://hooks.example/secretPART123",
        "https:///secretPART123",
        "irc+https://chat.example/secretPART123",
        "https://discord.com/api/webhooks/secretPART123",
        "https://m.example/_matrix/client/v3/rooms/!r:m.example",  # no token
        "https://m.example/_matrix/client/v3/rooms/%23alias:m.example?access_token=secretPART123",
        "https://a.example/h/secretPART123, https://a.example/h/secretPART123",
        "https://a.example:99999/secretPART123",
    ],
)
def test_malformed_entries_never_quote_the_secret(entry: str) -> None:
    with pytest.raises(ValueError) as caught:
        parse_webhook_urls(entry)
    assert "secretPART123" not in str(caught.value)
    assert "DISPATCHER_WEBHOOK_URLS entry" in str(caught.value)


def test_delivery_key_is_a_stable_txn_id() -> None:
    [target] = parse_webhook_urls(
        "https://m.example/_matrix/client/v3/rooms/!r:m.example?access_token=abc"
    )
    args = {"campaign_id": "cw-2024", "day": dt.date(2024, 4, 2), "recipient": target.recipient}
    first = webhook.delivery_key(send_at=WHEN, **args)  # type: ignore[arg-type]
    later = webhook.delivery_key(send_at=WHEN + dt.timedelta(hours=2), **args)  # type: ignore[arg-type]
    assert first == later
    assert first.startswith("cw-2024-20240402-webhook_matrix_")
    assert all(c.isalnum() or c in "._~-" for c in first)


# --- sending ---------------------------------------------------------------------------------


@pytest.mark.parametrize("kind", ["slack", "discord", "teams", "matrix", "generic"])
def test_every_kind_receives_what_describe_request_shows(fake: FakeWebhooks, kind: str) -> None:
    chan = channel(getattr(fake, f"{kind}_url"))
    chan.send(post(), key="cw-2024-20240402-k")
    chan.close()

    described = webhook.describe_request(post(), key="cw-2024-20240402-k", target=chan.target)
    [request] = [r for r in fake.requests if r.method != "GET"]  # Matrix reads the room first
    assert request.json() == described["json"]
    assert request.method == described["method"]
    assert described["url"].startswith(fake.url)
    if kind == "matrix":  # the token travels in the header, the URL holds no secret
        assert described["url"] == fake.url + request.path
        assert described["headers"]["Authorization"] == "Bearer ***"
    else:
        assert "***" in described["url"]
    assert_no_secret(str(described))
    assert "Görlitz" in str(request.json())  # umlauts arrive intact


def test_slack_gets_mrkdwn_and_ok(fake: FakeWebhooks) -> None:
    receipt = channel(fake.slack_url).send(post(), key="k")
    [body] = fake.slack
    assert body["text"].endswith("<https://example.de/reportage/werften?teil=3&amp;x=1>")
    assert "Straßenbahn &amp; Brücken" in body["text"]
    assert receipt.details["kind"] == "slack"


def test_slack_no_service_is_permanent_without_the_secret(fake: FakeWebhooks) -> None:
    wrong = fake.slack_url.replace("slackSecretToken", "revokedSecretTok")
    with pytest.raises(ChannelError) as caught:
        channel(wrong).send(post(), key="k")
    assert caught.value.permanent
    assert "no_service" in str(caught.value)
    assert "revokedSecretTok" not in str(caught.value)


def test_slack_archived_channel_is_permanent(fake: FakeWebhooks) -> None:
    fake.slack_archived = True
    with pytest.raises(ChannelError) as caught:
        channel(fake.slack_url).send(post(), key="k")
    assert caught.value.permanent and "channel_is_archived" in str(caught.value)


def test_slack_429_waits_for_retry_after(fake: FakeWebhooks) -> None:
    fake.fail_next("/services/", fw.slack_error(429, "rate_limited", {"Retry-After": "30"}))
    with pytest.raises(ChannelError) as caught:
        channel(fake.slack_url).send(post(), key="k")
    assert caught.value.retry_after == 30.0 and not caught.value.permanent


def test_discord_waits_for_the_message_and_keeps_its_id(fake: FakeWebhooks) -> None:
    chan = channel(fake.discord_url)
    receipt = chan.send(post(), key="k")
    assert fake.requests[0].query["wait"] == ["true"]
    assert receipt.provider_id == str(fake._snowflake)
    assert receipt.details["channel_id"] == "998877665544332211"
    assert fake.discord[0]["allowed_mentions"] == {"parse": []}
    assert chan.idempotent is False


def test_discord_429_prefers_the_header(fake: FakeWebhooks) -> None:
    fake.fail_next("/api/webhooks/", fw.discord_rate_limited(2.5))
    fake.fail_next("/api/webhooks/", fw.discord_rate_limited(1.25, header=False))
    chan = channel(fake.discord_url)
    with pytest.raises(ChannelError) as first:
        chan.send(post(), key="k")
    with pytest.raises(ChannelError) as second:
        chan.send(post(), key="k")
    assert first.value.retry_after == 3.0  # Retry-After, not the body's 2.5
    assert second.value.retry_after == 1.25  # the body when the header is missing
    assert fake.discord == []


def test_discord_too_long_is_refused_before_sending(fake: FakeWebhooks) -> None:
    with pytest.raises(ChannelError) as caught:
        channel(fake.discord_url).send(post("ä" * 2001), key="k")
    assert caught.value.permanent and fake.requests == []


def test_discord_bad_token_names_the_credential(fake: FakeWebhooks) -> None:
    wrong = fake.discord_url.replace(fw.DISCORD_TOKEN, "x" * 40)
    with pytest.raises(ChannelError) as caught:
        channel(wrong).send(post(), key="k")
    assert caught.value.permanent and "DISPATCHER_WEBHOOK_URLS" in str(caught.value)
    assert "x" * 40 not in str(caught.value)


def test_teams_gets_an_adaptive_card_and_202(fake: FakeWebhooks) -> None:
    receipt = channel(fake.teams_url).send(post(), key="k")
    [message] = fake.teams
    card = message["attachments"][0]["content"]
    assert card["type"] == "AdaptiveCard" and card["version"] == "1.4"
    assert card["body"][0] == {
        "type": "TextBlock",
        "text": "Werften in Görlitz (Teil 3)",
        "weight": "Bolder",
        "wrap": True,
    }
    assert card["body"][1]["text"] == TEXT and card["body"][1]["wrap"] is True
    assert card["actions"] == [{"type": "Action.OpenUrl", "title": "Zur Reportage", "url": LINK}]
    assert receipt.provider_id == "" and receipt.details["status"] == "202"


def test_matrix_same_txn_id_twice_is_one_event(fake: FakeWebhooks) -> None:
    chan = channel(fake.matrix_url)
    assert chan.idempotent is True
    first = chan.send(post(), key="cw-2024-20240402-m")
    # An event the room lookup cannot recognise (sent by a version that did not put the key
    # into the content): the send goes out again, and the txnId makes it the same event.
    content = fake.matrix[0]["content"]
    assert content.pop(webhook.MATRIX_KEY_FIELD) == "cw-2024-20240402-m"
    again = chan.send(post(), key="cw-2024-20240402-m")
    assert first.provider_id == again.provider_id == "$event1:example.org"
    assert len(fake.matrix) == 1
    assert len([r for r in fake.requests if r.method == "PUT"]) == 2
    # what a reader sees: the text, and the link as a link
    assert content == {
        "msgtype": "m.text",
        "body": TEXT,
        "format": "org.matrix.custom.html",
        "formatted_body": content["formatted_body"],
    }
    assert (
        '<a href="https://example.de/reportage/werften?teil=3&amp;x=1">'
        in content["formatted_body"]
    )
    for request in fake.requests:
        assert request.headers["authorization"] == f"Bearer {fw.MATRIX_TOKEN}"
        assert "access_token" not in request.query


def test_matrix_retry_after_a_5xx_finds_the_event(fake: FakeWebhooks) -> None:
    fake.fail_next(fw.MATRIX_SEND, Response(502, body=b"Bad Gateway", after_handling=True))
    chan = channel(fake.matrix_url)
    with pytest.raises(ChannelError) as caught:
        chan.send(post(), key="k1")
    assert caught.value.ambiguous  # the pipeline retries, since Matrix is idempotent
    assert chan.send(post(), key="k1").provider_id == "$event1:example.org"
    assert len(fake.matrix) == 1


def test_matrix_a_new_devices_token_finds_the_stored_event_instead_of_posting_again(
    fake: FakeWebhooks,
) -> None:
    """A homeserver dedupes a txnId per device: after a login on a new device (a new token)
    only the key in the event's content, found among the bot's latest messages, stops a
    second post."""
    fake.fail_next(fw.MATRIX_SEND, Response(502, body=b"Bad Gateway", after_handling=True))
    with pytest.raises(ChannelError):
        channel(fake.matrix_url).send(post(), key="cw-2024-20240402-m")
    renewed = "syt_renewedToken_newDevice_987654"
    fake.matrix_members[renewed] = fake.matrix_members[fw.MATRIX_TOKEN]
    fake.requests.clear()

    receipt = channel(fake.matrix_url.replace(fw.MATRIX_TOKEN, renewed)).send(
        post(), key="cw-2024-20240402-m"
    )

    assert [event["event_id"] for event in fake.matrix] == [receipt.provider_id]
    assert receipt.details["room"] == fw.MATRIX_ROOM
    assert [r.method for r in fake.requests] == ["GET", "GET"]  # whoami, messages: no PUT
    [lookup] = fake.requests_to(f"/_matrix/client/v3/rooms/{quote(fw.MATRIX_ROOM, safe='')}/")
    assert lookup.path.endswith("/messages")
    assert lookup.query["dir"] == ["b"] and lookup.query["limit"] == ["50"]
    wanted = json.loads(lookup.query["filter"][0])
    assert wanted == {"types": ["m.room.message"], "senders": ["@presse:example.org"]}


def test_matrix_the_same_key_from_another_member_is_not_taken_for_ours(
    fake: FakeWebhooks,
) -> None:
    fake.matrix_members["syt_someoneElse_000000"] = "@jemand:example.org"
    someone = fake.matrix_url.replace(fw.MATRIX_TOKEN, "syt_someoneElse_000000")
    channel(someone).send(post("Nicht von uns"), key="cw-2024-20240402-m")

    receipt = channel(fake.matrix_url).send(post(), key="cw-2024-20240402-m")

    assert [e["sender"] for e in fake.matrix] == ["@jemand:example.org", "@presse:example.org"]
    assert receipt.provider_id == fake.matrix[1]["event_id"]


@pytest.mark.parametrize(
    ("path", "answer", "kind", "says"),
    [
        ("messages", Response(502, body=b"Bad Gateway"), "temporary", "HTTP 502"),
        ("messages", Response(504, body=b"Gateway Timeout"), "temporary", "HTTP 504"),
        ("messages", Response(200, body=b"<html>maintenance</html>"), "temporary", "HTTP 200"),
        ("messages", fw.matrix_rate_limited(2500), "temporary", "M_LIMIT_EXCEEDED"),
        ("whoami", Response(503, body=b"Service Unavailable"), "temporary", "HTTP 503"),
    ],
)
def test_matrix_a_failed_room_lookup_sends_nothing_and_comes_again(
    fake: FakeWebhooks, path: str, answer: Response, kind: str, says: str
) -> None:
    """Not knowing whether the post is already in the room is no licence to post: the
    attempt ends without a PUT, as a temporary failure (never `ambiguous`: nothing was sent)."""
    prefix = {
        "messages": f"/_matrix/client/v3/rooms/{quote(fw.MATRIX_ROOM, safe='')}/messages",
        "whoami": "/_matrix/client/v3/account/whoami",
    }[path]
    fake.fail_next(prefix, answer)
    chan = channel(fake.matrix_url)
    with pytest.raises(ChannelError) as caught:
        chan.send(post(), key="k1")
    assert caught.value.kind == kind and says in caught.value.message
    assert "so it was not sent" in caught.value.message
    assert_no_secret(caught.value.message)
    assert fake.matrix == [] and not [r for r in fake.requests if r.method == "PUT"]
    if says == "M_LIMIT_EXCEEDED":
        assert caught.value.retry_after == 2.5
    assert chan.send(post(), key="k1").provider_id == "$event1:example.org"  # the next attempt


def test_matrix_a_revoked_token_is_named_as_such_by_the_lookup(fake: FakeWebhooks) -> None:
    revoked = fake.matrix_url.replace(fw.MATRIX_TOKEN, "syt_revokedToken_99")
    with pytest.raises(ChannelError) as caught:
        channel(revoked).send(post(), key="k1")
    assert caught.value.permanent
    assert "does not know the access token (logged out or revoked)" in caught.value.message
    assert "so it was not sent" not in caught.value.message  # the cause speaks for itself
    assert [r.path for r in fake.requests] == ["/_matrix/client/v3/account/whoami"]


def test_matrix_limit_exceeded(fake: FakeWebhooks) -> None:
    fake.fail_next(fw.MATRIX_SEND, fw.matrix_rate_limited(2500))
    fake.fail_next(fw.MATRIX_SEND, fw.matrix_rate_limited(2500, header=4))
    chan = channel(fake.matrix_url)
    with pytest.raises(ChannelError) as first:
        chan.send(post(), key="k1")
    with pytest.raises(ChannelError) as second:
        chan.send(post(), key="k1")
    assert first.value.retry_after == 2.5
    assert second.value.retry_after == 4.0  # Retry-After wins (spec v1.10)
    assert "M_LIMIT_EXCEEDED" in str(first.value)


def test_matrix_unknown_token_is_permanent_and_hidden(fake: FakeWebhooks) -> None:
    wrong = fake.matrix_url.replace(fw.MATRIX_TOKEN, "syt_revokedToken_99")
    with pytest.raises(ChannelError) as caught:
        channel(wrong).send(post(), key="k1")
    assert caught.value.permanent and "M_UNKNOWN_TOKEN" in str(caught.value)
    assert "DISPATCHER_WEBHOOK_URLS" in str(caught.value)
    assert "syt_revokedToken_99" not in str(caught.value)


# Synapse's own answers to `PUT /rooms/{room}/send/…` (synapse/api/errors.py, event_auth.py,
# handlers/message.py): the message names the cause and what to do, never the token.
BOT = "@dispatcher:example.org"


@pytest.mark.parametrize(
    ("status", "body", "says"),
    [
        (
            403,
            {"errcode": "M_FORBIDDEN", "error": f"User {BOT} not in room {fw.MATRIX_ROOM} (None)"},
            f"the bot {BOT} is not a member of room {fw.MATRIX_ROOM}: invite it to the room and "
            "let it join",
        ),
        (
            401,
            {
                "errcode": "M_UNKNOWN_TOKEN",
                "error": "Access token has expired",
                "soft_logout": True,
            },
            "the bot's access token expired: log the bot in again and renew the access_token of "
            "the URL in DISPATCHER_WEBHOOK_URLS",
        ),
        (
            401,
            {"errcode": "M_UNKNOWN_TOKEN", "error": "Unrecognised access token"},
            "does not know the access token (logged out or revoked)",
        ),
        (
            401,
            {"errcode": "M_USER_LOCKED", "error": "User account has been locked"},
            "the bot's account is locked by the homeserver's admins",
        ),
        (
            403,
            {"errcode": "M_USER_DEACTIVATED", "error": "This account has been deactivated"},
            "the bot's account is deactivated: create a new account",
        ),
        (
            403,
            {
                "errcode": "M_USER_SUSPENDED",
                "error": "Sending messages while account is suspended is not allowed.",
            },
            "the bot's account is suspended",
        ),
        (
            403,
            {"errcode": "M_FORBIDDEN", "error": "Unknown room"},
            "the homeserver knows no room with this ID: check the room ID (!…) in "
            "DISPATCHER_WEBHOOK_URLS",
        ),
        (
            403,
            {
                "errcode": "M_FORBIDDEN",
                "error": "You don't have permission to post that to the room. "
                "user_level (0) < send_level (50)",
            },
            "the bot's power level in the room is too low to send messages",
        ),
        (
            404,
            {"errcode": "M_UNRECOGNIZED", "error": "Unrecognized request"},
            "the server does not know this Matrix endpoint",
        ),
    ],
)
def test_matrix_errors_name_the_cause_and_the_fix(
    fake: FakeWebhooks, status: int, body: dict[str, object], says: str
) -> None:
    fake.fail_next(fw.MATRIX_SEND, Response(status, json=body))
    with pytest.raises(ChannelError) as caught:
        channel(fake.matrix_url).send(post(), key="k1")
    message = caught.value.message
    assert caught.value.permanent  # this target only: the other targets are not held up
    assert message.startswith("webhook webhook:matrix:")
    assert f"HTTP {status}: {body['errcode']} {body['error']}; " in message
    assert says in message.split("; ", 1)[1]
    assert "the credential was refused" not in message
    assert_no_secret(message)


def test_matrix_not_in_room_from_the_fake_homeserver(fake: FakeWebhooks) -> None:
    other_room = fake.matrix_url.replace("clusterwoche", "elsewhere")
    with pytest.raises(ChannelError) as caught:
        channel(other_room).send(post(), key="k1")
    assert "is not a member of room !elsewhere:example.org: invite it" in caught.value.message
    assert "renew" not in caught.value.message
    # Reading the room was refused (403): no member can have posted there, and the send's own
    # answer names the cause.
    assert [r.method for r in fake.requests] == ["GET", "GET", "PUT"]


# Slack's incoming-webhook codes (api.slack.com/messaging/webhooks, "Handling errors")
@pytest.mark.parametrize(
    ("status", "code", "says"),
    [
        (403, "invalid_token", "Slack no longer accepts this webhook (revoked"),
        (404, "no_service", "the webhook was disabled or removed"),
        (404, "channel_not_found", "the webhook's channel was deleted"),
        (410, "channel_is_archived", "the webhook's channel is archived: unarchive it"),
        (403, "action_prohibited", "a workspace admin restricted posting to this channel"),
        (403, "posting_to_general_channel_denied", "only admins may post to #general"),
        (404, "team_disabled", "the Slack workspace is disabled"),
    ],
)
def test_slack_errors_name_the_cause_and_the_fix(
    fake: FakeWebhooks, status: int, code: str, says: str
) -> None:
    fake.fail_next("/services/", fw.slack_error(status, code))
    with pytest.raises(ChannelError) as caught:
        channel(fake.slack_url).send(post(), key="k")
    assert caught.value.permanent
    assert f"HTTP {status}: {code}; {says}" in caught.value.message
    assert_no_secret(caught.value.message)


@pytest.mark.parametrize(
    ("status", "body", "says"),
    [
        (
            401,
            {"message": "Invalid Webhook Token", "code": 50027},
            "Discord does not accept the webhook's token",
        ),
        (404, {"message": "Unknown Webhook", "code": 10015}, "the webhook was deleted"),
        (
            403,
            {"message": "Missing Permissions", "code": 50013},
            "the webhook may not post in its channel",
        ),
    ],
)
def test_discord_errors_name_the_cause_and_the_fix(
    fake: FakeWebhooks, status: int, body: dict[str, object], says: str
) -> None:
    fake.fail_next("/api/webhooks/", Response(status, json=body))
    with pytest.raises(ChannelError) as caught:
        channel(fake.discord_url).send(post(), key="k")
    assert caught.value.permanent
    assert f"HTTP {status}: {body['message']}; {says}" in caught.value.message
    assert_no_secret(caught.value.message)


def test_teams_bad_signature_says_to_copy_the_url_again(fake: FakeWebhooks) -> None:
    wrong = fake.teams_url.replace(fw.TEAMS_SIG, "wrongSignature0123456789")
    with pytest.raises(ChannelError) as caught:
        channel(wrong).send(post(), key="k")
    assert caught.value.permanent
    assert caught.value.message.endswith(
        "HTTP 401: The provided signature is not valid.; the workflow URL's signature (sig) is "
        "not valid: copy the URL again from the workflow's trigger and replace it in "
        "DISPATCHER_WEBHOOK_URLS"
    )
    assert "wrongSignature0123456789" not in caught.value.message


def test_generic_404_says_the_url_is_wrong(fake: FakeWebhooks) -> None:
    wrong = fake.generic_url.replace(fw.GENERIC_PATH, "/hooks/movedAway0123456789")
    with pytest.raises(ChannelError) as caught:
        channel(wrong).send(post(), key="k")
    assert caught.value.permanent
    assert caught.value.message.endswith(
        "; nothing answers at this URL: check it in DISPATCHER_WEBHOOK_URLS"
    )
    assert "movedAway0123456789" not in caught.value.message


def test_generic_accepts_any_2xx(fake: FakeWebhooks) -> None:
    receipt = channel(fake.generic_url).send(post(), key="k")
    assert fake.generic == [
        {
            "text": TEXT,
            "title": "Werften in Görlitz (Teil 3)",
            "url": LINK,
            "tags": ["#Zukunft", "#Lausitz"],
        }
    ]
    assert receipt.details["status"] == "204"


def test_transport_errors_do_not_leak_the_url(
    fake: FakeWebhooks, monkeypatch: pytest.MonkeyPatch
) -> None:
    chan = channel(fake.slack_url)

    def refuse(method: str, url: str, **kwargs: object) -> requests.Response:
        raise requests.ConnectTimeout(
            f"HTTPConnectionPool(host='x', port=1): Max retries exceeded with url: {url}"
        )

    monkeypatch.setattr(chan._session, "request", refuse)
    with pytest.raises(ChannelError) as caught:
        chan.send(post(), key="k")
    assert caught.value.unavailable
    assert_no_secret(str(caught.value))
    assert_no_secret(caught.value.message)
