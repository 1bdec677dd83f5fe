"""The `dispatcher` command line: thin commands over the pure core.

Each command reads the clock once, loads settings and the campaign, calls the
pure modules and prints. Exit codes follow DESIGN §3: 0 success, 1 a user
error whose message says what to fix, 2 usage, 3 a delivery failed.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import sys
from collections.abc import Sequence
from pathlib import Path

from dispatcher import planning, rendering
from dispatcher.campaign import Campaign, Channel
from dispatcher.loading import CampaignError, load_campaign
from dispatcher.preview import write_preview
from dispatcher.settings import Settings, SettingsError, load_settings

EXIT_OK, EXIT_USER_ERROR, EXIT_USAGE, EXIT_DELIVERY_FAILED = 0, 1, 2, 3
GERMAN_WEEKDAYS = ("Mo", "Di", "Mi", "Do", "Fr", "Sa", "So")


class UserError(Exception):
    """A problem the user can fix; the message says how. Exit code 1."""


def _settings(args: argparse.Namespace) -> Settings:
    overrides: dict[str, object] = {}
    if args.campaign:
        overrides["campaign_file"] = Path(args.campaign)
    if args.templates:
        overrides["templates_dir"] = Path(args.templates)
    try:
        return load_settings(**overrides)
    except SettingsError as error:
        raise UserError(str(error)) from None


def _campaign(settings: Settings) -> Campaign:
    try:
        return load_campaign(settings.campaign_file)
    except CampaignError as error:
        raise UserError(str(error)) from None


def _instant(text: str | None) -> dt.datetime:
    """`--at` value, or the clock; a naive value is read as UTC."""
    if text is None:
        return dt.datetime.now(dt.UTC)
    try:
        at = dt.datetime.fromisoformat(text)
    except ValueError:
        raise UserError(f'--at: "{text}" is not ISO-8601, e.g. 2019-04-02T08:00+02:00') from None
    return at if at.tzinfo else at.replace(tzinfo=dt.UTC)


def cmd_validate(args: argparse.Namespace) -> int:
    """Campaign file, templates of the used channels, and settings: every problem at once."""
    settings = _settings(args)
    problems: list[str] = []
    campaign: Campaign | None = None
    try:
        campaign = load_campaign(settings.campaign_file)
    except CampaignError as error:
        problems.extend(str(p) for p in error.problems)
    if campaign is not None:
        env = rendering.create_environment(settings.templates_dir)
        problems.extend(str(p) for p in rendering.check_templates(env, campaign.channels))
        problems.extend(f"settings: {p}" for p in settings.production_problems(campaign.channels))
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
    return EXIT_OK


def format_plan(campaign: Campaign, plan: planning.Plan) -> str:
    """The plan as a table an editor reads at a glance."""
    lines = [
        f"{campaign.name} ({campaign.id}) — {campaign.timezone}",
        f"{'date':<10}  {'day':<3}  {'channel':<9} {'local':<5}  {'utc':<17}  {'item':<26} state",
    ]
    for row in plan.rows:
        if row.state is planning.PlanState.UNSCHEDULED:
            continue
        assert row.day and row.send_at_local and row.send_at_utc and row.channel
        lines.append(
            f"{row.day.isoformat():<10}  {GERMAN_WEEKDAYS[row.day.weekday()]:<3}  "
            f"{row.channel:<9} {row.send_at_local:%H:%M}  "
            f"{row.send_at_utc:%Y-%m-%d %H:%MZ}  {row.item_id or '—':<26} {row.state}"
        )
    empty = ", ".join(d.isoformat() for d in plan.empty_days) or "none"
    unscheduled = ", ".join(plan.unscheduled) or "none"
    lines.append(f"empty days (nothing to send): {empty}")
    lines.append(f"unscheduled items (no send day left): {unscheduled}")
    return "\n".join(lines)


def cmd_plan(args: argparse.Namespace) -> int:
    settings = _settings(args)
    campaign = _campaign(settings)
    plan = planning.plan(campaign, now=_instant(args.at))
    if args.json:
        print(json.dumps([row.to_json() for row in plan.rows], indent=2, ensure_ascii=False))
    else:
        print(format_plan(campaign, plan))
    return EXIT_OK


def cmd_preview(args: argparse.Namespace) -> int:
    settings = _settings(args)
    campaign = _campaign(settings)
    try:
        item = campaign.item(args.item)
    except KeyError as error:
        raise UserError(str(error.args[0])) from None
    channels = campaign.channels if args.channel is None else (Channel(args.channel),)
    out = Path(args.out) if args.out else Path("var/preview") / item.id
    plan = planning.plan(campaign, now=_instant(None))
    for line in write_preview(settings, campaign, plan, item, channels=channels, out=out):
        print(line)
    return EXIT_OK


def cmd_demo(args: argparse.Namespace) -> int:
    """Validate, plan and preview the whole bundled week on the embedded defaults."""
    if cmd_validate(args) != EXIT_OK:
        return EXIT_USER_ERROR
    settings = _settings(args)
    campaign = _campaign(settings)
    before_start = dt.datetime.combine(campaign.start, dt.time(0), tzinfo=campaign.zone)
    plan = planning.plan(campaign, now=before_start)
    print()
    print(format_plan(campaign, plan))
    out = Path(args.out)
    for day, item_id in ((r.day, r.item_id) for r in plan.rows if r.channel is Channel.EMAIL):
        if item_id is None:
            continue
        print(f"\n{day} — {item_id}")
        item = campaign.item(item_id)
        for line in write_preview(
            settings, campaign, plan, item, channels=campaign.channels, out=out / f"{day}-{item_id}"
        ):
            print(f"  {line}")
    return EXIT_OK


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="dispatcher", description=__doc__.splitlines()[0])
    parser.add_argument("--campaign", help="campaign file (default: $DISPATCHER_CAMPAIGN_FILE)")
    parser.add_argument("--templates", help="templates dir (default: $DISPATCHER_TEMPLATES_DIR)")
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    commands.add_parser("validate", help="check campaign file, templates and settings")
    plan = commands.add_parser("plan", help="show what goes out when")
    plan.add_argument("--json", action="store_true", help="machine-readable list")
    plan.add_argument("--at", help="evaluate states at this instant (ISO-8601; default now)")
    preview = commands.add_parser("preview", help="render an item for each channel")
    preview.add_argument("item", metavar="ITEM", help="item id from the campaign file")
    preview.add_argument("--channel", choices=[c.value for c in Channel])
    preview.add_argument("--out", help="output directory (default: var/preview/ITEM)")
    demo = commands.add_parser("demo", help="validate, plan and preview the bundled week")
    demo.add_argument("--out", default="var/demo/preview", help="where previews go")
    return parser


COMMANDS = {"validate": cmd_validate, "plan": cmd_plan, "preview": cmd_preview, "demo": cmd_demo}


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        return COMMANDS[args.command](args)
    except UserError as error:
        print(f"error: {error}", file=sys.stderr)
        return EXIT_USER_ERROR
