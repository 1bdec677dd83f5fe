"""Subscriber addresses and subscriber CSV files, checked without any I/O or DNS.

One normal form per mailbox is what makes the ledger's unique `email` column
mean "one row per person": `Erika@Example.ORG`, `erika@example.org` and
`erika@EXAMPLE.org` must meet in the same row, or she gets the newsletter twice.
"""

from __future__ import annotations

import csv
import functools
import io
import re
from dataclasses import dataclass

from email_validator import EmailNotValidError, validate_email

from dispatcher.ledger.tables import SubscriberState

MAX_NAME_LENGTH = 200  #: the ledger's `subscribers.name` is String(200)
EMAIL_HEADERS = frozenset({"email", "e-mail", "mail", "e_mail", "email-adresse", "e-mail-adresse"})
NAME_HEADERS = frozenset({"name"})
STATE_HEADERS = frozenset({"state"})  #: written by `subscribers export`
DELIMITERS = (",", ";")
#: What `str.split` leaves of the control characters (it already splits on tab, CR, LF, …).
_CONTROL = re.compile("[\x00-\x1f\x7f-\x9f]")
#: A cell starting with one of these is a formula to a spreadsheet (OWASP "CSV injection").
FORMULA_STARTS = ("=", "+", "-", "@", "\t", "\r")


def neutralise_cell(value: str) -> str:
    """`value` as a spreadsheet shows it as text: a leading `'` before a formula start.

    `parse_csv` removes exactly that quote again, so an export imports as it was.
    """
    return "'" + value if value.startswith(FORMULA_STARTS) else value


def _restore_cell(value: str) -> str:
    return value[1:] if value.startswith("'") and value[1:].startswith(FORMULA_STARTS) else value


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


@dataclass(frozen=True)
class Row:
    """One good line of a subscriber file; `email` is already normalised."""

    line: int
    email: str
    name: str | None
    #: Only when the file has a `state` column (an export): keeps unsubscribed
    #: people unsubscribed when a ledger is rebuilt from an export.
    state: SubscriberState | None = None


@dataclass(frozen=True)
class RowProblem:
    line: int
    message: str

    def __str__(self) -> str:
        return f"{self.line}: {self.message}"


def parse_csv(text: str) -> tuple[list[Row], list[RowProblem]]:
    """Rows and problems of a subscriber file, each with its physical line number.

    Line numbers count lines of the file as an editor shows them (1 = header),
    also when a quoted name spans lines, so `FILE.csv:LINE` points at the row.
    Duplicates are kept here; `ledger.subscribers.import_rows` merges and counts them.
    """
    text = text.removeprefix("\ufeff")
    # strict: a stray or unclosed quote is an error with its line, not a name that
    # silently swallows the following rows.
    reader = csv.reader(
        io.StringIO(text, newline=""), delimiter=_sniff_delimiter(text), strict=True
    )
    rows: list[Row] = []
    problems: list[RowProblem] = []
    columns: _Columns | None = None
    end = 0  # physical line on which the previous record ended
    while True:
        try:
            record = next(reader)
        except StopIteration:
            break
        except csv.Error as error:
            line, end = end + 1, reader.line_num
            problems.append(RowProblem(line, _csv_error(error, line, end)))
            continue
        line, end = end + 1, reader.line_num
        if not any(cell.strip() for cell in record):
            continue
        if columns is None:
            columns = _header(record, line, problems)
            if columns is None:
                return [], problems
            continue
        row = _row(record, line, columns, problems)
        if row is not None:
            rows.append(row)
    if columns is None:
        problems.append(RowProblem(1, "empty file: expected a header row with an email column"))
    return rows, problems


def _csv_error(error: csv.Error, line: int, end: int) -> str:
    if "end of data" in str(error):
        return (
            f"a quote opened in this row is never closed, so lines {line}-{end} were read "
            'as one field and not imported; close the quote (or double a quote inside a name: "")'
        )
    return f'malformed CSV ({error}); write a quote inside a quoted field twice: ""'


@dataclass(frozen=True)
class _Columns:
    width: int
    email: int
    name: int | None
    state: int | None


def _sniff_delimiter(text: str) -> str:
    """`;` or `,`, whichever the header line uses more (German Excel writes `;`)."""
    header = next((line for line in text.splitlines() if line.strip()), "")
    counts = {d: _count_unquoted(header, d) for d in DELIMITERS}
    return ";" if counts[";"] > counts[","] else ","


def _count_unquoted(line: str, delimiter: str) -> int:
    count, quoted = 0, False
    for char in line:
        if char == '"':
            quoted = not quoted
        elif char == delimiter and not quoted:
            count += 1
    return count


def _header(record: list[str], line: int, problems: list[RowProblem]) -> _Columns | None:
    names = [cell.strip().lower() for cell in record]
    before = len(problems)

    def find(accepted: frozenset[str], label: str) -> int | None:
        found = [i for i, name in enumerate(names) if name in accepted]
        if len(found) > 1:
            problems.append(RowProblem(line, f"more than one {label} column in the header"))
        return found[0] if found else None

    email, name, state = (
        find(EMAIL_HEADERS, "email"),
        find(NAME_HEADERS, "name"),
        find(STATE_HEADERS, "state"),
    )
    if len(problems) > before:
        return None
    if email is None:
        seen = ", ".join(f'"{cell.strip()}"' for cell in record)
        problems.append(
            RowProblem(
                line, f"no email column in the header (found {seen}); name the address column email"
            )
        )
        return None
    return _Columns(width=len(record), email=email, name=name, state=state)


def _row(record: list[str], line: int, columns: _Columns, problems: list[RowProblem]) -> Row | None:
    if any(cell.strip() for cell in record[columns.width :]):
        problems.append(
            RowProblem(
                line,
                f"{len(record)} fields but the header has {columns.width}; "
                "put names that contain the delimiter in double quotes",
            )
        )
        return None

    def cell(index: int | None) -> str:
        return _restore_cell(record[index]) if index is not None and index < len(record) else ""

    address = cell(columns.email)
    if not address.strip():
        problems.append(RowProblem(line, "no address in the email column"))
        return None
    try:
        email = normalise(address)
        name = clean_name(cell(columns.name))
        state = _state(cell(columns.state))
    except ValueError as error:
        problems.append(RowProblem(line, str(error)))
        return None
    return Row(line=line, email=email, name=name, state=state)


def _state(text: str) -> SubscriberState | None:
    if not text.strip():
        return None
    try:
        return SubscriberState(text.strip().lower())
    except ValueError:
        allowed = ", ".join(s.value for s in SubscriberState)
        raise ValueError(f'unknown state "{text.strip()}" (use one of {allowed})') from None
