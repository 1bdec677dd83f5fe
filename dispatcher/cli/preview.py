"""Write what an item will look like on every channel, before anything is sent.

Editors open the files: the email as `.eml` (what a mail client shows), `.html`
and `.txt`, and each post as text. The returned lines tell each post's length
against its network's limit, so an over-long teaser is seen before send day.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

from dispatcher.campaign import planning
from dispatcher.campaign.model import Campaign, Channel, Item
from dispatcher.content import rendering
from dispatcher.delivery import preview
from dispatcher.settings import Settings

# The sample reader and the day, shared with the desk's item page (delivery/preview.py).
PREVIEW_NAME = preview.SAMPLE_NAME
PREVIEW_ADDRESS = preview.SAMPLE_ADDRESS
preview_day = preview.preview_day


def write_preview(
    settings: Settings,
    campaign: Campaign,
    plan: planning.Plan,
    item: Item,
    *,
    channels: Sequence[Channel],
    out: Path,
) -> list[str]:
    """Render `item` for each of `channels` and each language into `out`; one line per file
    or post. The default language's files are `email.eml`, `mastodon.txt`, …; another
    language's carry it before the suffix (`email.en.eml`, `mastodon.en.txt`)."""
    env = rendering.create_environment(settings.templates_dir)
    day = preview_day(campaign, plan, item)
    out.mkdir(parents=True, exist_ok=True)
    lines: list[str] = []
    for channel in channels:
        if not item.uses(channel):
            lines.append(f"{channel}: not used by this item")
            continue
        languages = (
            campaign.locales if channel is Channel.EMAIL else campaign.post_languages_of(channel)
        )
        for lang in languages:
            label = channel.value if lang == campaign.language else f"{channel.value} ({lang})"
            stem = channel.value if lang == campaign.language else f"{channel.value}.{lang}"
            note = preview.language_note(campaign, item, lang)
            if campaign.edition(item, lang) is None:
                lines.append(f"{label}: {note}")
                continue
            note = f" [{note}]" if note else ""
            if channel is Channel.EMAIL:
                published = preview.published_before(campaign, plan, day)
                email = preview.email_preview(
                    settings, env, campaign, item, day=day, published=published, lang=lang
                )
                (out / f"{stem}.eml").write_bytes(email.message.as_bytes())
                (out / f"{stem}.html").write_text(email.html, encoding="utf-8")
                (out / f"{stem}.txt").write_text(email.text, encoding="utf-8")
                lines.append(
                    f"{label}: {email.subject!r} -> {out / f'{stem}.eml'}, {stem}.html, "
                    f"{stem}.txt{note}"
                )
                continue
            post = preview.post_preview(env, channel, campaign, item, day=day, lang=lang).rendered
            (out / f"{stem}.txt").write_text(post.text + "\n", encoding="utf-8")
            limit = f"/{post.limit}" if post.limit else " (no limit)"
            shortened = ", teaser shortened to fit" if post.shortened else ""
            lines.append(
                f"{label}: {post.length}{limit} characters{shortened} -> "
                f"{out / f'{stem}.txt'}{note}"
            )
    return lines
