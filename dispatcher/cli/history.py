"""`dispatcher history`: the desk's changes to the campaign file, newest first (docs/desk.md).

Same conventions as the other commands (`cli_common`): `handler(args) -> int`, stored text
printed through `printable`, the ledger migrated on open. Times are shown in the campaign's
time zone, and in UTC when the campaign file cannot be read — history is what one looks at
after a bad edit — always with the offset, so a line never leaves the zone to guesswork.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
from typing import Any
from zoneinfo import ZoneInfo

from dispatcher.campaign.loading import CampaignError, load_campaign
from dispatcher.cli.common import EXIT_OK, ledger_of, printable, settings_of
from dispatcher.ledger import changes
from dispatcher.ledger import engine as ledger_engine
from dispatcher.settings import Settings

DEFAULT_LIMIT = 100


def register(commands: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """Add `history`; it sets `handler(args)`."""
    parser = commands.add_parser(
        "history", help="the desk's changes to the campaign file, newest first"
    )
    parser.add_argument("--item", metavar="ID", help="only the changes of this item")
    parser.add_argument(
        "--limit",
        type=_positive,
        default=DEFAULT_LIMIT,
        metavar="N",
        help=f"at most N changes (default {DEFAULT_LIMIT})",
    )
    parser.add_argument("--diff", action="store_true", help="each change's diff of the file")
    parser.add_argument("--json", action="store_true", help="machine-readable list")
    parser.set_defaults(handler=cmd_history)


def _positive(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        value = 0
    if value < 1:
        raise argparse.ArgumentTypeError(f"{text!r} is not a whole number of 1 or more")
    return value


def _zone(settings: Settings) -> dt.tzinfo:
    try:
        return ZoneInfo(load_campaign(settings.campaign_file).timezone)
    except CampaignError:
        return dt.UTC


def _as_json(row: changes.ChangeRow) -> dict[str, Any]:
    return {
        "id": row.id,
        "at": row.at.isoformat(),
        "editor": row.editor_email,
        "action": row.action,
        "item": row.item_id,
        "summary": row.summary,
        "version_before": row.version_before,
        "version_after": row.version_after,
        "diff": row.diff,
    }


def format_change(row: changes.ChangeRow, zone: dt.tzinfo) -> str:
    """One line: local time with offset, editor (or "—"), action, item, summary."""
    at = row.at.astimezone(zone).isoformat(sep=" ", timespec="minutes")
    summary = " ".join(row.summary.split())  # a line break in it would split the line
    return "  ".join([at, row.editor_email or "—", row.action, row.item_id, summary])


def cmd_history(args: argparse.Namespace) -> int:
    settings = settings_of(args)
    with ledger_of(settings) as engine, ledger_engine.reader(engine).connect() as conn:
        rows = changes.recent_changes(conn, item_id=args.item, limit=args.limit)
    if args.json:
        print(json.dumps([_as_json(row) for row in rows], ensure_ascii=False, indent=2))
        return EXIT_OK
    if not rows:
        print(
            "No desk changes recorded yet."
            if args.item is None
            else printable(f"No desk changes of item {args.item} recorded yet.")
        )
        return EXIT_OK
    zone = _zone(settings)
    for row in rows:
        # Summaries and diffs hold text editors typed at the desk: no terminal escapes.
        print(printable(format_change(row, zone)))
        if args.diff:
            print(printable(row.diff.rstrip("\n")))
            print()
    return EXIT_OK
