"""Compiles the gettext catalogues (.po -> .mo) whenever the package is built or installed.

Everything else about the package is in pyproject.toml; this hook exists because the
compiled catalogues are build products, not sources (docs/architecture.md, "Languages").
"""

from pathlib import Path

from babel.messages.mofile import write_mo
from babel.messages.pofile import read_po
from setuptools import setup
from setuptools.command.build_py import build_py

LOCALE = Path("dispatcher/i18n/locale")


class BuildWithCatalogues(build_py):
    def run(self) -> None:
        for po in sorted(LOCALE.glob("*/LC_MESSAGES/*.po")):
            lang, domain = po.parts[-3], po.stem
            with po.open("rb") as file:
                catalog = read_po(file, locale=lang, domain=domain)
            for base in {Path(), Path(self.build_lib)}:
                mo = base / po.with_suffix(".mo")
                mo.parent.mkdir(parents=True, exist_ok=True)
                with mo.open("wb") as file:
                    write_mo(file, catalog, use_fuzzy=False)
        super().run()


setup(cmdclass={"build_py": BuildWithCatalogues})
