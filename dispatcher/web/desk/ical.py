"""The plan as an iCalendar feed for the editors' own calendars (Outlook, Thunderbird, phones).

Routes (under /desk; docs/desk.md, "Kalender-Abo (iCal)"):

- `GET /plan.ics?token=…`: the feed; no session, the token is the credential.
- `GET /kalender-abo`: whether the signed-in editor has a feed address, and the buttons.
- `POST /kalender-abo` (CSRF; `aktion=erzeugen|beenden`): a new address, shown once — the
  earlier one stops working — or the end of the subscription; both go to the audit log
  (`ical_rotate`, `ical_revoke`), without the token.

`GET /desk/plan.ics?token=…` answers with one event per send — a (day, channel) of the
ledger-aware plan (`delivery.schedule.ledger_plan`, never recomputed here) — so an editor
sees "E-Mail · Vorhang auf: Nordwind Maritim e. V. · geplant" at 08:00 beside the rest of
the week. Calendar programs poll a URL and send no cookies, so the URL itself is the
credential: a per-editor random token that only its SHA-256 is kept of
(`ledger.editors.feed_token_editor`, looked up by that hash, so no comparison of secrets
takes place in Python), that a new one replaces and that `revoke` ends. A wrong, revoked or
removed editor's token gets the same 404 as a path that does not exist: the answer does not
tell that the feed is there. The token is never logged (uvicorn's access log is off; nothing
here logs the URL).

Stable across requests and edits (docs/desk.md, "Kalender-Abo (iCal)"):

* UID `{campaign}-{YYYYMMDD}-{channel}@{public host}`: one send is one event whatever its
  state, item or time, so a calendar updates it in place instead of showing it twice.
* SEQUENCE follows the send's progress (geplant 0, fällig 1, läuft 2, finished 3);
  LAST-MODIFIED is when the state was reached, where that is known (the ledger's start or
  finish, the send time for "fällig", send time + catch-up for "verpasst").
* DTSTART carries `TZID=<the campaign's zone>` with a VTIMEZONE whose onsets are written as
  RFC 5545 §3.6.5 has them (local time before the change); see `vtimezone`.
* Sent days show the item as the ledger stored it with the dispatch, not the file.

The ETag is a digest of the events, so a client's conditional GET costs one plan and no
rendering when nothing changed; the bytes of the plans last served are kept by ETag
(`RenderedFeeds`), so all editors' calendars share one rendering per plan.

Calendar programs send no desk cookie and rarely a useful `Accept-Language`, so the feed's
language is in its address: the subscription page adds `&lang=en` when the editor reads
the desk in a language other than the campaign's default.
"""

from __future__ import annotations

import datetime as dt
import functools
import hashlib
import threading
from collections import OrderedDict
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlsplit
from zoneinfo import ZoneInfo

import icalendar
from starlette.concurrency import run_in_threadpool
from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import BaseRoute, Route

from dispatcher import i18n
from dispatcher.campaign.model import Campaign, Channel, Item, item_from_json
from dispatcher.campaign.planning import Plan, PlannedDispatch, PlanState
from dispatcher.delivery import schedule
from dispatcher.ledger import editors, store
from dispatcher.ledger.engine import reader
from dispatcher.web.addresses import feed_url
from dispatcher.web.desk import pages
from dispatcher.web.desk.session import Editor
from dispatcher.web.state import WebState

CALENDAR_TYPE = "text/calendar; charset=utf-8"
EVENT_DURATION = dt.timedelta(minutes=15)  #: a send is a moment; long enough to be seen
REFRESH = dt.timedelta(minutes=15)  #: how often a calendar should fetch the feed again
MAX_TOKEN_LENGTH = 200  #: tokens are 43 characters; anything much longer is no token of ours

#: German texts of the `desk` catalogue, translated into the feed's language.
CHANNEL_LABELS: dict[Channel, str] = {
    Channel.EMAIL: pages.N_("E-Mail"),
    Channel.MASTODON: "Mastodon",
    Channel.BLUESKY: "Bluesky",
    Channel.LINKEDIN: "LinkedIn",
    Channel.WEBHOOK: "Webhook",
}

STATE_LABELS: dict[PlanState, str] = {
    PlanState.PLANNED: pages.N_("geplant"),
    PlanState.DUE: pages.N_("fällig"),
    PlanState.RUNNING: pages.N_("läuft"),
    PlanState.SENT: pages.N_("gesendet"),
    PlanState.PARTIAL: pages.N_("teilweise gesendet"),
    PlanState.FAILED: pages.N_("fehlgeschlagen"),
    PlanState.MISSED: pages.N_("verpasst"),
    PlanState.CANCELLED: pages.N_("abgebrochen"),
}

#: SEQUENCE per state: it only grows while a send goes its way (planned → due → running →
#: finished), so a calendar that compares it takes the newer version.
SEQUENCE: dict[PlanState, int] = {
    PlanState.PLANNED: 0,
    PlanState.DUE: 1,
    PlanState.RUNNING: 2,
    PlanState.SENT: 3,
    PlanState.PARTIAL: 3,
    PlanState.FAILED: 3,
    PlanState.MISSED: 3,
    PlanState.CANCELLED: 3,
}


@dataclass(frozen=True)
class Recorded:
    """What the ledger holds for one (day, channel): the item as sent and its times."""

    item: Item
    send_at: dt.datetime  #: UTC
    changed_at: dt.datetime | None  #: UTC: finished, else started, else None


@dataclass(frozen=True)
class FeedEvent:
    """One send as the feed shows it."""

    uid: str
    channel: Channel
    state: PlanState
    summary: str
    description: str
    url: str  #: the item's desk page
    start: dt.datetime  #: local time in the campaign's zone
    sequence: int
    last_modified: dt.datetime | None  #: UTC
    categories: str = ""  #: the channel's name in the feed's language


def recorded_sends(rows: Iterable[store.DispatchRow]) -> dict[tuple[dt.date, Channel], Recorded]:
    """The ledger's dispatches by (day, channel); rows of channels no longer known are left out."""
    known = {c.value for c in Channel}
    return {
        (row.day, Channel(row.channel)): Recorded(
            item_from_json(row.content), row.send_at, row.finished_at or row.started_at
        )
        for row in rows
        if row.channel in known
    }


def public_host(public_url: str) -> str:
    return urlsplit(public_url).hostname or "localhost"


def event_uid(campaign: Campaign, day: dt.date, channel: Channel, public_url: str) -> str:
    """One send, one UID, for the life of the campaign."""
    return f"{campaign.id}-{day:%Y%m%d}-{channel.value}@{public_host(public_url)}"


def feed_events(
    campaign: Campaign,
    plan: Plan,
    recorded: Mapping[tuple[dt.date, Channel], Recorded],
    *,
    public_url: str,
    lang: str | None = None,
) -> list[FeedEvent]:
    """The plan's sends as events, in the plan's order, their texts in `lang` (default: the
    campaign's language); empty days and items without a day have no send and so no event."""
    lang = campaign.reader_language(lang)
    base = public_url.rstrip("/")
    events: list[FeedEvent] = []
    for row in plan.rows:
        if row.day is None or row.channel is None or row.item_id is None:
            continue
        if row.state not in STATE_LABELS:  # EMPTY, UNSCHEDULED
            continue
        past = recorded.get((row.day, row.channel))
        start = row.send_at_local
        if start is None and past is not None:  # a channel no longer under `send:`
            start = past.send_at.astimezone(campaign.zone)
        if start is None:
            continue
        # The snapshot is what was (or is being) sent; a ledger row that never started may
        # hold an item the plan has since given the day to no more.
        if past is not None and past.item.id == row.item_id:
            item: Item | None = past.item
        else:
            item = _file_item(campaign, row.item_id)
        title = item.title if item is not None else row.item_id
        url = f"{base}/desk/items/{row.item_id}"
        channel = i18n.gettext(lang, CHANNEL_LABELS[row.channel])
        state = i18n.gettext(lang, STATE_LABELS[row.state])
        lines = [item.teaser, ""] if item is not None and item.teaser else []
        lines += [
            i18n.gettext(lang, "%(channel)s um %(time)s Uhr: %(state)s", channel=channel,
                         time=start.strftime("%H:%M"), state=state),
            i18n.gettext(lang, "Im Desk: %(url)s", url=url),
        ]  # fmt: skip
        events.append(
            FeedEvent(
                uid=event_uid(campaign, row.day, row.channel, public_url),
                channel=row.channel,
                state=row.state,
                summary=f"{channel} · {title} · {state}",
                description="\n".join(lines),
                url=url,
                start=start,
                sequence=SEQUENCE[row.state],
                last_modified=_last_modified(row, past, campaign.catch_up),
                categories=channel,
            )
        )
    return events


def _file_item(campaign: Campaign, item_id: str) -> Item | None:
    return next((i for i in campaign.items if i.id == item_id), None)


def _last_modified(
    row: PlannedDispatch, past: Recorded | None, catch_up: dt.timedelta
) -> dt.datetime | None:
    """When the row reached its state, where the ledger or the clock tells."""
    if past is not None and past.changed_at is not None:
        return past.changed_at
    send_at = row.send_at_utc or (past.send_at if past is not None else None)
    if send_at is None:
        return None
    if row.state is PlanState.DUE:
        return send_at
    if row.state is PlanState.MISSED:
        return send_at + catch_up
    return None


def etag(
    campaign: Campaign, events: Iterable[FeedEvent], *, public_url: str, lang: str | None = None
) -> str:
    """A weak validator of what the feed says (its bytes differ by DTSTAMP alone); `lang`
    when the feed is not in the campaign's default language (its name and description)."""
    said = (campaign.id, campaign.name, campaign.timezone, public_url, tuple(events))
    digest = hashlib.sha256(repr(said if lang is None else (*said, lang)).encode())
    return f'W/"{digest.hexdigest()[:32]}"'


def render_calendar(
    campaign: Campaign,
    events: list[FeedEvent],
    *,
    public_url: str,
    now: dt.datetime,
    lang: str | None = None,
) -> bytes:
    """The VCALENDAR in `lang` (default: the campaign's language): the zone's VTIMEZONE
    first, then one VEVENT per send."""
    lang = campaign.reader_language(lang)
    name = i18n.gettext(lang, "%(campaign)s – Versandplan", campaign=campaign.name_in(lang))
    calendar = icalendar.Calendar.new(
        prodid="-//Clusterplattform//Dispatcher Desk//DE",
        calscale="GREGORIAN",
        method="PUBLISH",
        name=name,
        description=i18n.gettext(
            lang,
            "Wann was rausgeht: E-Mail und Posts der %(campaign)s",
            campaign=campaign.name_in(lang),
        ),
        uid=f"{campaign.id}@{public_host(public_url)}",
        url=public_url.rstrip("/") + "/desk/",
        refresh_interval=REFRESH,
    )
    calendar.add("X-WR-TIMEZONE", campaign.timezone)
    calendar.add("X-PUBLISHED-TTL", icalendar.vDuration(REFRESH))  # Outlook's REFRESH-INTERVAL
    days = [e.start.date() for e in events] or [campaign.start, campaign.end]
    calendar.add_component(vtimezone(campaign.timezone, min(days).year, max(days).year))
    stamp = now.astimezone(dt.UTC)
    for event in events:
        component = icalendar.Event.new(
            uid=event.uid,
            summary=event.summary,
            description=event.description,
            url=event.url,
            start=event.start,
            sequence=event.sequence,
            stamp=stamp,
            transparency=icalendar.TRANSP.TRANSPARENT,  # a send keeps nobody busy
            categories=[event.categories or CHANNEL_LABELS[event.channel]],
        )
        component.add("DURATION", EVENT_DURATION)
        if event.last_modified is not None:
            component.add("LAST-MODIFIED", event.last_modified.astimezone(dt.UTC))
        calendar.add_component(component)
    result: bytes = calendar.to_ical()
    return result


@functools.lru_cache(maxsize=16)
def vtimezone(key: str, first_year: int, last_year: int) -> icalendar.Timezone:
    """The VTIMEZONE of `key` for the years `first_year`..`last_year`: the observance in force
    on 1 January, then one STANDARD or DAYLIGHT per change of offset.

    RFC 5545 §3.6.5 gives an observance's DTSTART as the local time *before* the change
    (TZOFFSETFROM): Europe/Berlin's summer time of 2019 begins at 20190331T020000, +0100 →
    +0200, its winter time at 20191027T030000, +0200 → +0100. icalendar's own
    `add_missing_timezones` (7.3) writes the daylight onset as 03:00, an hour late for a
    program that reads the embedded rules instead of its own zone table; so the observances
    are made here from zoneinfo, with icalendar's components.
    """
    zone = ZoneInfo(key)
    begin = dt.datetime(first_year, 1, 1, tzinfo=zone).astimezone(dt.UTC)
    end = dt.datetime(last_year + 1, 1, 1, tzinfo=zone).astimezone(dt.UTC)
    component = icalendar.Timezone()
    component.add("TZID", key)
    first = begin.astimezone(zone)
    offset = first.utcoffset() or dt.timedelta()
    component.add_component(
        _observance(first, onset=(begin + offset).replace(tzinfo=None), offset_from=offset)
    )
    for instant in _transitions(zone, begin, end):
        before = (instant - dt.timedelta(seconds=1)).astimezone(zone).utcoffset() or dt.timedelta()
        onset = (instant + before).replace(tzinfo=None)
        component.add_component(
            _observance(instant.astimezone(zone), onset=onset, offset_from=before)
        )
    return component


def _observance(
    local: dt.datetime, *, onset: dt.datetime, offset_from: dt.timedelta
) -> icalendar.TimezoneStandard | icalendar.TimezoneDaylight:
    observance = icalendar.TimezoneDaylight() if local.dst() else icalendar.TimezoneStandard()
    observance.add("DTSTART", onset)
    observance.add("TZOFFSETFROM", offset_from)
    observance.add("TZOFFSETTO", local.utcoffset())
    observance.add("TZNAME", local.tzname())
    return observance


def _transitions(zone: ZoneInfo, begin: dt.datetime, end: dt.datetime) -> list[dt.datetime]:
    """The UTC instants (to the second) in [begin, end) at which `zone` changes its offset."""
    step = dt.timedelta(hours=1)
    found: list[dt.datetime] = []
    at = begin
    while at < end:
        later = min(at + step, end)
        if at.astimezone(zone).utcoffset() != later.astimezone(zone).utcoffset():
            low, high = at, later  # offset(low) is the old one, offset(high) the new one
            while high - low > dt.timedelta(seconds=1):
                middle = low + (high - low) / 2
                middle = middle.replace(microsecond=0)
                if middle.astimezone(zone).utcoffset() == low.astimezone(zone).utcoffset():
                    low = middle
                else:
                    high = middle
            found.append(high)
        at = later
    return found


# -- HTTP ---------------------------------------------------------------------------------------


def _not_found() -> HTTPException:
    """The answer for any token that is not in force: the same as for an unknown path."""
    return HTTPException(status_code=404)


def webcal_url(url: str) -> str:
    """The same address as `webcal://`, which phones and desktops open in their calendar."""
    return "webcal://" + url.split("://", 1)[1]


class RenderedFeeds:
    """The feed's bytes by ETag, for the few plans most recently served.

    Every editor gets the same feed, calendars poll every 15 minutes, and icalendar takes a
    few hundred milliseconds for 200 events (its line folding) where the plan takes a few.
    DTSTAMP is then the time the bytes were made — under METHOD:PUBLISH, when the calendar
    object was created — and a changed plan has another ETag, so it is rendered anew.
    """

    def __init__(self, size: int = 4) -> None:
        self._size = size
        self._entries: OrderedDict[str, bytes] = OrderedDict()
        self._lock = threading.Lock()

    def get(self, tag: str, make: Callable[[], bytes]) -> bytes:
        with self._lock:
            body = self._entries.get(tag)
            if body is not None:
                self._entries.move_to_end(tag)
                return body
        body = make()  # outside the lock: two first requests may both render, harmlessly
        with self._lock:
            self._entries[tag] = body
            while len(self._entries) > self._size:
                self._entries.popitem(last=False)
        return body


def routes(state: WebState) -> list[BaseRoute]:
    rendered = RenderedFeeds()

    def plan_ics(request: Request) -> Response:
        # Sync endpoint: Starlette runs it in a worker thread, the ledger reads block there.
        token = request.query_params.get("token", "")
        if not token or len(token) > MAX_TOKEN_LENGTH:
            raise _not_found()
        campaign = state.campaign()
        lang = campaign.reader_language(request.query_params.get("lang"))
        now = state.clock()
        public_url = state.settings.public_url
        with reader(state.engine).connect() as connection:
            if editors.feed_token_editor(connection, token) is None:
                raise _not_found()
            plan = schedule.ledger_plan(connection, campaign, now)
            recorded = recorded_sends(store.list_dispatches(connection, campaign.id))
        events = feed_events(campaign, plan, recorded, public_url=public_url, lang=lang)
        # Each language has its own tag, and so its own cached bytes.
        tag = etag(
            campaign, events, public_url=public_url,
            lang=None if lang == campaign.language else lang,
        )  # fmt: skip
        headers = {
            "ETag": tag,
            # The URL is a secret: only the editor's own calendar keeps a copy.
            "Cache-Control": "private, max-age=300",
            "Content-Disposition": f'inline; filename="{campaign.id}.ics"',
            "Referrer-Policy": "no-referrer",
            "X-Robots-Tag": "noindex",
        }
        if _matches(request.headers.get("if-none-match", ""), tag):
            return Response(status_code=304, headers=headers)
        body = rendered.get(
            tag,
            lambda: render_calendar(campaign, events, public_url=public_url, now=now, lang=lang),
        )
        return Response(body, media_type=CALENDAR_TYPE, headers=headers)

    def page(request: Request, **values: Any) -> Response:
        context: dict[str, Any] = {
            "has_feed": False,
            "feed_url": None,
            "webcal_url": None,
            "replaced": False,
            "revoked": False,
        }
        context.update(values)
        return pages.render(state, request, "kalender_abo.html.j2", **context)

    def has_feed(editor: Editor) -> bool:
        with reader(state.engine).connect() as connection:
            return editors.has_feed_token(connection, editor.id)

    @pages.signed_in
    async def subscription_page(request: Request) -> Response:
        editor: Editor = request.state.editor
        found = await run_in_threadpool(has_feed, editor)
        return page(request, has_feed=found)

    def change(editor: Editor, action: str) -> tuple[str | None, bool]:
        """A new token (and whether one was replaced), or none after revoking."""
        with state.engine.begin() as connection:
            replaced = editors.has_feed_token(connection, editor.id)
            if action == "beenden":
                editors.revoke_feed_tokens(connection, editor.id, now=state.clock())
                token = None
            else:
                token = editors.create_feed_token(connection, editor.id, now=state.clock())
        # Audit detail without the token: who and what is enough to follow it up.
        pages.record(state, editor, f"ical_{'revoke' if token is None else 'rotate'}")
        return token, replaced

    @pages.signed_in
    async def subscription_change(request: Request) -> Response:
        editor: Editor = request.state.editor
        form = await request.form()
        pages.require_csrf(request, form)
        action = form.get("aktion")
        if action not in ("erzeugen", "beenden"):
            raise HTTPException(400, pages.text(request, pages.N_("Unbekannte Aktion.")))
        token, replaced = await run_in_threadpool(change, editor, str(action))
        if token is None:
            return page(request, revoked=True)
        lang = pages.language(state, request)
        url = feed_url(
            state.settings.public_url,
            token,
            None if lang == state.campaign().language else lang,
        )
        return page(request, feed_url=url, webcal_url=webcal_url(url), replaced=replaced)

    return [
        Route("/plan.ics", plan_ics, methods=["GET"]),
        Route("/kalender-abo", subscription_page, methods=["GET"]),
        Route("/kalender-abo", subscription_change, methods=["POST"]),
    ]


def _matches(if_none_match: str, tag: str) -> bool:
    """RFC 9110 §13.1.2: weak comparison, `*` matches any current representation."""
    opaque = tag.removeprefix("W/")
    candidates = [c.strip() for c in if_none_match.split(",")]
    return "*" in candidates or any(c.removeprefix("W/") == opaque for c in candidates)
