"""Subscriber addresses and names, checked without any I/O or DNS.

One normal form per mailbox is what makes the ledger's unique `email` column
mean "one row per person": `Erika@Example.ORG`, `erika@example.org` and
`erika@EXAMPLE.org` must meet in the same row, or she gets the newsletter twice.
"""

from __future__ import annotations

import functools
import re

from email_validator import EmailNotValidError, validate_email

MAX_NAME_LENGTH = 200  #: the ledger's `subscribers.name` is String(200)
#: What `str.split` leaves of the control characters (it already splits on tab, CR, LF, …).
_CONTROL = re.compile("[\x00-\x1f\x7f-\x9f]")


class InvalidAddress(ValueError):  # noqa: N818 -- reads as a verdict: "raise InvalidAddress"
    """An address that cannot be a subscriber; the message says why, in English."""

    def __init__(self, address: str, reason: str) -> None:
        super().__init__(f'invalid address "{address}": {reason}')
        self.address = address
        self.reason = reason


class InvalidName(ValueError):  # noqa: N818 -- sibling of InvalidAddress
    """A display name the ledger cannot store."""


def normalise(address: str) -> str:
    """The one form of `address` the ledger stores and compares.

    Surrounding whitespace is dropped (CSV cells and pasted text carry it);
    whitespace inside is an error. The domain becomes its Unicode IDN form, so
    `info@xn--bcher-kva.de` and `info@bücher.de` are one subscriber. The whole
    address is then lower-cased: RFC 5321 lets a server treat the local part
    case-sensitively, but no mailbox provider does, while people do type
    `Erika.Mustermann@…` once and `erika.mustermann@…` the next time.
    `str.lower`, not `casefold`: casefold turns `ß` into `ss`, a different mailbox.
    """
    try:
        result = validate_email(address.strip(), check_deliverability=False)
    except EmailNotValidError as error:
        raise InvalidAddress(address, str(error)) from None
    return result.normalized.lower()


def ascii_form(address: str) -> str | None:
    """`address` with its domain in IDNA (xn--) form, for servers without SMTPUTF8.

    None when the local part itself is not ASCII: such a mailbox is reachable only
    over SMTPUTF8.
    """
    try:
        return validate_email(address, check_deliverability=False).ascii_email
    except EmailNotValidError as error:
        raise InvalidAddress(address, str(error)) from None


def wire_form(address: str) -> str:
    """`address` as it goes into RCPT TO and the `To:` header.

    An IDN domain becomes its A-label (`info@bücher.de` -> `info@xn--bcher-kva.de`),
    which every relay and mailbox understands. A non-ASCII local part has no ASCII
    form: the address stays in Unicode and only a relay that offers SMTPUTF8
    (RFC 6531) can take it. Raises `InvalidAddress` for a string that is no address.
    """
    if address.isascii():  # nearly every address: no validation on the send path
        return address
    return _wire_form(address)


@functools.lru_cache(maxsize=4096)
def _wire_form(address: str) -> str:
    # Validating costs about 0.3 ms; a dispatch sends to the same few IDN addresses.
    try:
        result = validate_email(address, check_deliverability=False)
    except EmailNotValidError as error:
        raise InvalidAddress(address, str(error)) from None
    return result.ascii_email or result.normalized


def clean_name(name: str | None) -> str | None:
    """Trimmed name, None for blank; too long is an error rather than silently cut."""
    if name is None or not name.strip():
        return None
    name = " ".join(name.split())  # multi-line CSV cells and stray tabs become one line
    if found := _CONTROL.search(name):
        raise InvalidName(f"name contains the control character U+{ord(found[0]):04X}; remove it")
    if len(name) > MAX_NAME_LENGTH:
        raise InvalidName(f"name longer than {MAX_NAME_LENGTH} characters")
    return name
