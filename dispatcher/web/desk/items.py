"""The item page: one reportage as readers and followers will see it, and a test send.

Routes (docs/desk.md, "Beitragsseite und Testversand"):

- `GET /desk/items/{item_id}[?tag=YYYY-MM-DD]`: subject, preheader, sender and recipient,
  the HTML in two sandboxed frames (600 px desktop, 375 px phone), the plain-text part, one
  card per network post with its length against the network's limit, warnings when a teaser
  was shortened, and the file's problems that concern this item. Without `tag` the day is the
  item's day in the ledger-aware plan (`delivery.schedule.ledger_plan`); a channel the ledger
  already dispatched on that day shows the item as stored with the dispatch, the others as
  the file has it now. An unknown item (or a day it has nothing on) is a 404 page.
  Email and posts come once per language of the campaign (an `Edition`), each as readers of
  that language get them; an item without a version in a language says what its readers get
  instead (the campaign's `fallback`: the default language's version, or nothing that day).
- `GET /desk/items/{item_id}/email.html[?tag=…][&ausgabe=en]`: the email's HTML alone, for the
  frames; `ausgabe` is the edition's language (default: the campaign's).
- `POST /desk/items/{item_id}/test-send`: the email to the signed-in editor, `[TEST] ` before
  the subject, through the email channel; no dispatch, no delivery row, only an audit row.
  The form's `ausgabe` says which language's email. Social networks get no test posts (their
  accounts are public): the cards are the preview.

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

from dispatcher import i18n
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
from dispatcher.web.desk.pages import N_, language_name
from dispatcher.web.desk.session import Editor
from dispatcher.web.hardening import content_security_policy
from dispatcher.web.ratelimit import SlidingWindowLimiter
from dispatcher.web.state import WebState

TEST_PREFIX = "[TEST] "
TEST_SENDS = 5  #: test sends per editor …
TEST_WINDOW = 15 * 60.0  #: … within this many seconds
DESKTOP_WIDTH, PHONE_WIDTH = 600, 375

EDITION = "ausgabe"  #: query and form field: the language of the email a frame or test shows

#: The labels below are German texts of the `desk` catalogue, translated where they are shown.
CHANNEL_LABELS: Mapping[Channel, str] = {
    Channel.EMAIL: N_("E-Mail"),
    Channel.MASTODON: "Mastodon",
    Channel.BLUESKY: "Bluesky",
    Channel.LINKEDIN: "LinkedIn",
    Channel.WEBHOOK: N_("Webhook (Slack, Discord, Teams, Matrix)"),
}
STATE_LABELS: Mapping[planning.PlanState, str] = {
    planning.PlanState.PLANNED: N_("geplant"),
    planning.PlanState.DUE: N_("fällig"),
    planning.PlanState.RUNNING: N_("läuft"),
    planning.PlanState.SENT: N_("gesendet"),
    planning.PlanState.PARTIAL: N_("teilweise gesendet"),
    planning.PlanState.FAILED: N_("fehlgeschlagen"),
    planning.PlanState.MISSED: N_("verpasst"),
    planning.PlanState.CANCELLED: N_("abgebrochen"),
    planning.PlanState.UNSCHEDULED: N_("ohne Sendetag"),
}

#: Why an item has no row in the plan: no send day left, or not released by the editors.
UNPLANNED: Mapping[ItemStatus, str] = {
    ItemStatus.READY: N_("ohne Sendetag"),
    ItemStatus.DRAFT: N_("Entwurf (nicht freigegeben)"),
    ItemStatus.HOLD: N_("zurückgehalten (nicht freigegeben)"),
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
    note: str  #: what the network does with the link or image (in the page's language)
    as_sent: bool  #: the ledger's snapshot, not the file
    lang: str = i18n.SOURCE_LANGUAGE  #: the page's language

    @property
    def counter(self) -> str:
        """`bluesky 293/300`; webhooks have no limit."""
        if self.limit:
            return f"{self.channel.value} {self.length}/{self.limit}"
        return i18n.gettext(
            self.lang, "%(network)s %(length)s Zeichen", network=self.channel.value,
            length=self.length,
        )  # fmt: skip

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
    state: str  #: label in the page's language
    as_sent: bool


@dataclass(frozen=True)
class Edition:
    """The item as readers of one language get it: their email and the posts in their
    language, or a note that the item has no version in it and what they get instead."""

    lang: str
    name: str  #: the language's name in itself ("English")
    default: bool  #: the campaign's default language (the item's own texts)
    #: the item has no version in `lang`: what its readers get (None: it has one)
    note: str | None
    email: EmailView | None
    posts: tuple[PostCard, ...]
    #: networks the item goes out on that post in other languages only
    elsewhere: tuple[str, ...] = ()

    @property
    def ids(self) -> str:
        """What the ids of the edition's headings start with: the default language keeps
        the page's plain ids ("email"), another has its own ("en-email")."""
        return "" if self.default else f"{self.lang}-"


@dataclass(frozen=True)
class ItemView:
    item: Item  #: as the page shows it (the email's snapshot when there is one)
    day: dt.date
    scheduled: bool  #: False: no send day left, shown as if on the first send day
    tag: dt.date | None  #: the day the page was asked for
    channels: tuple[ChannelState, ...]
    editions: tuple[Edition, ...]  #: one per language of the campaign, the default first
    unused: tuple[str, ...]  #: labels of campaign channels this item does not use
    problems: tuple[str, ...]  #: the campaign file's problems that concern this item
    errors: tuple[str, ...]  #: what could not be rendered (a template problem, a post too long)
    days: tuple[dt.date, ...]  #: days the ledger has dispatches of this item

    @property
    def as_sent(self) -> bool:
        return any(c.as_sent for c in self.channels)

    def edition(self, lang: str) -> Edition | None:
        return next((e for e in self.editions if e.lang == lang), None)

    @property
    def email(self) -> EmailView | None:
        """The default language's email."""
        return self.editions[0].email if self.editions else None

    @property
    def posts(self) -> tuple[PostCard, ...]:
        """The default language's posts."""
        return self.editions[0].posts if self.editions else ()


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


def post_card(
    channel: Channel,
    rendered: RenderedPost,
    post: Post,
    *,
    as_sent: bool,
    lang: str = i18n.SOURCE_LANGUAGE,
) -> PostCard:
    """The card of `post`, its labels and note in `lang` (the page's language)."""
    host = urlsplit(post.link).hostname or post.link
    layout: Literal["media", "link-card", "article", "plain"]
    if channel is Channel.MASTODON and post.image_url:
        layout = "media"
        note = N_("Mastodon zeigt das Bild mit seinem Alt-Text; eine Linkvorschau entfällt dann.")
    elif channel is Channel.MASTODON:
        layout = "link-card"
        note = N_(
            "Mastodon holt die Linkvorschau selbst von der verlinkten Seite; "
            "hier Titel und Teaser des Beitrags als Annäherung."
        )
    elif channel is Channel.BLUESKY:
        layout = "link-card"
        note = N_("Bluesky zeigt die Linkkarte mit Titel, Teaser und Vorschaubild (ohne Alt-Text).")
    elif channel is Channel.LINKEDIN:
        layout = "article"
        note = N_("LinkedIn zeigt den Link als Artikelkarte mit Titel und Bild samt Alt-Text.")
    else:
        layout = "plain"
        note = N_("Chat-Dienste zeigen den Text; eine Linkvorschau erzeugt jeder Dienst selbst.")
    return PostCard(
        channel=channel,
        label=i18n.gettext(lang, CHANNEL_LABELS[channel]),
        segments=segments(channel, shown_text(channel, rendered.text), rendered.hashtags),
        length=rendered.length,
        limit=rendered.limit,
        shortened=rendered.shortened,
        layout=layout,
        post=post,
        host=host,
        note=i18n.gettext(lang, note),
        as_sent=as_sent,
        lang=lang,
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


def _state_label(row: planning.PlannedDispatch, lang: str) -> str:
    label = STATE_LABELS.get(row.state)
    return row.state.value if label is None else i18n.gettext(lang, label)


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
    *,
    lang: str | None = None,
) -> Located:
    """`tag`, else the item's day in the plan (for a sent item the ledger's day), else the
    first send day (an item without a day left), else the last day it went out (an item
    removed from the file). `ItemNotFoundError` when the item is nowhere or has nothing on
    `tag`, saying so in `lang` (default: the campaign's language)."""
    lang = campaign.reader_language(lang)
    dispatched = [
        row for row in store.list_dispatches(connection, campaign.id) if row.item_id == item_id
    ]
    days = tuple(sorted({row.day for row in dispatched}))
    file_item = next((i for i in campaign.items if i.id == item_id), None)
    if file_item is None and not dispatched:
        raise ItemNotFoundError(
            i18n.gettext(
                lang, "Einen Beitrag „%(item)s“ gibt es weder in der Datei noch im Ledger.",
                item=item_id,
            )
        )  # fmt: skip
    plan_day = plan.day_of(item_id)
    if tag is not None:
        day = tag
        if day not in days and plan_day != day:
            shown = i18n.format_day(day, i18n.gettext(lang, "dd.MM.yyyy"), lang=lang)
            raise ItemNotFoundError(
                i18n.gettext(
                    lang, "Der Beitrag „%(item)s“ hat am %(day)s keinen Versand.",
                    item=item_id, day=shown,
                )
            )  # fmt: skip
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
    lang: str | None = None,
    editions: Sequence[str] | None = None,
) -> ItemView:
    """What the item page shows, its labels in `lang` (the editor's; default: the campaign's
    language), with an `Edition` for each of `editions` (default: every language of the
    campaign); `ItemNotFoundError` for an unknown item or a day without it."""
    lang = campaign.reader_language(lang)
    plan = schedule.ledger_plan(connection, campaign, now)
    found = locate(connection, campaign, plan, item_id, tag, lang=lang)
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
    used: dict[Channel, tuple[Item, dt.datetime | None, bool]] = {}
    for channel in campaign.channels:
        item = snapshots.get(channel) or file_item
        if item is None:
            continue  # gone from the file and not dispatched on this channel
        label = i18n.gettext(lang, CHANNEL_LABELS[channel])
        if not item.uses(channel):
            unused.append(label)
            continue
        row = rows.get(channel)
        as_sent = channel in snapshots
        state = (
            _state_label(row, lang)
            if row is not None
            else i18n.gettext(lang, UNPLANNED[item.status])
        )
        send_at = row.send_at_local if row is not None else None
        channels.append(ChannelState(channel, label, send_at, state, as_sent))
        used[channel] = (item, send_at, as_sent)
    errors: list[str] = []
    shown_editions = [
        _edition(settings, env, campaign, connection, plan, day, shown, used, reader, lang, errors)
        for reader in campaign.locales
        if editions is None or reader in editions
    ]
    return ItemView(
        item=shown,
        day=day,
        scheduled=found.scheduled,
        tag=tag,
        channels=tuple(channels),
        editions=tuple(shown_editions),
        unused=tuple(unused),
        problems=tuple(item_problems(problems, file_text, item_id)),
        errors=tuple(errors),
        days=found.days,
    )


def _edition(
    settings: Settings,
    env: jinja2.Environment,
    campaign: Campaign,
    connection: sa.Connection,
    plan: planning.Plan,
    day: dt.date,
    shown: Item,
    used: Mapping[Channel, tuple[Item, dt.datetime | None, bool]],
    reader: str,
    lang: str,
    errors: list[str],
) -> Edition:
    """The email and posts readers of `reader` get on `day` (as the ledger stored what went
    out); labels and notes in `lang`; what cannot be rendered goes to `errors`."""
    default = reader == campaign.language
    name = language_name(reader, lang)
    note = None
    if reader not in campaign.languages_of(shown):
        if campaign.edition(shown, reader) is None:
            note = i18n.gettext(
                lang,
                "Dieser Beitrag hat keine Fassung auf %(language)s: Wer auf %(language)s "
                "liest, bekommt an diesem Tag nichts (fallback: skip).",
                language=name,
            )
            return Edition(reader, name, default, note, None, ())
        note = i18n.gettext(
            lang,
            "Dieser Beitrag hat keine Fassung auf %(language)s: Wer auf %(language)s liest, "
            "bekommt die Fassung auf %(default)s (fallback: default).",
            language=name,
            default=language_name(campaign.language, lang),
        )
    email: EmailView | None = None
    posts: list[PostCard] = []
    elsewhere: list[str] = []
    for channel, (item, send_at, as_sent) in used.items():
        label = i18n.gettext(lang, CHANNEL_LABELS[channel])
        if channel is not Channel.EMAIL and reader not in campaign.post_languages_of(channel):
            elsewhere.append(label)
            continue
        try:
            if channel is Channel.EMAIL:
                email = _email_view(
                    settings, env, campaign, connection, plan, item, day, send_at, as_sent,
                    reader,
                )  # fmt: skip
            else:
                made = preview.post_preview(env, channel, campaign, item, day=day, lang=reader)
                posts.append(
                    post_card(channel, made.rendered, made.post, as_sent=as_sent, lang=lang)
                )
        except (TemplateProblem, ValueError) as problem:
            where = label if default else f"{label} ({name})"
            errors.append(f"{where}: {problem}")
    return Edition(reader, name, default, note, email, tuple(posts), tuple(elsewhere))


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
    reader: str,
) -> EmailView:
    published = _published(connection, campaign, plan, day, as_sent=as_sent)
    made = preview.email_preview(
        settings, env, campaign, item, day=day, published=published, lang=reader
    )
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
    route: str  #: "SMTP-Relay host:port" or "Outbox-Datei /path/….eml" (the page's language)
    subject: str
    record_route: str  #: `route` for the audit log, in the campaign's language


def send_test_email(
    state: WebState,
    editor: Editor,
    item_id: str,
    *,
    tag: dt.date | None,
    lang: str | None = None,
    edition: str | None = None,
) -> SentTest:
    """The item's email in `edition` (default: the campaign's language) to `editor`, as a
    reader of that language gets it but with `[TEST] ` in the subject and the editor as
    recipient; what goes wrong is said in `lang`. Raises `ItemNotFoundError`,
    `ChannelError`, `TemplateProblem`, `ValueError` (no version in `edition`, fallback skip)."""
    settings, campaign = state.settings, state.campaign()
    lang = campaign.reader_language(lang)
    now = state.clock()
    with reader(state.engine).connect() as connection:
        plan = schedule.ledger_plan(connection, campaign, now)
        found = locate(connection, campaign, plan, item_id, tag, lang=lang)
        source = found.snapshots.get(Channel.EMAIL) or found.file_item
        if (
            source is None
            or Channel.EMAIL not in campaign.channels
            or not source.uses(Channel.EMAIL)
        ):
            raise ItemNotFoundError(
                i18n.gettext(lang, "Der Beitrag „%(item)s“ geht nicht per E-Mail hinaus.",
                             item=item_id)
            )  # fmt: skip
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
        lang=campaign.reader_language(edition),
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
    return SentTest(
        editor.email,
        _route(channel, receipt.provider_id, lang),
        made.subject,
        _route(channel, receipt.provider_id, campaign.language),
    )


def _route(channel: object, provider_id: str, lang: str) -> str:
    if isinstance(channel, Outbox):
        return i18n.gettext(lang, "Outbox-Datei %(path)s", path=provider_id)
    if isinstance(channel, SmtpChannel):
        return f"SMTP-Relay {channel.target.host}:{channel.target.port}"
    return i18n.gettext(lang, "E-Mail-Kanal %(kind)s", kind=getattr(channel, "kind", "email"))


# -- routes ---------------------------------------------------------------------------------


NOT_A_DAY = N_("„%(value)s“ ist kein Tag (JJJJ-MM-TT).")


def _tag(request: Request) -> dt.date | None:
    value = request.query_params.get("tag")
    if not value:
        return None
    try:
        return dt.date.fromisoformat(value)
    except ValueError:
        raise ItemNotFoundError(pages.text(request, NOT_A_DAY, value=value)) from None


def _file_text(settings: Settings) -> str | None:
    try:
        return settings.campaign_file.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError):
        return None


def routes(state: WebState) -> list[BaseRoute]:
    limiter = SlidingWindowLimiter(TEST_SENDS, TEST_WINDOW)
    page_csp = content_security_policy(state.settings.public_url) + "; frame-src 'self'"

    def build(
        request: Request, tag: dt.date | None, editions: Sequence[str] | None = None
    ) -> ItemView:
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
                lang=pages.language(state, request),
                editions=editions,
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
            view = await run_in_threadpool(lambda: build(request, _tag(request)))
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
            read_only_help=pages.text(request, actions.READ_ONLY_HELP),
            stoppable=running,
            desktop=DESKTOP_WIDTH,
            phone=PHONE_WIDTH,
            test_limit=TEST_SENDS,
            test_window_minutes=round(TEST_WINDOW / 60),
            headers={"Content-Security-Policy": page_csp},
        )

    @pages.signed_in
    async def email_frame(request: Request) -> Response:
        edition = state.campaign().reader_language(request.query_params.get(EDITION))
        try:
            view = await run_in_threadpool(lambda: build(request, _tag(request), [edition]))
        except ItemNotFoundError as missing:
            return HTMLResponse(str(missing), 404, headers=FRAME_HEADERS)
        shown = view.edition(edition)
        if shown is None or shown.email is None:
            return HTMLResponse(
                pages.text(
                    request, N_("Dieser Beitrag geht in dieser Sprache nicht per E-Mail hinaus.")
                )
                if shown is not None and shown.note
                else pages.text(request, N_("Dieser Beitrag geht nicht per E-Mail hinaus.")),
                404,
                headers=FRAME_HEADERS,
            )
        return HTMLResponse(shown.email.html, headers=FRAME_HEADERS)

    @pages.signed_in
    async def send_test(request: Request) -> Response:
        form = await request.form()
        pages.require_csrf(request, form)
        editor: Editor = request.state.editor
        item_id = request.path_params["item_id"]
        given = form.get("tag")
        asked = form.get(EDITION)
        edition = state.campaign().reader_language(asked if isinstance(asked, str) else None)
        try:
            tag = dt.date.fromisoformat(given) if isinstance(given, str) and given else None
        except ValueError:
            return not_found(request, pages.text(request, NOT_A_DAY, value=given))
        wait = limiter.hit(f"editor:{editor.id}")
        if wait is not None:
            return pages.render(
                state, request, "item_test_sent.html.j2", status=429,
                headers={"Retry-After": limiter.retry_after_header(wait)},
                item_id=item_id, tag=tag, sent=None, error=None, edition=edition,
                retry_minutes=max(1, round(wait / 60)), test_limit=TEST_SENDS,
                test_window_minutes=round(TEST_WINDOW / 60),
            )  # fmt: skip
        lang = pages.language(state, request)
        try:
            sent = await run_in_threadpool(
                lambda: send_test_email(state, editor, item_id, tag=tag, lang=lang,
                                        edition=edition)
            )  # fmt: skip
        except ItemNotFoundError as missing:
            return not_found(request, str(missing))
        except (ChannelError, TemplateProblem, ValueError) as failure:
            await run_in_threadpool(
                pages.record, state, editor, "test_send_failed", f"{item_id}: {failure}"
            )
            return pages.render(
                state, request, "item_test_sent.html.j2", status=502, item_id=item_id,
                tag=tag, sent=None, error=str(failure), edition=edition,
            )  # fmt: skip
        campaign = state.campaign()
        await run_in_threadpool(
            pages.record, state, editor, "test_send",
            f"{item_id} an {sent.address} ({sent.record_route})"
            + ("" if edition == campaign.language else f" [{edition}]"),
        )  # fmt: skip
        return pages.render(
            state, request, "item_test_sent.html.j2", item_id=item_id, tag=tag, sent=sent,
            error=None, edition=edition,
        )  # fmt: skip

    return [
        Route("/items/{item_id}", item_page, methods=["GET"]),
        Route("/items/{item_id}/email.html", email_frame, methods=["GET"]),
        Route("/items/{item_id}/test-send", send_test, methods=["POST"]),
    ]
