"""Subscriber CSV files (import and export), checked without any I/O: every problem with
its line, formula cells neutralised on the way out and restored on the way in.
"""

from __future__ import annotations

import csv
import io
from collections.abc import Sequence
from dataclasses import dataclass

from dispatcher.i18n import LANGUAGES
from dispatcher.ledger.tables import SubscriberState
from dispatcher.mail.addresses import clean_name, normalise

EMAIL_HEADERS = frozenset({"email", "e-mail", "mail", "e_mail", "email-adresse", "e-mail-adresse"})
NAME_HEADERS = frozenset({"name"})
STATE_HEADERS = frozenset({"state"})  #: written by `subscribers export`
#: The reader's language; an empty cell: the campaign's default language.
LANG_HEADERS = frozenset({"lang", "language", "sprache"})
DELIMITERS = (",", ";")
#: A cell starting with one of these is a formula to a spreadsheet (OWASP "CSV injection").
FORMULA_STARTS = ("=", "+", "-", "@", "\t", "\r")


def neutralise_cell(value: str) -> str:
    """`value` as a spreadsheet shows it as text: a leading `'` before a formula start.

    `parse_csv` removes exactly that quote again, so an export imports as it was.
    """
    return "'" + value if value.startswith(FORMULA_STARTS) else value


def _restore_cell(value: str) -> str:
    return value[1:] if value.startswith("'") and value[1:].startswith(FORMULA_STARTS) else value


@dataclass(frozen=True)
class Row:
    """One good line of a subscriber file; `email` is already normalised."""

    line: int
    email: str
    name: str | None
    #: Only when the file has a `state` column (an export): keeps unsubscribed
    #: people unsubscribed when a ledger is rebuilt from an export.
    state: SubscriberState | None = None
    lang: str | None = None  #: a language the campaign offers; None: its default


@dataclass(frozen=True)
class RowProblem:
    line: int
    message: str

    def __str__(self) -> str:
        return f"{self.line}: {self.message}"


def parse_csv(
    text: str, *, languages: Sequence[str] = LANGUAGES
) -> tuple[list[Row], list[RowProblem]]:
    """Rows and problems of a subscriber file, each with its physical line number.

    Line numbers count lines of the file as an editor shows them (1 = header),
    also when a quoted name spans lines, so `FILE.csv:LINE` points at the row.
    Duplicates are kept here; `ledger.subscribers.import_rows` merges and counts them.
    A `lang` cell must be one of `languages` (the campaign's locales), in any case.
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
        row = _row(record, line, columns, problems, languages)
        if row is not None:
            rows.append(row)
    if columns is None:
        problems.append(RowProblem(1, "empty file: expected a header row with an email column"))
    return rows, problems


def has_lang_column(text: str) -> bool:
    """Whether the file's header names a language column: only then do its cells need the
    campaign's languages (so an import without one works whatever the campaign file says)."""
    text = text.removeprefix("\ufeff")
    header = next((line for line in text.splitlines() if line.strip()), "")
    cells = next(csv.reader([header], delimiter=_sniff_delimiter(text)), [])
    return any(cell.strip().lower() in LANG_HEADERS for cell in cells)


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
    lang: int | None = None


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

    email, name, state, lang = (
        find(EMAIL_HEADERS, "email"),
        find(NAME_HEADERS, "name"),
        find(STATE_HEADERS, "state"),
        find(LANG_HEADERS, "lang"),
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
    return _Columns(width=len(record), email=email, name=name, state=state, lang=lang)


def _row(
    record: list[str],
    line: int,
    columns: _Columns,
    problems: list[RowProblem],
    languages: Sequence[str],
) -> Row | None:
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
        lang = _lang(cell(columns.lang), languages)
    except ValueError as error:
        problems.append(RowProblem(line, str(error)))
        return None
    return Row(line=line, email=email, name=name, state=state, lang=lang)


def _state(text: str) -> SubscriberState | None:
    if not text.strip():
        return None
    try:
        return SubscriberState(text.strip().lower())
    except ValueError:
        allowed = ", ".join(s.value for s in SubscriberState)
        raise ValueError(f'unknown state "{text.strip()}" (use one of {allowed})') from None


def _lang(text: str, languages: Sequence[str]) -> str | None:
    code = text.strip().lower()
    if not code:
        return None
    if code not in languages:
        offered = ", ".join(languages)
        raise ValueError(
            f'unknown language "{text.strip()}" (the campaign offers {offered}; '
            "leave the cell empty for the default language)"
        )
    return code
