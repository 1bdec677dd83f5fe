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
) -> Path:
    """The sample week with only `channels` under `send:` (same times as the sample, or
    `times` per channel: {"webhook": "08:01"}); `image_base` replaces the host of the item
    images (a local server in tests)."""
    text = SAMPLE.read_text(encoding="utf-8")
    if image_base is not None:
        text = text.replace("https://www.clusterplattform.de/bilder/reportage", image_base)
    block = re.search(r"^send:\n((?:  \w+: \"\d\d:\d\d\"\n)+)", text, re.MULTILINE)
    assert block is not None, "the sample's send: block changed shape"
    kept = ""
    for line in block[1].splitlines():
        channel = line.strip().split(":")[0]
        if channel in channels:
            time = (times or {}).get(channel)
            kept += (f'  {channel}: "{time}"' if time else line) + "\n"
    path = directory / "campaign.yaml"
    path.write_text(text[: block.start(1)] + kept + text[block.end(1) :], encoding="utf-8")
    return path
