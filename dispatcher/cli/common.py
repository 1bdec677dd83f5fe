"""What every command shares: exit codes, the user-error type, settings and campaign loading."""

from __future__ import annotations

import argparse
import datetime as dt
import re
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path

import sqlalchemy as sa
from sqlalchemy.engine import make_url

from dispatcher.campaign import planning
from dispatcher.campaign.loading import CampaignError, load_campaign
from dispatcher.campaign.model import Campaign, EditionKind
from dispatcher.delivery import schedule
from dispatcher.ledger import engine as ledger_engine
from dispatcher.settings import Settings, SettingsError, load_settings

EXIT_OK, EXIT_USER_ERROR, EXIT_USAGE, EXIT_DELIVERY_FAILED = 0, 1, 2, 3
GERMAN_WEEKDAYS = ("Mo", "Di", "Mi", "Do", "Fr", "Sa", "So")
#: Control characters but line feed and tab, and the bidi overrides that reorder a line.
_UNPRINTABLE = re.compile("[\x00-\x08\x0b-\x1f\x7f-\x9f\u202a-\u202e\u2066-\u2069]")


def printable(text: str) -> str:
    """`text` safe to print on a terminal: an escape sequence shows as `\\x1b[2J`.

    Names, addresses and errors come from web forms, CSV files and remote servers;
    printed raw, an escape sequence could clear the screen or retitle the terminal.
    Every command that prints stored or received text passes it through here.
    """
    return _UNPRINTABLE.sub(lambda m: m[0].encode("unicode_escape").decode("ascii"), text)


class UserError(Exception):
    """A problem the user can fix; the message says how. Exit code 1."""


def settings_of(args: argparse.Namespace, **overrides: object) -> Settings:
    """Settings from the environment, with the global `--campaign`/`--templates` options."""
    if getattr(args, "campaign", None):
        overrides["campaign_file"] = Path(args.campaign)
    if getattr(args, "templates", None):
        overrides["templates_dir"] = Path(args.templates)
    try:
        return load_settings(**overrides)
    except SettingsError as error:
        raise UserError(str(error)) from None


def campaign_of(settings: Settings) -> Campaign:
    try:
        return load_campaign(settings.campaign_file)
    except CampaignError as error:
        raise UserError(str(error)) from None


def instant(text: str | None) -> dt.datetime:
    """`--at` value, or the clock; a naive value is read as UTC."""
    if text is None:
        return dt.datetime.now(dt.UTC)
    try:
        at = dt.datetime.fromisoformat(text)
    except ValueError:
        raise UserError(f'--at: "{text}" is not ISO-8601, e.g. 2019-04-02T08:00+02:00') from None
    return at if at.tzinfo else at.replace(tzinfo=dt.UTC)


def format_plan(campaign: Campaign, plan: planning.Plan) -> str:
    """The plan as a table an editor reads at a glance."""
    lines = [
        f"{campaign.name} ({campaign.id}) — {campaign.timezone}",
        f"{'date':<10}  {'day':<3}  {'channel':<9} {'local':<5}  {'utc':<17}  {'item':<26} "
        f"{'state':<10} languages",
    ]
    for row in plan.rows:
        if row.state is planning.PlanState.UNSCHEDULED:
            continue
        assert row.day and row.send_at_local and row.send_at_utc and row.channel
        lines.append(
            f"{row.day.isoformat():<10}  {GERMAN_WEEKDAYS[row.day.weekday()]:<3}  "
            f"{row.channel:<9} {row.send_at_local:%H:%M}  "
            f"{row.send_at_utc:%Y-%m-%d %H:%MZ}  {row.item_id or '—':<26} "
            f"{row.state:<10} {languages_cell(campaign, row.languages)}".rstrip()
        )
    if len(campaign.locales) > 1:
        lines.append(
            f"languages: {', '.join(campaign.locales)}, fallback: {campaign.fallback} "
            f"(xx→{campaign.language}: readers of xx get the {campaign.language} version; "
            "xx: none: they get nothing that day)"
        )
    empty = ", ".join(d.isoformat() for d in plan.empty_days) or "none"
    unscheduled = ", ".join(plan.unscheduled) or "none"
    lines.append(f"empty days (nothing to send): {empty}")
    lines.append(f"unscheduled items (no send day left): {unscheduled}")
    return "\n".join(lines)


def languages_cell(campaign: Campaign, languages: Sequence[tuple[str, EditionKind]]) -> str:
    """ "de en" when the item is in every language; "en→de" where readers get the default
    language's version, "en: none" where they get nothing (fallback skip)."""
    if len(campaign.locales) < 2:
        return ""
    cells = []
    for lang, kind in languages:
        if kind is EditionKind.OWN:
            cells.append(lang)
        elif kind is EditionKind.DEFAULT:
            cells.append(f"{lang}→{campaign.language}")
        else:
            cells.append(f"{lang}: none")
    return " ".join(cells)


def plan_at(settings: Settings, campaign: Campaign, now: dt.datetime) -> planning.Plan:
    """The plan as `tick` and `status` see it: the ledger's past, the file's future.

    A fresh checkout has no ledger yet (nothing was sent): then the file alone. A ledger
    that cannot be opened is an error, since the states shown would be guesses.
    """
    url = make_url(settings.database_url)
    database = url.database or ""
    if url.get_backend_name() == "sqlite" and (
        database == ":memory:" or not Path(database).exists()
    ):
        return planning.plan(campaign, now=now)
    engine = ledger_engine.open_ledger(settings.database_url, timeout=settings.db_timeout_seconds)
    try:
        with ledger_engine.reader(engine).connect() as connection:
            return schedule.ledger_plan(connection, campaign, now)
    finally:
        engine.dispose()


@contextmanager
def ledger_of(settings: Settings) -> Iterator[sa.Engine]:
    """The migrated ledger for a command; a database that cannot be reached is a user error."""
    try:
        engine = ledger_engine.open_ledger(settings.database_url)
    except ledger_engine.LedgerUnavailableError as error:
        raise UserError(str(error)) from None
    try:
        yield engine
    finally:
        engine.dispose()
