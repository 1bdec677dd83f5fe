"""The editors' queue as frozen values: a `Campaign` with its `Item`s.

These types are what every other module works with. They are built only by
`dispatcher.campaign.loading` (which validates `config/campaign.yaml` and reports errors
with file:line:col), so any `Campaign` in hand is known to be consistent:
pinned dates are send days, item ids are unique, channels are known.
"""

from __future__ import annotations

import datetime as dt
import json
import re
from dataclasses import dataclass, field, replace
from enum import StrEnum
from typing import Any
from zoneinfo import ZoneInfo


class Channel(StrEnum):
    """A kind of output. The value is the key used under `send:` and in the ledger."""

    EMAIL = "email"  #: the daily newsletter to every active subscriber
    MASTODON = "mastodon"  #: a status on a Mastodon (client API) server
    BLUESKY = "bluesky"  #: a post on Bluesky / AT Protocol
    LINKEDIN = "linkedin"  #: a post via LinkedIn's Posts API
    WEBHOOK = "webhook"  #: Slack, Discord, Teams, Matrix or generic JSON endpoints


class ItemStatus(StrEnum):
    """Editorial state of an item; only `ready` items are ever planned or sent."""

    READY = "ready"  #: may be sent
    DRAFT = "draft"  #: still being written
    HOLD = "hold"  #: written, deliberately held back


WEEKDAY_KEYS: tuple[str, ...] = ("mon", "tue", "wed", "thu", "fri", "sat", "sun")
"""Weekday names as written in the campaign file; the index is `date.weekday()`."""

MULTILINE_FIELDS = frozenset({"body", "teaser"})
"""Item fields whose text may hold tabs and line breaks (Markdown, folded teasers)."""

#: Control characters (C0, DEL, C1) and lone surrogates: they break XML (the Atom feed),
#: terminals and UTF-8 encoding. Tab and line feed are text in a multi-line field only.
CONTROL_CHARACTERS = re.compile("[\x00-\x1f\x7f-\x9f\ud800-\udfff]")
CONTROL_CHARACTERS_MULTILINE = re.compile("[\x00-\x08\x0b-\x1f\x7f-\x9f\ud800-\udfff]")


def control_characters(field_name: str) -> re.Pattern[str]:
    """The characters `field_name` must not contain."""
    if field_name in MULTILINE_FIELDS:
        return CONTROL_CHARACTERS_MULTILINE
    return CONTROL_CHARACTERS


class Fallback(StrEnum):
    """What a reader gets on a day whose item has no version in the reader's language."""

    DEFAULT = "default"  #: the item in the campaign's default (first) language
    SKIP = "skip"  #: nothing that day


class EditionKind(StrEnum):
    """What readers of one language get of an item: the plan and previews show it."""

    OWN = "own"  #: the item in their language
    DEFAULT = "default"  #: the default language's version (fallback `default`)
    NONE = "none"  #: nothing that day (fallback `skip`)


@dataclass(frozen=True)
class PostEdition:
    """One language a network posts the day's item in, and what it posts."""

    lang: str  #: the language of the post's slot (`send: {…: {lang: […]}}`)
    #: the language the text is written in: `lang`, or under fallback `default` the
    #: campaign's default language; None when nothing is posted
    text_lang: str | None
    skipped: str | None = None  #: why nothing is posted in `lang` that day

    @property
    def kind(self) -> EditionKind:
        if self.text_lang is None:
            return EditionKind.NONE
        return EditionKind.OWN if self.text_lang == self.lang else EditionKind.DEFAULT


@dataclass(frozen=True)
class Translation:
    """An item's texts in one more language (`translations: {en: …}` in the campaign file).

    `url`, `tags` and `region` may be left out: the item's own are used then. The loader
    requires `title` and `teaser`, and `body`/`image_alt` when the item has them.
    """

    lang: str
    title: str
    teaser: str
    body: str | None = None
    image_alt: str | None = None
    url: str | None = None
    tags: tuple[str, ...] | None = None
    region: str | None = None  #: the region's name in that language ("Saxony")


@dataclass(frozen=True)
class Item:
    """One reportage in the queue."""

    id: str
    title: str
    teaser: str
    url: str
    initiative: str
    region: str
    image: str | None = None
    image_alt: str | None = None
    tags: tuple[str, ...] = ()
    body: str | None = None
    date: dt.date | None = None  #: pinned send day, if any
    channels: tuple[Channel, ...] | None = None  #: None means every channel under `send:`
    status: ItemStatus = ItemStatus.READY
    translations: tuple[Translation, ...] = ()

    def uses(self, channel: Channel) -> bool:
        """Whether this item goes out on `channel` (the campaign must also use it)."""
        return self.channels is None or channel in self.channels

    def translation(self, lang: str) -> Translation | None:
        return next((t for t in self.translations if t.lang == lang), None)

    def translated(self, translation: Translation) -> Item:
        """This item with `translation`'s texts (the shared fields and the rest kept)."""
        return replace(
            self,
            title=translation.title,
            teaser=translation.teaser,
            body=translation.body if translation.body is not None else self.body,
            image_alt=translation.image_alt if translation.image_alt else self.image_alt,
            url=translation.url or self.url,
            tags=self.tags if translation.tags is None else translation.tags,
            region=translation.region or self.region,
        )


@dataclass(frozen=True)
class Campaign:
    """A campaign window, its send times per channel and its queue of items."""

    id: str
    name: str
    timezone: str
    start: dt.date
    end: dt.date
    weekdays: frozenset[int]  #: `date.weekday()` numbers, Monday = 0
    holidays: str | None  #: "DE" or "DE-SN"; None means no holiday calendar
    skip: frozenset[dt.date] = frozenset()
    #: the languages readers may choose; the first is the default (and the editors' own)
    locales: tuple[str, ...] = ("de",)
    fallback: Fallback = Fallback.DEFAULT
    catch_up: dt.timedelta = dt.timedelta(hours=6)
    send: dict[Channel, dt.time] = field(default_factory=dict)  #: local send time per used channel
    #: the languages each social network posts in (`send: {mastodon: {lang: …}}`); a
    #: network not listed posts in the default language
    post_languages: dict[Channel, tuple[str, ...]] = field(default_factory=dict)
    items: tuple[Item, ...] = ()
    #: (lang, name) of the campaign in its other languages (`campaign.translations`)
    names: tuple[tuple[str, str], ...] = ()

    def name_in(self, lang: str) -> str:
        """The campaign's name as readers of `lang` see it (subject, header, pages)."""
        return dict(self.names).get(lang, self.name)

    def in_language(self, lang: str) -> Campaign:
        """This campaign as a template for `lang` shows it: its name in that language.
        Identity (List-Id, ids, times) is the campaign's own whatever the language."""
        name = self.name_in(lang)
        return self if name == self.name else replace(self, name=name)

    @property
    def language(self) -> str:
        """The default language: the items' own texts, and what a reader without one gets."""
        return self.locales[0]

    def reader_language(self, lang: str | None) -> str:
        """A reader's language as this campaign serves it: one it offers, else the default."""
        return lang if lang in self.locales else self.language

    def edition(self, item: Item, lang: str | None) -> Item | None:
        """`item` as readers of `lang` get it: translated, in the default language (fallback
        `default`), or None (fallback `skip`: nothing that day)."""
        lang = self.reader_language(lang)
        if lang == self.language:
            return item
        translation = item.translation(lang)
        if translation is not None:
            return item.translated(translation)
        return item if self.fallback is Fallback.DEFAULT else None

    def edition_kind(self, item: Item, lang: str) -> EditionKind:
        if self.reader_language(lang) in self.languages_of(item):
            return EditionKind.OWN
        return EditionKind.DEFAULT if self.fallback is Fallback.DEFAULT else EditionKind.NONE

    def post_editions(self, channel: Channel, item: Item) -> list[PostEdition]:
        """The posts `channel` makes of `item` on each of its targets, one per language it
        posts in: the fan-out writes exactly these, and the plan, the desk and `preview`
        show them. A language the item lacks posts nothing under fallback `skip`, and under
        `default` nothing either when the network already posts the default language's
        text that day (the same text twice on one account would be a duplicate)."""
        editions: list[PostEdition] = []
        posted: set[str] = set()
        for lang in self.post_languages_of(channel):
            text_lang = self.edition_language(item, lang)
            if text_lang is None:
                reason = f"the item has no {lang} version and the campaign's fallback is skip"
                editions.append(PostEdition(lang, None, reason))
            elif text_lang in posted:
                reason = (
                    f"the item has no {lang} version, and its {text_lang} text is already "
                    "this network's post of the day (the same text twice would be a duplicate)"
                )
                editions.append(PostEdition(lang, None, reason))
            else:
                posted.add(text_lang)
                editions.append(PostEdition(lang, text_lang))
        return editions

    def editions_on(self, channel: Channel, item: Item) -> tuple[tuple[str, EditionKind], ...]:
        """Per language `channel` goes out in (every reader's for the email, the network's
        own for a post): what its readers get of `item`. The plan's `languages`."""
        if channel is Channel.EMAIL:
            return tuple((lang, self.edition_kind(item, lang)) for lang in self.locales)
        return tuple((e.lang, e.kind) for e in self.post_editions(channel, item))

    def edition_language(self, item: Item, lang: str | None) -> str | None:
        """The language readers of `lang` get `item` in: theirs, the default (fallback
        `default`: the whole email or post in the default language, not a mix), or None."""
        kind = self.edition_kind(item, self.reader_language(lang))
        if kind is EditionKind.OWN:
            return self.reader_language(lang)
        return self.language if kind is EditionKind.DEFAULT else None

    def languages_of(self, item: Item) -> tuple[str, ...]:
        """The campaign's languages `item` has its own version in (the default always)."""
        return tuple(
            lang for lang in self.locales
            if lang == self.language or item.translation(lang) is not None
        )  # fmt: skip

    def missing_languages(self, item: Item) -> tuple[str, ...]:
        """The campaign's languages `item` lacks; their readers get the fallback."""
        have = self.languages_of(item)
        return tuple(lang for lang in self.locales if lang not in have)

    def path_prefix(self, lang: str) -> str:
        """Where `lang`'s public pages live: "" for the default language, "/en" for English."""
        return "" if lang == self.language else f"/{lang}"

    def post_languages_of(self, channel: Channel) -> tuple[str, ...]:
        """The languages `channel` posts in, each one post per target and day."""
        return self.post_languages.get(channel) or (self.language,)

    @property
    def zone(self) -> ZoneInfo:
        return ZoneInfo(self.timezone)

    @property
    def channels(self) -> tuple[Channel, ...]:
        """The channels in use, in the order of `Channel` (stable output)."""
        return tuple(c for c in Channel if c in self.send)

    def item(self, item_id: str) -> Item:
        """The item with that id; `KeyError` with the known ids otherwise."""
        for candidate in self.items:
            if candidate.id == item_id:
                return candidate
        known = ", ".join(i.id for i in self.items)
        raise KeyError(f"unknown item {item_id!r}; known items: {known}")


def item_to_json(item: Item) -> str:
    """The item as stored with its dispatch: what was sent stays what it was."""
    data: dict[str, Any] = {
        "id": item.id,
        "title": item.title,
        "teaser": item.teaser,
        "url": item.url,
        "initiative": item.initiative,
        "region": item.region,
        "image": item.image,
        "image_alt": item.image_alt,
        "tags": list(item.tags),
        "body": item.body,
        "date": item.date.isoformat() if item.date else None,
        "channels": None if item.channels is None else [str(c) for c in item.channels],
        "status": str(item.status),
    }
    if item.translations:  # left out otherwise: snapshots of one language stay as they were
        data["translations"] = {
            t.lang: {
                "title": t.title,
                "teaser": t.teaser,
                "body": t.body,
                "image_alt": t.image_alt,
                "url": t.url,
                "tags": None if t.tags is None else list(t.tags),
                # only when set: the snapshots of items without one stay byte for byte
                **({"region": t.region} if t.region else {}),
            }
            for t in item.translations
        }
    return json.dumps(data, ensure_ascii=False, sort_keys=True)


def item_from_json(text: str) -> Item:
    """The stored snapshot as an `Item`, with control characters removed.

    Snapshots written before `validate` refused control characters may hold them;
    they would make every consumer (the Atom feed's XML, terminals) fail, and the
    ledger must not be rewritten, so they are dropped here, where every reader passes.
    """
    data = _without_control_characters(json.loads(text))
    translations = tuple(
        Translation(
            lang=lang,
            **{
                **_without_control_characters(texts),
                "tags": None if texts.get("tags") is None else tuple(texts["tags"]),
            },
        )
        for lang, texts in (data.pop("translations", None) or {}).items()
    )
    return Item(
        **{k: v for k, v in data.items() if k not in ("tags", "date", "channels", "status")},
        translations=translations,
        tags=tuple(data["tags"]),
        date=dt.date.fromisoformat(data["date"]) if data["date"] else None,
        channels=None if data["channels"] is None else tuple(Channel(c) for c in data["channels"]),
        status=ItemStatus(data["status"]),
    )


def _without_control_characters(data: dict[str, Any]) -> dict[str, Any]:
    def clean(name: str, value: Any) -> Any:
        if isinstance(value, str):
            return control_characters(name).sub("", value)
        if isinstance(value, list):
            return [clean(name, v) for v in value]
        return value

    return {name: clean(name, value) for name, value in data.items()}
