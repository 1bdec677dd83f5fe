"""Channels deliver one rendered message each; `base` holds the interface they share.

The pipeline never builds a transport itself: `email_channel()` picks SMTP or the
file outbox from the settings, so a checkout without a relay runs end to end.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING

from pydantic import SecretStr

from dispatcher.campaign import Channel
from dispatcher.channels.base import EmailChannel, SocialChannel
from dispatcher.channels.outbox import PostOutbox
from dispatcher.clock import Clock

if TYPE_CHECKING:
    from dispatcher.settings import Settings


def email_channel(settings: Settings) -> EmailChannel:
    """SMTP when `DISPATCHER_SMTP_URL` is set, else `.eml` files in `DISPATCHER_OUTBOX_DIR`.

    Raises `ValueError` (without the password) when the URL is malformed.
    """
    # Imported here so that loading `dispatcher.channels.base` stays free of smtplib/ssl.
    from dispatcher.channels.outbox import Outbox
    from dispatcher.channels.smtp import SmtpChannel, parse_smtp_url
    from dispatcher.ratelimit import RateLimiter

    if settings.smtp_url is None:
        return Outbox(settings.outbox_dir)
    target = parse_smtp_url(settings.smtp_url.get_secret_value())
    return SmtpChannel(target, rate_limiter=RateLimiter(settings.send_rate))


@dataclass(frozen=True)
class SocialTarget:
    """One place a social dispatch posts to: one delivery row in the ledger."""

    channel: str  #: the campaign channel: mastodon, bluesky, linkedin or webhook
    recipient: str  #: the ledger's name for it; never a secret (webhook URLs are hashed)
    key: Callable[
        ..., str
    ]  #: the module's `delivery_key(campaign_id=, day=, send_at=, recipient=)`
    #: the real channel (reading rate-limit resets against the given clock), or the outbox
    open: Callable[[Clock], SocialChannel]


def _secret(value: SecretStr | None) -> str:
    return "" if value is None else value.get_secret_value()


def _mastodon(settings: Settings) -> list[SocialTarget]:
    from dispatcher.channels import mastodon

    base = settings.mastodon_base_url or "https://mastodon.example"

    def open_channel(clock: Clock) -> SocialChannel:
        if not settings.has_credentials(Channel.MASTODON):
            return PostOutbox(
                "mastodon",
                settings.outbox_dir,
                lambda post, key: mastodon.describe_request(post, key=key, base_url=base),
            )
        token = _secret(settings.mastodon_access_token)
        return mastodon.MastodonChannel(base, token, clock=clock)

    return [SocialTarget("mastodon", "mastodon", mastodon.delivery_key, open_channel)]


def _bluesky(settings: Settings) -> list[SocialTarget]:
    from dispatcher.channels import bluesky

    pds, handle = settings.bluesky_pds_url, settings.bluesky_handle or "handle.example"

    def open_channel(clock: Clock) -> SocialChannel:
        if not settings.has_credentials(Channel.BLUESKY):
            return PostOutbox(
                "bluesky",
                settings.outbox_dir,
                lambda post, key: bluesky.describe_request(post, key=key, pds_url=pds, repo=handle),
            )
        password = _secret(settings.bluesky_app_password)
        return bluesky.BlueskyChannel(pds, handle, password, clock=clock)

    return [SocialTarget("bluesky", "bluesky", bluesky.delivery_key, open_channel)]


def _linkedin(settings: Settings) -> list[SocialTarget]:
    from dispatcher.channels import linkedin

    author = settings.linkedin_author_urn or "urn:li:organization:0"
    version = settings.linkedin_version or linkedin.DEFAULT_VERSION
    base = settings.linkedin_api_url

    def open_channel(clock: Clock) -> SocialChannel:
        if not settings.has_credentials(Channel.LINKEDIN):
            return PostOutbox(
                "linkedin",
                settings.outbox_dir,
                lambda post, key: linkedin.describe_request(
                    post, key=key, author_urn=author, version=version, base_url=base
                ),
            )
        token = _secret(settings.linkedin_access_token)
        return linkedin.LinkedInChannel(token, author, version=version, base_url=base, clock=clock)

    return [SocialTarget("linkedin", "linkedin", linkedin.delivery_key, open_channel)]


def _webhooks(settings: Settings) -> list[SocialTarget]:
    from dispatcher.channels import webhook

    targets = webhook.parse_webhook_urls(_secret(settings.webhook_urls))
    if not targets:
        example = webhook.parse_webhook_urls("generic+https://chat.example/hook")[0]

        def open_outbox(_clock: Clock) -> SocialChannel:
            return PostOutbox(
                "webhook",
                settings.outbox_dir,
                lambda post, key: webhook.describe_request(post, key=key, target=example),
            )

        return [SocialTarget("webhook", "webhook:outbox", webhook.delivery_key, open_outbox)]

    def opener(target: webhook.WebhookTarget) -> Callable[[Clock], SocialChannel]:
        return lambda clock: webhook.WebhookChannel(target, clock=clock)

    return [
        SocialTarget("webhook", target.recipient, webhook.delivery_key, opener(target))
        for target in targets
    ]


SOCIAL_REGISTRY: dict[str, Callable[[Settings], list[SocialTarget]]] = {
    "mastodon": _mastodon,
    "bluesky": _bluesky,
    "linkedin": _linkedin,
    "webhook": _webhooks,
}


def social_targets(settings: Settings, channel: str) -> list[SocialTarget]:
    """The targets of a social channel; a network's module is imported only when used."""
    try:
        return SOCIAL_REGISTRY[channel](settings)
    except KeyError:
        raise ValueError(f"not a social channel: {channel!r}") from None
