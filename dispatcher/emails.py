"""Compose the message one subscriber receives from the dispatch's shared rendering.

The shared part (`RenderedEmail`) is rendered once per dispatch; this module
adds what differs per recipient — greeting, signed unsubscribe link, address,
Message-ID — and the list headers of RFC 2369/2919/8058. Preview and sending
both call it, so a preview is exactly what a subscriber gets.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass
from email.message import EmailMessage
from email.utils import formataddr, parseaddr

from dispatcher import mime, tokens
from dispatcher.campaign import Campaign
from dispatcher.rendering import RenderedEmail


@dataclass(frozen=True)
class Sender:
    """What every message of a campaign shares: sender, links and signing key."""

    mail_from: str
    public_url: str
    secret_key: str

    @property
    def domain(self) -> str:
        return parseaddr(self.mail_from)[1].rpartition("@")[2] or "localhost"

    @property
    def address(self) -> str:
        return parseaddr(self.mail_from)[1]


def list_id(campaign: Campaign, sender: Sender) -> str:
    """RFC 2919: `Name <campaign-id.domain>`, stable for the whole campaign."""
    return f"{campaign.name} <{campaign.id}.{sender.domain}>"


def message_id_parts(campaign_id: str, day: dt.date, channel: str, domain: str) -> tuple[str, str]:
    """Prefix and suffix around the subscriber id: `<cw.20190402.email.42@domain>`.

    Derived from the delivery, so a retry or a resend after a crash carries the
    same Message-ID and receivers can tell it is the same message.
    """
    return f"<{campaign_id}.{day:%Y%m%d}.{channel}.", f"@{domain}>"


def unsubscribe_url(sender: Sender, *, subscriber_id: int, campaign_id: str) -> str:
    subject = tokens.TokenSubject("unsubscribe", subscriber_id, campaign_id)
    return f"{sender.public_url.rstrip('/')}/u/{tokens.sign(subject, key=sender.secret_key)}"


def compose(
    shared: RenderedEmail,
    campaign: Campaign,
    sender: Sender,
    *,
    to_address: str,
    to_name: str | None,
    unsubscribe: str,
    message_id: str,
    date: dt.datetime,
) -> EmailMessage:
    """The complete message for one recipient."""
    html, text = shared.personalise(name=to_name, unsubscribe_url=unsubscribe)
    token = unsubscribe.rstrip("/").rpartition("/")[2]
    to = formataddr((to_name or "", to_address))
    return mime.build_email(
        subject=shared.subject,
        text=text,
        html=html,
        mail_from=sender.mail_from,
        to=to,
        message_id=message_id,
        date=date,
        list_headers=mime.ListHeaders(
            list_id=list_id(campaign, sender),
            unsubscribe_url=unsubscribe,
            # Ops route unsubscribe@ to an inbox or script; the token in the subject
            # identifies subscriber and campaign like the HTTPS link does.
            unsubscribe_mailto=f"mailto:unsubscribe@{sender.domain}?subject=unsubscribe%20{token}",
        ),
    )
