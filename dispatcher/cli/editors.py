"""`dispatcher editors add|list|remove|ical-url`: who may sign in at the desk (docs/desk.md),
and an editor's calendar feed address.

Same conventions as the other commands (`cli_common`): each action sets `handler(args) -> int`,
a problem the operator can fix is a UserError (exit 1), the ledger is migrated on open. Every
change is also an audit row (no editor: the operator at the shell did it).
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import sys

from dispatcher.cli.common import EXIT_OK, UserError, ledger_of, printable, settings_of
from dispatcher.ledger import editors as ledger
from dispatcher.mail.addresses import InvalidAddress, InvalidName, clean_name, normalise
from dispatcher.web.addresses import feed_url


def register(commands: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """Add `editors` and its actions; each action sets `handler(args)`."""
    parser = commands.add_parser("editors", help="who may sign in at the desk: add, list, remove")
    actions = parser.add_subparsers(dest="editors_action", required=True, metavar="ACTION")

    add = actions.add_parser("add", help="let an address sign in at the desk")
    add.add_argument("email", metavar="EMAIL")
    add.add_argument("--name", help="the name the desk shows (and greets in the sign-in mail)")
    add.set_defaults(handler=cmd_add)

    listing = actions.add_parser("list", help="the editors, by address")
    listing.add_argument("--removed", action="store_true", help="also the removed ones")
    listing.add_argument("--json", action="store_true", help="machine-readable list")
    listing.set_defaults(handler=cmd_list)

    remove = actions.add_parser(
        "remove", help="stop an editor: sessions, sign-in links and calendar feed end at once"
    )
    remove.add_argument("email", metavar="EMAIL")
    remove.set_defaults(handler=cmd_remove)

    feed = actions.add_parser(
        "ical-url",
        help="a new personal calendar feed address for an editor (the old one stops working)",
    )
    feed.add_argument("email", metavar="EMAIL")
    feed.add_argument("--revoke", action="store_true", help="end the editor's calendar feed")
    feed.set_defaults(handler=cmd_ical_url)


def _address(text: str) -> str:
    try:
        return normalise(text)
    except InvalidAddress as error:
        raise UserError(f"{printable(text)}: {error}") from None


def cmd_add(args: argparse.Namespace) -> int:
    email = _address(args.email)
    try:
        name = clean_name(args.name)
    except InvalidName as error:
        raise UserError(str(error)) from None
    now = dt.datetime.now(dt.UTC)
    with ledger_of(settings_of(args)) as engine, engine.begin() as conn:
        before = ledger.get(conn, email)
        row, changed = ledger.add(conn, email, name, now=now)
        if changed:
            ledger.record(conn, None, "editor_add", f"{email} (cli)", now=now)
    shown = printable(row.email) + (f" ({printable(row.name)})" if row.name else "")
    if before is None:
        print(f"added editor {shown}")
    elif before.removed_at is not None:
        print(f"added editor {shown} again (removed {before.removed_at:%Y-%m-%d %H:%M} UTC)")
    elif changed:
        print(f"editor {shown}: name changed")
    else:
        print(f"{shown} is already an editor")
    return EXIT_OK


def cmd_list(args: argparse.Namespace) -> int:
    with ledger_of(settings_of(args)) as engine, engine.connect() as conn:
        rows = ledger.all_editors(conn, removed=args.removed)
        feeds = {row.id: ledger.has_feed_token(conn, row.id) for row in rows}
    if args.json:
        print(
            json.dumps(
                [
                    {
                        "email": row.email,
                        "name": row.name,
                        "created_at": row.created_at.isoformat(),
                        "removed_at": row.removed_at.isoformat() if row.removed_at else None,
                        "calendar_feed": feeds[row.id],
                    }
                    for row in rows
                ],
                ensure_ascii=False,
                indent=2,
            )
        )
        return EXIT_OK
    if not rows:
        print("no editors yet: dispatcher editors add EMAIL [--name NAME]")
        return EXIT_OK
    for row in rows:
        parts = [printable(row.email)]
        if row.name:
            parts.append(printable(row.name))
        parts.append(f"since {row.added_at:%Y-%m-%d}")
        if feeds[row.id]:
            parts.append("calendar feed")
        if row.removed_at is not None:
            parts.append(f"removed {row.removed_at:%Y-%m-%d %H:%M} UTC")
        print("  ".join(parts))
    return EXIT_OK


def cmd_remove(args: argparse.Namespace) -> int:
    email = _address(args.email)
    now = dt.datetime.now(dt.UTC)
    with ledger_of(settings_of(args)) as engine, engine.begin() as conn:
        row = ledger.remove(conn, email, now=now)
        if row is not None:
            ledger.record(conn, None, "editor_remove", f"{email} (cli)", now=now)
    if row is None:
        raise UserError(f"{printable(email)} is no editor (dispatcher editors list)")
    print(f"removed editor {printable(email)}: signed out everywhere, links and feed revoked")
    return EXIT_OK


def cmd_ical_url(args: argparse.Namespace) -> int:
    """Print a new feed address (docs/desk.md, "Kalender-Abo (iCal)"), or end the feed.

    The address is the credential and the ledger keeps only its hash: it is printed once,
    here, for the operator to pass on; the audit log names the editor, never the token."""
    email = _address(args.email)
    settings = settings_of(args)
    now = dt.datetime.now(dt.UTC)
    with ledger_of(settings) as engine, engine.begin() as conn:
        editor = ledger.active(conn, email)
        if editor is None:
            raise UserError(f"{printable(email)} is no editor (dispatcher editors list)")
        if args.revoke:
            ended = ledger.revoke_feed_tokens(conn, editor.id, now=now)
            ledger.record(conn, None, "ical_revoke", f"{email} (cli)", now=now)
            token = None
        else:
            replaced = ledger.has_feed_token(conn, editor.id)
            token = ledger.create_feed_token(conn, editor.id, now=now)
            ledger.record(conn, None, "ical_rotate", f"{email} (cli)", now=now)
    if token is None:
        print(
            f"calendar feed of {printable(email)} ended"
            if ended
            else f"{printable(email)} had no calendar feed"
        )
        return EXIT_OK
    print(feed_url(settings.public_url, token))
    if replaced:
        print("the editor's previous feed address no longer works", file=sys.stderr)
    return EXIT_OK
