"""`dispatcher tokens create|list|revoke`: bearer tokens of the HTTP API (docs/api.md).

Same conventions as the other commands (`cli.common`): each action sets `handler(args) ->
int`, a problem the operator can fix is a UserError (exit 1), the ledger is migrated on open.
A new token is printed once, alone on stdout (so `TOKEN=$(dispatcher tokens create …)` works);
the ledger keeps only its hash, so a lost token is revoked and replaced, never shown again.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import sys

from dispatcher.cli.common import EXIT_OK, UserError, ledger_of, printable, settings_of
from dispatcher.ledger import tokens as ledger


def register(commands: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """Add `tokens` and its actions; each action sets `handler(args)`."""
    parser = commands.add_parser(
        "tokens", help="bearer tokens of the HTTP API: create, list, revoke"
    )
    actions = parser.add_subparsers(dest="tokens_action", required=True, metavar="ACTION")

    create = actions.add_parser("create", help="a new token, printed once (only its hash is kept)")
    create.add_argument("--name", required=True, help="who holds it, e.g. cms or helpdesk")
    create.add_argument(
        "--scope",
        action="append",
        required=True,
        choices=ledger.SCOPES,
        dest="scopes",
        help="what it may do; repeat for several",
    )
    create.set_defaults(handler=cmd_create)

    listing = actions.add_parser("list", help="every token, revoked ones too")
    listing.add_argument("--json", action="store_true", help="machine-readable list")
    listing.set_defaults(handler=cmd_list)

    revoke = actions.add_parser("revoke", help="end a token at once")
    revoke.add_argument("id", type=int, metavar="ID", help="the token's id (tokens list)")
    revoke.set_defaults(handler=cmd_revoke)


def cmd_create(args: argparse.Namespace) -> int:
    now = dt.datetime.now(dt.UTC)
    with ledger_of(settings_of(args)) as engine, engine.begin() as conn:
        try:
            row, token = ledger.create(conn, args.name, args.scopes, now=now)
        except ValueError as error:
            raise UserError(str(error)) from None
    print(token)
    print(
        f"token {row.id} ({printable(row.name)}: {' '.join(row.scopes)}) created; it is shown "
        "only now, keep it in the caller's secret store",
        file=sys.stderr,
    )
    return EXIT_OK


def _when(at: dt.datetime | None) -> str | None:
    return None if at is None else at.isoformat()


def cmd_list(args: argparse.Namespace) -> int:
    with ledger_of(settings_of(args)) as engine, engine.connect() as conn:
        rows = ledger.all_tokens(conn)
    if args.json:
        listed = [
            {
                "id": row.id,
                "name": row.name,
                "scopes": list(row.scopes),
                "created_at": _when(row.created_at),
                "last_used_at": _when(row.last_used_at),
                "revoked_at": _when(row.revoked_at),
            }
            for row in rows
        ]
        print(json.dumps(listed, ensure_ascii=False, indent=2))
        return EXIT_OK
    if not rows:
        print("no API tokens yet: dispatcher tokens create --name NAME --scope SCOPE")
        return EXIT_OK
    for row in rows:
        used = f"used {row.last_used_at:%Y-%m-%d %H:%M} UTC" if row.last_used_at else "never used"
        parts = [f"{row.id:>3}", printable(row.name), " ".join(row.scopes)]
        parts += [f"since {row.created_at:%Y-%m-%d}", used]
        if row.revoked_at is not None:
            parts.append(f"revoked {row.revoked_at:%Y-%m-%d %H:%M} UTC")
        print("  ".join(parts))
    return EXIT_OK


def cmd_revoke(args: argparse.Namespace) -> int:
    now = dt.datetime.now(dt.UTC)
    with ledger_of(settings_of(args)) as engine, engine.begin() as conn:
        revoked = ledger.revoke(conn, args.id, now=now)
    if revoked is None:
        raise UserError(f"no API token with id {args.id} (dispatcher tokens list)")
    row, changed = revoked
    name = printable(row.name)
    if not changed and row.revoked_at is not None:
        print(f"token {row.id} ({name}) was already revoked {row.revoked_at:%Y-%m-%d %H:%M} UTC")
    else:
        print(f"revoked token {row.id} ({name}): it is refused from now on")
    return EXIT_OK
