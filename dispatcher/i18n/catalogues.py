"""Extract, merge, compile and check the gettext catalogues (Babel's own machinery).

    python -m dispatcher.i18n.catalogues update    # .pot from the sources, merged into each .po
    python -m dispatcher.i18n.catalogues compile   # .po -> .mo (install time: scripts/bootstrap,
                                                   # the Dockerfile and the package build)
    python -m dispatcher.i18n.catalogues check     # every text translated; exit 1 otherwise

Each domain collects the texts of one area from its templates and modules. Python code
marks texts with `gettext(lang, "…")`, `ngettext(lang, "…", "…", n)` or `N_("…")` (a text
translated later); templates with `_()`, `ngettext()` and `{% trans %}`.
"""

from __future__ import annotations

import datetime as dt
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

from babel.messages.catalog import Catalog
from babel.messages.extract import extract_from_file
from babel.messages.mofile import write_mo
from babel.messages.pofile import read_po, write_po

from dispatcher.i18n import DOMAINS, LANGUAGES, LOCALE_DIR, SOURCE_LANGUAGE

ROOT = Path(__file__).parents[2]
#: domain -> source globs (relative to the repository); each file belongs to one domain.
SOURCES: dict[str, tuple[str, ...]] = {
    "email": (
        "templates/email/newsletter.*.j2",
        "templates/email/subject.txt.j2",
        "templates/email/_impressum.html.j2",
        "dispatcher/content/**/*.py",
        "dispatcher/mail/**/*.py",
        "dispatcher/delivery/email.py",
        "dispatcher/delivery/preview.py",
    ),
    "posts": (
        "templates/social/*.j2",
        "dispatcher/delivery/posts.py",
    ),
    "web": (
        "templates/web/*.j2",
        "templates/email/confirm.*.j2",
        "dispatcher/web/*.py",
    ),
    "desk": (
        "templates/desk/*.j2",
        "templates/email/desk_sign_in.*.j2",
        "dispatcher/web/desk/*.py",
        "dispatcher/delivery/queue_changes.py",
        "dispatcher/campaign/editing.py",
    ),
}
PYTHON_KEYWORDS: dict[str, tuple[int, ...] | None] = {
    "gettext": (2,),
    "ngettext": (2, 3),
    "N_": None,
}
JINJA_KEYWORDS: dict[str, tuple[int, ...] | None] = {
    "_": None,
    "gettext": None,
    "ngettext": (1, 2),
}
_FIXED = dt.datetime(2026, 12, 1, tzinfo=dt.UTC)
JINJA_OPTIONS = {"trim_blocks": "true", "lstrip_blocks": "true", "newstyle_gettext": "true"}


def _files(domain: str) -> Iterator[Path]:
    for pattern in SOURCES[domain]:
        yield from sorted(ROOT.glob(pattern))


def extract(domain: str) -> Catalog:
    """The domain's texts as found in its sources now."""
    catalog = Catalog(
        project="cluster-week-dispatcher",
        domain=domain,
        charset="utf-8",
        creation_date=_FIXED,  # no date churn in the .pot/.po files at every update
        revision_date=_FIXED,
    )
    for path in _files(domain):
        relative = path.relative_to(ROOT).as_posix()
        if path.suffix == ".j2":
            found = extract_from_file(
                "jinja2.ext:babel_extract", str(path), JINJA_KEYWORDS, [], JINJA_OPTIONS
            )
        else:
            found = extract_from_file("python", str(path), PYTHON_KEYWORDS, [], {})
        for line, message, _comments, context in found:
            catalog.add(message, None, [(relative, line)], context=context)
    return catalog


def po_path(lang: str, domain: str) -> Path:
    return LOCALE_DIR / lang / "LC_MESSAGES" / f"{domain}.po"


def _read(path: Path, lang: str, domain: str) -> Catalog:
    with path.open("rb") as file:
        return read_po(file, locale=lang, domain=domain)


def _write_po(catalog: Catalog, path: Path, **options: bool) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("wb") as file:
        write_po(file, catalog, width=100, sort_output=False, **options)


def update() -> None:
    """Template (.pot) from the sources; each .po gains new texts and keeps its translations."""
    for domain in DOMAINS:
        template = extract(domain)
        _write_po(template, LOCALE_DIR / f"{domain}.pot", omit_header=False)
        for lang in LANGUAGES:
            path = po_path(lang, domain)
            catalog = (
                _read(path, lang, domain)
                if path.is_file()
                else Catalog(
                    locale=lang, domain=domain, charset="utf-8",
                    creation_date=_FIXED, revision_date=_FIXED,
                )
            )  # fmt: skip
            catalog.update(template, no_fuzzy_matching=True)
            _write_po(catalog, path, ignore_obsolete=True)


def compile_all(target: Path = LOCALE_DIR) -> list[Path]:
    """Every .po to its .mo under `target` (the package build compiles into its build dir)."""
    written = []
    for domain in DOMAINS:
        for lang in LANGUAGES:
            catalog = _read(po_path(lang, domain), lang, domain)
            mo = target / lang / "LC_MESSAGES" / f"{domain}.mo"
            mo.parent.mkdir(parents=True, exist_ok=True)
            with mo.open("wb") as file:
                write_mo(file, catalog, use_fuzzy=False)
            written.append(mo)
    return written


@dataclass(frozen=True)
class Gap:
    """A text a catalogue lacks; `str()` says where the text is and what to do."""

    lang: str
    domain: str
    message: str
    where: str
    what: str

    def __str__(self) -> str:
        return f"{self.where}: {self.what} in {self.lang}/{self.domain}.po: {self.message!r}"


def check() -> list[Gap]:
    """Texts of the sources missing from a catalogue, untranslated or fuzzy, and texts a
    catalogue still carries that no source uses any more."""
    gaps: list[Gap] = []
    for domain in DOMAINS:
        template = extract(domain)
        for lang in LANGUAGES:
            path = po_path(lang, domain)
            catalog = _read(path, lang, domain) if path.is_file() else Catalog(locale=lang)
            for message in template:
                if not message.id:
                    continue
                where = ", ".join(f"{f}:{n}" for f, n in message.locations)
                entry = catalog.get(message.id, context=message.context)
                if entry is None:
                    gaps.append(Gap(lang, domain, str(message.id), where, "missing; run update"))
                elif lang != SOURCE_LANGUAGE and (entry.fuzzy or not _translated(entry.string)):
                    gaps.append(Gap(lang, domain, str(message.id), where, "not translated"))
            used = {(m.id, m.context) for m in template if m.id}
            for entry in catalog:
                if entry.id and (entry.id, entry.context) not in used:
                    gaps.append(
                        Gap(lang, domain, str(entry.id), str(path), "no longer used; run update")
                    )
    return gaps


def _translated(string: object) -> bool:
    if isinstance(string, tuple | list):
        return all(string)
    return bool(string)


def main(argv: list[str]) -> int:
    command = argv[0] if argv else ""
    if command == "update":
        update()
    elif command == "compile":
        for path in compile_all():
            print(path.relative_to(ROOT))
    elif command == "check":
        gaps = check()
        for gap in gaps:
            print(gap, file=sys.stderr)
        return 1 if gaps else 0
    else:
        print("usage: python -m dispatcher.i18n.catalogues update|compile|check", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
