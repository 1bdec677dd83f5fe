"""Which item goes out on which send day and channel, and where each dispatch stands.

Pure: the caller passes `now` and what the ledger recorded (`PastDispatch`), so `plan` can be
tested for any moment and any history. The same function serves `dispatcher plan`, the
scheduler (which acts on DUE rows) and the email's "already published" links.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Sequence
from dataclasses import dataclass
from enum import StrEnum
from typing import Any

from dispatcher.campaign.calendar import local_send_time, send_days
from dispatcher.campaign.model import Campaign, Channel, EditionKind, Item, ItemStatus

__all__ = ["PastDispatch", "Plan", "PlanState", "PlannedDispatch", "assign_items", "plan"]

STARTED_STATES: frozenset[str] = frozenset({"running", "done", "partial", "failed", "cancelled"})
"""Ledger states after which a day's content is fixed: something may have gone out (a
cancelled dispatch too: its day keeps its item, and the item is not planned again)."""

_FROM_LEDGER: dict[str, str] = {
    "done": "sent",
    "failed": "failed",
    "running": "running",
    "partial": "partial",
    "missed": "missed",
    # Called off by an operator (`dispatcher cancel`): shown as such, never DUE again.
    "cancelled": "cancelled",
    # "planned" is deliberately absent: the ledger's own plan carries no news, time decides.
}


class PlanState(StrEnum):
    """Where a row of the plan stands; the first three follow from time, the rest from history."""

    PLANNED = "planned"  #: send time still ahead
    DUE = "due"  #: send time passed, within `catch_up`, nothing recorded: send now
    MISSED = "missed"  #: send time + `catch_up` passed without a send (or ledger: missed)
    SENT = "sent"  #: ledger: done
    FAILED = "failed"  #: ledger: failed
    RUNNING = "running"  #: ledger: running
    PARTIAL = "partial"  #: ledger: partial
    CANCELLED = "cancelled"  #: ledger: cancelled by an operator (`dispatcher cancel`)
    EMPTY = "empty"  #: a send day without an item
    UNSCHEDULED = "unscheduled"  #: a ready item for which no send day is left


@dataclass(frozen=True)
class PastDispatch:
    """One ledger record, reduced to what planning needs."""

    day: dt.date
    channel: Channel
    item_id: str | None
    state: str  #: ledger state: planned/running/done/partial/failed/missed/cancelled


_MAX_UTC = dt.datetime.max.replace(tzinfo=dt.UTC)


@dataclass(frozen=True)
class PlannedDispatch:
    """One row of the plan: a (day, channel) send, an empty day's channel, or a queued item."""

    day: dt.date | None  #: None only for UNSCHEDULED rows
    channel: Channel | None  #: None only for UNSCHEDULED rows
    item_id: str | None  #: None only for EMPTY rows
    send_at_local: dt.datetime | None  #: None: UNSCHEDULED, or a channel no longer configured
    send_at_utc: dt.datetime | None
    state: PlanState
    #: per language the channel goes out in: what its readers get of the item
    languages: tuple[tuple[str, EditionKind], ...] = ()

    def to_json(self) -> dict[str, Any]:
        """Stable keys for `dispatcher plan --json` and the status endpoint."""
        return {
            "date": self.day.isoformat() if self.day else None,
            "channel": self.channel.value if self.channel else None,
            "item": self.item_id,
            "send_at_local": self.send_at_local.isoformat() if self.send_at_local else None,
            "send_at_utc": self.send_at_utc.isoformat() if self.send_at_utc else None,
            "state": self.state.value,
            "languages": {lang: kind.value for lang, kind in self.languages} or None,
        }


@dataclass(frozen=True)
class Plan:
    """All rows, so every view (CLI table, JSON, scheduler, email links) reads the same plan."""

    rows: tuple[PlannedDispatch, ...]  #: by (day, send_at_utc, channel); UNSCHEDULED last

    def item_for(self, day: dt.date) -> str | None:
        return next((r.item_id for r in self.rows if r.day == day and r.item_id), None)

    def day_of(self, item_id: str) -> dt.date | None:
        return next((r.day for r in self.rows if r.item_id == item_id and r.day), None)

    def published_before(self, day: dt.date) -> list[tuple[dt.date, str]]:
        """Earlier days' items, for the email's links to the reportages already out."""
        seen: dict[dt.date, str] = {}
        for row in self.rows:
            if row.day is not None and row.day < day and row.item_id is not None:
                seen.setdefault(row.day, row.item_id)
        return sorted(seen.items())

    @property
    def unscheduled(self) -> tuple[str, ...]:
        return tuple(r.item_id for r in self.rows if r.state is PlanState.UNSCHEDULED and r.item_id)

    @property
    def empty_days(self) -> tuple[dt.date, ...]:
        return tuple(sorted({r.day for r in self.rows if r.state is PlanState.EMPTY and r.day}))


def _started(history: Sequence[PastDispatch]) -> dict[dt.date, str]:
    """Day -> item the ledger already started; the first record of a day wins."""
    fixed: dict[dt.date, str] = {}
    for past in history:
        if past.state in STARTED_STATES and past.item_id is not None:
            fixed.setdefault(past.day, past.item_id)
    return fixed


def assign_items(
    campaign: Campaign, days: Sequence[dt.date], history: Sequence[PastDispatch] = ()
) -> tuple[dict[dt.date, str | None], tuple[str, ...]]:
    """Day -> item id (None: empty day) and the ready items left over, in file order.

    1. History wins: a day with a started ledger dispatch keeps its item whatever the file says
       now, and that item is consumed, also when its day is not in `days` any more (so an
       edit can never send a reportage twice).
    2. Pinned ready items take their day; a pin onto a day fixed by history or onto a day not
       in `days` is ignored and the item queues like an unpinned one.
    3. The other ready items fill the free days in file order and date order.
    4. Draft and held items are never planned.
    """
    ordered = sorted(set(days))
    fixed = _started(history)
    assigned: dict[dt.date, str | None] = {day: fixed.get(day) for day in ordered}
    consumed = set(fixed.values())
    ready = [i for i in campaign.items if i.status is ItemStatus.READY and i.id not in consumed]
    queue: list[Item] = []
    for item in ready:
        if item.date is not None and item.date in assigned and assigned[item.date] is None:
            assigned[item.date] = item.id
        else:
            queue.append(item)
    free = iter(day for day in ordered if assigned[day] is None)
    leftover: list[str] = []
    for item in queue:
        day = next(free, None)
        if day is None:
            leftover.append(item.id)
        else:
            assigned[day] = item.id
    return assigned, tuple(leftover)


def _item_channels(
    campaign: Campaign, day: dt.date, item_id: str, history: Sequence[PastDispatch]
) -> list[Channel]:
    """The campaign's channels the item uses, plus those the ledger shows it started on.

    An item the file no longer has as `ready` (removed, or put on hold after the first channel
    went out) keeps only its started channels: the edit stops what has not been sent yet.
    """
    item = next((i for i in campaign.items if i.id == item_id), None)
    wanted = {
        p.channel
        for p in history
        if p.day == day and p.item_id == item_id and p.state in STARTED_STATES
    }
    if item is not None and item.status is ItemStatus.READY:
        wanted |= {c for c in campaign.channels if item.uses(c)}
    return [c for c in Channel if c in wanted]


def _sort_key(row: PlannedDispatch) -> tuple[dt.date, dt.datetime, int]:
    assert row.day is not None and row.channel is not None  # only scheduled rows are sorted
    return (row.day, row.send_at_utc or _MAX_UTC, list(Channel).index(row.channel))


def plan(campaign: Campaign, *, now: dt.datetime, history: Sequence[PastDispatch] = ()) -> Plan:
    """The whole campaign as rows, with each row's state as of `now`.

    Days with a started ledger dispatch are shown even if the file no longer makes them send
    days: the past belongs to the ledger. A channel that the ledger shows but `send:` no longer
    lists appears without send times.
    """
    if now.tzinfo is None or now.utcoffset() is None:
        raise ValueError(f"now must be timezone-aware, got naive {now.isoformat()}")
    days = sorted(set(send_days(campaign)) | set(_started(history)))
    assigned, leftover = assign_items(campaign, days, history)
    recorded: dict[tuple[dt.date, Channel], str] = {}
    for past in history:  # later records of the same (day, channel) supersede earlier ones
        if past.state in _FROM_LEDGER:
            recorded[(past.day, past.channel)] = _FROM_LEDGER[past.state]
    zone = campaign.zone
    by_id = {item.id: item for item in campaign.items}
    rows: list[PlannedDispatch] = []
    for day in days:
        item_id = assigned[day]
        channels = (
            list(campaign.channels)
            if item_id is None
            else _item_channels(campaign, day, item_id, history)
        )
        for channel in channels:
            at = campaign.send.get(channel)
            local = None if at is None else local_send_time(day, at, zone)
            utc = None if local is None else local.astimezone(dt.UTC)
            if item_id is None:
                state = PlanState.EMPTY
            elif (day, channel) in recorded:
                state = PlanState(recorded[(day, channel)])
            else:
                state = _by_time(utc, now, campaign.catch_up)
            item = by_id.get(item_id) if item_id else None
            languages = () if item is None else campaign.editions_on(channel, item)
            rows.append(PlannedDispatch(day, channel, item_id, local, utc, state, languages))
    rows.sort(key=_sort_key)
    rows.extend(
        PlannedDispatch(None, None, item_id, None, None, PlanState.UNSCHEDULED)
        for item_id in leftover
    )
    return Plan(tuple(rows))


def _by_time(send_at: dt.datetime | None, now: dt.datetime, catch_up: dt.timedelta) -> PlanState:
    """PLANNED until the send time, DUE for `catch_up` after it, MISSED from then on."""
    if send_at is None:  # a channel no longer configured and not recorded: it will not happen
        return PlanState.MISSED
    if send_at > now:
        return PlanState.PLANNED
    if now <= send_at + catch_up:
        return PlanState.DUE
    return PlanState.MISSED
