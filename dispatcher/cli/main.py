"""The `dispatcher` command line: thin commands over the pure core.

Each command reads the clock once, loads settings and the campaign, calls the
pure modules and prints. Exit codes (docs/commands.md): 0 success, 1 a user
error whose message says what to fix, 2 usage, 3 a delivery failed.
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import sys
from collections.abc import Sequence
from pathlib import Path

import sqlalchemy as sa

from dispatcher import i18n
from dispatcher.campaign.loading import CampaignError, load_campaign
from dispatcher.campaign.model import Campaign, Channel, Fallback
from dispatcher.cli import controls as cli_controls
from dispatcher.cli import dkim as cli_dkim
from dispatcher.cli import editors as cli_editors
from dispatcher.cli import history as cli_history
from dispatcher.cli import ops as cli_ops
from dispatcher.cli import subscribers as cli_subscribers
from dispatcher.cli import tokens as cli_tokens
from dispatcher.cli.common import (
    EXIT_OK,
    EXIT_USER_ERROR,
    UserError,
    campaign_of,
    format_plan,
    instant,
    plan_at,
    printable,
    settings_of,
)
from dispatcher.cli.preview import write_preview
from dispatcher.content import rendering
from dispatcher.delivery import targets, wiring
from dispatcher.delivery.context import open_ledger
from dispatcher.ledger.engine import LedgerUnavailableError
from dispatcher.mail import dkim
from dispatcher.settings import Settings

#: What a shell reports for a program ended by SIGPIPE, as `head` expects of a writer.
EXIT_BROKEN_PIPE = 128 + signal.SIGPIPE


def cmd_validate(args: argparse.Namespace) -> int:
    """Campaign file, templates of the used channels, and settings: every problem at once."""
    settings = settings_of(args)
    problems: list[str] = []
    campaign: Campaign | None = None
    try:
        campaign = load_campaign(settings.campaign_file)
    except CampaignError as error:
        problems.extend(str(p) for p in error.problems)
    if campaign is not None:
        env = rendering.create_environment(settings.templates_dir)
        problems.extend(str(p) for p in rendering.check_templates(env, campaign.channels))
        problems.extend(
            f"settings: {p}" for p in wiring.production_problems(settings, campaign.channels)
        )
        try:
            dkim.load_signer(settings)
        except dkim.DkimError as error:
            problems.append(f"settings: {error}")
    warning = dkim.alignment_warning(settings.mail_from, settings.dkim_domain)
    if warning:
        print(f"warning: {warning}", file=sys.stderr)
    for line in [] if campaign is None else _stranded_posts(settings, campaign):
        print(printable(f"warning: {line}"), file=sys.stderr)
    for line in problems:
        print(line)
    if problems:
        print(f"{len(problems)} problem(s) found", file=sys.stderr)
        return EXIT_USER_ERROR
    assert campaign is not None
    ready = sum(1 for item in campaign.items if item.status == "ready")
    print(
        f"{settings.campaign_file}: OK — campaign {campaign.id}, {len(campaign.items)} items "
        f"({ready} ready), channels {', '.join(campaign.channels)}"
    )
    for line in untranslated_lines(campaign):
        print(line)
    return EXIT_OK


def untranslated_lines(campaign: Campaign) -> list[str]:
    """Per language of the campaign, the items without a version in it and what their
    readers get instead: not a problem (the fallback decides), but editors want the list."""
    lines = []
    for lang in campaign.locales[1:]:
        missing = [item.id for item in campaign.items if lang in campaign.missing_languages(item)]
        if not missing:
            continue
        name, default = i18n.english_name(lang), i18n.english_name(campaign.language)
        instead = (
            f"its readers get the {default} one (fallback: default)"
            if campaign.fallback is Fallback.DEFAULT
            else "its readers get nothing on their days (fallback: skip)"
        )
        lines.append(f"items without a version in {name} ({instead}): {', '.join(missing)}")
    return lines


def _stranded_posts(settings: Settings, campaign: Campaign) -> list[str]:
    """Posts of the ledger whose target is configured no more (docs/operations.md); nothing
    when there is no ledger yet or it cannot be opened (`status` says why)."""
    try:
        url = sa.engine.make_url(settings.database_url)
    except sa.exc.ArgumentError:
        return []
    if url.get_backend_name() == "sqlite" and not (url.database and Path(url.database).exists()):
        return []
    try:
        engine = open_ledger(settings)
    except LedgerUnavailableError:
        return []
    try:
        with engine.connect() as connection:
            return targets.stranded_problems(connection, campaign.id, settings)
    finally:
        engine.dispose()


def cmd_plan(args: argparse.Namespace) -> int:
    settings = settings_of(args)
    campaign = campaign_of(settings)
    plan = plan_at(settings, campaign, instant(args.at))
    if args.json:
        print(json.dumps([row.to_json() for row in plan.rows], indent=2, ensure_ascii=False))
    else:
        print(format_plan(campaign, plan))
    return EXIT_OK


def cmd_preview(args: argparse.Namespace) -> int:
    settings = settings_of(args)
    campaign = campaign_of(settings)
    try:
        item = campaign.item(args.item)
    except KeyError as error:
        raise UserError(str(error.args[0])) from None
    channels = campaign.channels if args.channel is None else (Channel(args.channel),)
    out = Path(args.out) if args.out else Path("var/preview") / item.id
    plan = plan_at(settings, campaign, instant(None))
    for line in write_preview(settings, campaign, plan, item, channels=channels, out=out):
        print(line)
    return EXIT_OK


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="dispatcher", description=__doc__.splitlines()[0])
    parser.add_argument("--campaign", help="campaign file (default: $DISPATCHER_CAMPAIGN_FILE)")
    parser.add_argument("--templates", help="templates dir (default: $DISPATCHER_TEMPLATES_DIR)")
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    commands.add_parser(
        "validate", help="check campaign file, templates and settings"
    ).set_defaults(handler=cmd_validate)
    plan = commands.add_parser("plan", help="show what goes out when")
    plan.add_argument("--json", action="store_true", help="machine-readable list")
    plan.add_argument("--at", help="evaluate states at this instant (ISO-8601; default now)")
    plan.set_defaults(handler=cmd_plan)
    preview = commands.add_parser("preview", help="render an item for each channel")
    preview.add_argument("item", metavar="ITEM", help="item id from the campaign file")
    preview.add_argument("--channel", choices=[c.value for c in Channel])
    preview.add_argument("--out", help="output directory (default: var/preview/ITEM)")
    preview.set_defaults(handler=cmd_preview)
    cli_ops.register(commands)
    cli_subscribers.register(commands)
    cli_dkim.register(commands)
    cli_editors.register(commands)
    cli_history.register(commands)
    cli_controls.register(commands)
    cli_tokens.register(commands)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    try:
        args = build_parser().parse_args(argv)
        try:
            result: int = args.handler(args)
        except (
            UserError,
            LedgerUnavailableError,
            rendering.TemplatesError,
            rendering.TemplateProblem,  # one found only when rendering a real item
        ) as error:
            print(f"error: {printable(str(error))}", file=sys.stderr)
            return EXIT_USER_ERROR
        # Piped output sits in the buffer until here: a closed pipe shows up now, not at exit.
        sys.stdout.flush()
        return result
    except BrokenPipeError:
        # `dispatcher plan | head`: the reader has what it wanted. Python flushes stdout once
        # more on exit; writing that flush to devnull keeps it from raising a second time.
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
        return EXIT_BROKEN_PIPE
