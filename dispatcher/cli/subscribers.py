"""`dispatcher subscribers add|remove|import|export|list`: the operator's list tools.

Same conventions as the other commands (`cli_common`): each action sets
`handler(args) -> int`, a problem the operator can fix is a UserError (exit 1),
and the ledger is migrated on open. An import with rejected rows still imports
the good ones: re-running it after fixing the file is idempotent.

Stored names come from an anonymous web form: `list` and every message print them
through `printable` (no terminal escapes), and `export` writes formula-like cells
with a leading `'` (spreadsheets), which `import` removes again.

Languages (docs/commands.md): `add --lang` and an import's `lang` column must name one of
the campaign's `locales`, so only then is the campaign file read. `export` and `list`
show the stored language, empty or `-` for "the campaign's default": that is what an
import of the export restores, and it follows the default if the campaign changes it.
"""

from __future__ import annotations

import argparse
import csv
import datetime as dt
import functools
import os
import sys
from collections.abc import Callable
from pathlib import Path

from dispatcher.cli.common import (
    EXIT_OK,
    EXIT_USER_ERROR,
    UserError,
    campaign_of,
    ledger_of,
    printable,
    settings_of,
)
from dispatcher.ledger import engine as ledger_engine
from dispatcher.ledger import subscribers as ledger
from dispatcher.ledger.subscriber_csv import has_lang_column, neutralise_cell, parse_csv
from dispatcher.ledger.tables import SubscriberState
from dispatcher.mail.addresses import InvalidAddress, InvalidName

EXPORT_HEADER = (
    "email",
    "name",
    "state",
    "created_at",
    "updated_at",
    "source",
    # The consent record, so an export answers a GDPR access request (art. 15) and
    # proves consent (art. 7(1), UWG §7): when, where, from which address, to what text.
    "consent_at",
    "consent_source",
    "consent_ip",
    "consent_text",
    "confirmed_at",
    "unsubscribed_at",
    # Later columns go last, so scripts reading the older ones by position keep working.
    # The reader's language; empty: the campaign's default (`import` reads it back).
    "lang",
    # Consent record: the language they signed up in, when and by whom it changed since.
    "consent_lang",
    "lang_changed_at",
    "lang_changed_by",
)
STATES = [state.value for state in SubscriberState]

Handler = Callable[[argparse.Namespace], int]


def register(commands: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """Add `subscribers` and its actions; each action sets `handler(args)`."""
    parser = commands.add_parser("subscribers", help="add, remove, import, export, list")
    actions = parser.add_subparsers(dest="subscribers_action", required=True, metavar="ACTION")

    add = actions.add_parser("add", help="subscribe one address")
    add.add_argument("email", metavar="EMAIL")
    add.add_argument("--name", help="name for the greeting")
    add.add_argument("--pending", action="store_true", help="add as pending (not yet confirmed)")
    add.add_argument(
        "--lang",
        metavar="LANG",
        help="the reader's language, one of the campaign's locales (default: the campaign's "
        "default language); for an existing subscriber, changes it",
    )
    add.add_argument(
        "--reactivate",
        action="store_true",
        help="also re-subscribe an address that unsubscribed or bounced (needs fresh consent)",
    )
    add.set_defaults(handler=cmd_add)

    remove = actions.add_parser("remove", help="unsubscribe one address (the row is kept)")
    remove.add_argument("email", metavar="EMAIL")
    remove.add_argument(
        "--erase",
        action="store_true",
        help="also delete the person's data (GDPR art. 17): address, name and consent record; "
        "the delivery counts stay",
    )
    remove.set_defaults(handler=cmd_remove)

    load = actions.add_parser("import", help="add every address of a CSV file")
    load.add_argument(
        "file",
        metavar="FILE.csv",
        help="header row with an email column; optional name, lang (one of the campaign's "
        "locales; empty: its default) and state columns",
    )
    load.set_defaults(handler=cmd_import)

    for name, help_text, handler in (
        ("export", "all subscribers as CSV on stdout", cmd_export),
        ("list", "subscribers as a table, with counts", cmd_list),
    ):
        action = actions.add_parser(name, help=help_text)
        action.add_argument("--state", choices=STATES, help="only subscribers in this state")
        action.set_defaults(handler=handler)


def _stops_quietly_when_piped(handler: Handler) -> Handler:
    """`subscribers export | head` closes the pipe early; that is the reader's choice, not an error."""

    @functools.wraps(handler)
    def run(args: argparse.Namespace) -> int:
        try:
            return handler(args)
        except BrokenPipeError:
            # Python's recipe: point stdout at devnull so the flush at exit cannot fail again.
            os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
            return EXIT_OK

    return run


def _address_errors(handler: Handler) -> Handler:
    """An address or name the ledger refuses is the operator's to fix: exit 1, not a traceback."""

    @functools.wraps(handler)
    def run(args: argparse.Namespace) -> int:
        try:
            return handler(args)
        except (InvalidAddress, InvalidName) as error:
            raise UserError(str(error)) from None

    return run


def _offered_languages(args: argparse.Namespace) -> tuple[str, ...]:
    return campaign_of(settings_of(args)).locales


def _language(args: argparse.Namespace) -> str | None:
    """`--lang`, checked against the campaign's languages; None when not given."""
    if args.lang is None:
        return None
    lang: str = args.lang.strip().lower()
    offered = _offered_languages(args)
    if lang not in offered:
        raise UserError(
            f'--lang: the campaign offers {", ".join(offered)}, not "{printable(args.lang)}" '
            "(leave --lang out for the default language)"
        )
    return lang


@_address_errors
def cmd_add(args: argparse.Namespace) -> int:
    state = SubscriberState.PENDING if args.pending else SubscriberState.ACTIVE
    lang = _language(args)
    now = dt.datetime.now(dt.UTC)
    with ledger_of(settings_of(args)) as engine, engine.begin() as conn:
        before = ledger.get(conn, args.email)
        ledger.add(
            conn,
            args.email,
            args.name,
            state=state,
            source="cli",
            now=now,
            reactivate=args.reactivate,
            lang=lang,
        )
        after = ledger.get(conn, args.email)
    assert after is not None
    if before is None:
        print(f"added {after.email} ({after.state}{f', {after.lang}' if after.lang else ''})")
    elif before.state in ledger.INACTIVE and after.state is before.state:
        raise UserError(
            f"not re-subscribed: {after.email} is {after.state}; re-subscribing someone who left "
            "needs their fresh consent — once you have it, add again with --reactivate"
        )
    elif after.state is not before.state:
        print(f"re-subscribed {after.email} ({before.state} -> {after.state}){_set(before, after)}")
    else:
        print(f"already subscribed: {after.email} ({after.state}){_set(before, after)}")
    return EXIT_OK


def _set(before: ledger.SubscriberRow, after: ledger.SubscriberRow) -> str:
    """`; name set to "…", language set to en` for what `add` changed on an existing row."""
    changes = []
    if after.name != before.name:
        changes.append(f'name set to "{after.name}"')
    if after.lang != before.lang:
        changes.append(f"language set to {after.lang}")
    return f"; {', '.join(changes)}" if changes else ""


@_address_errors
def cmd_remove(args: argparse.Namespace) -> int:
    if args.erase:
        return _erase(args)
    with ledger_of(settings_of(args)) as engine, engine.begin() as conn:
        existing = ledger.get(conn, args.email)
        ledger.remove(conn, args.email, now=dt.datetime.now(dt.UTC))
    if existing is None:
        raise UserError(f"not subscribed: {args.email.strip()}")
    if existing.state is SubscriberState.UNSUBSCRIBED:
        print(f"already unsubscribed: {existing.email}")
    else:
        print(f"unsubscribed {existing.email} (was {existing.state})")
    return EXIT_OK


def _erase(args: argparse.Namespace) -> int:
    """Art. 17: the row stays (deliveries and counts point at it), the person's data goes."""
    with ledger_of(settings_of(args)) as engine, engine.begin() as conn:
        existing = ledger.get(conn, args.email)
        ledger.erase(conn, args.email, now=dt.datetime.now(dt.UTC))
    if existing is None:
        raise UserError(f"not in the ledger: {args.email.strip()} (nothing to erase)")
    print(
        f"erased {existing.email}: now {ledger.erased_address(existing.id)}, unsubscribed, "
        "name and consent record deleted; its delivery records are kept without the address"
    )
    return EXIT_OK


@_address_errors
def cmd_import(args: argparse.Namespace) -> int:
    """Good rows are imported even when others are rejected; the exit code says there were some."""
    path = Path(args.file)
    try:
        data = path.read_bytes()
    except OSError as error:
        raise UserError(f"cannot read {args.file}: {error.strerror or error}") from None
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError as error:
        line = data.count(b"\n", 0, error.start) + 1
        raise UserError(
            f"{args.file}:{line}: not UTF-8 text; in Excel save as “CSV UTF-8 (durch Trennzeichen "
            "getrennt)”, or convert with iconv -f WINDOWS-1252 -t UTF-8"
        ) from None
    languages = _offered_languages(args) if has_lang_column(text) else ()
    rows, problems = parse_csv(text, languages=languages)
    for problem in problems:
        print(printable(f"{args.file}:{problem.line}: {problem.message}"))
    with ledger_of(settings_of(args)) as engine, engine.begin() as conn:
        report = ledger.import_rows(conn, rows, source="import", now=dt.datetime.now(dt.UTC))
    print(format_import_summary(report, rejected=len(problems)))
    return EXIT_USER_ERROR if problems else EXIT_OK


def format_import_summary(report: ledger.ImportReport, *, rejected: int) -> str:
    merged = report.merged_duplicates
    summary = (
        f"imported {report.imported}: {report.created} new, {report.updated} updated, "
        f"{report.unchanged} unchanged, {merged} duplicate{'' if merged == 1 else 's'} merged, "
        f"{rejected} row{'' if rejected == 1 else 's'} rejected"
    )
    if rejected and report.imported:
        summary += " (the other rows were imported; fix the rejected ones and import again)"
    return summary


def _timestamp(value: dt.datetime | None) -> str:
    if value is None:
        return ""
    return value.astimezone(dt.UTC).isoformat(timespec="seconds").replace("+00:00", "Z")


def _state(args: argparse.Namespace) -> SubscriberState | None:
    return None if args.state is None else SubscriberState(args.state)


@_stops_quietly_when_piped
def cmd_export(args: argparse.Namespace) -> int:
    """Rows are written as they are read: the export of a large list needs no memory."""
    writer = csv.writer(sys.stdout, lineterminator="\n")
    with ledger_of(settings_of(args)) as engine, ledger_engine.reader(engine).connect() as conn:
        writer.writerow(EXPORT_HEADER)
        for row in ledger.list_(conn, state=_state(args)):
            cells = [
                row.email,
                row.name or "",
                row.state.value,
                _timestamp(row.created_at),
                _timestamp(row.updated_at),
                row.source or "",
                _timestamp(row.consent_at),
                row.consent_source or "",
                row.consent_ip or "",
                row.consent_text or "",
                _timestamp(row.confirmed_at),
                _timestamp(row.unsubscribed_at),
                row.lang or "",
                row.consent_lang or "",
                _timestamp(row.lang_changed_at),
                row.lang_changed_by or "",
            ]
            writer.writerow([neutralise_cell(cell) for cell in cells])
    return EXIT_OK


@_stops_quietly_when_piped
def cmd_list(args: argparse.Namespace) -> int:
    shown = 0
    with ledger_of(settings_of(args)) as engine, ledger_engine.reader(engine).connect() as conn:
        print(
            f"{'id':>6}  {'email':<40} {'name':<28} {'state':<12} {'lang':<4}  "
            f"{'since (UTC)':<16}  source"
        )
        for row in ledger.list_(conn, state=_state(args)):
            shown += 1
            print(
                f"{row.id:>6}  {_fit(printable(row.email), 40):<40} "
                f"{_fit(printable(row.name or ''), 28):<28} {row.state.value:<12} "
                f"{row.lang or '-':<4}  "
                f"{row.created_at:%Y-%m-%d %H:%M}  {printable(row.source or '')}"
            )
        counts = ledger.count_by_state(conn)
    per_state = ", ".join(f"{count} {state}" for state, count in counts.items())
    print(f"{shown} shown; in the ledger: {sum(counts.values())} ({per_state})")
    return EXIT_OK


def _fit(text: str, width: int) -> str:
    return text if len(text) <= width else text[: width - 1] + "…"
