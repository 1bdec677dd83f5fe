"""Copies of the bundled campaign for tests, restricted to the channels a test is about."""

from __future__ import annotations

import re
from pathlib import Path

SAMPLE = Path(__file__).parents[2] / "config" / "campaign.yaml"


def campaign_copy(
    directory: Path,
    *,
    channels: tuple[str, ...] = ("email",),
    image_base: str | None = None,
    times: dict[str, str] | None = None,
    post_languages: bool = False,
) -> Path:
    """The sample week with only `channels` under `send:` (same times as the sample, or
    `times` per channel: {"webhook": "08:01"}); `image_base` replaces the host of the item
    images (a local server in tests).

    The sample's Mastodon posts in German and English (`{time: …, lang: [de, en]}`); a copy
    posts in the default language only, one post per network and day as most tests count,
    unless `post_languages` keeps the sample's languages."""
    text = SAMPLE.read_text(encoding="utf-8")
    if image_base is not None:
        text = text.replace("https://www.clusterplattform.de/bilder/reportage", image_base)
    block = re.search(r"^send:\n((?:  .*\n)+)", text, re.MULTILINE)
    assert block is not None, "the sample's send: block changed shape"
    kept = ""
    for line in block[1].splitlines():
        if line.lstrip().startswith("#"):
            continue  # the sample's comments speak of channels a copy may not have
        entry = re.fullmatch(
            r'  (\w+): (?:"(\d\d:\d\d)"|\{time: "(\d\d:\d\d)", (lang: .*)\})', line
        )
        assert entry is not None, f"the sample's send: entry changed shape: {line}"
        channel, time = entry[1], (times or {}).get(entry[1]) or entry[2] or entry[3]
        if channel in channels:
            if entry[4] and post_languages:
                kept += f'  {channel}: {{time: "{time}", {entry[4]}}}\n'
            else:
                kept += f'  {channel}: "{time}"\n'
    path = directory / "campaign.yaml"
    path.write_text(text[: block.start(1)] + kept + text[block.end(1) :], encoding="utf-8")
    return path
