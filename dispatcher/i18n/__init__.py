"""The reader's language: gettext catalogues, dates and the choice of language.

The fixed texts of templates and pages are written in German, the editors' language, and
translated through gettext catalogues (`dispatcher/i18n/locale/<lang>/LC_MESSAGES/<domain>.mo`,
compiled from the `.po` files at install time; `python -m dispatcher.i18n.catalogues`).
German is the source language, so a German text needs no catalogue entry to be right, and
every other language must translate every text (a test checks that). Templates carry no
language branches: the one Jinja2 environment of a process gets context-aware `_()`,
`ngettext()` and a `local_date` filter that read `lang` from the render context, so one
compiled template serves every language and thread. See docs/architecture.md, "Languages".
"""

from __future__ import annotations

import datetime as dt
import fnmatch
import functools
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any

import jinja2
from babel import Locale
from babel.dates import format_date, format_datetime
from babel.support import NullTranslations, Translations

SOURCE_LANGUAGE = "de"
#: Languages with catalogues; a campaign may use these (in any order, the first is its default).
LANGUAGES: tuple[str, ...] = ("de", "en")
#: Each language's name in itself, for switches and forms.
LANGUAGE_NAMES: dict[str, str] = {"de": "Deutsch", "en": "English"}
#: Message domains, one per area, so the catalogue of one area can change without the others.
DOMAINS: tuple[str, ...] = ("email", "posts", "web", "desk")
LOCALE_DIR = Path(__file__).parent / "locale"


class CatalogueMissingError(RuntimeError):
    """A compiled catalogue is not there: the install step that compiles them did not run."""


@functools.cache
def translations(lang: str, domain: str | None = None) -> NullTranslations:
    """All domains of `lang` merged into one, or `domain`'s first and then the merged ones;
    the source language needs none.

    A template looks in its own area's domain first (`template_domain`): one German text
    may mean two things in two areas — "Abmelden" is "Unsubscribe" on the public pages and
    "Sign out" at the desk — and in the merged catalogue the later domain would win.
    """
    if lang not in LANGUAGES:
        raise ValueError(f"unknown language {lang!r}; known: {', '.join(LANGUAGES)}")
    if lang == SOURCE_LANGUAGE:
        return NullTranslations()
    if domain is not None:
        own = _load(lang, domain)
        own.add_fallback(translations(lang))
        return own
    merged: Translations | None = None
    for each in DOMAINS:
        loaded = _load(lang, each)
        if merged is None:
            merged = loaded
        else:
            merged.merge(loaded)
    return merged or NullTranslations()


def _load(lang: str, domain: str) -> Translations:
    mo = LOCALE_DIR / lang / "LC_MESSAGES" / f"{domain}.mo"
    if not mo.is_file():
        raise CatalogueMissingError(
            f"{mo} is missing: compile the catalogues with "
            "`python -m dispatcher.i18n.catalogues compile` (scripts/bootstrap does)"
        )
    with mo.open("rb") as file:
        return Translations(file, domain=domain)


#: The domain of a template's texts, by its name under templates/ (first match); the same
#: as `catalogues.SOURCES` extracts them (which imports this module, so it cannot be asked
#: here; tests/unit/test_i18n.py keeps the two in step).
TEMPLATE_DOMAINS: tuple[tuple[str, str], ...] = (
    ("email/confirm.*", "web"),
    ("email/desk_sign_in.*", "desk"),
    ("email/*", "email"),
    ("social/*", "posts"),
    ("web/*", "web"),
    ("desk/*", "desk"),
)


@functools.cache
def template_domain(name: str | None) -> str | None:
    """The domain of the template `name` ("web/unsubscribe.html.j2"); None for a template
    from a string or one no domain extracts."""
    if name is None:
        return None
    return next((d for pattern, d in TEMPLATE_DOMAINS if fnmatch.fnmatch(name, pattern)), None)


def gettext(lang: str, message: str, **variables: Any) -> str:
    """`message` in `lang`, `%(name)s` placeholders filled like Jinja2's newstyle `_()`."""
    text = translations(lang).ugettext(message)
    return text % variables if variables else text


def ngettext(lang: str, singular: str, plural: str, n: int, **variables: Any) -> str:
    text = translations(lang).ungettext(singular, plural, n)
    return text % {"num": n, **variables}


def english_name(lang: str) -> str:
    """ "German", "English": how the CLI and `validate` (written in English) name a language."""
    return Locale.parse(lang).get_display_name("en") or lang


def babel_locale(lang: str) -> Locale:
    """The CLDR locale dates are written in; German readers get de_DE's forms."""
    return Locale.parse({"de": "de_DE", "en": "en_GB"}.get(lang, lang))


def format_day(day: dt.date, format: str = "full", *, lang: str) -> str:  # `format`: Babel's
    """A date as readers of `lang` write it: "Dienstag, 2. April 2019", "Tuesday, 2 April 2019"."""
    return format_date(day, format=format, locale=babel_locale(lang))


def format_instant(moment: dt.datetime, format: str, *, lang: str) -> str:
    return format_datetime(moment, format=format, locale=babel_locale(lang))


def negotiate(accept_language: str | None, available: Sequence[str]) -> str:
    """The best of `available` for an `Accept-Language` header; the first when none fits.

    Quality values are honoured and a region is ignored ("en-GB" asks for "en").
    """
    wanted: list[tuple[float, int, str]] = []
    for index, part in enumerate((accept_language or "").split(",")):
        tag, _, params = part.strip().partition(";")
        quality = 1.0
        for param in params.split(";"):
            name, _, value = param.strip().partition("=")
            if name == "q":
                try:
                    quality = float(value)
                except ValueError:
                    quality = 0.0
        language = tag.strip().lower().split("-")[0]
        if language and quality > 0:
            wanted.append((-quality, index, language))
    for _, _, language in sorted(wanted):
        if language in available:
            return language
        if language == "*":
            break
    return available[0]


def language_or(lang: str | None, available: Sequence[str]) -> str:
    """`lang` if the campaign still offers it, else the campaign's default language."""
    return lang if lang is not None and lang in available else available[0]


@jinja2.pass_context
def _context_gettext(context: jinja2.runtime.Context, message: str) -> str:
    # Jinja2's newstyle wrapper around this escapes the variables into the message.
    return translations(_lang(context), template_domain(context.name)).ugettext(message)


@jinja2.pass_context
def _context_ngettext(context: jinja2.runtime.Context, singular: str, plural: str, n: int) -> str:
    found = translations(_lang(context), template_domain(context.name))
    return found.ungettext(singular, plural, n)


def _lang(context: jinja2.runtime.Context) -> str:
    lang = context.get("lang")
    if not isinstance(lang, str):
        # A page rendered without its reader's language would silently come out German.
        raise jinja2.UndefinedError("the template was rendered without `lang`")
    return lang


@jinja2.pass_context
def _local_date(context: jinja2.runtime.Context, day: dt.date, format: str = "full") -> str:
    return format_day(day, format, lang=_lang(context))


def install(env: jinja2.Environment) -> None:
    """Give `env` `_()`, `gettext()`, `ngettext()` and `local_date`, all following `lang`."""
    env.add_extension("jinja2.ext.i18n")
    env.install_gettext_callables(  # type: ignore[attr-defined]
        _context_gettext, _context_ngettext, newstyle=True
    )
    env.filters["local_date"] = _local_date


def languages_in(values: Iterable[str]) -> tuple[str, ...]:
    """The known languages among `values`, in their order, without repeats."""
    return tuple(dict.fromkeys(v for v in values if v in LANGUAGES))
