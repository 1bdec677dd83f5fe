"""Write what an item will look like on every channel, before anything is sent.

Editors open the files: the email as `.eml` (what a mail client shows), `.html`
and `.txt`, and each post as text. The returned lines tell each post's length
against its network's limit, so an over-long teaser is seen before send day.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Sequence
from pathlib import Path

import jinja2

from dispatcher.campaign import calendar, planning
from dispatcher.campaign.model import Campaign, Channel, Item
from dispatcher.content import rendering
from dispatcher.mail import compose as emails
from dispatcher.settings import Settings

PREVIEW_NAME = "Erika Mustermann"
PREVIEW_ADDRESS = "erika.mustermann@example.org"


def preview_day(campaign: Campaign, plan: planning.Plan, item: Item) -> dt.date:
    """The item's planned day; an unscheduled item is shown as if sent on the first send day."""
    day = plan.day_of(item.id)
    if day is not None:
        return day
    days = calendar.send_days(campaign)
    return days[0] if days else campaign.start


def write_preview(
    settings: Settings,
    campaign: Campaign,
    plan: planning.Plan,
    item: Item,
    *,
    channels: Sequence[Channel],
    out: Path,
) -> list[str]:
    """Render `item` for each of `channels` into `out`; one line per file or post."""
    env = rendering.create_environment(settings.templates_dir)
    day = preview_day(campaign, plan, item)
    by_id = {i.id: i for i in campaign.items}
    published = [(d, by_id[i]) for d, i in plan.published_before(day) if i in by_id]
    out.mkdir(parents=True, exist_ok=True)
    lines: list[str] = []
    for channel in channels:
        if not item.uses(channel):
            lines.append(f"{channel}: not used by this item")
            continue
        if channel is Channel.EMAIL:
            lines.extend(_write_email(settings, campaign, item, day, published, env, out))
            continue
        post = rendering.render_post(env, channel, campaign, item, day=day)
        (out / f"{channel}.txt").write_text(post.text + "\n", encoding="utf-8")
        limit = f"/{post.limit}" if post.limit else " (no limit)"
        lines.append(f"{channel}: {post.length}{limit} characters -> {out / f'{channel}.txt'}")
    return lines


def _write_email(
    settings: Settings,
    campaign: Campaign,
    item: Item,
    day: dt.date,
    published: list[tuple[dt.date, Item]],
    env: jinja2.Environment,
    out: Path,
) -> list[str]:
    email = rendering.render_email(
        env,
        campaign,
        item,
        day=day,
        published=published,
        imprint=settings.imprint,
        public_url=settings.public_url,
    )
    sender = emails.Sender(
        settings.mail_from, settings.public_url, settings.secret_key.get_secret_value()
    )
    prefix, suffix = emails.message_id_parts(campaign.id, day, "email", sender.domain)
    message = emails.compose(
        email,
        campaign,
        sender,
        to_address=PREVIEW_ADDRESS,
        to_name=PREVIEW_NAME,
        unsubscribe=emails.unsubscribe_url(sender, subscriber_id=0, campaign_id=campaign.id),
        message_id=f"{prefix}preview{suffix}",
        date=calendar.local_send_time(day, campaign.send[Channel.EMAIL], campaign.zone),
    )
    html = message.get_body(("html",)).get_content()  # type: ignore[union-attr]
    text = message.get_body(("plain",)).get_content()  # type: ignore[union-attr]
    (out / "email.eml").write_bytes(message.as_bytes())
    (out / "email.html").write_text(html, encoding="utf-8")
    (out / "email.txt").write_text(text, encoding="utf-8")
    return [f"email: {email.subject!r} -> {out / 'email.eml'}, email.html, email.txt"]
