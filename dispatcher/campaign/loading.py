"""Load `config/campaign.yaml` into a `Campaign`, or explain every problem at once.

Structure and field formats are checked by pydantic models, one section and one
item at a time, so a broken item does not hide the errors of the next one. Rules
that span fields (unique ids, pinned days, end before start) are checked after
that, on whatever parts were valid. Every problem carries the file, line and
column of the offending value and says what to do.
"""

from __future__ import annotations

import datetime as dt
import re
from collections.abc import Iterator
from pathlib import Path as FilePath
from typing import Any, Literal, TypeVar
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

import pydantic
from pydantic import BaseModel, ConfigDict, field_validator

from dispatcher.campaign import calendar
from dispatcher.campaign.model import (
    CONTROL_CHARACTERS,
    MULTILINE_FIELDS,
    WEEKDAY_KEYS,
    Campaign,
    Channel,
    Fallback,
    Item,
    ItemStatus,
    Translation,
    control_characters,
)
from dispatcher.campaign.yamlsource import (
    MAX_CHARACTERS,
    Document,
    Path,
    Position,
    Problem,
    YamlSyntaxError,
    format_path,
    parse,
)
from dispatcher.i18n import LANGUAGES, SOURCE_LANGUAGE, english_name

SLUG = re.compile(r"^[a-z0-9][a-z0-9-]*$")
TIME = re.compile(r"^([01]\d|2[0-3]):([0-5]\d)$")
DURATION = re.compile(r"^(?:(?P<h>\d+)h)?\s*(?:(?P<m>\d+)m(?:in)?)?$")


def _language_code(value: str) -> str:
    return re.split(r"[_-]", value)[0].lower()


def _language(value: str) -> str:
    """A language with catalogues ("de", "en"); "de_DE" and "en-GB" name their language."""
    if _language_code(value) not in LANGUAGES:
        raise ValueError(
            f'language "{value}" has no catalogues; use one of: {", ".join(LANGUAGES)}'
        )
    return value


URL = re.compile(
    r"^https?://[^\s/?#]+\.[^\s/?#]+(?:[/?#]\S*)?$|^https?://localhost(?::\d+)?(?:/\S*)?$"
)


class CampaignError(Exception):
    """The campaign file cannot be used; `problems` lists every reason."""

    def __init__(self, problems: list[Problem]) -> None:
        self.problems = sorted(problems, key=lambda p: (p.position.line, p.position.column))
        super().__init__("\n".join(str(p) for p in self.problems))


_ORIGIN = Position(1, 1)


def _slug(value: str) -> str:
    if not SLUG.match(value):
        raise ValueError(f'"{value}" is not a slug; use lower-case letters, digits and "-"')
    return value


def _url(value: str) -> str:
    if not URL.match(value):
        raise ValueError(f'not a valid URL ("{value}"); write it as https://host/path')
    return value


def _region(value: str | None) -> str | None:
    if value is not None and (problem := calendar.check_holiday_region(value)):
        raise ValueError(problem)
    return value


def _hashtags(value: list[str]) -> list[str]:
    for tag in value:
        if not re.search(r"\w", tag):
            raise ValueError(f'tag "{tag}" has no letters or digits; it cannot be a hashtag')
    return value


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class _CampaignTranslation(_Strict):
    name: str

    @field_validator("name")
    @classmethod
    def _not_blank(cls, value: str) -> str:
        if not value.strip():
            raise ValueError("must not be empty")
        return value.strip()


class _CampaignSection(_Strict):
    id: str
    name: str
    timezone: str
    start: dt.date
    end: dt.date
    weekdays: list[Literal["mon", "tue", "wed", "thu", "fri", "sat", "sun"]]
    holidays: str | None = None
    skip: list[dt.date] = []
    locales: list[str] | None = None
    #: the single-language form of earlier files: `locale: de_DE` means `locales: [de]`
    locale: str | None = None
    fallback: Fallback = Fallback.DEFAULT
    catch_up: str | int = "6h"
    #: the campaign's name in other languages: `translations: {en: {name: …}}`
    translations: dict[str, _CampaignTranslation] | None = None

    _id = field_validator("id")(_slug)

    @field_validator("timezone")
    @classmethod
    def _zone(cls, value: str) -> str:
        try:
            ZoneInfo(value)
        except (ZoneInfoNotFoundError, ValueError):
            raise ValueError(
                f'unknown time zone "{value}"; use an IANA name such as Europe/Berlin'
            ) from None
        return value

    _holidays = field_validator("holidays")(_region)

    @field_validator("weekdays")
    @classmethod
    def _some_weekday(cls, value: list[str]) -> list[str]:
        if not value:
            raise ValueError("list at least one weekday (mon … sun)")
        return value

    @field_validator("locales")
    @classmethod
    def _known_locales(cls, value: list[str] | None) -> list[str] | None:
        if value is None:
            return None
        if not value:
            raise ValueError("list at least one language, e.g. locales: [de, en]")
        for lang in value:
            _language(lang)
        if len(set(value)) != len(value):
            raise ValueError("a language is listed twice")
        return value

    @field_validator("locale")
    @classmethod
    def _known_locale(cls, value: str | None) -> str | None:
        return None if value is None else _language(value)

    @property
    def languages(self) -> tuple[str, ...]:
        named = self.locales if self.locales is not None else [self.locale or SOURCE_LANGUAGE]
        return tuple(dict.fromkeys(_language_code(lang) for lang in named))

    @field_validator("catch_up")
    @classmethod
    def _duration(cls, value: str | int) -> str:
        if parse_duration(str(value)) is None:
            raise ValueError(f'malformed duration "{value}"; write e.g. "6h", "90m" or "1h30m"')
        return str(value)


class _ItemModel(_Strict):
    id: str
    title: str
    teaser: str
    url: str
    initiative: str
    region: str
    image: str | None = None
    image_alt: str | None = None
    tags: list[str] = []
    body: str | None = None
    date: dt.date | None = None
    channels: list[Channel] | None = None
    status: ItemStatus = ItemStatus.READY
    translations: dict[str, _TranslationModel] | None = None

    _id = field_validator("id")(_slug)

    @field_validator("url", "image")
    @classmethod
    def _valid_url(cls, value: str | None) -> str | None:
        return None if value is None else _url(value)

    @field_validator("title", "teaser", "initiative", "region")
    @classmethod
    def _not_blank(cls, value: str) -> str:
        if not value.strip():
            raise ValueError("must not be empty")
        return value.strip()

    @field_validator("channels")
    @classmethod
    def _some_channel(cls, value: list[Channel] | None) -> list[Channel] | None:
        if value is not None and not value:
            raise ValueError("list at least one channel, or remove channels: to use all of them")
        return value

    _tags = field_validator("tags")(_hashtags)


class _TranslationModel(_Strict):
    """An item's texts in another language; what is required is checked against the item."""

    title: str | None = None
    teaser: str | None = None
    body: str | None = None
    image_alt: str | None = None
    url: str | None = None
    tags: list[str] | None = None
    region: str | None = None

    _url = field_validator("url")(lambda value: None if value is None else _url(value))

    @field_validator("title", "teaser", "region")
    @classmethod
    def _not_blank(cls, value: str | None) -> str | None:
        if value is not None and not value.strip():
            raise ValueError("must not be empty")
        return None if value is None else value.strip()

    @field_validator("tags")
    @classmethod
    def _tags(cls, value: list[str] | None) -> list[str] | None:
        return None if value is None else _hashtags(value)


class _Lenient(BaseModel):
    """Only the fields a cross-field rule needs, so it can run on an entry with other errors.

    `_lenient` replaces each invalid field by None: the schema check has reported it,
    and a rule then skips what it cannot judge instead of guessing.
    """

    model_config = ConfigDict(extra="ignore", frozen=True)


class _CalendarPart(_Lenient):
    start: dt.date | None = None
    end: dt.date | None = None
    weekdays: list[Literal["mon", "tue", "wed", "thu", "fri", "sat", "sun"]] | None = None
    holidays: str | None = None
    skip: list[dt.date] | None = None

    _holidays = field_validator("holidays")(_region)


class _PinPart(_Lenient):
    date: dt.date | None = None
    status: ItemStatus | None = ItemStatus.READY
    channels: list[Channel] | None = None


_L = TypeVar("_L", bound=_Lenient)


def _lenient(model: type[_L], data: Any) -> _L | None:
    if not isinstance(data, dict):
        return None
    try:
        return model.model_validate(data)
    except pydantic.ValidationError as error:
        invalid = {str(detail["loc"][0]) for detail in error.errors() if detail["loc"]}
    try:
        return model.model_validate({**data, **dict.fromkeys(invalid)})
    except pydantic.ValidationError:
        return None


def _calendar_of(raw: Any) -> Campaign | None:
    """A campaign that answers "is this a send day?" from the valid calendar fields only."""
    part = _lenient(_CalendarPart, raw)
    if part is None or part.start is None or part.end is None or not part.weekdays:
        return None
    if part.end < part.start:
        return None
    return Campaign(
        id="",
        name="",
        timezone="UTC",
        start=part.start,
        end=part.end,
        weekdays=frozenset(WEEKDAY_KEYS.index(d) for d in part.weekdays),
        holidays=part.holidays,
        skip=frozenset(part.skip or ()),
    )


def parse_duration(text: str) -> dt.timedelta | None:
    """ "6h", "90m", "1h30m", "0" -> timedelta; None if malformed."""
    text = text.strip()
    if text == "0":
        return dt.timedelta(0)
    match = DURATION.match(text)
    if not match or not (match["h"] or match["m"]):
        return None
    return dt.timedelta(hours=int(match["h"] or 0), minutes=int(match["m"] or 0))


def _messages(error: pydantic.ValidationError) -> Iterator[tuple[tuple[str | int, ...], str]]:
    """Turn pydantic's errors into (relative path, message that says what to do)."""
    for detail in error.errors():
        loc = tuple(detail["loc"])
        kind = detail["type"]
        if kind == "missing":
            yield loc, "required; add it"
        elif kind == "extra_forbidden":
            yield (
                loc,
                "unknown key; check the spelling (the README lists the keys of the campaign file)",
            )
        elif kind == "value_error":
            yield loc, str(detail["ctx"]["error"])
        elif kind in ("enum", "literal_error"):
            yield loc, f"{detail['input']!r} is not one of {detail['ctx']['expected']}"
        elif kind.startswith("date"):
            yield loc, f"{detail['input']!r} is not a date; write YYYY-MM-DD"
        else:
            yield loc, f"{detail['msg']} (got {detail['input']!r})"


class _Collector:
    """Gathers problems with their positions in the document."""

    def __init__(self, file: str, document: Document) -> None:
        self.file = file
        self.document = document
        self.problems: list[Problem] = [
            Problem(file, position, format_path(path), message)
            for path, position, message in document.problems
        ]

    def add(self, path: Path, message: str, *, key: bool = False) -> None:
        position = self.document.position(path, key=key)
        self.problems.append(Problem(self.file, position, format_path(path), message))

    def validate(self, model: type[_Strict], data: Any, path: Path) -> Any:
        if not isinstance(data, dict):
            self.add(path, "expected a mapping of keys and values")
            return None
        try:
            return model.model_validate(data)
        except pydantic.ValidationError as error:
            for loc, message in _messages(error):
                self.add((*path, *loc), message, key=message.startswith("unknown key"))
            return None


def _send_times(
    collect: _Collector, raw: Any, languages: tuple[str, ...] | None
) -> tuple[dict[Channel, dt.time], dict[Channel, tuple[str, ...]]]:
    """`send:`: per channel a time, `"08:00"`, or `{time: "08:05", lang: [de, en]}`."""
    if not isinstance(raw, dict) or not raw:
        collect.add(("send",), 'list at least one channel with its local time, e.g. email: "08:00"')
        return {}, {}
    times: dict[Channel, dt.time] = {}
    post_languages: dict[Channel, tuple[str, ...]] = {}
    known = ", ".join(c.value for c in Channel)
    for name, entry in raw.items():
        if name not in Channel._value2member_map_:
            collect.add(("send", name), f'unknown channel "{name}"; known: {known}', key=True)
            continue
        path: Path = ("send", name)
        value = entry
        if isinstance(entry, dict):
            for extra in sorted(set(entry) - {"time", "lang"}, key=str):
                collect.add((*path, extra), "unknown key; write time: and lang:", key=True)
            if "time" not in entry:
                collect.add(path, 'add time: "HH:MM"')
                continue
            value, path = entry["time"], (*path, "time")
            if "lang" in entry:
                langs = _post_languages(collect, ("send", name, "lang"), entry["lang"], languages)
                if name == Channel.EMAIL.value:
                    collect.add(
                        ("send", name, "lang"),
                        "the email goes out in each reader's language; remove lang",
                        key=True,
                    )
                elif langs:
                    post_languages[Channel(name)] = langs
        match = TIME.match(value) if isinstance(value, str) else None
        if match is None:
            hint = (
                " (unquoted times are read as numbers: quote it)" if isinstance(value, int) else ""
            )
            collect.add(path, f'malformed time {value!r}; write "HH:MM"{hint}')
            continue
        times[Channel(name)] = dt.time(int(match[1]), int(match[2]))
    return times, post_languages


def _post_languages(
    collect: _Collector, path: Path, raw: Any, languages: tuple[str, ...] | None
) -> tuple[str, ...]:
    named = raw if isinstance(raw, list) else [raw]
    if not named or not all(isinstance(lang, str) for lang in named):
        collect.add(path, "write a language or a list of them, e.g. lang: [de, en]")
        return ()
    codes = tuple(dict.fromkeys(_language_code(lang) for lang in named))
    if languages is not None:
        for lang in codes:
            if lang not in languages:
                collect.add(
                    path,
                    f'"{lang}" is not in campaign.locales ({", ".join(languages)}); add it there',
                )
                return ()
    return codes


def _build_campaign(
    section: _CampaignSection,
    send: dict[Channel, dt.time],
    post_languages: dict[Channel, tuple[str, ...]],
) -> Campaign:
    return Campaign(
        id=section.id,
        name=section.name,
        timezone=section.timezone,
        start=section.start,
        end=section.end,
        weekdays=frozenset(WEEKDAY_KEYS.index(d) for d in section.weekdays),
        holidays=section.holidays,
        skip=frozenset(section.skip),
        locales=section.languages,
        fallback=section.fallback,
        names=tuple(
            (_language_code(lang), texts.name)
            for lang, texts in (section.translations or {}).items()
        ),
        catch_up=parse_duration(str(section.catch_up)) or dt.timedelta(0),
        send=send,
        post_languages=post_languages,
    )


def _build_item(model: _ItemModel) -> Item:
    return Item(
        **model.model_dump(exclude={"tags", "channels", "translations"}),
        tags=tuple(model.tags),
        channels=None if model.channels is None else tuple(model.channels),
        translations=tuple(
            Translation(
                lang=_language_code(lang),
                title=texts.title or "",
                teaser=texts.teaser or "",
                body=texts.body,
                image_alt=texts.image_alt,
                url=texts.url,
                tags=None if texts.tags is None else tuple(texts.tags),
                region=texts.region,
            )
            for lang, texts in (model.translations or {}).items()
        ),
    )


def _check_translations(
    collect: _Collector, languages: tuple[str, ...] | None, raw_items: list[Any]
) -> None:
    """Each translation is in a language of the campaign and has the texts its item has.

    The texts an item shows must all exist in each version, or a reader would get half
    a translation: title and teaser always, body and image_alt when the item has them.
    """
    for index, raw in enumerate(raw_items):
        if not isinstance(raw, dict) or not isinstance(raw.get("translations"), dict):
            continue
        for lang, texts in raw["translations"].items():
            path: Path = ("items", index, "translations", lang)
            if languages is not None and (
                not isinstance(lang, str) or _language_code(lang) not in languages[1:]
            ):
                others = ", ".join(languages[1:]) or "none"
                collect.add(
                    path,
                    f'"{lang}" is not one of the campaign\'s other languages ({others}); '
                    "add it to campaign.locales or remove this translation"
                    if lang != languages[0]
                    else f'"{lang}" is the default language: its texts are the item\'s own',
                    key=True,
                )
                continue
            if not isinstance(texts, dict):
                continue  # the schema check reports it
            name = english_name(_language_code(str(lang)))
            required = ["title", "teaser"]
            required += [f for f in ("body", "image_alt") if raw.get(f)]
            for field in required:
                if field not in texts:
                    collect.add(
                        path,
                        f"the {name} version lacks {field}; add translations.{lang}.{field}",
                        key=True,
                    )


def _check_raw_items(collect: _Collector, raw_items: list[Any]) -> None:
    """Rules checked on the raw entries, so they show even when an entry has other errors."""
    seen: dict[object, int] = {}
    for index, raw in enumerate(raw_items):
        if not isinstance(raw, dict):
            continue
        path: Path = ("items", index)
        item_id = raw.get("id")
        if not isinstance(item_id, str):
            item_id = None  # a list or mapping is not hashable; the model reports it
        elif item_id in seen:
            collect.add(
                (*path, "id"), f'duplicate item id "{item_id}" (also items[{seen[item_id]}])'
            )
        seen.setdefault(item_id, index)
        if raw.get("image") and not raw.get("image_alt"):
            collect.add((*path, "image"), "image_alt is required when image is set; describe it")


def _check_items(
    collect: _Collector,
    calendar_of: Campaign | None,
    sent_on: frozenset[Channel] | None,
    raw_items: list[Any],
) -> None:
    """Rules against the campaign: pins on send days, one pin per day, channels in use.

    They run on every entry, also one with schema errors elsewhere, and against the
    calendar fields that are valid, so a whole file's problems show in one run.
    `calendar_of` is None when the window cannot be known, `sent_on` when `send:` is.
    """
    pinned: dict[dt.date, int] = {}
    for index, raw in enumerate(raw_items):
        pins = _lenient(_PinPart, raw)
        if pins is None:
            continue
        path: Path = ("items", index)
        if sent_on is not None:
            for c_index, channel in enumerate(pins.channels or ()):
                if channel not in sent_on:
                    collect.add(
                        (*path, "channels", c_index), f'channel "{channel}" is not under send:'
                    )
        if calendar_of is None or pins.date is None or pins.status is not ItemStatus.READY:
            continue
        if not calendar.is_send_day(calendar_of, pins.date):
            collect.add(
                (*path, "date"),
                f"{pins.date} is not a send day of the campaign (weekday, holiday, skip "
                "or outside start..end); pick a send day or remove date",
            )
        elif pins.date in pinned:
            other = pinned[pins.date]
            collect.add((*path, "date"), f"{pins.date} is already pinned by items[{other}]")
        pinned.setdefault(pins.date, index)


def _describe(character: str) -> str:
    names = {
        "\x00": "NUL",
        "\x1b": "ESC (a terminal escape)",
        "\t": "a tab",
        "\n": "a line break",
        "\r": "a carriage return",
    }
    return f"U+{ord(character):04X}" + (f" {names[character]}" if character in names else "")


def _control_character_problems(value: Any, path: Path) -> Iterator[tuple[Path, str, bool]]:
    """(path, message, is a key) for every string, keys included, holding a control character.

    YAML's reader refuses them written raw, but double-quoted escapes (`"\\e[31m"`,
    `"\\0"`) let them through; sent, they break the Atom feed and terminals.
    """
    if isinstance(value, dict):
        for key, child in value.items():
            if isinstance(key, str) and (found := CONTROL_CHARACTERS.search(key)):
                yield (*path, key), f"the key contains {_describe(found[0])}; remove it", True
            yield from _control_character_problems(child, (*path, key))
    elif isinstance(value, list):
        for index, child in enumerate(value):
            yield from _control_character_problems(child, (*path, index))
    elif isinstance(value, str):
        # Only an item's body and teaser are multi-line text, in a translation too
        # (items[i].translations.en.body); a tag inherits its list's rule.
        field = ""
        if len(path) > 2 and path[0] == "items":
            translated = path[2] == "translations" and len(path) > 4
            field = str(path[4] if translated else path[2])
        # A block scalar (`name: >`) ends in a line break: that one is YAML, not the text.
        text = value if field in MULTILINE_FIELDS else value.rstrip("\n")
        if found := control_characters(field).search(text):
            hint = (
                " (tabs and line breaks are allowed only in body and teaser)"
                if found[0] in "\t\n"
                else ""
            )
            message = (
                f"control character {_describe(found[0])} at character {found.start() + 1} "
                f"of the value; remove it{hint}"
            )
            yield path, message, False


def load_campaign_text(text: str, file: str) -> Campaign:
    """Validate the campaign file's text; `file` is only used in messages."""
    try:
        document = parse(text)
    except YamlSyntaxError as error:
        raise CampaignError([Problem(file, error.position, "", error.message)]) from None
    collect = _Collector(file, document)
    raw = document.value
    if not isinstance(raw, dict):
        collect.add((), "expected the sections campaign:, send: and items:")
        raise CampaignError(collect.problems)
    for extra in sorted(set(raw) - {"campaign", "send", "items"}, key=str):
        collect.add((extra,), "unknown section; expected campaign, send or items", key=True)
    for required in ("campaign", "send", "items"):
        if required not in raw:
            collect.add((), f"the section {required}: is missing")

    section = collect.validate(_CampaignSection, raw.get("campaign"), ("campaign",))
    if section is not None and section.end < section.start:
        collect.add(("campaign", "end"), f"end {section.end} is before start {section.start}")
        section = None
    if section is not None and section.locales is not None and section.locale is not None:
        collect.add(("campaign", "locale"), "write only locales: (the languages), not locale:")
    languages = None if section is None else section.languages
    if section is not None and languages is not None:
        for lang in section.translations or {}:
            if _language_code(lang) not in languages[1:]:
                collect.add(
                    ("campaign", "translations", lang),
                    f'"{lang}" is not one of the campaign\'s other languages '
                    f"({', '.join(languages[1:]) or 'none'}); add it to locales or remove it",
                    key=True,
                )
    send, post_languages = _send_times(collect, raw.get("send"), languages)
    campaign = None if section is None else _build_campaign(section, send, post_languages)

    raw_items = raw.get("items")
    if not isinstance(raw_items, list):
        collect.add(("items",), "expected a list of items (- id: …)")
        raw_items = []
    models = [collect.validate(_ItemModel, data, ("items", i)) for i, data in enumerate(raw_items)]
    items = [None if m is None else _build_item(m) for m in models]
    _check_raw_items(collect, raw_items)
    raw_send = raw.get("send")
    sent_on = (
        frozenset(Channel(n) for n in raw_send if n in Channel._value2member_map_)
        if isinstance(raw_send, dict) and raw_send
        else None
    )
    _check_items(collect, _calendar_of(raw.get("campaign")), sent_on, raw_items)
    _check_translations(collect, languages, raw_items)

    # One problem per value: a URL with a line break is already "not a valid URL".
    reported = {problem.path for problem in collect.problems}
    for path, message, key in _control_character_problems(raw, ()):
        if format_path(path) not in reported:
            collect.add(path, message, key=key)

    if collect.problems or campaign is None:
        raise CampaignError(collect.problems)
    return Campaign(**{**campaign.__dict__, "items": tuple(i for i in items if i is not None)})


def load_campaign(path: FilePath) -> Campaign:
    """Read and validate the campaign file at `path`."""
    try:
        # Read at most what `parse` accepts (UTF-8 takes up to 4 bytes a character), so a
        # huge file is refused without being held in memory.
        with path.open("rb") as file:
            data = file.read(4 * MAX_CHARACTERS + 1)
        text = data.decode(
            "utf-8", errors="strict" if len(data) <= 4 * MAX_CHARACTERS else "ignore"
        )
    except OSError as error:
        problem = Problem(
            str(path), _ORIGIN, "", f"cannot read the campaign file: {error.strerror}"
        )
        raise CampaignError([problem]) from None
    except UnicodeDecodeError as error:
        problem = Problem(str(path), _ORIGIN, "", f"not UTF-8 text ({error.reason}); save as UTF-8")
        raise CampaignError([problem]) from None
    return load_campaign_text(text, str(path))
