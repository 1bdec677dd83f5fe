"""Arbitrary SMTP replies and API error answers: a channel returns a Receipt or raises
ChannelError, and the pipeline turns every one into an Outcome (a ledger state)."""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterator

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from dispatcher.campaign.loading import load_campaign
from dispatcher.channels.base import ChannelError, Post, Receipt, SocialChannel
from dispatcher.channels.linkedin import LinkedInChannel
from dispatcher.channels.mastodon import MastodonChannel
from dispatcher.channels.smtp import SmtpChannel, parse_smtp_url
from dispatcher.channels.webhook import WebhookChannel, parse_webhook_urls
from dispatcher.content import rendering
from dispatcher.delivery import email as email_dispatch
from dispatcher.delivery import posts as post_dispatch
from dispatcher.delivery import sending
from dispatcher.delivery.context import build_context
from dispatcher.ledger import store
from dispatcher.ledger.tables import DeliveryState
from dispatcher.mail import wire
from tests.support.database import Database
from tests.support.delivery import settings_for
from tests.support.fake_linkedin import FakeLinkedIn
from tests.support.fake_mastodon import FakeMastodon
from tests.support.fake_webhooks import FakeWebhooks
from tests.support.httpserver import Response
from tests.support.smtpd import SmtpServer

RCPT = "leser@example.org"
WHEN = dt.datetime(2019, 4, 2, 6, 5, tzinfo=dt.UTC)
FUZZ = settings(
    max_examples=150, deadline=None, database=None, suppress_health_check=list(HealthCheck)
)
REPLY_TEXT = st.text(
    alphabet=st.characters(min_codepoint=0x20, max_codepoint=0x7E), max_size=60
) | st.sampled_from(["5.1.1 user unknown", "4.7.1 try later", "2.0.0 ok", "5.7.1 policy", ""])
STATES = set(DeliveryState)


def _delivery(attempts: int) -> store.ClaimedDelivery:
    return store.ClaimedDelivery(
        id=1, recipient="subscriber:1", key="<k.20190402.email.1@news.example.org>",
        attempts=attempts, subscriber_id=1, email=RCPT, name="Leserin",
        subscriber_state="active",
    )  # fmt: skip


def _assert_outcome(result: object) -> None:
    if isinstance(result, sending.ChannelDown):
        assert result.message
        return
    assert isinstance(result, store.Outcome) and result.state in STATES, result


def test_arbitrary_smtp_replies(sqlite_database: Database, smtp_server: SmtpServer) -> None:
    settings_ = settings_for(sqlite_database, smtp_server)
    campaign = load_campaign(settings_.campaign_file)
    ctx = build_context(settings_, campaign, engine=sqlite_database.engine, clock=lambda: WHEN)
    channel = SmtpChannel(parse_smtp_url(smtp_server.url + "?timeout=3"))
    ctx.email_channel = channel
    shared = rendering.render_email(
        ctx.env, campaign, campaign.items[0], day=WHEN.date(), published=[],
        imprint="Impressum", public_url="https://news.example.org",
    )  # fmt: skip
    template = wire.WireTemplate(shared, campaign, ctx.sender, send_at=WHEN)
    counts = {"cases": 0, "sent": 0, "errors": 0}

    @FUZZ
    @given(
        st.lists(
            st.tuples(
                st.sampled_from(["mail", "rcpt", "data"]),
                st.integers(200, 599) | st.just(-1),
                REPLY_TEXT,
            ),
            min_size=1,
            max_size=3,
        ),
        st.integers(1, 7),
    )
    def run(replies: list[tuple[str, int, str]], attempts: int) -> None:
        counts["cases"] += 1
        smtp_server.clear()
        for stage, code, text in replies:
            reply = "DROP" if code == -1 else f"{code} {text}".rstrip()
            address = "newsletter@news.example.org" if stage == "mail" else RCPT
            smtp_server.script(address, reply, at=stage)  # type: ignore[arg-type]
        result = email_dispatch.send_one(ctx, template, _delivery(attempts))
        _assert_outcome(result)
        counts["sent" if getattr(result, "state", None) == DeliveryState.SENT else "errors"] += 1

    try:
        run()
    finally:
        channel.close()
    print(f"\nSMTP replies: {counts}")


@pytest.fixture(scope="module")
def fakes() -> Iterator[tuple[FakeMastodon, FakeLinkedIn, FakeWebhooks]]:
    with FakeMastodon() as mastodon, FakeLinkedIn() as linkedin, FakeWebhooks() as webhooks:
        yield mastodon, linkedin, webhooks


def _post(network: str) -> Post:
    return Post(
        network=network, text="Vorhang auf #Clusterwoche", link="https://example.org/r",
        title="Vorhang auf", description="Teaser", hashtags=("#Clusterwoche",),
        image_url=None, image_alt=None, created_at=WHEN,
    )  # fmt: skip


bodies = st.one_of(
    st.none(),
    st.recursive(
        st.none() | st.booleans() | st.integers() | st.text(max_size=20),
        lambda c: st.lists(c, max_size=3) | st.dictionaries(st.text(max_size=8), c, max_size=3),
        max_leaves=8,
    ),
    st.fixed_dictionaries({}, optional={"error": st.text(max_size=20) | st.integers(),
                                        "message": st.text(max_size=20), "errors": st.lists(st.text())}),
)  # fmt: skip
headers = st.dictionaries(
    st.sampled_from(["Retry-After", "X-RateLimit-Reset", "RateLimit-Reset", "Content-Type",
                     "X-RateLimit-Remaining", "x-restli-id", "Location"]),
    st.text(alphabet=st.characters(min_codepoint=0x21, max_codepoint=0x7E), max_size=30)
    | st.sampled_from(["0", "1", "-5", "1e309", "2019-04-02T06:05:00Z", "Tue, 02 Apr 2019 06:05:00 GMT",
                       "nan", "99999999999999999999"]),
    max_size=3,
)  # fmt: skip


def test_arbitrary_api_error_answers(
    fakes: tuple[FakeMastodon, FakeLinkedIn, FakeWebhooks],
) -> None:
    mastodon, linkedin, webhooks = fakes
    [generic] = parse_webhook_urls(f"{webhooks.url}/hooks/genericSecret0123456789")
    [slack] = parse_webhook_urls(webhooks.slack_url)
    channels: dict[str, tuple[SocialChannel, str, str]] = {
        "mastodon": (MastodonChannel(mastodon.url, mastodon.token, sleep=lambda _s: None, poll_timeout=0.1), "/api", "mastodon"),
        "linkedin": (LinkedInChannel(linkedin.token, linkedin.author, base_url=linkedin.url), "/rest", "linkedin"),
        "generic": (WebhookChannel(generic), "/hooks", "webhook"),
        "slack": (WebhookChannel(slack), "/", "webhook"),
    }  # fmt: skip
    counts: dict[str, int] = {"cases": 0, "receipts": 0, "errors": 0}

    @FUZZ
    @given(
        st.sampled_from(sorted(channels)),
        st.lists(
            st.builds(
                Response,
                status=st.integers(100, 599).filter(lambda s: s not in (100, 101, 204, 304) or s == 204),
                json=bodies,
                body=st.binary(max_size=40),
                headers=headers,
            ),
            min_size=1,
            max_size=2,
        ),
        st.integers(1, 7),
    )  # fmt: skip
    def run(name: str, responses: list[Response], attempts: int) -> None:
        counts["cases"] += 1
        channel, prefix, network = channels[name]
        for fake in fakes:
            fake._faults.clear()
        (
            mastodon if name == "mastodon" else linkedin if name == "linkedin" else webhooks
        ).fail_next(prefix, *responses)
        try:
            result = channel.send(_post(network), key=f"key-{counts['cases']}")
        except ChannelError as error:
            assert error.message
            counts["errors"] += 1
        else:
            assert isinstance(result, Receipt)
            counts["receipts"] += 1
        # And the same through the pipeline: always an Outcome.
        (
            mastodon if name == "mastodon" else linkedin if name == "linkedin" else webhooks
        ).fail_next(prefix, *responses)
        delivery = store.ClaimedDelivery(
            1, name, f"k2-{counts['cases']}", attempts, None, None, None, None
        )
        ctx = sending.Context(
            engine=None, campaign=None, env=None, sender=None, imprint="", email_channel=None,  # type: ignore[arg-type]
            clock=lambda: WHEN,
        )  # fmt: skip
        _assert_outcome(post_dispatch.send_post(ctx, _post(network), {name: channel}, delivery))

    try:
        run()
    finally:
        for channel, _prefix, _network in channels.values():
            channel.close()
    print(f"\nAPI answers: {counts}")
