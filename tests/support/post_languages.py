"""A two-day campaign in German and English whose networks post in the languages a test
gives them (`send: {mastodon: {time: "08:05", lang: [de, en]}}`), for the posts-per-language
tests; independent of the bundled sample's texts."""

from __future__ import annotations

import textwrap
from pathlib import Path

CAMPAIGN = textwrap.dedent(
    """\
    campaign:
      id: sprachwoche
      name: "Sprachwoche"
      timezone: Europe/Berlin
      start: 2019-04-02
      end: 2019-04-03
      weekdays: [mon, tue, wed, thu, fri]
      locales: [de, en]
      fallback: FALLBACK
    send:
    SEND
    items:
      - id: werften
        title: "Werften im Wandel"
        teaser: "Wie Kiel seine maritime Wirtschaft neu erfindet."
        url: https://example.org/werften
        initiative: "Maritimes Cluster"
        region: Schleswig-Holstein
        tags: [Meer]
        translations:
          en:
            title: "Shipyards in change"
            teaser: "How Kiel reinvents its maritime industry."
            url: https://example.org/en/shipyards
            tags: [Sea]
      - id: chips
        title: "Chips aus Sachsen"
        teaser: "Mikroelektronik zwischen Dresden und Freiberg."
        url: https://example.org/chips
        initiative: "Silicon Saxony"
        region: Sachsen
        tags: [Chips]
    """
)
#: both languages on every network (the default: the campaign's default language only)
BOTH = {
    "mastodon": '{time: "08:05", lang: [de, en]}',
    "bluesky": '{time: "08:05", lang: [de, en]}',
    "linkedin": '{time: "09:00", lang: [de, en]}',
    "webhook": '{time: "08:00", lang: [de, en]}',
}


def campaign_file(
    directory: Path,
    send: dict[str, str],
    *,
    fallback: str = "default",
    first_day_translated: bool = True,
) -> Path:
    """The two-day campaign above with `send` (channel → its YAML value); the first day's
    item has an English version (unless not `first_day_translated`), the second has none."""
    lines = "\n".join(f"  {channel}: {value}" for channel, value in send.items())
    text = CAMPAIGN.replace("FALLBACK", fallback).replace("SEND", lines)
    if not first_day_translated:
        start = text.index("    translations:")
        text = text[:start] + text[text.index("  - id: chips") :]
    path = directory / "campaign.yaml"
    path.write_text(text, encoding="utf-8")
    return path
