"""A change of the queue from the desk: checked against the ledger, written into the file,
recorded in the history.

The file stays the source of truth (`dispatcher.campaign.editing` rewrites only the lines
that change); this module adds what the file cannot know (docs/desk.md, "Die Queue ändern"):

* **The past is the ledger's.** Once a dispatch of an item has started, its text, day and
  place in the queue are fixed: only hold (stop the channels that have not begun) and release
  remain. A day with a started dispatch takes no other item.
* **The near future asks first.** A change that alters what goes out on a send less than
  `DISPATCHER_DESK_FREEZE_MINUTES` ahead (or one that is due now) needs `confirmed=True`.
* **Every change is history.** The ledger keeps who, when, what, the unified diff and the
  file as it was before, so one click can give an item back (`RestoreItem`).

The checks read the plan the way every other command does (`schedule.ledger_plan`), for the
campaign in force and for the file as it would be after the change.

What the editor reads (refusals, the sends to confirm, notes) is in the `lang` they are given,
the editor's; the history's summary is a record, written in the campaign's default language.
"""

from __future__ import annotations

import datetime as dt
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path

import sqlalchemy as sa

from dispatcher import i18n
from dispatcher.campaign import editing, planning
from dispatcher.campaign.editing import N_
from dispatcher.campaign.loading import load_campaign_text
from dispatcher.campaign.model import Campaign, Channel, Item
from dispatcher.delivery import schedule
from dispatcher.ledger import changes

__all__ = [
    "Applied",
    "ChangeRefusedError",
    "ConfirmationNeeded",
    "Guard",
    "apply_change",
    "check_change",
    "check_locked",
    "free_days",
    "summary_in",
]

#: The changes still allowed once an item's first dispatch has started.
_AFTER_START = (editing.Hold, editing.Release)
_UPCOMING = (planning.PlanState.PLANNED, planning.PlanState.DUE)

#: German texts of the `desk` catalogue, translated where they are shown.
CHANNEL_NAMES: Mapping[Channel, str] = {
    Channel.EMAIL: N_("E-Mail"),
    Channel.MASTODON: "Mastodon",
    Channel.BLUESKY: "Bluesky",
    Channel.LINKEDIN: "LinkedIn",
    Channel.WEBHOOK: "Webhook",
}


class ChangeRefusedError(Exception):
    """The change may not be made (the ledger's past, an unknown day); `str()` says why."""


@dataclass(frozen=True)
class Guard:
    """What the ledger says about a change before it is written."""

    refused: str | None = None  #: why it may not be made at all
    confirm: tuple[str, ...] = ()  #: sends within the freeze window it would alter
    notes: tuple[str, ...] = ()  #: what the editor should know (a running send continues)


@dataclass(frozen=True)
class ConfirmationNeeded:
    """Not written: the change alters sends within the freeze window (`Guard.confirm`)."""

    sends: tuple[str, ...]
    version: str  #: the file version the confirmation form must carry


@dataclass(frozen=True)
class Applied:
    """Written and recorded: the history row's id, the file versions and the diff."""

    change_id: int
    result: editing.EditResult
    notes: tuple[str, ...] = field(default=())


def _started(
    history: list[planning.PastDispatch],
) -> tuple[dict[str, list[planning.PastDispatch]], set[dt.date]]:
    by_item: dict[str, list[planning.PastDispatch]] = {}
    days: set[dt.date] = set()
    for past in history:
        if past.state in planning.STARTED_STATES:
            days.add(past.day)
            if past.item_id is not None:
                by_item.setdefault(past.item_id, []).append(past)
    return by_item, days


def _item(campaign: Campaign, item_id: str) -> Item | None:
    return next((i for i in campaign.items if i.id == item_id), None)


def _label(campaign: Campaign, item_id: str) -> str:
    item = _item(campaign, item_id)
    return f"„{item.title}“" if item is not None else f"„{item_id}“"


def _day(day: dt.date, lang: str) -> str:
    return i18n.format_day(day, lang=lang)


def _channels(channels: set[Channel], lang: str) -> str:
    return ", ".join(sorted(i18n.gettext(lang, CHANNEL_NAMES[c]) for c in channels))


def free_days(
    connection: sa.Connection, campaign: Campaign, now: dt.datetime
) -> tuple[dt.date, ...]:
    """Send days an item may be pinned to: no dispatch started, the first send still ahead."""
    history = schedule.history(connection, campaign.id)
    _, started = _started(history)
    plan = planning.plan(campaign, now=now, history=history)
    first: dict[dt.date, dt.datetime] = {}
    for row in plan.rows:
        if row.day is not None and row.send_at_utc is not None:
            first[row.day] = min(first.get(row.day, row.send_at_utc), row.send_at_utc)
    return tuple(d for d in sorted(first) if d not in started and first[d] > now)


def _sends(plan: planning.Plan) -> dict[tuple[dt.date, Channel], planning.PlannedDispatch]:
    return {
        (row.day, row.channel): row
        for row in plan.rows
        if row.day is not None and row.channel is not None and row.state in _UPCOMING
    }


def _altered(
    before: planning.Plan, after: planning.Plan, edited: str
) -> list[planning.PlannedDispatch]:
    """Upcoming sends whose item changes, appear or disappear, or that send the edited item
    (its text or status changes what goes out)."""
    old, new = _sends(before), _sends(after)
    rows = []
    for key in sorted(set(old) | set(new), key=lambda k: (k[0], list(Channel).index(k[1]))):
        a, b = old.get(key), new.get(key)
        if a is None or b is None or a.item_id != b.item_id or edited in (a.item_id, b.item_id):
            row = a or b
            assert row is not None
            rows.append(row)
    return rows


def _locked_reason(item_id: str, started: list[planning.PastDispatch], lang: str) -> str:
    first = min(started, key=lambda p: p.day)
    return i18n.gettext(
        lang,
        "Der Beitrag „%(item)s“ ist am %(day)s schon versendet worden (%(channels)s). Was "
        "versendet ist, hält das Ledger fest: Text, Sendetag und Platz in der Queue lassen "
        "sich nicht mehr ändern – nur zurückhalten, was noch nicht begonnen hat.",
        item=item_id,
        day=_day(first.day, lang),
        channels=_channels({p.channel for p in started}, lang),
    )


def check_locked(
    connection: sa.Connection, campaign: Campaign, item_id: str, *, lang: str | None = None
) -> str | None:
    """Why the item's text, day and place are fixed (a dispatch of it started), in `lang`
    (default: the campaign's language), or None."""
    by_item, _ = _started(schedule.history(connection, campaign.id))
    started = by_item.get(item_id)
    return None if not started else _locked_reason(item_id, started, campaign.reader_language(lang))


def check_change(
    connection: sa.Connection,
    campaign: Campaign,
    file_text: str,
    edit: editing.Edit,
    *,
    now: dt.datetime,
    freeze: dt.timedelta,
    file: str = "campaign.yaml",
    lang: str | None = None,
) -> Guard:
    """What the ledger says about `edit` of `file_text` (the file `file` as it is) while
    `campaign` is in force, in `lang` (default: the campaign's language). `EditRefused` and
    `CampaignError` from the edit itself propagate."""
    lang = campaign.reader_language(lang)
    history = schedule.history(connection, campaign.id)
    by_item, started_days = _started(history)
    item_id = edit.item_id
    started = by_item.get(item_id, [])
    if started and not isinstance(edit, _AFTER_START):
        return Guard(refused=_locked_reason(item_id, started, lang))
    if isinstance(edit, editing.Pin) and edit.day is not None and edit.day in started_days:
        return Guard(
            refused=i18n.gettext(
                lang,
                "Am %(day)s ist schon versendet worden; dieser Tag gehört dem Ledger und nimmt "
                "keinen anderen Beitrag mehr.",
                day=_day(edit.day, lang),
            )
        )
    notes: list[str] = []
    running = [p for p in started if p.state == "running"]
    if isinstance(edit, editing.Hold) and running:
        notes.append(
            i18n.gettext(
                lang,
                "Der Versand (%(channels)s) läuft bereits und wird zu Ende geführt; "
                "zurückgehalten wird, was noch nicht begonnen hat. Stoppen: `dispatcher "
                "cancel` oder „Versand … abbrechen“ auf der Beitragsseite.",
                channels=_channels({p.channel for p in running}, lang),
            )
        )
    new_text = editing.apply_edit(file_text, edit)
    changed = load_campaign_text(new_text, file)  # CampaignError: the edit is invalid
    before = planning.plan(campaign, now=now, history=history)
    after = planning.plan(changed, now=now, history=history)
    confirm = []
    for row in _altered(before, after, item_id):
        assert row.day is not None and row.channel is not None
        at = row.send_at_utc
        if at is not None and at - now <= freeze:
            local = row.send_at_local
            when = (
                i18n.gettext(lang, "%(time)s Uhr", time=local.strftime("%H:%M"))
                if local is not None
                else ""
            )
            minutes = max(0, round((at - now).total_seconds() / 60))
            soon = (
                i18n.gettext(lang, "jetzt fällig")
                if at <= now
                else i18n.ngettext(lang, "in %(num)s Minute", "in %(num)s Minuten", minutes)
            )
            confirm.append(
                i18n.gettext(
                    lang,
                    "%(channel)s am %(day)s, %(time)s (%(soon)s)",
                    channel=i18n.gettext(lang, CHANNEL_NAMES[row.channel]),
                    day=_day(row.day, lang),
                    time=when,
                    soon=soon,
                )
            )
    return Guard(confirm=tuple(confirm), notes=tuple(notes))


#: The history's line per action (`editing.action_name`), German texts of the catalogue.
SUMMARIES: Mapping[str, str] = {
    "hold": N_("%(label)s zurückgehalten"),
    "release": N_("%(label)s freigegeben"),
    "unpin": N_("%(label)s: fester Sendetag entfernt"),
    "pin": N_("%(label)s auf %(day)s gelegt"),
    "move-up": N_("%(label)s in der Queue nach vorn"),
    "move-down": N_("%(label)s in der Queue nach hinten"),
    "edit": N_("%(label)s bearbeitet (%(fields)s)"),
    "restore": N_("%(label)s wiederhergestellt"),
}


def _summary(edit: editing.Edit, campaign: Campaign) -> str:
    """The history's line for `edit`, in the campaign's language (a record, like the file)."""
    lang = campaign.language
    values = {"label": _label(campaign, edit.item_id)}
    match edit:
        case editing.Pin(day=day) if day is not None:
            values["day"] = _day(day, lang)
        case editing.EditFields(values=fields):
            values["fields"] = ", ".join(sorted(fields))
    return i18n.gettext(lang, SUMMARIES[editing.action_name(edit)], **values)


_PINNED = re.compile(r"^\+\s*date:\s*[\"']?(\d{4}-\d{2}-\d{2})", re.MULTILINE)


def summary_in(lang: str, campaign: Campaign, *, action: str, summary: str, diff: str) -> str:
    """A history line (`summary`, recorded in the campaign's language) in `lang`: made anew
    from the record — the item as it was named then, the day pinned to (from the diff), the
    fields edited — or, should the record not read as one of `SUMMARIES`, as recorded."""
    pattern = SUMMARIES.get(action)
    if lang == campaign.language or pattern is None:
        return summary
    recorded = i18n.gettext(campaign.language, pattern)
    parts = re.split(r"%\((\w+)\)s", recorded)
    regex = "".join(
        re.escape(part) if index % 2 == 0 else f"(?P<{part}>.+)" for index, part in enumerate(parts)
    )
    found = re.fullmatch(regex, summary, re.DOTALL)
    if found is None:
        return summary
    values = found.groupdict()
    if "day" in values:
        pinned = _PINNED.search(diff)
        if pinned is None:
            return summary
        values["day"] = _day(dt.date.fromisoformat(pinned[1]), lang)
    return i18n.gettext(lang, pattern, **values)


def apply_change(
    engine: sa.Engine,
    path: Path,
    campaign: Campaign,
    edit: editing.Edit,
    *,
    expected_version: str,
    editor_id: int | None,
    now: dt.datetime,
    freeze: dt.timedelta,
    confirmed: bool = False,
    lang: str | None = None,
) -> Applied | ConfirmationNeeded:
    """Check `edit` against the ledger, write it into `path` if the file is still at
    `expected_version`, and record it in the history. What the editor reads is in `lang`
    (default: the campaign's language).

    Raises `ChangeRefusedError` (the ledger's past), `editing.EditConflict` (the file changed
    since the form was made), `editing.EditRefused` and `CampaignError` (the change would
    make the file invalid: nothing is written)."""
    lang = campaign.reader_language(lang)
    refusal = editing.write_refusal(path)
    if refusal is not None:
        raise ChangeRefusedError(refusal.in_language(lang))
    text = editing.read_campaign_text(path)
    if editing.version_of(text) != expected_version:
        raise editing.EditConflict(
            "Die Datei wurde inzwischen geändert.", current_version=editing.version_of(text)
        )
    with engine.connect() as connection:
        guard = check_change(
            connection, campaign, text, edit, now=now, freeze=freeze, file=str(path), lang=lang
        )
    if guard.refused is not None:
        raise ChangeRefusedError(guard.refused)
    if guard.confirm and not confirmed:
        return ConfirmationNeeded(guard.confirm, expected_version)
    # The file is locked, compared with `expected_version` again and validated in there:
    # what was checked above is what is written, or nothing is.
    result = editing.edit_campaign_file(path, edit, expected_version=expected_version)
    with engine.begin() as connection:
        change_id = changes.record_change(
            connection,
            editor_id=editor_id,
            action=editing.action_name(edit),
            item_id=edit.item_id,
            summary=_summary(edit, campaign),
            version_before=result.version_before,
            version_after=result.version_after,
            diff=result.diff,
            text_before=result.before,
            now=now,
        )
    return Applied(change_id, result, guard.notes)
