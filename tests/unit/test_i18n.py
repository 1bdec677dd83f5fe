"""The language machinery: negotiation, catalogues complete and compiled, dates per language."""

from __future__ import annotations

import datetime as dt
import shutil
from pathlib import Path

import jinja2
import pytest
from babel.messages.catalog import Catalog
from babel.messages.mofile import write_mo
from babel.messages.pofile import read_po, write_po

from dispatcher import i18n
from dispatcher.i18n import catalogues


@pytest.mark.parametrize(
    ("header", "expected"),
    [
        (None, "de"),
        ("", "de"),
        ("en", "en"),
        ("en-GB,en;q=0.9", "en"),
        ("fr-FR,fr;q=0.9,en;q=0.8,de;q=0.7", "en"),
        ("de;q=0.5,en;q=0.9", "en"),
        ("en;q=0,de", "de"),
        ("fr, *;q=0.1", "de"),
        ("EN-us", "en"),
        ("en;q=abc, de", "de"),
    ],
)
def test_accept_language_picks_the_best_offered_language(header: str | None, expected: str) -> None:
    assert i18n.negotiate(header, ("de", "en")) == expected


def test_a_campaign_with_english_first_answers_english_to_strangers() -> None:
    assert i18n.negotiate("fr", ("en", "de")) == "en"


def test_every_text_of_templates_and_code_is_in_every_catalogue() -> None:
    gaps = catalogues.check()
    assert gaps == [], "\n".join(str(gap) for gap in gaps)


def test_a_text_missing_from_a_catalogue_is_reported_with_its_place(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    source = catalogues.po_path("en", "email")
    with source.open("rb") as file:
        catalog = read_po(file, locale="en", domain="email")
    dropped = next(m for m in catalog if m.id)
    del catalog[dropped.id]
    copy = tmp_path / "en" / "LC_MESSAGES" / "email.po"
    copy.parent.mkdir(parents=True)
    with copy.open("wb") as out:
        write_po(out, catalog)
    shutil.copytree(i18n.LOCALE_DIR / "de", tmp_path / "de")
    for domain in ("web", "desk"):
        shutil.copy(catalogues.po_path("en", domain), copy.parent / f"{domain}.po")
    monkeypatch.setattr(catalogues, "LOCALE_DIR", tmp_path)
    monkeypatch.setattr(
        catalogues, "po_path", lambda lang, domain: tmp_path / lang / "LC_MESSAGES" / f"{domain}.po"
    )
    [gap] = catalogues.check()
    assert gap.message == dropped.id and gap.lang == "en" and gap.domain == "email"
    where, _, line = gap.where.partition(",")[0].rpartition(":")
    assert (catalogues.ROOT / where).is_file() and int(line) > 0
    assert "missing" in str(gap)


def test_the_compiled_catalogues_are_those_of_the_po_files() -> None:
    for domain in i18n.DOMAINS:
        with catalogues.po_path("en", domain).open("rb") as file:
            catalog = read_po(file, locale="en", domain=domain)
        for message in catalog:
            if message.id and isinstance(message.id, str):
                found = i18n.translations("en", domain).ugettext(message.id)
                assert found == message.string, (
                    "stale .mo: run `python -m dispatcher.i18n.catalogues compile`"
                )


def test_templates_translate_in_the_language_of_the_render() -> None:
    env = jinja2.Environment(autoescape=True)
    i18n.install(env)
    template = env.from_string('{{ _("Guten Tag %(name)s,", name=who) }} {{ day | local_date }}')
    day = dt.date(2019, 4, 2)
    german = template.render(lang="de", who="<Ada>", day=day)
    assert german == "Guten Tag &lt;Ada&gt;, Dienstag, 2. April 2019"
    assert template.render(lang="en", who="<Ada>", day=day) == (
        "Hello &lt;Ada&gt;, Tuesday, 2 April 2019"
    )


def test_a_template_reads_its_own_areas_catalogue_first(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The same German text in two areas: "Abmelden" unsubscribes on the public pages and
    signs out at the desk; each template finds its area's meaning."""
    meanings = {"web": "Unsubscribe", "desk": "Sign out"}
    for domain in i18n.DOMAINS:
        catalog = Catalog(locale="en", domain=domain)
        if domain in meanings:
            catalog.add("Abmelden", meanings[domain])
        mo = tmp_path / "locale" / "en" / "LC_MESSAGES" / f"{domain}.mo"
        mo.parent.mkdir(parents=True, exist_ok=True)
        with mo.open("wb") as file:
            write_mo(file, catalog)
    monkeypatch.setattr(i18n, "LOCALE_DIR", tmp_path / "locale")
    i18n.translations.cache_clear()
    try:
        for area in ("web", "desk"):
            (tmp_path / area).mkdir()
            (tmp_path / area / "b.html.j2").write_text('{{ _("Abmelden") }}', encoding="utf-8")
        env = jinja2.Environment(loader=jinja2.FileSystemLoader(tmp_path), autoescape=True)
        i18n.install(env)
        assert env.get_template("web/b.html.j2").render(lang="en") == "Unsubscribe"
        assert env.get_template("desk/b.html.j2").render(lang="en") == "Sign out"
        assert env.get_template("web/b.html.j2").render(lang="de") == "Abmelden"
    finally:
        i18n.translations.cache_clear()  # the real catalogues again for the next test
    assert i18n.template_domain(None) is None


def test_each_template_is_looked_up_in_the_domain_it_is_extracted_into() -> None:
    for domain in i18n.DOMAINS:
        for path in catalogues._files(domain):
            if path.suffix == ".j2":
                name = path.relative_to(catalogues.ROOT / "templates").as_posix()
                assert i18n.template_domain(name) == domain, name


def test_a_render_without_a_language_fails_instead_of_falling_back_to_german() -> None:
    env = jinja2.Environment()
    i18n.install(env)
    with pytest.raises(jinja2.UndefinedError, match="without `lang`"):
        env.from_string('{{ _("Guten Tag,") }}').render()
