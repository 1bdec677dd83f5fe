"""What an item looks like on every channel, before it is sent or as it was sent: the one
rendering behind `dispatcher preview` and the desk's item page (docs/architecture.md).

Both call `email_preview` and `post_preview`, which use the very functions a dispatch
sends with (`rendering`, `compose`, `posts.post_of`), so what an editor looks at is what a
reader gets. The email is addressed to a sample reader; its unsubscribe link is a sample
that works nowhere (a preview file or a desk page is no subscriber's mail).
"""

from __future__ import annotations

import dataclasses
import datetime as dt
from collections.abc import Mapping
from dataclasses import dataclass
from email.message import EmailMessage
from html.parser import HTMLParser

import jinja2

from dispatcher import i18n
from dispatcher.campaign import calendar, planning
from dispatcher.campaign.model import Campaign, Channel, Item
from dispatcher.channels.base import Post
from dispatcher.content import rendering
from dispatcher.delivery.posts import post_of
from dispatcher.mail import compose as emails
from dispatcher.settings import Settings

SAMPLE_NAME = "Erika Mustermann"
SAMPLE_ADDRESS = "erika.mustermann@example.org"
#: Under the real unsubscribe route, but no token: following it says "Link ungültig".
SAMPLE_UNSUBSCRIBE_PATH = "/u/BEISPIEL-kein-echter-Abmeldelink"
PREHEADER_LENGTH = 140  #: about what inbox lists show beside the subject


def preview_day(campaign: Campaign, plan: planning.Plan, item: Item) -> dt.date:
    """The item's planned day; an unscheduled item is shown as if sent on the first send day."""
    day = plan.day_of(item.id)
    if day is not None:
        return day
    days = calendar.send_days(campaign)
    return days[0] if days else campaign.start


def published_before(
    campaign: Campaign,
    plan: planning.Plan,
    day: dt.date,
    sent: Mapping[dt.date, Item] | None = None,
) -> list[tuple[dt.date, Item]]:
    """The email's "Bisher in der …" list for `day`: a day that went out with what the ledger
    stored for it (`sent`), a later one with the file's item."""
    by_id = {i.id: i for i in campaign.items}
    listed = dict(sent or {})
    for earlier, item_id in plan.published_before(day):
        if earlier not in listed and item_id in by_id:
            listed[earlier] = by_id[item_id]
    return sorted((d, i) for d, i in listed.items() if d < day)


def sender_of(settings: Settings) -> emails.Sender:
    return emails.Sender(
        settings.mail_from, settings.public_url, settings.secret_key.get_secret_value()
    )


def sample_unsubscribe_url(settings: Settings) -> str:
    return settings.public_url.rstrip("/") + SAMPLE_UNSUBSCRIBE_PATH


@dataclass(frozen=True)
class EmailPreview:
    """One recipient's newsletter and the parts an editor checks."""

    message: EmailMessage  #: the complete message (headers, both parts)
    subject: str
    preheader: str  #: the first visible text, what inbox lists show after the subject
    sender: str  #: the From header
    to: str  #: the To header
    html: str
    text: str


def email_preview(
    settings: Settings,
    env: jinja2.Environment,
    campaign: Campaign,
    item: Item,
    *,
    day: dt.date,
    published: list[tuple[dt.date, Item]],
    to_address: str = SAMPLE_ADDRESS,
    to_name: str | None = SAMPLE_NAME,
    subject_prefix: str = "",
    message_tag: str = "preview",
    date: dt.datetime | None = None,
    lang: str | None = None,
) -> EmailPreview:
    """The newsletter of `day` for one recipient reading `lang` (default: the campaign's
    language), composed as a dispatch composes it.

    `subject_prefix` ("[TEST] "), `message_tag` (in the Message-ID where a subscriber id
    stands) and `date` (default: the planned send time) are for the desk's test send.
    `ValueError` when `item` has no version for `lang` and the fallback is skip
    (`campaign.edition` says so beforehand).
    """
    shared = rendering.render_email(
        env,
        campaign,
        item,
        day=day,
        published=published,
        imprint=settings.imprint,
        public_url=settings.public_url,
        lang=lang,
    )
    if subject_prefix:
        shared = dataclasses.replace(shared, subject=subject_prefix + shared.subject)
    sender = sender_of(settings)
    prefix, suffix = emails.message_id_parts(campaign.id, day, "email", sender.domain)
    message = emails.compose(
        shared,
        campaign,
        sender,
        to_address=to_address,
        to_name=to_name,
        unsubscribe=sample_unsubscribe_url(settings),
        message_id=f"{prefix}{message_tag}{suffix}",
        date=date or calendar.local_send_time(day, campaign.send[Channel.EMAIL], campaign.zone),
        day=day,
    )
    html = message.get_body(("html",)).get_content()  # type: ignore[union-attr]
    text = message.get_body(("plain",)).get_content()  # type: ignore[union-attr]
    return EmailPreview(
        message=message,
        subject=str(message["Subject"]),
        preheader=preheader(html),
        sender=str(message["From"]),
        to=str(message["To"]),
        html=html,
        text=text,
    )


@dataclass(frozen=True)
class PostPreview:
    rendered: rendering.RenderedPost  #: text, length by the network's rule, limit, shortened
    post: Post  #: what the channel is given: text plus link card or image and alt text


def post_preview(
    env: jinja2.Environment,
    channel: Channel,
    campaign: Campaign,
    item: Item,
    *,
    day: dt.date,
    lang: str | None = None,
) -> PostPreview:
    """The post of `day` on `channel` in `lang` (default: the campaign's language), exactly
    as its dispatch renders it; `ValueError` as `email_preview`."""
    rendered = rendering.render_post(env, channel, campaign, item, day=day, lang=lang)
    edition = campaign.edition(item, rendered.lang) or item
    send_at = calendar.local_send_time(day, campaign.send[channel], campaign.zone)
    return PostPreview(rendered, post_of(rendered, edition, created_at=send_at.astimezone(dt.UTC)))


def language_note(campaign: Campaign, item: Item, lang: str) -> str | None:
    """Why readers of `lang` do not get `item` in their language, and what they get instead;
    None when they do. The desk, `preview` and `plan` say it in these words."""
    if campaign.reader_language(lang) in campaign.languages_of(item):
        return None
    name = i18n.english_name(lang)
    if campaign.edition(item, lang) is None:
        return f"no {name} version: its readers get nothing that day (fallback: skip)"
    default = i18n.english_name(campaign.language)
    return f"no {name} version: its readers get the {default} one (fallback: default)"


class _VisibleText(HTMLParser):
    """Text a reader sees in the body, in order (no head, title or style)."""

    _HIDDEN = frozenset({"head", "title", "style", "script"})

    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.hidden = 0
        self.parts: list[str] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        if tag in self._HIDDEN:
            self.hidden += 1

    def handle_endtag(self, tag: str) -> None:
        if tag in self._HIDDEN:
            self.hidden = max(0, self.hidden - 1)

    def handle_data(self, data: str) -> None:
        if not self.hidden:
            self.parts.append(data)


def preheader(html: str, length: int = PREHEADER_LENGTH) -> str:
    """The first `length` characters of visible text: what an inbox shows after the subject."""
    parser = _VisibleText()
    parser.feed(html)
    parser.close()
    text = " ".join(" ".join(parser.parts).split())
    return text if len(text) <= length else text[: length - 1].rstrip() + "…"
