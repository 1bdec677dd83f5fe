"""The desk's calendar (`GET /desk/`): the campaign window as weeks × send weekdays.

Each day shows its item and, per channel, the local send time and the state from the
ledger-aware plan (`delivery.schedule.ledger_plan`, the one home of plan states; nothing here
recomputes them). A day that went out shows the item as the ledger stored it with the
dispatch (`item_to_json`), not the file: what was sent stays what it was. Holidays and
skipped dates carry their reason, empty days say so, and the ready items that no day is
left for are listed below the table (docs/desk.md, "Kalender").

Two steps, so the page can be tested without I/O: `read_ledger` takes what the plan and
the ledger say (one read-only connection), `calendar_view` turns campaign + plan + ledger
facts + now into the `CalendarView` the template shows, in the editor's language (labels
and dates; the items' texts are the file's).
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from urllib.parse import quote

import sqlalchemy as sa
from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import BaseRoute, Route

from dispatcher import i18n
from dispatcher.campaign.calendar import holiday_dates
from dispatcher.campaign.model import Campaign, Channel, Item, ItemStatus, item_from_json
from dispatcher.campaign.planning import STARTED_STATES, Plan, PlannedDispatch, PlanState
from dispatcher.delivery import schedule
from dispatcher.ledger import store
from dispatcher.ledger.engine import reader
from dispatcher.ledger.tables import DeliveryState, DispatchState
from dispatcher.web.desk.pages import N_, language, language_name, render, signed_in, state_of
from dispatcher.web.state import WebState

#: The labels below are German texts of the `desk` catalogue, translated where they are shown.
CHANNEL_LABELS: dict[Channel, str] = {
    Channel.EMAIL: N_("E-Mail"),
    Channel.MASTODON: "Mastodon",
    Channel.BLUESKY: "Bluesky",
    Channel.LINKEDIN: "LinkedIn",
    Channel.WEBHOOK: N_("Chat-Webhooks"),
}

STATE_LABELS: dict[PlanState, str] = {
    PlanState.PLANNED: N_("geplant"),
    PlanState.DUE: N_("fällig"),
    PlanState.RUNNING: N_("läuft"),
    PlanState.SENT: N_("gesendet"),
    PlanState.PARTIAL: N_("teilweise gesendet"),
    PlanState.FAILED: N_("fehlgeschlagen"),
    PlanState.MISSED: N_("verpasst"),
    PlanState.CANCELLED: N_("abgebrochen"),
    PlanState.EMPTY: N_("kein Beitrag"),
    PlanState.UNSCHEDULED: N_("ohne Tag"),
}

STATUS_LABELS: dict[ItemStatus, str] = {
    ItemStatus.READY: N_("freigegeben"),
    ItemStatus.DRAFT: N_("Entwurf"),
    ItemStatus.HOLD: N_("zurückgehalten"),
}

_FINISHED = (
    DeliveryState.SENT,
    DeliveryState.FAILED,
    DeliveryState.UNKNOWN,
    DeliveryState.CANCELLED,
)
_CHANNELS = frozenset(c.value for c in Channel)


# --- what the ledger knows ---------------------------------------------------------------


@dataclass(frozen=True)
class Progress:
    """A running dispatch's deliveries: how many are finished (sent, failed or unknown) of
    how many there are so far; `complete`: every recipient has its delivery (fan-out done)."""

    done: int
    total: int
    complete: bool = True

    @property
    def percent(self) -> int:
        return 0 if self.total == 0 else int(100 * self.done / self.total)


@dataclass(frozen=True)
class LedgerFacts:
    """What the calendar shows from the ledger beside the plan's states."""

    #: day -> the item as stored with the day's first started dispatch (what went out)
    snapshots: Mapping[dt.date, Item] = field(default_factory=dict)
    #: (day, channel) -> delivery progress of a running dispatch
    progress: Mapping[tuple[dt.date, Channel], Progress] = field(default_factory=dict)


def read_ledger(
    connection: sa.Connection, campaign: Campaign, now: dt.datetime
) -> tuple[Plan, LedgerFacts]:
    """The plan at `now` and the snapshots and progress the calendar shows, in one read."""
    plan = schedule.ledger_plan(connection, campaign, now)
    snapshots: dict[dt.date, Item] = {}
    first_id: dict[dt.date, int] = {}
    progress: dict[tuple[dt.date, Channel], Progress] = {}
    for dispatch in store.list_dispatches(connection, campaign.id):
        if dispatch.state in STARTED_STATES and dispatch.id < first_id.get(dispatch.day, 1 << 62):
            # the planner's rule: the day's first started dispatch fixes its item
            first_id[dispatch.day] = dispatch.id
            snapshots[dispatch.day] = item_from_json(dispatch.content)
        if dispatch.state == DispatchState.RUNNING and dispatch.channel in _CHANNELS:
            counts = store.delivery_counts(connection, dispatch.id)
            progress[(dispatch.day, Channel(dispatch.channel))] = Progress(
                done=sum(counts.get(state, 0) for state in _FINISHED),
                total=sum(counts.values()),
                complete=dispatch.fanout_done,
            )
    return plan, LedgerFacts(snapshots, progress)


# --- what the page shows -----------------------------------------------------------------


@dataclass(frozen=True)
class ItemRef:
    """An item as the calendar names it, with the link to its page on the desk."""

    id: str
    title: str
    initiative: str
    region: str
    href: str  #: /desk/items/ID, with ?tag=DAY for a day that went out (the snapshot)
    as_sent: bool = False  #: from the ledger's snapshot, not from the file
    status: str = ""  #: the file's status in the page's language, for items not planned
    #: names of the campaign's languages the item has no version in (their readers get the
    #: fallback); empty for a campaign of one language
    missing: tuple[str, ...] = ()


@dataclass(frozen=True)
class ChannelSend:
    """One channel of a day: local send time and where it stands."""

    channel: Channel
    label: str  #: "E-Mail"
    time: str  #: local "08:00", or "–" for a channel no longer under `send:`
    state: PlanState
    state_label: str  #: "gesendet"
    progress: Progress | None = None  #: for `running`
    is_next: bool = False  #: the campaign's next send


@dataclass(frozen=True)
class Day:
    """One cell of the table."""

    date: dt.date
    label: str  #: "Dienstag, 2. April 2019" (in the page's language)
    short: str  #: "2. Apr."
    kind: str  #: send, empty, holiday, skipped, outside, off
    item: ItemRef | None = None
    sends: tuple[ChannelSend, ...] = ()
    note: str | None = None  #: the reason for a holiday or skipped date: "Karfreitag (DE)"
    is_today: bool = False
    is_next: bool = False  #: holds the campaign's next send


@dataclass(frozen=True)
class Week:
    label: str  #: "KW 14"
    days: tuple[Day, ...]  #: one per column


@dataclass(frozen=True)
class NextSend:
    at_local: dt.datetime
    label: str  #: "Mittwoch, 3. April 2019, 08:00 Uhr"
    channels: tuple[str, ...]  #: labels of the channels sending then
    item: ItemRef | None


@dataclass(frozen=True)
class CalendarView:
    caption: str  #: "Sendeplan 2. Clusterwoche Deutschland, 2. April 2019 bis 11. April 2019"
    timezone: str
    columns: tuple[str, ...]  #: weekday names of the columns, "Montag" …
    weeks: tuple[Week, ...]
    today: dt.date
    today_label: str
    next_send: NextSend | None
    unscheduled: tuple[ItemRef, ...]  #: ready items no day is left for, in queue order
    not_ready: tuple[ItemRef, ...]  #: drafts and held items: never planned


def item_href(item_id: str, day: dt.date | None = None) -> str:
    """The item page; with the day of a dispatch that went out, so it shows the snapshot."""
    href = f"/desk/items/{quote(item_id, safe='')}"
    return href if day is None else f"{href}?tag={day.isoformat()}"


def _ref(
    campaign: Campaign,
    item: Item,
    lang: str,
    day: dt.date | None = None,
    *,
    as_sent: bool = False,
) -> ItemRef:
    return ItemRef(
        id=item.id,
        title=item.title,
        initiative=item.initiative,
        region=item.region,
        href=item_href(item.id, day),
        as_sent=as_sent,
        status=i18n.gettext(lang, STATUS_LABELS[item.status]),
        missing=tuple(language_name(code, lang) for code in campaign.missing_languages(item)),
    )


def _item_of(campaign: Campaign, item_id: str) -> Item | None:
    return next((i for i in campaign.items if i.id == item_id), None)


def _day_item(
    campaign: Campaign, day: dt.date, rows: list[PlannedDispatch], facts: LedgerFacts, lang: str
) -> ItemRef | None:
    item_id = next((r.item_id for r in rows if r.item_id is not None), None)
    if item_id is None:
        return None
    snapshot = facts.snapshots.get(day)
    if snapshot is not None and snapshot.id == item_id:
        return _ref(campaign, snapshot, lang, day, as_sent=True)
    item = _item_of(campaign, item_id)
    if item is None:  # not in the file any more and never started: show what is known
        return ItemRef(item_id, item_id, "", "", item_href(item_id))
    return _ref(campaign, item, lang)


def _time(local: dt.datetime | None) -> str:
    return "–" if local is None else local.strftime("%H:%M")


def _weekday_name(weekday: int, lang: str) -> str:
    return i18n.format_day(dt.date(2019, 4, 1) + dt.timedelta(days=weekday), "EEEE", lang=lang)


def _long(day: dt.date, lang: str) -> str:
    return i18n.format_day(day, i18n.gettext(lang, "EEEE, d. MMMM y"), lang=lang)


def calendar_view(
    campaign: Campaign,
    plan: Plan,
    facts: LedgerFacts,
    now: dt.datetime,
    *,
    lang: str | None = None,
) -> CalendarView:
    """The calendar as the template shows it: pure, for any campaign, plan and instant, in
    `lang` (default: the campaign's language)."""
    lang = campaign.reader_language(lang)

    def t(message: str, **values: object) -> str:
        return i18n.gettext(lang, message, **values)

    zone = campaign.zone
    today = now.astimezone(zone).date()
    upcoming = [at for at in schedule.next_sends(plan, campaign).values() if at is not None]
    next_at = min(upcoming, default=None)

    by_day: dict[dt.date, list[PlannedDispatch]] = {}
    for row in plan.rows:
        if row.day is not None:
            by_day.setdefault(row.day, []).append(row)

    first = min([campaign.start, *by_day])
    last = max([campaign.end, *by_day])
    weekdays = sorted(set(campaign.weekdays) | {day.weekday() for day in by_day})
    off = holiday_dates(campaign.holidays, range(first.year, last.year + 1), lang=lang)

    def cell(day: dt.date) -> Day:
        base = Day(
            date=day,
            label=_long(day, lang),
            short=i18n.format_day(day, t(N_("d. MMM")), lang=lang),
            kind="off",
            is_today=day == today,
        )
        reason = None
        if day in off:
            reason = f"{off[day]} ({campaign.holidays})"
        elif day in campaign.skip:
            reason = t(N_("ausgelassen (skip in der Kampagnendatei)"))
        rows = by_day.get(day)
        if rows:
            sends = tuple(
                ChannelSend(
                    channel=row.channel,
                    label=t(CHANNEL_LABELS[row.channel]),
                    time=_time(row.send_at_local),
                    state=row.state,
                    state_label=t(STATE_LABELS[row.state]),
                    progress=facts.progress.get((day, row.channel))
                    if row.state is PlanState.RUNNING
                    else None,
                    is_next=next_at is not None
                    and row.send_at_utc == next_at
                    and row.state in (PlanState.PLANNED, PlanState.DUE),
                )
                for row in rows
                if row.channel is not None
            )
            item = _day_item(campaign, day, rows, facts, lang)
            return replace(
                base,
                kind="send" if item is not None else "empty",
                item=item,
                sends=sends,
                note=reason,
                is_next=any(s.is_next for s in sends),
            )
        if not campaign.start <= day <= campaign.end:
            return replace(base, kind="outside")
        if day in off:
            return replace(base, kind="holiday", note=reason)
        if day in campaign.skip:
            return replace(base, kind="skipped", note=reason)
        return replace(base, note=t(N_("kein Sendetag")))

    weeks: list[Week] = []
    monday = first - dt.timedelta(days=first.weekday())
    while monday <= last:
        days = tuple(cell(monday + dt.timedelta(days=wd)) for wd in weekdays)
        weeks.append(Week(t(N_("KW %(week)s"), week=monday.isocalendar().week), days))
        monday += dt.timedelta(days=7)

    next_send = None
    if next_at is not None:
        at_rows = [
            r
            for r in plan.rows
            if r.send_at_utc == next_at and r.state in (PlanState.PLANNED, PlanState.DUE)
        ]
        at_local = next_at.astimezone(zone)
        day_rows = by_day.get(at_rows[0].day, []) if at_rows and at_rows[0].day else []
        next_send = NextSend(
            at_local=at_local,
            label=t(
                N_("%(day)s, %(time)s Uhr"), day=_long(at_local.date(), lang), time=_time(at_local)
            ),
            channels=tuple(t(CHANNEL_LABELS[r.channel]) for r in at_rows if r.channel),
            item=_day_item(campaign, at_local.date(), day_rows, facts, lang) if day_rows else None,
        )

    unscheduled = []
    for item_id in plan.unscheduled:
        item = _item_of(campaign, item_id)
        if item is not None:
            unscheduled.append(_ref(campaign, item, lang))
    not_ready = tuple(
        _ref(campaign, i, lang) for i in campaign.items if i.status is not ItemStatus.READY
    )
    return CalendarView(
        caption=t(
            N_("Sendeplan %(campaign)s, %(start)s bis %(end)s"),
            campaign=campaign.name_in(lang),
            start=i18n.format_day(campaign.start, t(N_("d. MMMM y")), lang=lang),
            end=i18n.format_day(campaign.end, t(N_("d. MMMM y")), lang=lang),
        ),
        timezone=campaign.timezone,
        columns=tuple(_weekday_name(wd, lang) for wd in weekdays),
        weeks=tuple(weeks),
        today=today,
        today_label=_long(today, lang),
        next_send=next_send,
        unscheduled=tuple(unscheduled),
        not_ready=not_ready,
    )


def load_view(state: WebState, lang: str | None = None) -> CalendarView:
    """The calendar now, from the campaign in force and the ledger (read-only)."""
    campaign = state.campaign()
    now = state.clock()
    with reader(state.engine).connect() as connection:
        plan, facts = read_ledger(connection, campaign, now)
    return calendar_view(campaign, plan, facts, now, lang=lang)


# --- the route ---------------------------------------------------------------------------


@signed_in
async def calendar_page(request: Request) -> Response:
    state = state_of(request)
    view = await run_in_threadpool(lambda: load_view(state, language(state, request)))
    # Rendering reads the campaign (and, in `dispatcher web`, may check the file): a thread.
    return await run_in_threadpool(render, state, request, "calendar.html.j2", view=view)


def routes(state: WebState) -> list[BaseRoute]:
    """`GET /desk/` (mounted under /desk by `dispatcher.web.desk.routes`)."""
    return [Route("/", calendar_page, methods=["GET"], name="desk_calendar")]
