"""From settings to channels: which transport each channel uses, and whether it can.

The one place that reads credentials: a channel without them writes what it would send to
the outbox (`DISPATCHER_OUTBOX_DIR`), so a checkout without accounts runs end to end, and
`production_problems` refuses that in production. Each network's module is imported when
its factory runs (its provider library, e.g. smtplib/ssl, only when used).
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from urllib.parse import urlsplit

from pydantic import SecretStr

from dispatcher.campaign.model import Channel
from dispatcher.channels import NETWORKS, bluesky, linkedin, mastodon, webhook
from dispatcher.channels.base import EmailChannel, SocialChannel, SocialTarget
from dispatcher.channels.outbox import Outbox, PostOutbox
from dispatcher.channels.ratelimit import RateLimiter
from dispatcher.channels.smtp import SmtpChannel, helo_name, parse_smtp_url
from dispatcher.clock import Clock
from dispatcher.mail.dkim import address_domain
from dispatcher.settings import Settings


def _present(value: object) -> bool:
    if isinstance(value, SecretStr):
        value = value.get_secret_value()
    return bool(value.strip()) if isinstance(value, str) else bool(value)


def has_credentials(settings: Settings, channel: Channel) -> bool:
    """Whether `channel` has every setting its module lists; without them: the outbox."""
    return all(_present(getattr(settings, name)) for name in NETWORKS[channel])


def production_problems(settings: Settings, channels: Iterable[Channel]) -> list[str]:
    """One message per development default production must not run with: the signing key,
    and every channel under `send:` that would only write to the outbox."""
    problems = settings.production_problems()
    if settings.env != "production":
        return problems
    for channel in channels:
        if not has_credentials(settings, channel):
            names = " and ".join(f"DISPATCHER_{name.upper()}" for name in NETWORKS[channel])
            problems.append(
                f"channel {channel} is used under send: but has no credentials; set "
                f"{names} or remove {channel} from send: in the campaign file"
            )
    return problems


def email_channel(settings: Settings) -> EmailChannel:
    """SMTP when `DISPATCHER_SMTP_URL` is set, else `.eml` files in `DISPATCHER_OUTBOX_DIR`.

    Raises `ValueError` (without the password) when the URL is malformed.
    """
    if settings.smtp_url is None:
        return Outbox(settings.outbox_dir)
    target = parse_smtp_url(settings.smtp_url.get_secret_value())
    helo = helo_name(settings.smtp_helo, address_domain(settings.mail_from))
    return SmtpChannel(target, rate_limiter=RateLimiter(settings.send_rate), helo=helo)


def _secret(value: SecretStr | None) -> str:
    return "" if value is None else value.get_secret_value()


def _host(url: str) -> str:
    parts = urlsplit(url)
    return (parts.hostname or "").lower() + (f":{parts.port}" if parts.port else "")


def _mastodon(settings: Settings) -> list[SocialTarget]:
    base = settings.mastodon_base_url or "https://mastodon.example"
    real = has_credentials(settings, Channel.MASTODON)
    name = f"mastodon:{_host(base)}" if real else "mastodon:outbox"

    def open_channel(clock: Clock) -> SocialChannel:
        if not has_credentials(settings, Channel.MASTODON):
            return PostOutbox(
                "mastodon",
                settings.outbox_dir,
                lambda post, key: mastodon.describe_request(post, key=key, base_url=base),
            )
        token = _secret(settings.mastodon_access_token)
        return mastodon.MastodonChannel(base, token, clock=clock)

    return [SocialTarget("mastodon", name, mastodon.delivery_key, open_channel, ("mastodon",))]


def _bluesky(settings: Settings) -> list[SocialTarget]:
    pds, handle = settings.bluesky_pds_url, settings.bluesky_handle or "handle.example"
    real = has_credentials(settings, Channel.BLUESKY)
    name = f"bluesky:{handle.strip().lstrip('@').lower()}" if real else "bluesky:outbox"

    def open_channel(clock: Clock) -> SocialChannel:
        if not has_credentials(settings, Channel.BLUESKY):
            return PostOutbox(
                "bluesky",
                settings.outbox_dir,
                lambda post, key: bluesky.describe_request(post, key=key, pds_url=pds, repo=handle),
            )
        password = _secret(settings.bluesky_app_password)
        return bluesky.BlueskyChannel(pds, handle, password, clock=clock)

    return [SocialTarget("bluesky", name, bluesky.delivery_key, open_channel, ("bluesky",))]


def _linkedin(settings: Settings) -> list[SocialTarget]:
    author = settings.linkedin_author_urn or "urn:li:organization:0"
    version = settings.linkedin_version or linkedin.DEFAULT_VERSION
    base = settings.linkedin_api_url
    name = (
        f"linkedin:{author}" if has_credentials(settings, Channel.LINKEDIN) else "linkedin:outbox"
    )

    def open_channel(clock: Clock) -> SocialChannel:
        if not has_credentials(settings, Channel.LINKEDIN):
            return PostOutbox(
                "linkedin",
                settings.outbox_dir,
                lambda post, key: linkedin.describe_request(
                    post, key=key, author_urn=author, version=version, base_url=base
                ),
            )
        token = _secret(settings.linkedin_access_token)
        return linkedin.LinkedInChannel(token, author, version=version, base_url=base, clock=clock)

    return [SocialTarget("linkedin", name, linkedin.delivery_key, open_channel, ("linkedin",))]


def _webhooks(settings: Settings) -> list[SocialTarget]:
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
        SocialTarget(
            "webhook", target.recipient, webhook.delivery_key, opener(target), target.former_names
        )
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
