"""The bytes on the wire, fast: one message skeleton per dispatch, filled per recipient.

`emails.compose` builds a correct message with the stdlib `email` package, but
that costs milliseconds per message (header folding, the pure-Python
quoted-printable encoder). A dispatch sends the same message to everyone but for
a few values, so `WireTemplate` composes it once with sentinels, keeps the
serialised skeleton, and per recipient only formats four headers and encodes the
two personalised bodies with the C quoted-printable encoder (`binascii.b2a_qp`).
The result parses to the same headers and bodies as `emails.compose` (tested),
so preview, tests and the send path cannot drift apart.
"""

from __future__ import annotations

import binascii
import dataclasses
import datetime as dt
import functools
from email.utils import format_datetime

from dispatcher.campaign.model import Campaign
from dispatcher.content.rendering import (
    GREETING_PLACEHOLDER,
    UNSUBSCRIBE_PLACEHOLDER,
    RenderedEmail,
)
from dispatcher.mail import compose as emails
from dispatcher.mail import mime

# Non-ASCII on purpose: it makes the email package pick quoted-printable for both parts.
_TEXT = "ä__DISPATCHER_WIRE_TEXT__"
_HTML = "ä__DISPATCHER_WIRE_HTML__"
_SENTINEL_ADDRESS = "wire-sentinel@sentinel.invalid"
_PER_RECIPIENT = (b"to", b"date", b"message-id", b"list-unsubscribe")
_FOLD_AT = 78


def _header_lines(block: bytes) -> list[bytes]:
    """Header block -> one entry per header, folded continuation lines kept with it."""
    lines: list[bytes] = []
    for line in block.split(b"\r\n"):
        if line[:1] in (b" ", b"\t") and lines:
            lines[-1] += b"\r\n" + line
        else:
            lines.append(line)
    return lines


@functools.lru_cache(maxsize=64)
def _date_header(epoch: int, offset: dt.timedelta | None) -> str:
    """Thousands of messages a second share a Date: format each second once."""
    zone = dt.timezone(offset) if offset is not None else dt.UTC
    return format_datetime(dt.datetime.fromtimestamp(epoch, zone))


def _to_header(name: str | None, address: str) -> str:
    """`To:` line, the same as `emails.compose` writes (`mime.fold_addresses`).

    A plain name and address are formatted here directly: that is nearly every
    subscriber, and the general path costs several times as much.
    """
    if not name:
        if address.isascii():
            return f"To: {address}\r\n"
    elif address.isascii() and name.isascii() and len(name) + len(address) < _FOLD_AT - 8:
        words = name.split(" ")
        if all(mime.ATOM.fullmatch(word) for word in words):
            return f"To: {name} <{address}>\r\n"
    return mime.fold_addresses("To", [(name, address)])


class _EncodedBody:
    """A body whose lines are quoted-printable-encoded once; only the lines that carry a
    per-recipient placeholder are encoded again per message (QP works line by line, so
    the pieces join to exactly the whole body's encoding)."""

    def __init__(self, text: str) -> None:
        lines = text.replace("\r\n", "\n").split("\n")
        if lines and lines[-1] == "":
            lines.pop()  # the final line break, not an empty last line
        self.parts: list[bytes | str] = []
        for line in lines:
            if GREETING_PLACEHOLDER in line or UNSUBSCRIBE_PLACEHOLDER in line:
                self.parts.append(line)
            else:
                self.parts.append(_qp(line))
        self.dynamic = "\n".join(p for p in self.parts if isinstance(p, str))

    def encode(self, personalised_dynamic: str) -> bytes:
        filled = iter(personalised_dynamic.split("\n"))
        return b"".join(p if isinstance(p, bytes) else _qp(next(filled)) for p in self.parts)


def _qp(text: str) -> bytes:
    """Quoted-printable with CRLF everywhere: b2a_qp uses the line end it sees first for
    its soft line breaks too, so the text must end in CRLF before it is encoded."""
    crlf = text.replace("\r\n", "\n").replace("\n", "\r\n")
    if not crlf.endswith("\r\n"):
        crlf += "\r\n"
    encoded: bytes = binascii.b2a_qp(crlf.encode("utf-8"), istext=True)
    return encoded


class WireTemplate:
    """One dispatch's message, ready to be filled in for each recipient."""

    def __init__(
        self,
        shared: RenderedEmail,
        campaign: Campaign,
        sender: emails.Sender,
        *,
        send_at: dt.datetime,
    ) -> None:
        self._shared = shared
        self._domain = sender.domain
        self._text, self._html = _EncodedBody(shared.text), _EncodedBody(shared.html)
        # Only the placeholder lines are personalised per message (see `_EncodedBody`).
        self._dynamic = dataclasses.replace(
            shared, html=self._html.dynamic, text=self._text.dynamic
        )
        skeleton = emails.compose(
            dataclasses.replace(shared, html=_HTML, text=_TEXT),
            campaign,
            sender,
            to_address=_SENTINEL_ADDRESS,
            to_name=None,
            unsubscribe="https://sentinel.invalid/u/sentinel",
            message_id="<sentinel@sentinel.invalid>",
            date=send_at,  # headers derived from the day (Feedback-ID) come out right
        ).as_bytes()
        head, _, body = skeleton.partition(b"\r\n\r\n")
        kept = [
            line
            for line in _header_lines(head)
            if line.split(b":", 1)[0].strip().lower() not in _PER_RECIPIENT
        ]
        self._head = b"\r\n".join(kept) + b"\r\n"
        text_mark, html_mark = _qp(_TEXT), _qp(_HTML)  # each ends with its line's CRLF
        text_at, html_at = body.index(text_mark), body.index(html_mark)
        self._body = (
            body[:text_at],
            body[text_at + len(text_mark) : html_at],
            body[html_at + len(html_mark) :],
        )

    def render(
        self,
        *,
        to_address: str,
        to_name: str | None,
        unsubscribe: str,
        message_id: str,
        date: dt.datetime,
    ) -> bytes:
        """The complete message for one recipient, CRLF line ends, 7-bit clean."""
        html, text = self._dynamic.personalise(name=to_name, unsubscribe_url=unsubscribe)
        # A name can never break out of its header: no CR, LF or other control characters.
        name = mime.safe_name(to_name)
        token = unsubscribe.rstrip("/").rpartition("/")[2]
        mailto = f"mailto:unsubscribe@{self._domain}?subject=unsubscribe%20{token}"
        targets = f"<{unsubscribe}>, <{mailto}>"
        if len("List-Unsubscribe: ") + len(targets) > _FOLD_AT:
            targets = f"<{unsubscribe}>,\r\n <{mailto}>"
        headers = (
            _to_header(name, to_address)
            + f"Date: {_date_header(int(date.timestamp()), date.utcoffset())}\r\n"
            f"Message-ID: {message_id}\r\n"
            f"List-Unsubscribe: {targets}\r\n"
        ).encode()  # UTF-8 only for a non-ASCII local part (RFC 6532; the relay needs SMTPUTF8)
        before, between, after = self._body
        return b"".join(
            (
                headers,
                self._head,
                b"\r\n",
                before,
                self._text.encode(text),
                between,
                self._html.encode(html),
                after,
            )
        )
