"""What an editor may do to an item from its page, and why not (docs/desk.md, "Die Queue ändern").

The item page (`items`) shows these forms; the routes that take them are in `queue`. Kept
apart so that the item page need not import the routes (which render item previews).
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass
from pathlib import Path

import sqlalchemy as sa

from dispatcher import i18n
from dispatcher.campaign import editing
from dispatcher.campaign.model import Campaign, ItemStatus
from dispatcher.delivery import queue_changes
from dispatcher.web.desk.pages import N_

READ_ONLY_HELP = N_(
    "Zum Bearbeiten braucht der Dienst Schreibrechte auf die Kampagnendatei und ihr "
    "Verzeichnis (in Docker Compose: config/ als beschreibbares Volume, siehe "
    "docs/desk.md)."
)


@dataclass(frozen=True)
class DayChoice:
    value: str  #: ISO date for the form
    label: str  #: "Dienstag, 2. April 2019" (in the page's language)


@dataclass(frozen=True)
class ItemActions:
    """The queue forms of one item: the file version they carry and what is allowed."""

    item_id: str
    version: str  #: `editing.version_of` the file: a form made from it
    #: why the file cannot be written (every action disabled), in the page's language
    read_only: str | None
    locked: str | None  #: why text, day and place are fixed (the ledger's past)
    status: ItemStatus
    pinned: dt.date | None
    days: tuple[DayChoice, ...]  #: where it may be pinned
    can_move_up: bool
    can_move_down: bool

    @property
    def editable(self) -> bool:
        """Text, day and place may change (hold and release need only `read_only` unset)."""
        return self.read_only is None and self.locked is None


def _neighbours(campaign: Campaign, item_id: str) -> tuple[bool, bool]:
    """Whether the unpinned item has an unpinned item before / after it in the queue."""
    unpinned = [i.id for i in campaign.items if i.date is None]
    if item_id not in unpinned:
        return False, False
    index = unpinned.index(item_id)
    return index > 0, index < len(unpinned) - 1


def item_actions(
    connection: sa.Connection,
    campaign: Campaign,
    path: Path,
    item_id: str,
    *,
    now: dt.datetime,
    lang: str | None = None,
) -> ItemActions | None:
    """The forms for `item_id` as the file has it now, their texts in `lang` (default: the
    campaign's language); None when the file lacks the item."""
    lang = campaign.reader_language(lang)
    item = next((i for i in campaign.items if i.id == item_id), None)
    if item is None:
        return None
    try:
        text = editing.read_campaign_text(path)
    except editing.EditRefused as error:
        return ItemActions(
            item_id, "", error.in_language(lang), None, item.status, item.date, (), False, False
        )
    refusal = editing.write_refusal(path)
    guard = queue_changes.check_locked(connection, campaign, item_id, lang=lang)
    days = queue_changes.free_days(connection, campaign, now)
    up, down = _neighbours(campaign, item_id)
    return ItemActions(
        item_id=item_id,
        version=editing.version_of(text),
        read_only=None if refusal is None else refusal.in_language(lang),
        locked=guard,
        status=item.status,
        pinned=item.date,
        days=tuple(DayChoice(d.isoformat(), i18n.format_day(d, lang=lang)) for d in days),
        can_move_up=up,
        can_move_down=down,
    )
