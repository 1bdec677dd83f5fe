"""A copy of the sample campaign in German and English whose English items a test chooses.

The bundled sample's own translations may change; tests of the language machinery need to
know exactly which items have an English version, so `bilingual_copy` replaces them: the
items named in `english` get a plain English version (texts starting "EN:"), the others none.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

import yaml

from tests.support.campaigns import campaign_copy


def english_title(item_id: str) -> str:
    return f"EN: Spotlight on {item_id}"


def english_url(item_id: str) -> str:
    return f"https://www.clusterplattform.de/en/report/{item_id}"


def bilingual_copy(
    directory: Path,
    *,
    english: Sequence[str] = (),
    locales: Sequence[str] = ("de", "en"),
    fallback: str = "default",
    english_name: str | None = None,
    **copy: Any,
) -> Path:
    """The email-only sample (`campaign_copy(directory / "bilingual", **copy)`: not where
    `tests.support.webapp` writes its own copy) with `locales`, `fallback`, English
    versions of exactly the items `english`, and the campaign's English name `english_name`
    (None: its one name in every language)."""
    (directory / "bilingual").mkdir(exist_ok=True)
    path = campaign_copy(directory / "bilingual", **copy)
    data = yaml.safe_load(path.read_text(encoding="utf-8"))
    data["campaign"].pop("locale", None)
    data["campaign"].pop("translations", None)
    if english_name is not None:
        data["campaign"]["translations"] = {"en": {"name": english_name}}
    data["campaign"]["locales"] = list(locales)
    data["campaign"]["fallback"] = fallback
    for item in data["items"]:
        item.pop("translations", None)
        if item["id"] in english:
            version: dict[str, Any] = {
                "title": english_title(item["id"]),
                "teaser": f"EN: the English teaser of {item['id']}.",
                "url": english_url(item["id"]),
            }
            if item.get("body"):
                version["body"] = f"EN: the English body of {item['id']}.\n"
            if item.get("image_alt"):
                version["image_alt"] = f"EN: a picture of {item['id']}"
            item["translations"] = {"en": version}
    path.write_text(yaml.safe_dump(data, allow_unicode=True, sort_keys=False), encoding="utf-8")
    return path
