"""Compose the message one subscriber receives from the dispatch's shared rendering.

The shared part (`RenderedEmail`) is rendered once per dispatch; this module
adds what differs per recipient — greeting, signed unsubscribe link, address,
Message-ID — and the list headers of RFC 2369/2919/8058. Preview and sending
both call it, so a preview is exactly what a subscriber gets.
"""

from __future__ import annotations

import datetime as dt
import functools
import hashlib
import re
from dataclasses import dataclass
from email.message import EmailMessage
from email.utils import parseaddr

from dispatcher.campaign.model import Campaign
from dispatcher.content.rendering import RenderedEmail
from dispatcher.mail import mime, tokens


@dataclass(frozen=True)
class Sender:
    """What every message of a campaign shares: sender, links and signing key."""

    mail_from: str
    public_url: str
    secret_key: str

    # Cached: the send path asks for both per message, and parsing is not free.
    @functools.cached_property
    def domain(self) -> str:
        return parseaddr(self.mail_from)[1].rpartition("@")[2] or "localhost"

    @functools.cached_property
    def address(self) -> str:
        return parseaddr(self.mail_from)[1]


def list_id(campaign: Campaign, sender: Sender) -> str:
    """RFC 2919: `Name <campaign-id.domain>`, stable for the whole campaign."""
    return f"{mime.one_line(campaign.name)} <{campaign.id}.{sender.domain}>"


FEEDBACK_TYPE = "newsletter"  #: the Feedback-ID's third field: the kind of mail stream
_FIELD_UNSAFE = re.compile(r"[^A-Za-z0-9._-]")


def sender_id(sender: Sender) -> str:
    """Feedback-ID's SenderId: 12 characters, the same for every message of this sender.

    Derived from the sender address, so it is stable across runs and processes and
    differs between senders (Gmail wants 5–15 characters and no per-message values).
    """
    return "cw" + hashlib.sha256(sender.address.lower().encode()).hexdigest()[:10]


def feedback_id(campaign: Campaign, sender: Sender, day: dt.date) -> str:
    """`Feedback-ID: <YYYYMMDD>:<campaign id>:newsletter:<sender id>` (Gmail FBL, reference §A3).

    One value per day and campaign: spam reports in Postmaster Tools are then
    counted per issue. The campaign id is a slug; anything else is replaced,
    because ":" separates the fields and a header must stay one line.
    """
    campaign_field = _FIELD_UNSAFE.sub("-", campaign.id)
    return f"{day:%Y%m%d}:{campaign_field}:{FEEDBACK_TYPE}:{sender_id(sender)}"


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
    day: dt.date | None = None,
) -> EmailMessage:
    """The complete message for one recipient.

    `day` is the dispatch's day for the Feedback-ID; default: the local date of `date`.
    """
    html, text = shared.personalise(name=to_name, unsubscribe_url=unsubscribe)
    token = unsubscribe.rstrip("/").rpartition("/")[2]
    return mime.build_email(
        subject=shared.subject,
        text=text,
        html=html,
        mail_from=sender.mail_from,
        to=mime.recipient(to_name, to_address),
        message_id=message_id,
        date=date,
        language=shared.lang,
        list_headers=mime.ListHeaders(
            list_id=list_id(campaign, sender),
            unsubscribe_url=unsubscribe,
            # Ops route unsubscribe@ to an inbox or script; the token in the subject
            # identifies subscriber and campaign like the HTTPS link does.
            unsubscribe_mailto=f"mailto:unsubscribe@{sender.domain}?subject=unsubscribe%20{token}",
            feedback_id=feedback_id(campaign, sender, day or date.date()),
        ),
    )
