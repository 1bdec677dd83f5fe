"""Where alert messages go, and that no secret goes with them.

Its own module because delivering a finished message (an ops address, a chat webhook) and
keeping every configured secret out of it change for other reasons than what is alerted
(`alert_conditions.py`) or when (`alerts.py`, the job):

- `DISPATCHER_ALERT_EMAILS` get a plain-text mail through the email channel (the relay of
  `DISPATCHER_SMTP_URL` with short timeouts, or the outbox without one);
- `DISPATCHER_ALERT_WEBHOOK_URLS` get a chat message through the webhook channel (its own
  targets, requests and error reading, not a second client);
- `Redactor` replaces every configured secret in a text by `***` before it leaves.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
from collections.abc import Iterable
from dataclasses import dataclass
from email.message import EmailMessage
from email.utils import format_datetime, parseaddr
from typing import Protocol
from urllib.parse import parse_qsl, unquote, urlsplit

import sqlalchemy as sa
from pydantic import SecretStr
from sqlalchemy.engine import make_url

from dispatcher.channels import webhook
from dispatcher.channels.base import EmailChannel, Envelope, Post
from dispatcher.channels.outbox import Outbox
from dispatcher.channels.smtp import SmtpChannel, helo_name, parse_smtp_url
from dispatcher.delivery.alert_conditions import DETAIL_LIMIT, digest
from dispatcher.mail import mime
from dispatcher.mail.addresses import wire_form
from dispatcher.mail.dkim import address_domain
from dispatcher.settings import Settings

SETTING_WEBHOOKS = "DISPATCHER_ALERT_WEBHOOK_URLS"
#: alert mail waits this long for the relay per command (the newsletter waits RFC 5321's
#: five minutes; an alert does not, it is tried again at the next run)
SMTP_TIMEOUT = 30.0
SMTP_DATA_TIMEOUT = 60.0
TEXT_LIMIT = 1900  #: characters of a chat message (Discord takes 2000)


# --- secrets ---------------------------------------------------------------------------------

MIN_SECRET = 6  #: shorter values are not searched for (they would blank ordinary words)


class Redactor:
    """Replaces every configured secret in a text by `***`: the last guard before a message
    leaves (the channels already keep tokens out of their errors; this holds even if one
    slipped through, e.g. into a campaign file problem or a provider's echo)."""

    def __init__(self, secrets: Iterable[str]) -> None:
        found = {s for s in secrets if len(s) >= MIN_SECRET}
        self._secrets = sorted(found, key=len, reverse=True)

    @classmethod
    def from_settings(cls, settings: Settings) -> Redactor:
        secrets: list[str] = []
        for name in type(settings).model_fields:
            value = getattr(settings, name)
            if isinstance(value, SecretStr) and name != "smtp_url":
                secrets.append(value.get_secret_value())
        for urls in (settings.webhook_urls, settings.alert_webhook_urls):
            if urls is not None:
                secrets += _url_secrets(urls.get_secret_value())
        if settings.smtp_url is not None:
            # Its password is the secret: the relay's address is in every SMTP error.
            url = settings.smtp_url.get_secret_value()
            parts = _url_parts(url)
            secrets += [url, *parts] if parts else []
        try:
            password = make_url(settings.database_url).password
        except sa.exc.ArgumentError:
            password = None
        secrets += [str(password)] if password else []
        return cls(secrets)

    def __call__(self, text: str) -> str:
        for secret in self._secrets:
            text = text.replace(secret, "***")
        return text


def _url_secrets(text: str) -> list[str]:
    """Each comma-separated URL and the parts of it that may be a secret alone (a password,
    query values, a path or a path segment long enough to be a token) — but not what a webhook
    target's name shows (a Discord webhook id, a Teams workflow id, a Matrix room)."""
    found = []
    for entry in (e.strip() for e in text.split(",")):
        if not entry:
            continue
        found.append(entry)
        try:
            [target] = webhook.parse_webhook_urls(entry)
        except ValueError:  # not a webhook entry (the SMTP URL), or a malformed one
            found += _url_parts(entry)
            continue
        found.append(target.url)
        found += [part for part in _url_parts(target.url) if part not in target.recipient]
    return found


def _url_parts(url: str) -> list[str]:
    try:
        parts = urlsplit(url)
        password = parts.password
    except ValueError:
        return []
    found = [unquote(password), password] if password else []
    found += [value for name, value in parse_qsl(parts.query) if name != "api-version"]
    found += [unquote(s) for s in parts.path.split("/") if len(s) >= 16]
    found += [parts.path] if len(parts.path.strip("/")) >= 16 else []
    return found


# --- messages and where they go --------------------------------------------------------------


@dataclass(frozen=True)
class Message:
    """One alert message, the same for every destination."""

    key: str  #: unique per message; the channels' key (Matrix txnId, outbox file name)
    subject: str  #: with `alerts.SUBJECT_PREFIX`
    body: str
    link: str  #: for the chat kinds that show a link (Teams' button, generic `url`)


class Destination(Protocol):
    """Where alert messages go: one ops address, or one chat webhook."""

    name: str  #: for logs and the ledger; never a secret

    def deliver(self, message: Message, *, now: dt.datetime) -> None:
        """Deliver or raise (`ChannelError`, or anything a channel lets through)."""
        ...

    def close(self) -> None: ...


class EmailDestination:
    """A plain-text mail to one ops address, through the email channel."""

    def __init__(
        self, channel: EmailChannel, address: str, *, mail_from: str, envelope_from: str
    ) -> None:
        self.name = f"email:{address}"
        self.address = address
        self._channel = channel
        self._mail_from = mail_from
        self._envelope_from = envelope_from

    def deliver(self, message: Message, *, now: dt.datetime) -> None:
        to = mime.recipient(None, self.address)
        international = not wire_form(self.address).isascii()
        policy = mime.UTF8_POLICY if international else mime.POLICY
        # Unfolded up to RFC 5322's 998: the stdlib folds a long subject starting with "["
        # onto a line of its own, which readers then show with a leading space.
        mail = EmailMessage(policy=policy.clone(max_line_length=998))
        mail["From"] = mime.one_address(self._mail_from)
        mail["To"] = to
        mail["Subject"] = mime.one_line(message.subject)
        mail["Date"] = format_datetime(now)
        domain = address_domain(self._mail_from) or "localhost"
        mail["Message-ID"] = f"<{message.key}.{digest(self.address)}@{domain}>"
        mail["Auto-Submitted"] = "auto-generated"  # RFC 3834: no auto-replies to an alert
        mail.set_content(message.body, subtype="plain", charset="utf-8")
        envelope = Envelope(self._envelope_from, self.address, mail.as_bytes())
        self._channel.send(envelope, key=f"{message.key}.{digest(self.address)}")

    def close(self) -> None:
        self._channel.close()


class WebhookDestination:
    """A chat message through `channels/webhook.py` (Slack, Teams, Matrix, Discord,
    generic): its request building, secrets handling and error reading, not a second client."""

    def __init__(self, target: webhook.WebhookTarget) -> None:
        self.name = target.recipient
        self._channel = webhook.WebhookChannel(target)

    def deliver(self, message: Message, *, now: dt.datetime) -> None:
        text = f"{message.subject}\n\n{message.body}"
        if len(text) > TEXT_LIMIT:
            text = text[: TEXT_LIMIT - 1] + "…"
        post = Post(
            network="webhook",
            text=text,
            link=message.link,
            title=message.subject,
            description=message.body[:DETAIL_LIMIT],
            hashtags=(),
            image_url=None,
            image_alt=None,
            created_at=now,
        )
        self._channel.send(post, key=message.key)

    def close(self) -> None:
        """The HTTP session stays: connections are kept alive between runs."""


def _alert_email_channel(settings: Settings) -> EmailChannel:
    """The relay of `DISPATCHER_SMTP_URL` with short timeouts (an alert is tried again at the
    next run rather than holding the job for RFC 5321's minutes), or the outbox."""
    if settings.smtp_url is None:
        return Outbox(settings.outbox_dir)
    target = parse_smtp_url(settings.smtp_url.get_secret_value())
    target = dataclasses.replace(
        target,
        timeout=min(target.timeout, SMTP_TIMEOUT),
        data_timeout=min(target.data_timeout, SMTP_DATA_TIMEOUT),
    )
    helo = helo_name(settings.smtp_helo, address_domain(settings.mail_from))
    return SmtpChannel(target, helo=helo)


def destinations_for(settings: Settings) -> list[Destination]:
    """Every configured destination. Raises `ValueError` naming the setting (never a URL)."""
    found: list[Destination] = []
    if settings.alert_addresses:
        channel = _alert_email_channel(settings)
        envelope_from = settings.return_path or parseaddr(settings.mail_from)[1]
        found += [
            EmailDestination(
                channel, address, mail_from=settings.mail_from, envelope_from=envelope_from
            )
            for address in settings.alert_addresses
        ]
    if settings.alert_webhook_urls is not None:
        try:
            targets = webhook.parse_webhook_urls(settings.alert_webhook_urls.get_secret_value())
        except ValueError as error:
            raise ValueError(str(error).replace(webhook.CREDENTIAL, SETTING_WEBHOOKS)) from None
        found += [WebhookDestination(target) for target in targets]
    return found
