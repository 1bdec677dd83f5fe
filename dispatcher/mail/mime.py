"""Build the RFC 5322 message for one recipient — pure, no I/O.

The policy is SMTP with `cte_type="7bit"`: both parts come out quoted-printable,
so relays that downgrade 8bit cannot break a DKIM signature, and umlauts in the
subject and display names become RFC 2047 encoded words.
"""

from __future__ import annotations

import base64
import contextlib
import datetime as dt
import functools
import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from email.errors import HeaderParseError
from email.header import decode_header, make_header
from email.headerregistry import Address, HeaderRegistry, UniqueAddressHeader, UnstructuredHeader
from email.message import EmailMessage
from email.policy import SMTP, Policy
from email.utils import format_datetime, parseaddr

from dispatcher.mail.addresses import wire_form


class _UrlListHeader(UnstructuredHeader):
    """RFC 2369 `<url>, <url>`: folded between the URLs, never RFC 2047-encoded.

    The stdlib encodes any word longer than a line, and receivers do not decode
    encoded words in `List-Unsubscribe`: one-click would silently disappear.
    """

    def fold(self, *, policy: Policy) -> str:
        urls = re.findall(r"<[^<>]*>", str(self))
        name = self.name  # type: ignore[attr-defined]  # from the registry's BaseHeader mixin
        return f"{name}: " + f",{policy.linesep} ".join(urls) + policy.linesep


class _SafeAddressHeader(UniqueAddressHeader):
    """`From:`/`To:` written by `fold_addresses` instead of the stdlib's folder.

    The stdlib (3.11/3.12) encodes only the non-ASCII words of a display name and
    drops the quotes around the rest: "Jürgen Müller, attacker@evil.example" went
    out as `=?utf-8?q?J=C3=BCrgen_M=C3=BCller=2C?= attacker@evil.example <x@…>`,
    which parsers read as two recipients. It also cannot write an IDN domain.
    """

    def fold(self, *, policy: Policy) -> str:
        if any(group.display_name is not None for group in self.groups):  # RFC 5322 groups
            return str(super().fold(policy=policy))  # type: ignore[misc]
        pairs: list[tuple[str | None, str]] = [
            (a.display_name, a.addr_spec) for a in self.addresses
        ]
        name = self.name  # type: ignore[attr-defined]  # from the registry's BaseHeader mixin
        return fold_addresses(name, pairs, linesep=policy.linesep)


_HEADERS = HeaderRegistry()
_HEADERS.map_to_type("list-unsubscribe", _UrlListHeader)  # type: ignore[arg-type]
_HEADERS.map_to_type("from", _SafeAddressHeader)  # type: ignore[arg-type]
_HEADERS.map_to_type("to", _SafeAddressHeader)  # type: ignore[arg-type]
POLICY = SMTP.clone(cte_type="7bit", header_factory=_HEADERS)
#: For a recipient whose address has a non-ASCII local part (RFC 6532: UTF-8 headers); such a
#: message can only go through a relay that offers SMTPUTF8.
UTF8_POLICY = POLICY.clone(utf8=True)


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


_CONTROL = re.compile(r"[\x00-\x1f\x7f]+")
#: RFC 5322 atext: a name made only of such words needs neither quotes nor encoding.
ATOM = re.compile(r"[A-Za-z0-9!#$%&'*+/=?^_`{|}~-]+")
#: RFC 2047 §5(3): what a Q-encoded word may carry unencoded inside a phrase.
_Q_LITERAL = frozenset(b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789!*+-/")
_WORD_PAYLOAD = 75 - len("=?utf-8?q??=")  #: an encoded word is at most 75 characters
_LINE = 78


def safe_name(name: str | None) -> str:
    """A display name as it may appear in a header: one line, no control characters."""
    if not name:
        return ""
    if not name.isascii():  # a lone surrogate (from a broken decoder) cannot be encoded
        name = name.encode("utf-8", "replace").decode()
    return one_line(_CONTROL.sub(" ", name)).strip()


def recipient(name: str | None, address: str) -> Address:
    """The `To:` of one subscriber for `build_email`; the address as the ledger stores it."""
    local, _, domain = address.rpartition("@")
    # Not `addr_spec=`: the stdlib's parser refuses a non-ASCII local part (RFC 6532 allows it).
    return Address(display_name=safe_name(name), username=local, domain=domain)


@functools.lru_cache(maxsize=1024)
def _q_piece(char: str) -> str:
    if char == " ":
        return "_"
    return "".join(chr(b) if b in _Q_LITERAL else f"={b:02X}" for b in char.encode())


def _chunks(text: str, size: Callable[[str], int], limit: int) -> list[str]:
    """`text` cut into pieces of at most `limit` (by `size` per character), after a space
    where one is near: see `_phrase` for why the cuts should fall there."""
    chunks: list[str] = []
    start = used = 0
    space: int | None = None  #: index of the last space in the current piece
    index = 0
    while index < len(text):
        if used + size(text[index]) > limit and index > start:
            cut = space + 1 if space is not None else index
            chunks.append(text[start:cut])
            start, space = cut, None
            used = sum(size(char) for char in text[start:index])
            continue
        if text[index] == " " and index > start:
            space = index
        used += size(text[index])
        index += 1
    chunks.append(text[start:])
    return chunks


def _encoded_words(text: str) -> list[str]:
    """`text` as RFC 2047 encoded words, each whole characters and at most 75 long.

    Q when that is shorter (mostly Latin names stay readable), else B.
    """
    q_pieces = list(map(_q_piece, text))
    q_size, b_size = sum(map(len, q_pieces)), (len(text.encode()) + 2) // 3 * 4
    if q_size <= b_size:
        if q_size <= _WORD_PAYLOAD:  # nearly every name: one word
            return [f"=?utf-8?q?{''.join(q_pieces)}?="]
        chunks = _chunks(text, lambda char: len(_q_piece(char)), _WORD_PAYLOAD)
        return [f"=?utf-8?q?{''.join(map(_q_piece, chunk))}?=" for chunk in chunks]
    chunks = _chunks(text, lambda char: len(char.encode()), _WORD_PAYLOAD // 4 * 3)
    return [f"=?utf-8?b?{base64.b64encode(chunk.encode()).decode()}?=" for chunk in chunks]


def _phrase(name: str, room: int) -> list[str]:
    """The words of a display name: atoms, quoted strings and encoded words.

    ASCII words stay readable: as atoms, or — where one holds an RFC 5322 special such as
    the `.` of "Dr." — in a quoted string (`"Dr. Maximiliane"`); a bare special makes an
    obsolete phrase that parsers read differently. Runs of non-ASCII words become encoded
    words. Between a quoted string or atom and an encoded word a space is a space for
    every parser, so the name reads the same everywhere. Only a run of non-ASCII words too
    long for one encoded word needs two adjacent ones, and whitespace between those means
    nothing to RFC 2047 (and to mail clients) but a space to Python's `email.policy.default`:
    they are cut after a space, which RFC 2047 readers keep (see docs/architecture.md).
    """
    phrase: list[str] = []
    for is_ascii, words in _runs(name.split(" ")):
        if not is_ascii:
            phrase += _encoded_words(" ".join(words))
        elif all(ATOM.fullmatch(word) for word in words):
            phrase += words  # folds at the spaces between them
        else:
            phrase += _quoted_strings(words, room)
    return phrase


def _runs(words: list[str]) -> list[tuple[bool, list[str]]]:
    """Consecutive words grouped by whether they are ASCII: [(is_ascii, words), …]."""
    runs: list[tuple[bool, list[str]]] = []
    for word in words:
        if runs and runs[-1][0] == word.isascii():
            runs[-1][1].append(word)
        else:
            runs.append((word.isascii(), [word]))
    return runs


def _quoted_strings(words: list[str], room: int) -> list[str]:
    """ASCII words as quoted strings, as few as fit in `room` each (cut between words)."""
    quoted: list[str] = []
    current: list[str] = []
    for word in words:
        candidate = [*current, word]
        if current and len(_quote(" ".join(candidate))) > room:
            quoted.append(_quote(" ".join(current)))
            candidate = [word]
        current = candidate
    quoted.append(_quote(" ".join(current)))
    return quoted


def _quote(text: str) -> str:
    return '"' + text.replace("\\", "\\\\").replace('"', '\\"') + '"'


def address_words(name: str | None, address: str, *, room: int = _LINE) -> list[str]:
    """`Name <address>` as foldable words; the domain in A-label form (see `wire_form`)."""
    address = wire_form(address)
    name = safe_name(name)
    if not name:
        return [address]
    return [*_phrase(name, room - len(address) - 3), f"<{address}>"]


def fold_addresses(
    field: str, pairs: Sequence[tuple[str | None, str]], *, linesep: str = "\r\n"
) -> str:
    """A complete address header (`To: …` and its line end) that parses to exactly `pairs`.

    Folded only between words, at 78 characters where the words allow it.
    """
    words: list[str] = []
    for index, (name, address) in enumerate(pairs):
        words += address_words(name, address, room=_LINE - len(field) - 2)
        if index < len(pairs) - 1:
            words[-1] += ","
    line, lines = f"{field}:", []
    for word in words:
        if len(line) + 1 + len(word) > _LINE and line != f"{field}:":
            lines.append(line)
            line = ""
        line += " " + word
    lines.append(line)
    return linesep.join(lines) + linesep


def one_address(value: str | Address) -> Address | str:
    """`Name <addr>` (as `formataddr` writes it, or an `Address`) as a header value that
    stays one header.

    The display name is decoded (formataddr encodes non-ASCII names as RFC 2047
    words), made `one_line`, and handed back as an `Address` for the header to
    encode again (`fold_addresses`): so "Jürgen" stays Jürgen and a name that *is*
    an encoded word stays text.
    """
    if isinstance(value, Address):
        return recipient(value.display_name, f"{value.username}@{value.domain}")
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
    to: str | Address,
    message_id: str,
    date: dt.datetime,
    list_headers: ListHeaders | None = None,
    language: str | None = None,
) -> EmailMessage:
    """A `multipart/alternative` message (plain text first, then HTML).

    `language` becomes `Content-Language` (RFC 3282): screen readers and mail clients'
    translation offers go by it.

    `to` is best a `recipient(name, address)`: a string must be what `formataddr`
    writes, which has no room for a non-ASCII address.
    """
    if date.tzinfo is None:
        raise ValueError("date must be timezone-aware")
    recipient_value = one_address(to)
    international = isinstance(recipient_value, Address) and not (
        wire_form(recipient_value.addr_spec).isascii()
    )
    message = EmailMessage(policy=UTF8_POLICY if international else POLICY)
    # Every value goes through `one_line`: text from editors and subscribers can never
    # start a header of its own ("Erika\r\nBcc: …" stays inside the display name).
    message["From"] = one_address(mail_from)
    message["To"] = recipient_value
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
    if language:  # after the content: `set_content` drops every Content-* header
        message["Content-Language"] = one_line(language)
    return message
