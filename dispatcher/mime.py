"""Build the RFC 5322 message for one recipient — pure, no I/O.

The policy is SMTP with `cte_type="7bit"`: both parts come out quoted-printable,
so relays that downgrade 8bit cannot break a DKIM signature, and umlauts in the
subject and display names become RFC 2047 encoded words.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass
from email.message import EmailMessage
from email.policy import SMTP
from email.utils import format_datetime

POLICY = SMTP.clone(cte_type="7bit")


@dataclass(frozen=True)
class ListHeaders:
    """What makes a message a list message: RFC 2369, RFC 2919, RFC 8058."""

    list_id: str  #: e.g. "2. Clusterwoche Deutschland <clusterwoche-2019.localhost>"
    unsubscribe_url: str  #: HTTPS, identifies subscriber and list by itself
    unsubscribe_mailto: str | None = None  #: e.g. "mailto:unsubscribe@host?subject=…"


def build_email(
    *,
    subject: str,
    text: str,
    html: str,
    mail_from: str,
    to: str,
    message_id: str,
    date: dt.datetime,
    list_headers: ListHeaders | None = None,
) -> EmailMessage:
    """A `multipart/alternative` message (plain text first, then HTML)."""
    if date.tzinfo is None:
        raise ValueError("date must be timezone-aware")
    message = EmailMessage(policy=POLICY)
    message["From"] = mail_from
    message["To"] = to
    message["Subject"] = subject
    message["Date"] = format_datetime(date)
    message["Message-ID"] = message_id
    if list_headers is not None:
        targets = [f"<{list_headers.unsubscribe_url}>"]
        if list_headers.unsubscribe_mailto:
            targets.append(f"<{list_headers.unsubscribe_mailto}>")
        message["List-Id"] = list_headers.list_id
        message["List-Unsubscribe"] = ", ".join(targets)
        message["List-Unsubscribe-Post"] = "List-Unsubscribe=One-Click"
        # RFC 3834: keeps auto-responders from answering the newsletter.
        message["Auto-Submitted"] = "auto-generated"
    message.set_content(text, subtype="plain", charset="utf-8")
    message.add_alternative(html, subtype="html", charset="utf-8")
    return message
