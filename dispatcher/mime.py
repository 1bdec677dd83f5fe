"""Build the RFC 5322 message for one recipient — pure, no I/O.

The policy is SMTP with `cte_type="7bit"`: both parts come out quoted-printable,
so relays that downgrade 8bit cannot break a DKIM signature, and umlauts in the
subject and display names become RFC 2047 encoded words.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import re
from dataclasses import dataclass
from email.errors import HeaderParseError
from email.header import decode_header, make_header
from email.headerregistry import Address, HeaderRegistry, UnstructuredHeader
from email.message import EmailMessage
from email.policy import SMTP, Policy
from email.utils import format_datetime, parseaddr


class _UrlListHeader(UnstructuredHeader):
    """RFC 2369 `<url>, <url>`: folded between the URLs, never RFC 2047-encoded.

    The stdlib encodes any word longer than a line, and receivers do not decode
    encoded words in `List-Unsubscribe`: one-click would silently disappear.
    """

    def fold(self, *, policy: Policy) -> str:
        urls = re.findall(r"<[^<>]*>", str(self))
        name = self.name  # type: ignore[attr-defined]  # from the registry's BaseHeader mixin
        return f"{name}: " + f",{policy.linesep} ".join(urls) + policy.linesep


_HEADERS = HeaderRegistry()
_HEADERS.map_to_type("list-unsubscribe", _UrlListHeader)  # type: ignore[arg-type]
POLICY = SMTP.clone(cte_type="7bit", header_factory=_HEADERS)


@dataclass(frozen=True)
class ListHeaders:
    """What makes a message a list message: RFC 2369, RFC 2919, RFC 8058."""

    list_id: str  #: e.g. "2. Clusterwoche Deutschland <clusterwoche-2019.localhost>"
    unsubscribe_url: str  #: HTTPS, identifies subscriber and list by itself
    unsubscribe_mailto: str | None = None  #: e.g. "mailto:unsubscribe@host?subject=…"
    #: Gmail's feedback loop: "a:b:c:SenderId" (SenderId 5–15 characters, stable); must be
    #: DKIM-signed, and there is only ever one per message.
    feedback_id: str | None = None


_ENCODED_WORD_START = "=?"
_WORD_BREAK = "=\u200b?"  #: a zero-width space: shows the same, is no RFC 2047 word


def one_line(value: str) -> str:
    """A header value that stays one header, whatever text it carries.

    - CR, LF and every other line break (`str.split()` also splits at U+2028 and
      U+0085) become one space. The stdlib refuses CR/LF in a header value: no
      injection, but a crash of the send, and editors' text from a YAML block
      scalar or a name from a CSV cell can carry them.
    - `=?` loses its meaning: the stdlib's header parser *decodes* RFC 2047 encoded
      words in the values we set, so a subscriber named
      `=?utf-8?q?x=0D=0ABcc:_evil@example.org?=` became a real CR LF and a `Bcc:`
      header on Python < 3.11.10 (CVE-2024-6923) and a crash on later ones. With a
      zero-width space after the `=`, the text is shown as typed and encoded safely.
    """
    return " ".join(value.split()).replace(_ENCODED_WORD_START, _WORD_BREAK)


def one_address(value: str) -> Address | str:
    """`Name <addr>` (as `formataddr` writes it) as a header value that stays one header.

    The display name is decoded (formataddr encodes non-ASCII names as RFC 2047
    words), made `one_line`, and handed back as an `Address` for the policy to
    encode again: so "Jürgen" stays Jürgen and a name that *is* an encoded word
    stays text.
    """
    name, addr = parseaddr(value)
    if not addr:
        return one_line(value)
    # An undecodable word stays as written: one_line neutralises it.
    with contextlib.suppress(HeaderParseError, LookupError, UnicodeDecodeError, ValueError):
        name = str(make_header(decode_header(name)))
    try:
        return Address(display_name=one_line(name), addr_spec=addr)
    except (HeaderParseError, ValueError, IndexError):
        return one_line(value)


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
    # Every value goes through `one_line`: text from editors and subscribers can never
    # start a header of its own ("Erika\r\nBcc: …" stays inside the display name).
    message["From"] = one_address(mail_from)
    message["To"] = one_address(to)
    message["Subject"] = one_line(subject)
    message["Date"] = format_datetime(date)
    message["Message-ID"] = one_line(message_id)
    if list_headers is not None:
        targets = [f"<{one_line(list_headers.unsubscribe_url)}>"]
        if list_headers.unsubscribe_mailto:
            targets.append(f"<{one_line(list_headers.unsubscribe_mailto)}>")
        message["List-Id"] = one_line(list_headers.list_id)
        message["List-Unsubscribe"] = ", ".join(targets)
        message["List-Unsubscribe-Post"] = "List-Unsubscribe=One-Click"
        # RFC 3834: keeps auto-responders from answering the newsletter.
        message["Auto-Submitted"] = "auto-generated"
        if list_headers.feedback_id:
            message["Feedback-ID"] = one_line(list_headers.feedback_id)
    message.set_content(text, subtype="plain", charset="utf-8")
    message.add_alternative(html, subtype="html", charset="utf-8")
    return message
