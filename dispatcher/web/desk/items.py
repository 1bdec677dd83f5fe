"""The item page: one reportage as readers and followers will see it, and a test send.

Routes (docs/desk.md, "Beitragsseite und Testversand"):

- `GET /desk/items/{item_id}[?tag=YYYY-MM-DD]`: subject, preheader, sender and recipient,
  the HTML in two sandboxed frames (600 px desktop, 375 px phone), the plain-text part, one
  card per network post with its length against the network's limit, warnings when a teaser
  was shortened, and the file's problems that concern this item. Without `tag` the day is the
  item's day in the ledger-aware plan (`delivery.schedule.ledger_plan`); a channel the ledger
  already dispatched on that day shows the item as stored with the dispatch, the others as
  the file has it now. An unknown item (or a day it has nothing on) is a 404 page.
- `GET /desk/items/{item_id}/email.html[?tag=…]`: the email's HTML alone, for the frames.
- `POST /desk/items/{item_id}/test-send`: the email to the signed-in editor, `[TEST] ` before
  the subject, through the email channel; no dispatch, no delivery row, only an audit row.
  Social networks get no test posts (their accounts are public): the cards are the preview.

Why a frame route rather than `srcdoc`: the email is a whole document with its own `<style>`
and media queries, so only a frame of the real width shows the phone layout; a route lets it
have its own, stricter policy. Its answer carries `Content-Security-Policy: sandbox` (no
scripts, no forms, an opaque origin — even when opened directly in a tab), no script source
at all, and `frame-ancestors 'self'` with `X-Frame-Options: SAMEORIGIN`, so only our own
desk page may frame it; the page itself allows `frame-src 'self'` on top of the house policy
(`dispatcher.web.hardening`, which keeps a route's own CSP). The `<iframe sandbox>` attribute
says the same on the page's side.

Everything is rendered by `dispatcher.delivery.preview`, the functions `dispatcher preview`
uses, which call the ones a dispatch sends with.
"""

from __future__ import annotations

import datetime as dt
import re
import secrets
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Literal
from urllib.parse import urlsplit

import jinja2
import sqlalchemy as sa
from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import HTMLResponse, Response
from starlette.routing import BaseRoute, Route

from dispatcher.campaign import planning
from dispatcher.campaign.model import Campaign, Channel, Item, ItemStatus, item_from_json
from dispatcher.campaign.yamlsource import YamlSyntaxError, parse
from dispatcher.channels.base import ChannelError, Envelope, Post
from dispatcher.channels.outbox import Outbox
from dispatcher.channels.smtp import SmtpChannel
from dispatcher.content.rendering import RenderedPost, TemplateProblem
from dispatcher.delivery import preview, schedule
from dispatcher.ledger import store
from dispatcher.ledger.engine import reader
from dispatcher.mail import dkim
from dispatcher.settings import Settings
from dispatcher.web.desk import actions, pages, stop
from dispatcher.web.desk.session import Editor
from dispatcher.web.hardening import content_security_policy
from dispatcher.web.ratelimit import SlidingWindowLimiter
from dispatcher.web.state import WebState

TEST_PREFIX = "[TEST] "
TEST_SENDS = 5  #: test sends per editor …
TEST_WINDOW = 15 * 60.0  #: … within this many seconds
DESKTOP_WIDTH, PHONE_WIDTH = 600, 375

CHANNEL_LABELS: Mapping[Channel, str] = {
    Channel.EMAIL: "E-Mail",
    Channel.MASTODON: "Mastodon",
    Channel.BLUESKY: "Bluesky",
    Channel.LINKEDIN: "LinkedIn",
    Channel.WEBHOOK: "Webhook (Slack, Discord, Teams, Matrix)",
}
STATE_LABELS: Mapping[planning.PlanState, str] = {
    planning.PlanState.PLANNED: "geplant",
    planning.PlanState.DUE: "fällig",
    planning.PlanState.RUNNING: "läuft",
    planning.PlanState.SENT: "gesendet",
    planning.PlanState.PARTIAL: "teilweise gesendet",
    planning.PlanState.FAILED: "fehlgeschlagen",
    planning.PlanState.MISSED: "verpasst",
    planning.PlanState.CANCELLED: "abgebrochen",
    planning.PlanState.UNSCHEDULED: "ohne Sendetag",
}

#: Why an item has no row in the plan: no send day left, or not released by the editors.
UNPLANNED: Mapping[ItemStatus, str] = {
    ItemStatus.READY: "ohne Sendetag",
    ItemStatus.DRAFT: "Entwurf (nicht freigegeben)",
    ItemStatus.HOLD: "zurückgehalten (nicht freigegeben)",
}

#: The frame's own policy: a sandbox, inline styles and https images, nothing else.
FRAME_CSP = "; ".join(
    [
        "sandbox",
        "default-src 'none'",
        "style-src 'unsafe-inline'",
        "img-src https: data:",
        "frame-ancestors 'self'",
        "base-uri 'none'",
        "form-action 'none'",
    ]
)
FRAME_HEADERS = {
    "Content-Security-Policy": FRAME_CSP,
    "X-Frame-Options": "SAMEORIGIN",
    "Cache-Control": "no-store",
    "X-Robots-Tag": "noindex",
}


# -- the view model ------------------------------------------------------------------------


@dataclass(frozen=True)
class Segment:
    """A piece of a post's text: plain, a link (`href`) or a hashtag."""

    text: str
    kind: Literal["text", "link", "hashtag"] = "text"
    href: str | None = None


@dataclass(frozen=True)
class PostCard:
    """One network's post the way that network lays it out."""

    channel: Channel
    label: str
    segments: tuple[Segment, ...]
    length: int
    limit: int | None
    shortened: bool
    #: "media": the image with its alt text (Mastodon); "link-card": title, teaser, thumbnail
    #: (Bluesky, Mastodon without image); "article": LinkedIn's article card; "plain": webhooks
    layout: Literal["media", "link-card", "article", "plain"]
    post: Post
    host: str  #: the link's host, as cards show it
    note: str  #: what the network does with the link or image
    as_sent: bool  #: the ledger's snapshot, not the file

    @property
    def counter(self) -> str:
        """`bluesky 293/300`; webhooks have no limit."""
        return (
            f"{self.channel.value} {self.length}/{self.limit}"
            if self.limit
            else (f"{self.channel.value} {self.length} Zeichen")
        )

    @property
    def over(self) -> bool:
        return self.limit is not None and self.length > self.limit


@dataclass(frozen=True)
class EmailView:
    subject: str
    preheader: str
    sender: str
    to: str
    text: str
    html: str
    send_at: dt.datetime | None  #: local
    as_sent: bool


@dataclass(frozen=True)
class ChannelState:
    channel: Channel
    label: str
    send_at: dt.datetime | None  #: local
    state: str  #: German label
    as_sent: bool


@dataclass(frozen=True)
class ItemView:
    item: Item  #: as the page shows it (the email's snapshot when there is one)
    day: dt.date
    scheduled: bool  #: False: no send day left, shown as if on the first send day
    tag: dt.date | None  #: the day the page was asked for
    channels: tuple[ChannelState, ...]
    email: EmailView | None
    posts: tuple[PostCard, ...]
    unused: tuple[str, ...]  #: labels of campaign channels this item does not use
    problems: tuple[str, ...]  #: the campaign file's problems that concern this item
    errors: tuple[str, ...]  #: what could not be rendered (a template problem, a post too long)
    days: tuple[dt.date, ...]  #: days the ledger has dispatches of this item

    @property
    def as_sent(self) -> bool:
        return any(c.as_sent for c in self.channels)


_URL = re.compile(r"https?://[^\s<>\"]+?(?=[.,:;!?)\]'\"…]*(?:\s|$))", re.IGNORECASE)
_MASTODON_PREFIX = re.compile(r"^https?://(?:www\.)?", re.IGNORECASE)
_LINKEDIN_HASHTAG = re.compile(r"\{hashtag\|\\#\|([^}]*)\}")
_LINKEDIN_ESCAPE = re.compile(r"\\(.)")


def shown_text(channel: Channel, text: str) -> str:
    """The text as followers read it: LinkedIn's little-escaped commentary unescaped."""
    if channel is not Channel.LINKEDIN:
        return text
    text = _LINKEDIN_HASHTAG.sub(lambda m: "#" + m.group(1), text)
    return _LINKEDIN_ESCAPE.sub(lambda m: m.group(1), text)


def link_label(channel: Channel, url: str) -> str:
    """Mastodon shows a link without `https://www.` and cut after 30 characters."""
    if channel is not Channel.MASTODON:
        return url
    rest = _MASTODON_PREFIX.sub("", url)
    return rest if len(rest) <= 30 else rest[:30] + "…"


def segments(channel: Channel, text: str, hashtags: Sequence[str]) -> tuple[Segment, ...]:
    """`text` cut into plain text, links and the post's hashtags (highlighted on the page)."""
    tags = sorted(hashtags, key=len, reverse=True)
    tag_pattern = "|".join(re.escape(t) + r"(?!\w)" for t in tags)
    pattern = re.compile(_URL.pattern + (f"|(?:{tag_pattern})" if tags else ""), re.IGNORECASE)
    result: list[Segment] = []
    position = 0
    for match in pattern.finditer(text):
        if match.start() > position:
            result.append(Segment(text[position : match.start()]))
        found = match.group(0)
        if found.startswith("#"):
            result.append(Segment(found, "hashtag"))
        else:
            result.append(Segment(link_label(channel, found), "link", found))
        position = match.end()
    if position < len(text):
        result.append(Segment(text[position:]))
    return tuple(result)


def post_card(channel: Channel, rendered: RenderedPost, post: Post, *, as_sent: bool) -> PostCard:
    host = urlsplit(post.link).hostname or post.link
    layout: Literal["media", "link-card", "article", "plain"]
    if channel is Channel.MASTODON and post.image_url:
        layout = "media"
        note = "Mastodon zeigt das Bild mit seinem Alt-Text; eine Linkvorschau entfällt dann."
    elif channel is Channel.MASTODON:
        layout = "link-card"
        note = (
            "Mastodon holt die Linkvorschau selbst von der verlinkten Seite; "
            "hier Titel und Teaser des Beitrags als Annäherung."
        )
    elif channel is Channel.BLUESKY:
        layout = "link-card"
        note = "Bluesky zeigt die Linkkarte mit Titel, Teaser und Vorschaubild (ohne Alt-Text)."
    elif channel is Channel.LINKEDIN:
        layout = "article"
        note = "LinkedIn zeigt den Link als Artikelkarte mit Titel und Bild samt Alt-Text."
    else:
        layout = "plain"
        note = "Chat-Dienste zeigen den Text; eine Linkvorschau erzeugt jeder Dienst selbst."
    return PostCard(
        channel=channel,
        label=CHANNEL_LABELS[channel],
        segments=segments(channel, shown_text(channel, rendered.text), rendered.hashtags),
        length=rendered.length,
        limit=rendered.limit,
        shortened=rendered.shortened,
        layout=layout,
        post=post,
        host=host,
        note=note,
        as_sent=as_sent,
    )


_ITEM_PATH = re.compile(r": items\[(\d+)\]")


def item_problems(problems: Sequence[str], file_text: str | None, item_id: str) -> list[str]:
    """Those of the file's `problems` (`file:line:col: items[3].url: …`) that are about the
    item with `item_id`: its index in the file as it is now is looked up in that file."""
    if not problems or file_text is None:
        return []
    try:
        raw = parse(file_text).value
    except YamlSyntaxError:
        return []
    entries = raw.get("items") if isinstance(raw, dict) else None
    if not isinstance(entries, list):
        return []
    indices = {
        i
        for i, entry in enumerate(entries)
        if isinstance(entry, dict) and entry.get("id") == item_id
    }
    found = []
    for problem in problems:
        match = _ITEM_PATH.search(problem)
        if match and int(match.group(1)) in indices:
            found.append(problem)
    return found


class ItemNotFoundError(LookupError):
    """No such item, or nothing of it on the day asked for; `str()` says which."""


def _state_label(row: planning.PlannedDispatch) -> str:
    return STATE_LABELS.get(row.state, row.state.value)


@dataclass(frozen=True)
class Located:
    """Which day of an item a page is about, and what the ledger stored for it that day."""

    day: dt.date
    scheduled: bool  #: the plan has a day for the item
    snapshots: dict[Channel, Item]  #: per channel dispatched on `day`: the item as stored
    file_item: Item | None  #: the item as the file has it now (None: gone from the file)
    days: tuple[dt.date, ...]  #: days the ledger has dispatches of the item


def locate(
    connection: sa.Connection,
    campaign: Campaign,
    plan: planning.Plan,
    item_id: str,
    tag: dt.date | None,
) -> Located:
    """`tag`, else the item's day in the plan (for a sent item the ledger's day), else the
    first send day (an item without a day left), else the last day it went out (an item
    removed from the file). `ItemNotFoundError` when the item is nowhere or has nothing on `tag`."""
    dispatched = [
        row for row in store.list_dispatches(connection, campaign.id) if row.item_id == item_id
    ]
    days = tuple(sorted({row.day for row in dispatched}))
    file_item = next((i for i in campaign.items if i.id == item_id), None)
    if file_item is None and not dispatched:
        raise ItemNotFoundError(
            f"Einen Beitrag „{item_id}“ gibt es weder in der Datei noch im Ledger."
        )
    plan_day = plan.day_of(item_id)
    if tag is not None:
        day = tag
        if day not in days and plan_day != day:
            raise ItemNotFoundError(
                f"Der Beitrag „{item_id}“ hat am {day:%d.%m.%Y} keinen Versand."
            )
    elif plan_day is not None:
        day = plan_day
    elif file_item is not None:
        day = preview.preview_day(campaign, plan, file_item)
    else:
        day = days[-1]
    known = {c.value for c in Channel}
    snapshots = {
        Channel(row.channel): item_from_json(row.content)
        for row in dispatched
        if row.day == day and row.channel in known
    }
    return Located(day, plan_day is not None, snapshots, file_item, days)


def item_view(
    settings: Settings,
    env: jinja2.Environment,
    campaign: Campaign,
    connection: sa.Connection,
    item_id: str,
    *,
    now: dt.datetime,
    tag: dt.date | None = None,
    problems: Sequence[str] = (),
    file_text: str | None = None,
) -> ItemView:
    """What the item page shows; `ItemNotFoundError` for an unknown item or a day without it."""
    plan = schedule.ledger_plan(connection, campaign, now)
    found = locate(connection, campaign, plan, item_id, tag)
    day, snapshots, file_item = found.day, found.snapshots, found.file_item
    rows = {
        row.channel: row
        for row in plan.rows
        if row.day == day and row.channel is not None and row.item_id == item_id
    }
    shown = snapshots.get(Channel.EMAIL) or next(iter(snapshots.values()), None) or file_item
    assert shown is not None
    channels: list[ChannelState] = []
    unused: list[str] = []
    errors: list[str] = []
    email: EmailView | None = None
    posts: list[PostCard] = []
    for channel in campaign.channels:
        item = snapshots.get(channel) or file_item
        if item is None:
            continue  # gone from the file and not dispatched on this channel
        if not item.uses(channel):
            unused.append(CHANNEL_LABELS[channel])
            continue
        row = rows.get(channel)
        as_sent = channel in snapshots
        state = _state_label(row) if row is not None else UNPLANNED[item.status]
        send_at = row.send_at_local if row is not None else None
        channels.append(ChannelState(channel, CHANNEL_LABELS[channel], send_at, state, as_sent))
        try:
            if channel is Channel.EMAIL:
                email = _email_view(
                    settings, env, campaign, connection, plan, item, day, send_at, as_sent
                )
            else:
                made = preview.post_preview(env, channel, campaign, item, day=day)
                posts.append(post_card(channel, made.rendered, made.post, as_sent=as_sent))
        except (TemplateProblem, ValueError) as problem:
            errors.append(f"{CHANNEL_LABELS[channel]}: {problem}")
    return ItemView(
        item=shown,
        day=day,
        scheduled=found.scheduled,
        tag=tag,
        channels=tuple(channels),
        email=email,
        posts=tuple(posts),
        unused=tuple(unused),
        problems=tuple(item_problems(problems, file_text, item_id)),
        errors=tuple(errors),
        days=found.days,
    )


def _published(
    connection: sa.Connection,
    campaign: Campaign,
    plan: planning.Plan,
    day: dt.date,
    *,
    as_sent: bool,
) -> list[tuple[dt.date, Item]]:
    """The email's earlier reportages: as sent, the ledger's list alone (what the dispatch
    rendered); planned, the ledger's for days gone out and the plan's for the others."""
    sent = {
        earlier: item_from_json(content)
        for earlier, content in store.published_contents(
            connection, campaign.id, channel=Channel.EMAIL.value, before=day
        )
    }
    if as_sent:
        return sorted(sent.items())
    return preview.published_before(campaign, plan, day, sent)


def _email_view(
    settings: Settings,
    env: jinja2.Environment,
    campaign: Campaign,
    connection: sa.Connection,
    plan: planning.Plan,
    item: Item,
    day: dt.date,
    send_at: dt.datetime | None,
    as_sent: bool,
) -> EmailView:
    published = _published(connection, campaign, plan, day, as_sent=as_sent)
    made = preview.email_preview(settings, env, campaign, item, day=day, published=published)
    return EmailView(
        subject=made.subject,
        preheader=made.preheader,
        sender=made.sender,
        to=made.to,
        text=made.text,
        html=made.html,
        send_at=send_at,
        as_sent=as_sent,
    )


# -- the test send ---------------------------------------------------------------------------


@dataclass(frozen=True)
class SentTest:
    address: str
    route: str  #: "SMTP-Relay host:port" or "Outbox-Datei /path/….eml"
    subject: str


def send_test_email(
    state: WebState, editor: Editor, item_id: str, *, tag: dt.date | None
) -> SentTest:
    """The item's email to `editor`, as a reader gets it but with `[TEST] ` in the subject and
    the editor as recipient. Raises `ItemNotFoundError`, `ChannelError`, `TemplateProblem`."""
    settings, campaign = state.settings, state.campaign()
    now = state.clock()
    with reader(state.engine).connect() as connection:
        plan = schedule.ledger_plan(connection, campaign, now)
        found = locate(connection, campaign, plan, item_id, tag)
        source = found.snapshots.get(Channel.EMAIL) or found.file_item
        if (
            source is None
            or Channel.EMAIL not in campaign.channels
            or not source.uses(Channel.EMAIL)
        ):
            raise ItemNotFoundError(f"Der Beitrag „{item_id}“ geht nicht per E-Mail hinaus.")
        as_sent = Channel.EMAIL in found.snapshots
        published = _published(connection, campaign, plan, found.day, as_sent=as_sent)
    made = preview.email_preview(
        settings,
        state.templates,
        campaign,
        source,
        day=found.day,
        published=published,
        to_address=editor.email,
        to_name=editor.name,
        subject_prefix=TEST_PREFIX,
        message_tag=f"test-{secrets.token_hex(6)}",
        date=now.astimezone(campaign.zone),
    )
    data = made.message.as_bytes()
    signer = dkim.load_signer(settings)
    if signer is not None:
        data = signer.sign(data)
    sender = preview.sender_of(settings)
    key = str(made.message["Message-ID"]).strip("<>")
    channel = state.email_channel()
    try:
        receipt = channel.send(
            Envelope(settings.return_path or sender.address, editor.email, data), key=key
        )
    finally:
        channel.close()
    return SentTest(editor.email, _route(channel, receipt.provider_id), made.subject)


def _route(channel: object, provider_id: str) -> str:
    if isinstance(channel, Outbox):
        return f"Outbox-Datei {provider_id}"
    if isinstance(channel, SmtpChannel):
        return f"SMTP-Relay {channel.target.host}:{channel.target.port}"
    return f"E-Mail-Kanal {getattr(channel, 'kind', 'email')}"


# -- routes ---------------------------------------------------------------------------------


def _tag(request: Request) -> dt.date | None:
    value = request.query_params.get("tag")
    if not value:
        return None
    try:
        return dt.date.fromisoformat(value)
    except ValueError:
        raise ItemNotFoundError(f"„{value}“ ist kein Tag (JJJJ-MM-TT).") from None


def _file_text(settings: Settings) -> str | None:
    try:
        return settings.campaign_file.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError):
        return None


def routes(state: WebState) -> list[BaseRoute]:
    limiter = SlidingWindowLimiter(TEST_SENDS, TEST_WINDOW)
    page_csp = content_security_policy(state.settings.public_url) + "; frame-src 'self'"

    def build(request: Request, tag: dt.date | None) -> ItemView:
        item_id = request.path_params["item_id"]
        found, _ = pages.problems(state)
        with reader(state.engine).connect() as connection:
            return item_view(
                state.settings,
                state.templates,
                state.campaign(),
                connection,
                item_id,
                now=state.clock(),
                tag=tag,
                problems=found,
                file_text=_file_text(state.settings) if found else None,
            )

    def not_found(request: Request, reason: str) -> HTMLResponse:
        return pages.render(
            state, request, "item_not_found.html.j2", status=404, reason=reason,
            items=state.campaign().items,
        )  # fmt: skip

    def queue_forms(item_id: str) -> actions.ItemActions | None:
        with reader(state.engine).connect() as connection:
            return actions.item_actions(
                connection, state.campaign(), state.settings.campaign_file, item_id,
                now=state.clock(),
            )  # fmt: skip

    @pages.signed_in
    async def item_page(request: Request) -> Response:
        try:
            view = await run_in_threadpool(build, request, _tag(request))
        except ItemNotFoundError as missing:
            return not_found(request, str(missing))
        allowed = await run_in_threadpool(queue_forms, request.path_params["item_id"])
        running = await run_in_threadpool(
            stop.stoppable_dispatches, state, request.path_params["item_id"]
        )
        return pages.render(
            state,
            request,
            "item.html.j2",
            view=view,
            allowed=allowed,
            read_only_help=actions.READ_ONLY_HELP,
            stoppable=running,
            desktop=DESKTOP_WIDTH,
            phone=PHONE_WIDTH,
            test_limit=TEST_SENDS,
            test_window_minutes=round(TEST_WINDOW / 60),
            headers={"Content-Security-Policy": page_csp},
        )

    @pages.signed_in
    async def email_frame(request: Request) -> Response:
        try:
            view = await run_in_threadpool(build, request, _tag(request))
        except ItemNotFoundError as missing:
            return HTMLResponse(str(missing), 404, headers=FRAME_HEADERS)
        if view.email is None:
            return HTMLResponse("Dieser Beitrag geht nicht per E-Mail hinaus.", 404,
                                headers=FRAME_HEADERS)  # fmt: skip
        return HTMLResponse(view.email.html, headers=FRAME_HEADERS)

    @pages.signed_in
    async def send_test(request: Request) -> Response:
        form = await request.form()
        pages.require_csrf(request, form)
        editor: Editor = request.state.editor
        item_id = request.path_params["item_id"]
        given = form.get("tag")
        try:
            tag = dt.date.fromisoformat(given) if isinstance(given, str) and given else None
        except ValueError:
            return not_found(request, f"„{given}“ ist kein Tag (JJJJ-MM-TT).")
        wait = limiter.hit(f"editor:{editor.id}")
        if wait is not None:
            return pages.render(
                state, request, "item_test_sent.html.j2", status=429,
                headers={"Retry-After": limiter.retry_after_header(wait)},
                item_id=item_id, tag=tag, sent=None, error=None,
                retry_minutes=max(1, round(wait / 60)), test_limit=TEST_SENDS,
                test_window_minutes=round(TEST_WINDOW / 60),
            )  # fmt: skip
        try:
            sent = await run_in_threadpool(send_test_email, state, editor, item_id, tag=tag)
        except ItemNotFoundError as missing:
            return not_found(request, str(missing))
        except (ChannelError, TemplateProblem, ValueError) as failure:
            await run_in_threadpool(
                pages.record, state, editor, "test_send_failed", f"{item_id}: {failure}"
            )
            return pages.render(
                state, request, "item_test_sent.html.j2", status=502, item_id=item_id,
                tag=tag, sent=None, error=str(failure),
            )  # fmt: skip
        await run_in_threadpool(
            pages.record, state, editor, "test_send", f"{item_id} an {sent.address} ({sent.route})"
        )
        return pages.render(
            state, request, "item_test_sent.html.j2", item_id=item_id, tag=tag, sent=sent,
            error=None,
        )  # fmt: skip

    return [
        Route("/items/{item_id}", item_page, methods=["GET"]),
        Route("/items/{item_id}/email.html", email_frame, methods=["GET"]),
        Route("/items/{item_id}/test-send", send_test, methods=["POST"]),
    ]
