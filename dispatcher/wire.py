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
import re
from email.utils import format_datetime, formataddr

from dispatcher import emails, mime
from dispatcher.campaign import Campaign
from dispatcher.rendering import RenderedEmail

# Non-ASCII on purpose: it makes the email package pick quoted-printable for both parts.
_TEXT = "ä__DISPATCHER_WIRE_TEXT__"
_HTML = "ä__DISPATCHER_WIRE_HTML__"
_SENTINEL_ADDRESS = "wire-sentinel@sentinel.invalid"
_PER_RECIPIENT = (b"to", b"date", b"message-id", b"list-unsubscribe")
_CONTROL = re.compile(r"[\x00-\x1f\x7f]+")
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


def _to_header(name: str, address: str) -> str:
    """`To:` line; a non-ASCII or long name goes through the email package's encoder/folder."""
    plain = formataddr((name, address))
    if plain.isascii() and len(plain) < _FOLD_AT - 4:
        return f"To: {plain}\r\n"
    return str(mime.POLICY.header_factory("To", plain).fold(policy=mime.POLICY))


def _qp(text: str) -> bytes:
    crlf = text.replace("\r\n", "\n").replace("\n", "\r\n")
    encoded: bytes = binascii.b2a_qp(crlf.encode("utf-8"), istext=True)
    return encoded if encoded.endswith(b"\r\n") else encoded + b"\r\n"


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
        html, text = self._shared.personalise(name=to_name, unsubscribe_url=unsubscribe)
        # A name can never break out of its header: no CR, LF or other control characters.
        name = _CONTROL.sub(" ", to_name).strip() if to_name else ""
        token = unsubscribe.rstrip("/").rpartition("/")[2]
        mailto = f"mailto:unsubscribe@{self._domain}?subject=unsubscribe%20{token}"
        targets = f"<{unsubscribe}>, <{mailto}>"
        if len("List-Unsubscribe: ") + len(targets) > _FOLD_AT:
            targets = f"<{unsubscribe}>,\r\n <{mailto}>"
        headers = (
            _to_header(name, to_address)
            + f"Date: {format_datetime(date)}\r\n"
            f"Message-ID: {message_id}\r\n"
            f"List-Unsubscribe: {targets}\r\n"
        ).encode("ascii")
        before, between, after = self._body
        return b"".join(
            (headers, self._head, b"\r\n", before, _qp(text), between, _qp(html), after)
        )
